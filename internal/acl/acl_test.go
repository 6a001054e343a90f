package acl

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/sip"
)

func testConfig(t testing.TB, yaml string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(yaml), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const cfgYAML = `
listen: [udp://127.0.0.1:5060]
upstreams:
  - {name: pbx, targets: [udp://127.0.0.1:5080]}
trunks:
  - {name: wide, allow: [198.51.100.0/24], upstream: pbx}
  - {name: narrow, allow: [198.51.100.8/29, "2001:db8:1::/48"], upstream: pbx}
  - {name: local, allow: [127.0.0.1], upstream: pbx}
  - {name: v6host, allow: ["2001:db8:1:2::5"], upstream: pbx}
`

func TestLookup(t *testing.T) {
	tab := New(testConfig(t, cfgYAML))
	tests := []struct {
		src  string
		tr   sip.Transport
		kind chain.PeerKind
		name string
	}{
		{"198.51.100.1:5060", sip.UDP, chain.PeerTrunk, "wide"},
		{"198.51.100.9:5060", sip.UDP, chain.PeerTrunk, "narrow"}, // longest prefix wins
		{"198.51.101.1:5060", sip.UDP, chain.PeerUnknown, ""},
		{"[2001:db8:1:2::5]:5060", sip.TCP, chain.PeerTrunk, "v6host"},
		{"[2001:db8:1:3::5]:5060", sip.TCP, chain.PeerTrunk, "narrow"},
		{"[2001:db8:2::5]:5060", sip.UDP, chain.PeerUnknown, ""},
		{"[::ffff:198.51.100.1]:5060", sip.UDP, chain.PeerTrunk, "wide"}, // 4-in-6 is unmapped
		{"127.0.0.1:5080", sip.UDP, chain.PeerUpstream, "pbx"},           // exact target beats the trunk's /32 over UDP
		{"127.0.0.1:5080", sip.TCP, chain.PeerTrunk, "local"},            // streams: the explicit allow owns the address
		{"127.0.0.1:40000", sip.UDP, chain.PeerTrunk, "local"},
	}
	for _, tc := range tests {
		m := tab.Lookup(netip.MustParseAddrPort(tc.src), tc.tr)
		name := ""
		switch m.Kind {
		case chain.PeerTrunk:
			name = m.Trunk.Name
		case chain.PeerUpstream:
			name = m.Upstream.Name
		}
		if m.Kind != tc.kind || name != tc.name {
			t.Errorf("Lookup(%s, %v) = %v %q, want %v %q", tc.src, tc.tr, m.Kind, name, tc.kind, tc.name)
		}
	}
}

func TestLookupNoAlloc(t *testing.T) {
	tab := New(testConfig(t, cfgYAML))
	src := netip.MustParseAddrPort("203.0.113.9:5060")
	if n := testing.AllocsPerRun(1000, func() { tab.Lookup(src, sip.UDP) }); n != 0 {
		t.Fatalf("%v allocations per lookup", n)
	}
}

func BenchmarkLookup10k(b *testing.B) {
	yaml := "listen: [udp://127.0.0.1:5060]\nupstreams: [{name: pbx, targets: [udp://127.0.0.1:5080]}]\ntrunks:\n"
	for i := range 10000 {
		yaml += fmt.Sprintf("  - {name: t%d, allow: [10.%d.%d.0/%d], upstream: pbx}\n", i, i/256, i%256, 24+i%8)
	}
	c, err := config.Parse([]byte(yaml), "bench")
	if err != nil {
		b.Fatal(err)
	}
	tab := New(c)
	srcs := []netip.AddrPort{netip.MustParseAddrPort("10.3.7.1:5060"), netip.MustParseAddrPort("203.0.113.9:5060")}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		tab.Lookup(srcs[i&1], sip.UDP)
		i++
	}
}
