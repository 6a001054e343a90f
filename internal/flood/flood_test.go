package flood

import (
	"errors"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/banlist"
	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
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
