package config

import (
	"strings"
	"testing"
)

func TestTrunkTopologyHiding(t *testing.T) {
	const base = "listen: [udp://127.0.0.1:5060]\nupstreams: [{name: pbx, targets: [udp://127.0.0.3:5080]}]\ntrunks:\n  - {name: acme, allow: [127.0.0.2/32], upstream: pbx"
	tests := []struct {
		name, extra string
		want        bool
		err         string // substring of the error, "" for none
	}{
		{"default on", "", true, ""},
		{"on", ", topology_hiding: true", true, ""},
		{"off", ", topology_hiding: false", false, ""},
		{"not a boolean", ", topology_hiding: maybe", false, "t.yaml:4:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(base+tc.extra+"}\n"), "t.yaml")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("want an error with %q, got %v", tc.err, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Trunk("acme").TopologyHiding; got != tc.want {
				t.Errorf("TopologyHiding = %v, want %v", got, tc.want)
			}
		})
	}
}
