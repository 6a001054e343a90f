package proxy

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sipwarden/sipwarden/internal/acl"
	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/events"
	"github.com/sipwarden/sipwarden/internal/route"
	"github.com/sipwarden/sipwarden/internal/sanity"
	"github.com/sipwarden/sipwarden/internal/sip"
	"github.com/sipwarden/sipwarden/internal/transport"
)

// digestConfig has a digest trunk at the caller's address (uac).
var digestConfig = `
listen: [udp://127.0.0.1:5060]
upstreams: [{name: pbx, targets: [udp://127.0.0.3:5080]}]
trunks:
  - name: phones
    auth: digest
    realm: sip.example.com
    algorithms: [SHA-256]
    allow: [127.0.0.2/32]
    upstream: pbx
    accounts: [{username: "1001", ha1: {sha-256: ` + strings.Repeat("ab", 32) + `}}]
`

// authStub stands in for the auth stage: it challenges with 407, or (ok)
// marks the request authenticated and refuses it with 503 like a later stage.
type authStub struct{ ok bool }

func (authStub) Name() string { return "auth" }
func (a authStub) Handle(req *chain.Request) chain.Verdict {
	if a.ok {
		req.Account = "1001"
		return chain.ReplyRetry(503, 5, "cps_limit")
	}
	return chain.Verdict{Action: chain.Reply, Code: 407, Reason: "challenge",
		Header: `Proxy-Authenticate: Digest realm="sip.example.com", nonce="n", algorithm=SHA-256, qop="auth"`}
}

func useDigest(t *testing.T, p *Proxy, stub authStub) {
	t.Helper()
	cfg, err := config.Parse([]byte(digestConfig), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := acl.NewStage(cfg, nil, nil, nil, nil)
	rt, _ := route.NewStage(cfg, nil, nil)
	p.SetRuntime(&Runtime{Config: cfg, Chain: chain.New(nil, a, sanity.New(), stub, rt), Alternates: rt.Alternates})
}

// feedAt hands b to the worker as received from src at the worker's current time.
func (w *worker) feedAt(src netip.AddrPort, b []byte) {
	w.handle(&transport.Packet{Buf: b, Src: src, Local: netip.MustParseAddrPort("127.0.0.1:5060"), Transport: sip.UDP, Received: w.now})
}

// TestUnauthenticatedReplySentOnce: a challenge to a UDP source that has not
// authenticated goes once (no timer G), a retransmitted INVITE gets it again
// from the transaction, and no CDR is written (a count and a sampled event
// instead); a refusal after authentication keeps timer G and its CDR.
func TestUnauthenticatedReplySentOnce(t *testing.T) {
	for _, tc := range []struct {
		name       string
		stub       authStub
		code       int
		wantResent bool
		wantCDRs   int
	}{
		{"challenge", authStub{}, 407, false, 0},
		{"authenticated refusal", authStub{ok: true}, 503, true, 1},
	} {
		p, w, rec, store := newTestProxy(t)
		useDigest(t, p, tc.stub)
		bus := events.NewBus()
		sub := bus.Subscribe("t", 16)
		p.opt.Bus = bus
		rec.keep = true
		var c callBufs
		c.build(1)
		w.now = time.Now()
		w.feedAt(uac, c.invite)
		if got := codes(rec.take(uac)); len(got) != 1 || got[0] != tc.code {
			t.Fatalf("%s: caller got %v, want [%d]", tc.name, got, tc.code)
		}
		for range 7 {
			w.advance(4 * time.Second) // past timer G's every retransmission, short of timer H (32 s)
		}
		if n := len(rec.take(uac)); (n > 0) != tc.wantResent {
			t.Fatalf("%s: %d retransmissions by timer G", tc.name, n)
		}
		if len(store.recs) != tc.wantCDRs {
			t.Fatalf("%s: CDRs %+v", tc.name, store.recs)
		}
		if tc.wantResent {
			continue
		}
		w.feedAt(uac, c.invite) // the caller's retransmission
		if got := codes(rec.take(uac)); len(got) != 1 || got[0] != tc.code {
			t.Fatalf("%s: retransmitted INVITE got %v", tc.name, got)
		}
		if v := testutil.ToFloat64(p.refl.refused.WithLabelValues("phones", "challenge")); v != 1 {
			t.Fatalf("%s: unauthenticated calls counted %v", tc.name, v)
		}
		if len(sub.C) != 1 {
			t.Fatalf("%s: %d events", tc.name, len(sub.C))
		}
		if e := <-sub.C; e.Kind != events.Unauthenticated || e.Reason != "challenge" || e.Code != 407 {
			t.Fatalf("%s: event %+v", tc.name, e)
		}
	}
}

// TestReplyBudget: replies to unauthenticated UDP sources are budgeted per
// destination (an address, an IPv6 /64); over budget they are dropped and
// counted, other destinations are not affected, and the next window has a
// new budget.
func TestReplyBudget(t *testing.T) {
	p, w, rec, store := newTestProxy(t)
	useDigest(t, p, authStub{})
	rec.keep = true
	w.now = time.Unix(1_800_000_000, 0) // the start of a window
	var c callBufs
	for i := range replyBudget + 10 {
		c.build(100 + i)
		w.feedAt(uac, c.invite)
	}
	if n := len(rec.take(uac)); n != replyBudget {
		t.Fatalf("%d replies in a window, want %d", n, replyBudget)
	}
	if v := testutil.ToFloat64(p.refl.dropped); v != 10 {
		t.Fatalf("dropped over budget: %v, want 10", v)
	}
	// the caller's retransmission of an INVITE that was answered is over budget too
	c.build(100)
	w.feedAt(uac, c.invite)
	if n := len(rec.take(uac)); n != 0 {
		t.Fatalf("%d replies to a retransmission over budget", n)
	}
	if len(store.recs) != 0 {
		t.Fatalf("CDRs %+v", store.recs)
	}
	w.now = w.now.Add(replyWindow)
	c.build(200)
	w.feedAt(uac, c.invite)
	if n := len(rec.take(uac)); n != 1 {
		t.Fatalf("%d replies in the next window, want 1", n)
	}
	// The table: addresses apart, IPv6 /64s together.
	g := newReflectGuard(nil, p.met.dropVec)
	now := w.now
	for i := range replyBudget {
		if !g.allow(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)}), now) {
			t.Fatalf("reply %d to a /64 refused", i)
		}
	}
	if g.allow(netip.MustParseAddr("2001:db8::ffff"), now) {
		t.Fatal("another address of the /64 was allowed over its budget")
	}
	if !g.allow(netip.MustParseAddr("2001:db8:0:1::1"), now) || !g.allow(netip.MustParseAddr("192.0.2.1"), now) {
		t.Fatal("another destination was refused")
	}
	// An address that authenticated (it answered a nonce sent there) is no
	// third-party victim: not budgeted, for provenFor.
	g.prove(netip.MustParseAddr("2001:db8::ffff"), now)
	for i := range 3 * replyBudget {
		if !g.allow(netip.MustParseAddr("2001:db8::ffff"), now) {
			t.Fatalf("reply %d to an address that authenticated refused", i)
		}
	}
	if g.allow(netip.MustParseAddr("2001:db8::fffe"), now) {
		t.Fatal("its /64 neighbour was exempted too")
	}
	later := now.Add(provenFor + 2*time.Minute)
	for i := range replyBudget {
		if !g.allow(netip.MustParseAddr("2001:db8::ffff"), later) {
			t.Fatalf("reply %d of a later window refused", i)
		}
	}
	if g.allow(netip.MustParseAddr("2001:db8::ffff"), later) {
		t.Fatal("an address that authenticated more than provenFor ago is still exempt")
	}
}

// TestAuthenticatedSourceNotBudgeted: a request that authenticated exempts
// its source address from the reply budget (a customer's SBC registering
// thousands of phones from one address is challenged at any rate).
func TestAuthenticatedSourceNotBudgeted(t *testing.T) {
	p, w, rec, _ := newTestProxy(t)
	rec.keep = true
	w.now = time.Unix(1_800_000_000, 0)
	var c callBufs
	useDigest(t, p, authStub{ok: true})
	c.build(1)
	w.feedAt(uac, c.invite) // authenticated (and refused with 503 by a later stage)
	rec.take(uac)
	useDigest(t, p, authStub{})
	for i := range 3 * replyBudget {
		c.build(10 + i)
		w.feedAt(uac, c.invite)
	}
	if n := len(rec.take(uac)); n != 3*replyBudget {
		t.Fatalf("%d challenges of %d to an address that authenticated", n, 3*replyBudget)
	}
}

// TestReplyBudgetAllocs: taking from the budget allocates nothing.
func TestReplyBudgetAllocs(t *testing.T) {
	p, _, _, _ := newTestProxy(t)
	a := netip.MustParseAddr("2001:db8::1")
	now := time.Now()
	if n := testing.AllocsPerRun(100, func() { p.refl.allow(a, now) }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

// TestUnauthenticatedEventSampled: the INVITEs refused to unauthenticated
// sources make one event a second at most, which says how many there were.
func TestUnauthenticatedEventSampled(t *testing.T) {
	p, w, _, store := newTestProxy(t)
	useDigest(t, p, authStub{})
	bus := events.NewBus()
	sub := bus.Subscribe("t", 64)
	p.opt.Bus = bus
	w.now = time.Unix(1_800_000_000, 0)
	var c callBufs
	for i := range 10 {
		c.build(300 + i)
		w.feedAt(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 2}), uint16(5000+i)), c.invite)
	}
	w.now = w.now.Add(unauthEventEvery)
	c.build(400)
	w.feedAt(uac, c.invite)
	if len(sub.C) != 2 {
		t.Fatalf("%d events for 11 INVITEs in two periods, want 2", len(sub.C))
	}
	first, second := <-sub.C, <-sub.C
	if !strings.HasPrefix(first.Detail, "1 ") || !strings.HasPrefix(second.Detail, "10 ") || second.Trunk != "phones" {
		t.Fatalf("events: %+v\n%+v", first, second)
	}
	if v := testutil.ToFloat64(p.refl.refused.WithLabelValues("phones", "challenge")); v != 11 || len(store.recs) != 0 {
		t.Fatalf("counted %v, CDRs %d", v, len(store.recs))
	}
}

func TestUnauthenticated(t *testing.T) {
	cfg, err := config.Parse([]byte(digestConfig+"  - {name: ipt, allow: [192.0.2.0/24], upstream: pbx}\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		req  chain.Request
		want bool
	}{
		{"unknown source", chain.Request{PeerKind: chain.PeerUnknown}, true},
		{"digest trunk, no account", chain.Request{PeerKind: chain.PeerTrunk, Trunk: cfg.Trunk("phones")}, true},
		{"digest trunk, authenticated", chain.Request{PeerKind: chain.PeerTrunk, Trunk: cfg.Trunk("phones"), Account: "1001"}, false},
		{"ip trunk", chain.Request{PeerKind: chain.PeerTrunk, Trunk: cfg.Trunk("ipt")}, false},
		{"upstream", chain.Request{PeerKind: chain.PeerUpstream, Upstream: &cfg.Upstreams[0]}, false},
	}
	for _, tc := range tests {
		if got := unauthenticated(&tc.req); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
