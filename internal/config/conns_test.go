package config

import (
	"strings"
	"testing"
)

func TestConnectionBudget(t *testing.T) {
	const trunk = "upstreams: [{name: pbx, targets: [udp://192.0.2.10:5060]}]\ntrunks:\n  - {name: office, allow: [198.51.100.0/24], upstream: pbx, limits: {max_connections: %s}}\n"
	tests := []struct {
		name, sip, maxConns string
		wantErr             string
		prefix, reserved    int
		trunkCap            int
	}{
		{name: "defaults", sip: "{}", maxConns: "0", prefix: 64, reserved: 2500, trunkCap: DefaultTrunkConns},
		{name: "prefix follows per-source", sip: "{max_conns_per_source: 10, max_conns: 400}", maxConns: "250", prefix: 20, reserved: 100, trunkCap: 250},
		{name: "explicit", sip: "{max_conns_per_prefix: 5, reserved_peer_conns: 300}", maxConns: "0", prefix: 5, reserved: 300, trunkCap: DefaultTrunkConns},
		{name: "reserved too large", sip: "{max_conns: 100, reserved_peer_conns: 100}", maxConns: "0",
			wantErr: "x:2:44: sip.reserved_peer_conns: must be less than max_conns (100), got 100"},
		{name: "negative prefix cap", sip: "{max_conns_per_prefix: -1}", maxConns: "0",
			wantErr: "x:2:29: sip.max_conns_per_prefix: must be >= 0"},
		{name: "negative trunk cap", sip: "{}", maxConns: "-2",
			wantErr: "x:5:87: trunks[0].limits.max_connections: must be >= 0 (0: 1000), got -2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "listen: [udp://127.0.0.1:5060]\nsip: " + tt.sip + "\n" + strings.Replace(trunk, "%s", tt.maxConns, 1)
			c, err := Parse([]byte(src), "x")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.SIP.MaxConnsPerPrefix != tt.prefix || c.SIP.ReservedPeerConns != tt.reserved {
				t.Errorf("sip %+v", c.SIP)
			}
			if got := c.Trunk("office").Limits.MaxConnections; got != tt.trunkCap {
				t.Errorf("trunk cap %d, want %d", got, tt.trunkCap)
			}
		})
	}
}

func TestMediaLatchPackets(t *testing.T) {
	tests := []struct {
		val     string
		want    int
		wantErr string
	}{
		{"", DefaultMediaLatchPackets, ""},
		{"latch_packets: 5", 5, ""},
		{"latch_packets: -1", 0, "x:2:39: media.latch_packets: must be 1 to 50 packets"},
		{"latch_packets: 51", 0, "x:2:39: media.latch_packets: must be 1 to 50 packets"},
	}
	for _, tt := range tests {
		c, err := Parse([]byte("listen: [udp://127.0.0.1:5060]\nmedia: {enabled: true, "+tt.val+"}\n"), "x")
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q: error %v, want %q", tt.val, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if c.Media.LatchPackets != tt.want {
			t.Errorf("%q: %d", tt.val, c.Media.LatchPackets)
		}
	}
}
