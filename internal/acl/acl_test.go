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
		if got := p.Exceeded(a, now, 1, 5, 0); got != WithinBudget {
			t.Fatalf("request %d within the burst: %v", i, got)
		}
	}
	if got := p.Exceeded(a, now, 1, 5, 0); got != AddressBudget {
		t.Fatalf("6th request at once: %v, want AddressBudget", got)
	}
	if got := p.Exceeded(a, now.Add(time.Second), 1, 5, 0); got != WithinBudget {
		t.Fatalf("a token refills after 1 s at 1/s: %v", got)
	}
	if got := p.Exceeded(netip.MustParseAddr("203.0.113.6"), now, 0, 5, 0); got != WithinBudget {
		t.Fatal("rate 0 disables the rule")
	}
}

// Many addresses of one /24 (or /64), each within its own budget, exhaust
// the block's budget together; another block is not affected.
func TestProbeTrackerBlocks(t *testing.T) {
	for _, tc := range []struct{ name, base, other string }{
		{"IPv4 /24", "198.51.100.%d", "198.51.101.1"},
		{"IPv6 /64", "2001:db8:1:2::%x", "2001:db8:1:3::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewProbeTracker(1024)
			now := time.Unix(0, 0)
			// budget 1/s burst 4; block factor 2: the block may send 8 at once
			sent := 0
			for i := 1; i <= 4; i++ {
				a := netip.MustParseAddr(fmt.Sprintf(tc.base, i))
				for range 2 {
					if got := p.Exceeded(a, now, 1, 4, 2); got != WithinBudget {
						t.Fatalf("request %d: %v", sent, got)
					}
					sent++
				}
			}
			if got := p.Exceeded(netip.MustParseAddr(fmt.Sprintf(tc.base, 9)), now, 1, 4, 2); got != BlockBudget {
				t.Fatalf("the 9th request of the block: %v, want BlockBudget", got)
			}
			if got := p.Exceeded(netip.MustParseAddr(tc.other), now, 1, 4, 2); got != WithinBudget {
				t.Fatalf("a neighbouring block: %v", got)
			}
			if got := p.Exceeded(netip.MustParseAddr(fmt.Sprintf(tc.base, 10)), now, 1, 4, 0); got != WithinBudget {
				t.Fatalf("block factor 0 disables the block budget: %v", got)
			}
		})
	}
}

// A botnet spread over a /24 gets the /24 banned; a trunk in that /24 is spared.
func TestProbingBlockIsBannedSparingPeers(t *testing.T) {
	cfg := testConfig(t, cfgYAML+"  - {name: lone, allow: [203.0.113.1], upstream: pbx}\n"+
		"bans: {unknown_source_probes: 1/1m, probe_burst: 3, probe_prefix_factor: 2}\n")
	bans := banlist.New(nil, banlist.Options{})
	st, _ := NewStage(cfg, nil, nil, bans, NewProbeTracker(0))
	bans.SetPeerCheck(st.Table().IsPeer)
	for i := 1; i <= 7; i++ { // 2 requests from each of 3 addresses fit the block's 6; the 7th does not
		src := netip.MustParseAddrPort(fmt.Sprintf("203.0.113.%d:5060", 100+(i+1)/2))
		if v := st.Handle(&chain.Request{Src: src, Transport: sip.UDP}); v.Action != chain.Drop {
			t.Fatalf("request %d: %+v", i, v)
		}
	}
	b, ok := bans.Lookup(netip.MustParseAddr("203.0.113.200"))
	if !ok || b.Prefix.String() != "203.0.113.0/24" || b.Reason != "unknown_prefix_probe" || !b.SparesPeers {
		t.Fatalf("ban of the block: %+v %v", b, ok)
	}
	if bans.Blocked(netip.MustParseAddr("203.0.113.1")) {
		t.Fatal("the trunk at 203.0.113.1 is inside the banned block and must be spared")
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
