package proxy

import (
	"net/netip"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/acl"
	"github.com/sipwarden/sipwarden/internal/cdr"
	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/limits"
	"github.com/sipwarden/sipwarden/internal/route"
	"github.com/sipwarden/sipwarden/internal/sanity"
	"github.com/sipwarden/sipwarden/internal/sip"
)

const failoverConfig = `
listen: [udp://127.0.0.1:5060]
upstreams: [{name: pbx, targets: [udp://127.0.0.3:5080, udp://127.0.0.4:5080]}]
trunks: [{name: acme, allow: [127.0.0.2/32], upstream: pbx}]
`

var pbx2 = netip.MustParseAddrPort("127.0.0.4:5080")

// useConfig swaps the test proxy's runtime for one built from yaml.
func useConfig(t *testing.T, p *Proxy, yaml string) {
	cfg, err := config.Parse([]byte(yaml), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := acl.NewStage(cfg, nil, nil, nil, nil)
	lim, _ := limits.NewStage(cfg, limits.NewRegistry(nil), nil)
	rt, _ := route.NewStage(cfg, nil, nil)
	p.SetRuntime(&Runtime{Config: cfg, Chain: chain.New(nil, a, sanity.New(), lim, rt), Alternates: rt.Alternates})
}

// advance moves the worker's clock by d and runs the timers that are due.
func (w *worker) advance(d time.Duration) {
	w.now = w.now.Add(d)
	w.fireTimers()
}

// sentTo returns the messages sent to dst since the last call, parsed.
func (r *recorder) take(dst netip.AddrPort) []sip.Msg {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []sip.Msg
	rest := r.sent[:0]
	for _, s := range r.sent {
		if s.dst != dst {
			rest = append(rest, s)
			continue
		}
		var m sip.Msg
		_ = m.Parse(s.b)
		out = append(out, m)
	}
	r.sent = rest
	return out
}

func codes(ms []sip.Msg) []int {
	var c []int
	for i := range ms {
		c = append(c, ms[i].StatusCode())
	}
	return c
}

// TestRetransmitTimeoutAndFailover: over UDP the INVITE is retransmitted
// (timer A), a target that never answers is abandoned after 64*T1 (timer B)
// for the next one, and the call completes there.
func TestRetransmitTimeoutAndFailover(t *testing.T) {
	p, w, rec, store := newTestProxy(t)
	useConfig(t, p, failoverConfig)
	rec.keep = true
	var c callBufs
	c.build(1)
	w.feed(uac, c.invite)
	if got := rec.take(uas); len(got) != 1 || got[0].Method() != sip.INVITE {
		t.Fatalf("first target got %d messages", len(got))
	}
	w.advance(500 * time.Millisecond)
	w.advance(1000 * time.Millisecond)
	if got := rec.take(uas); len(got) != 2 {
		t.Fatalf("timer A: %d retransmissions after 1.5 s, want 2", len(got))
	}
	w.advance(31 * time.Second)
	if got := rec.take(pbx2); len(got) != 1 || got[0].Method() != sip.INVITE {
		t.Fatalf("failover: second target got %d messages", len(got))
	}
	// the second target answers; the first one is too late
	respondFrom(w, rec, &c, 180, pbx2)
	respondFrom(w, rec, &c, 200, pbx2)
	if got := codes(rec.take(uac)); len(got) != 3 || got[0] != 100 || got[1] != 180 || got[2] != 200 {
		t.Fatalf("caller got %v, want [100 180 200]", got)
	}
	w.feed(uac, c.bye)
	if got := rec.take(pbx2); len(got) != 1 || got[0].Method() != sip.BYE {
		t.Fatalf("BYE went %d times to the second target", len(got))
	}
	if len(store.recs) != 1 || store.recs[0].Disposition != cdr.Answered {
		t.Fatalf("CDRs %+v", store.recs)
	}
}

// TestNoAnswer408: with no target left, the caller gets 408 and the CDR says no-answer.
func TestNoAnswer408(t *testing.T) {
	_, w, rec, store := newTestProxy(t)
	rec.keep = true
	var c callBufs
	c.build(2)
	w.feed(uac, c.invite)
	w.advance(33 * time.Second)
	got := codes(rec.take(uac))
	if len(got) != 2 || got[1] != 408 {
		t.Fatalf("caller got %v, want [100 408]", got)
	}
	if len(store.recs) != 1 || store.recs[0].Disposition != cdr.NoAnswer || store.recs[0].FinalCode != 408 {
		t.Fatalf("CDRs %+v", store.recs)
	}
	// the 408 is retransmitted until the caller's ACK (timer G), then absorbed
	w.advance(time.Second)
	if n := len(rec.take(uac)); n == 0 {
		t.Fatal("final response not retransmitted without ACK")
	}
}

// Test503Failover: a 503 from the first target moves the call to the next one;
// the caller never sees the 503, and the first target gets its ACK.
func Test503Failover(t *testing.T) {
	p, w, rec, _ := newTestProxy(t)
	useConfig(t, p, failoverConfig)
	rec.keep = true
	var c callBufs
	c.build(3)
	w.feed(uac, c.invite)
	respond(w, rec, &c, 503)
	first := rec.take(uas)
	if len(first) != 2 || first[1].Method() != sip.ACK {
		t.Fatalf("first target: %d messages, want INVITE and ACK", len(first))
	}
	if got := rec.take(pbx2); len(got) != 1 || got[0].Method() != sip.INVITE {
		t.Fatal("no failover after 503")
	}
	if got := codes(rec.take(uac)); len(got) != 1 || got[0] != 100 {
		t.Fatalf("caller got %v, want only [100]", got)
	}
}

// TestCancelBeforeProvisional: a CANCEL that arrives before the target said
// anything waits for its provisional response (RFC 3261 9.1).
func TestCancelBeforeProvisional(t *testing.T) {
	_, w, rec, store := newTestProxy(t)
	rec.keep = true
	var c callBufs
	c.build(4)
	w.feed(uac, c.invite)
	cancel := []byte("CANCEL sip:+15551230001@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-i4;rport\r\n" +
		"From: <sip:+15550001000@127.0.0.2>;tag=f1\r\nTo: <sip:+15551230001@127.0.0.1>\r\nCall-ID: c4\r\nCSeq: 1 CANCEL\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
	w.feed(uac, cancel)
	if got := codes(rec.take(uac)); len(got) != 2 || got[1] != 200 {
		t.Fatalf("caller got %v, want [100 200]", got)
	}
	if got := rec.take(uas); len(got) != 1 {
		t.Fatalf("CANCEL sent before any provisional response (%d messages)", len(got))
	}
	respond(w, rec, &c, 180)
	got := rec.take(uas)
	if len(got) != 1 || got[0].Method() != sip.CANCEL {
		t.Fatalf("after the 180 the target got %d messages, want the CANCEL", len(got))
	}
	// the target ends the INVITE with 487 (respond to the INVITE, not the CANCEL)
	var inv sip.Msg
	_ = inv.Parse(rec.lastInvite())
	c.resp = sip.AppendResponse(c.resp[:0], &inv, 487, "Request Terminated", []byte("t1"), "", nil)
	w.feed(uas, c.resp)
	if got := codes(rec.take(uac)); len(got) != 2 || got[1] != 487 {
		t.Fatalf("caller got %v, want [180 487]", got)
	}
	if len(store.recs) != 1 || store.recs[0].Disposition != cdr.Cancelled {
		t.Fatalf("CDRs %+v", store.recs)
	}
}

// TestTimerCRestarts: each provisional response restarts timer C (RFC 3261
// 16.7 step 2); only a ringing that outlasts it is cancelled with 408.
func TestTimerCRestarts(t *testing.T) {
	_, w, rec, store := newTestProxy(t)
	rec.keep = true
	var c callBufs
	c.build(5)
	w.feed(uac, c.invite)
	respond(w, rec, &c, 180)
	w.advance(2 * time.Minute)
	respond(w, rec, &c, 183) // restarts timer C
	w.advance(2 * time.Minute)
	if len(store.recs) != 0 {
		t.Fatalf("call ended 2 min after the last provisional: %+v", store.recs)
	}
	w.advance(90 * time.Second)
	got := rec.take(uas)
	if len(got) == 0 || got[len(got)-1].Method() != sip.CANCEL {
		t.Fatal("no CANCEL after timer C")
	}
	if len(store.recs) != 1 || store.recs[0].FinalCode != 408 {
		t.Fatalf("CDRs %+v", store.recs)
	}
}
