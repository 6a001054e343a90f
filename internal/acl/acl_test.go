package acl

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/banlist"
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

func TestProbeTracker(t *testing.T) {
	p := NewProbeTracker(16)
	a := netip.MustParseAddr("203.0.113.5")
	now := time.Unix(0, 0)
	for i := range 5 {
		if p.Exceeded(a, now, 1, 5) {
			t.Fatalf("request %d within the burst counted as exceeded", i)
		}
	}
	if !p.Exceeded(a, now, 1, 5) {
		t.Fatal("6th request at once not exceeded")
	}
	if p.Exceeded(a, now.Add(time.Second), 1, 5) {
		t.Fatal("a token refills after 1 s at 1/s")
	}
	if p.Exceeded(netip.MustParseAddr("203.0.113.6"), now, 0, 5) {
		t.Fatal("rate 0 disables the rule")
	}
}

// TestUnknownProbesAreBanned: an unknown source that keeps sending is banned.
func TestUnknownProbesAreBanned(t *testing.T) {
	cfg := testConfig(t, cfgYAML+"bans: {unknown_source_probes: 1/1m, probe_burst: 3}\n")
	bans := banlist.New(nil, banlist.Options{})
	st, _ := NewStage(cfg, nil, nil, bans, NewProbeTracker(0))
	src := netip.MustParseAddrPort("203.0.113.9:5060")
	for i := range 4 {
		if v := st.Handle(&chain.Request{Src: src, Transport: sip.UDP}); v.Action != chain.Drop {
			t.Fatalf("request %d: %+v", i, v)
		}
	}
	if !bans.Blocked(src.Addr()) {
		t.Fatal("the 4th probe beyond a burst of 3 did not ban the source")
	}
	if st.Table().IsPeer(netip.MustParseAddr("198.51.100.1")) != true || st.Table().IsPeer(src.Addr()) {
		t.Fatal("IsPeer")
	}
}
