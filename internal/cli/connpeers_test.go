package cli

import (
	"net/netip"
	"testing"

	"github.com/sipwarden/sipwarden/internal/config"
)

func TestConnPeers(t *testing.T) {
	cfg, err := config.Parse([]byte(`
listen: [udp://127.0.0.1:5060]
upstreams:
  - {name: pbx, targets: [udp://192.0.2.10:5060], allow: [192.0.2.64/26]}
trunks:
  - name: office
    allow: [198.51.100.0/24]
    upstream: pbx
    limits: {max_connections: 300}
  - name: phones
    auth: digest
    upstream: pbx
    realm: example.com
    algorithms: [MD5]
    accounts:
      - {username: alice, ha1: {md5: 0123456789abcdef0123456789abcdef}, register_from: [203.0.113.0/24]}
`), "x")
	if err != nil {
		t.Fatal(err)
	}
	pt := connPeers(cfg)
	tests := []struct {
		addr, name string
		max        int
	}{
		{"198.51.100.7", "trunk:office", 300},
		{"203.0.113.9", "trunk:phones", config.DefaultTrunkConns}, // an account's register_from
		{"192.0.2.10", "upstream:pbx", 0},                         // a target address (0: the transport's default)
		{"192.0.2.70", "upstream:pbx", 0},
		{"192.0.2.11", "", 0},
		{"2001:db8::1", "", 0},
	}
	for _, tt := range tests {
		name, max, ok := pt.Peer(netip.MustParseAddr(tt.addr))
		if tt.name == "" {
			if ok {
				t.Errorf("%s: peer %q, want a stranger", tt.addr, name)
			}
			continue
		}
		if name != tt.name || (tt.max != 0 && max != tt.max) {
			t.Errorf("%s: %q cap %d, want %q cap %d", tt.addr, name, max, tt.name, tt.max)
		}
	}
}
