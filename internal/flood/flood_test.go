package flood

import (
	"errors"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sipwarden/sipwarden/internal/banlist"
	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/events"
	"github.com/sipwarden/sipwarden/internal/sip"
)

func TestTableBudgetBoundary(t *testing.T) {
	tab := NewTable(64)
	key := netip.MustParsePrefix("192.0.2.1/32")
	now := time.Unix(1000, 0)
	b := Budget{Rate: 10, Burst: 10} // 10/1s
	for i := range 10 {
		if tab.Take(key, Invite, b, now) {
			t.Fatalf("request %d of a burst of 10 exceeded", i+1)
		}
	}
	if !tab.Take(key, Invite, b, now) {
		t.Fatal("11th request at once not exceeded")
	}
	if tab.Take(key, Register, b, now) {
		t.Fatal("classes must have separate budgets")
	}
	if tab.Take(key, Invite, b, now.Add(100*time.Millisecond)) {
		t.Fatal("one token after 100 ms at 10/s")
	}
	if !tab.Take(key, Invite, b, now.Add(100*time.Millisecond)) {
		t.Fatal("only one token after 100 ms")
	}
	if tab.Take(key, Invite, Budget{}, now) {
		t.Fatal("a zero budget is unlimited")
	}
}

// TestSpoofedFloodStaysBounded: a million distinct source addresses do not
// grow the table, and a real flooder among them is still caught.
func TestSpoofedFloodStaysBounded(t *testing.T) {
	tab := NewTable(65536)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	now := time.Unix(1000, 0)
	b := Budget{Rate: 5, Burst: 5}
	flooder := netip.MustParsePrefix("198.51.100.66/32")
	caught := false
	for i := range 1_000_000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		tab.Take(netip.PrefixFrom(a, 32), Invite, b, now)
		if i%1000 == 0 && tab.Take(flooder, Invite, b, now) {
			caught = true
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 1<<20 {
		t.Fatalf("heap grew by %d bytes during the flood", grown)
	}
	if tab.Size() != 65536 {
		t.Fatalf("table size %d", tab.Size())
	}
	if !caught {
		t.Fatal("the flooder hiding among a million spoofed sources was not caught")
	}
}

const cfgYAML = `
listen: [udp://127.0.0.1:5060]
upstreams: [{name: pbx, targets: [udp://127.0.0.3:5080]}]
flood:
  prefix_factor: 2
  trunk: {invite: 5/1s, malformed: 2/10s}
trunks:
  - {name: acme, allow: [192.0.2.0/24], upstream: pbx}
  - {name: busy, allow: [198.51.100.0/24], upstream: pbx, flood: {options: 1000/1s}}
`

func newStage(t *testing.T) (*Stage, *config.Config, *banlist.List) {
	cfg, err := config.Parse([]byte(cfgYAML), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bans := banlist.New(nil, banlist.Options{})
	st, _ := NewStage(cfg, NewState(1024, nil), bans, nil)
	return st, cfg, bans
}

func request(t *testing.T, method string) *sip.Msg {
	var m sip.Msg
	if err := m.Parse([]byte(method + " sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: 1\r\nCSeq: 1 " + method + "\r\nContent-Length: 0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	return &m
}

// The tests below give the ban list no peer check: their sources are no
// configured peer (a digest trunk's phones, which the acl stage identifies
// by their credentials, not their address), so they are banned.
func TestStageBansFlooder(t *testing.T) {
	st, cfg, bans := newStage(t)
	inv := request(t, "INVITE")
	src := netip.MustParseAddrPort("192.0.2.7:5060")
	for i := range 5 {
		if v := st.Handle(&chain.Request{Msg: inv, Src: src, PeerKind: chain.PeerTrunk, Trunk: &cfg.Trunks[0]}); v.Action != chain.Continue {
			t.Fatalf("INVITE %d within budget: %+v", i+1, v)
		}
	}
	v := st.Handle(&chain.Request{Msg: inv, Src: src, PeerKind: chain.PeerTrunk, Trunk: &cfg.Trunks[0]})
	if v.Action != chain.Drop || v.Reason != "flood_invite" || !bans.Blocked(src.Addr()) {
		t.Fatalf("6th INVITE: %+v, banned %v", v, bans.Blocked(src.Addr()))
	}
	if bans.Blocked(netip.MustParseAddr("192.0.2.8")) {
		t.Fatal("a neighbour was banned with the flooder")
	}
}

// TestStagePrefixFlood: addresses rotating through one /24, each under its own
// budget, together exceed the prefix budget (factor 2: 10 INVITEs): the /24 is banned.
func TestStagePrefixFlood(t *testing.T) {
	st, cfg, bans := newStage(t)
	inv := request(t, "INVITE")
	var v chain.Verdict
	for i := range 11 {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)}), 5060)
		v = st.Handle(&chain.Request{Msg: inv, Src: src, PeerKind: chain.PeerTrunk, Trunk: &cfg.Trunks[0]})
	}
	if v.Action != chain.Drop || v.Reason != "flood_prefix_invite" || !bans.Blocked(netip.MustParseAddr("192.0.2.200")) {
		t.Fatalf("rotation through a /24: %+v", v)
	}
}

func TestStageMalformedAndOverrides(t *testing.T) {
	st, cfg, bans := newStage(t)
	opt := request(t, "OPTIONS")
	busy := netip.MustParseAddrPort("198.51.100.5:5060")
	for i := range 500 {
		if v := st.Handle(&chain.Request{Msg: opt, Src: busy, PeerKind: chain.PeerTrunk, Trunk: &cfg.Trunks[1]}); v.Action != chain.Continue {
			t.Fatalf("the busy trunk's OPTIONS %d refused: its own profile allows 1000/1s", i)
		}
	}
	bad := netip.MustParseAddrPort("192.0.2.99:5060")
	var v chain.Verdict
	for range 3 {
		v = st.Handle(&chain.Request{Msg: opt, ParseErr: errors.New("bad"), Src: bad, PeerKind: chain.PeerTrunk, Trunk: &cfg.Trunks[0]})
	}
	if v.Reason != "flood_malformed" || !bans.Blocked(bad.Addr()) {
		t.Fatalf("3 malformed messages with a budget of 2/10s: %+v", v)
	}
	if v := st.Handle(&chain.Request{Msg: opt, Src: netip.MustParseAddrPort("203.0.113.1:5060")}); v.Action != chain.Continue {
		t.Fatal("unknown sources are the acl stage's business")
	}
}

// A configured trunk or upstream over a budget is shed, never banned: 503
// with Retry-After for INVITE and REGISTER, silence for the rest, a metric,
// and one peer_over_budget event a minute; prefix floods never ban it; a
// stranger in the same /24 still is.
func TestStageShedsPeers(t *testing.T) {
	cfg, err := config.Parse([]byte(cfgYAML), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bans := banlist.New(nil, banlist.Options{})
	trunk, pbx := netip.MustParseAddrPort("192.0.2.7:5060"), netip.MustParseAddrPort("127.0.0.3:5080")
	bans.SetPeerCheck(func(a netip.Addr) bool { return a == trunk.Addr() || a == pbx.Addr() })
	bus := events.NewBus()
	sub := bus.Subscribe("t", 100)
	st, _ := NewStage(cfg, NewState(1024, nil), bans, bus)
	tr := &cfg.Trunks[0]
	for _, tc := range []struct {
		name     string
		method   string
		parseErr error
		budget   int
		code     uint16
		reason   string
	}{
		{"invite", "INVITE", nil, 5, 503, "flood_shed_invite"},
		{"register", "REGISTER", nil, 50, 503, "flood_shed_register"},
		{"options", "OPTIONS", nil, 50, 0, "flood_shed_options"},
		{"malformed", "OPTIONS", errors.New("bad"), 2, 0, "flood_shed_malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := request(t, tc.method)
			for i := range tc.budget {
				if v := st.Handle(&chain.Request{Msg: m, ParseErr: tc.parseErr, Src: trunk, PeerKind: chain.PeerTrunk, Trunk: tr}); v.Action != chain.Continue {
					t.Fatalf("request %d within budget: %+v", i+1, v)
				}
			}
			for range 100 {
				v := st.Handle(&chain.Request{Msg: m, ParseErr: tc.parseErr, Src: trunk, PeerKind: chain.PeerTrunk, Trunk: tr})
				if v.Code != tc.code || v.Reason != tc.reason || (tc.code == 0) != (v.Action == chain.Drop) || (tc.code != 0) != (v.RetryAfter >= 1) {
					t.Fatalf("over budget: %+v", v)
				}
			}
			if bans.Blocked(trunk.Addr()) {
				t.Fatal("the trunk was banned")
			}
			var got []events.Event
			for len(sub.C) > 0 {
				got = append(got, <-sub.C)
			}
			if len(got) != 1 || got[0].Kind != events.PeerOverBudget || got[0].Reason != tc.reason || got[0].Trunk != "acme" {
				t.Fatalf("events %+v, want one peer_over_budget", got)
			}
		})
	}
	// The upstream, malformed beyond its 100/10s: shed, not banned.
	up := &cfg.Upstreams[0]
	var v chain.Verdict
	for range 200 {
		v = st.Handle(&chain.Request{Msg: request(t, "OPTIONS"), ParseErr: errors.New("bad"), Src: pbx, PeerKind: chain.PeerUpstream, Upstream: up})
	}
	if v.Reason != "flood_shed_malformed" || bans.Blocked(pbx.Addr()) {
		t.Fatalf("upstream: %+v, banned %v", v, bans.Blocked(pbx.Addr()))
	}
	// Strangers of the trunk's /24 (its digest phones) push the prefix over:
	// the /24 is banned, the trunk is not.
	inv := request(t, "INVITE")
	for i := range 30 {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + i%6)}), 5060)
		st.Handle(&chain.Request{Msg: inv, Src: src, PeerKind: chain.PeerTrunk, Trunk: tr})
	}
	if !bans.Blocked(netip.MustParseAddr("192.0.2.200")) || bans.Blocked(trunk.Addr()) {
		t.Fatalf("prefix ban: stranger blocked %v, trunk blocked %v", bans.Blocked(netip.MustParseAddr("192.0.2.200")), bans.Blocked(trunk.Addr()))
	}
}

// A trunk whose limits.cps is above its flood profile gets the floor:
// 300 calls/s (each with an ACK and a BYE) for 3 s pass the flood stage.
func TestStageTrunkCPSFloor(t *testing.T) {
	cfg, err := config.Parse([]byte(`
listen: [udp://127.0.0.1:5060]
upstreams: [{name: pbx, targets: [udp://127.0.0.3:5080]}]
flood: {trunk: {invite: 100/1s}}
trunks: [{name: big, allow: [192.0.2.1], upstream: pbx, limits: {cps: 300}}]
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bans := banlist.New(nil, banlist.Options{})
	src := netip.MustParseAddrPort("192.0.2.1:5060")
	bans.SetPeerCheck(func(a netip.Addr) bool { return a == src.Addr() })
	inv, ack, bye := request(t, "INVITE"), request(t, "ACK"), request(t, "BYE")
	tr := &cfg.Trunks[0]
	synctest.Test(t, func(t *testing.T) {
		st, _ := NewStage(cfg, NewState(1024, nil), bans, nil)
		for i := range 900 {
			for _, m := range []*sip.Msg{inv, ack, bye} {
				if v := st.Handle(&chain.Request{Msg: m, Src: src, PeerKind: chain.PeerTrunk, Trunk: tr}); v.Action != chain.Continue {
					t.Fatalf("call %d %s: %+v", i, m.Method(), v)
				}
			}
			time.Sleep(time.Second / 300)
		}
	})
}

// BenchmarkStage is the cost of counting one request that is within budget.
func BenchmarkStage(b *testing.B) {
	cfg, _ := config.Parse([]byte(strings.Replace(cfgYAML, "options: 1000/1s", "options: 1000000000/1s", 1)), "t.yaml")
	st, _ := NewStage(cfg, NewState(65536, nil), nil, nil)
	var m sip.Msg
	_ = m.Parse([]byte("OPTIONS sip:x@y SIP/2.0\r\nCall-ID: 1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"))
	req := &chain.Request{Msg: &m, Src: netip.MustParseAddrPort("198.51.100.5:5060"), PeerKind: chain.PeerTrunk, Trunk: &cfg.Trunks[1]}
	b.ReportAllocs()
	for b.Loop() {
		st.Handle(req)
	}
}
