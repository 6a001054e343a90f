package proxy

import (
	"bytes"
	"context"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
	"weak"

	"github.com/sipwarden/sipwarden/internal/cdr"
	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/sip"
)

// TestTimerHeap: set, restart, cancel and pop in random order keep the heap
// a heap, and pop returns the timers in due order.
func TestTimerHeap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h timerHeap
	ts := make([]timer, 500)
	live := map[*timer]bool{}
	for range 20000 {
		tm := &ts[r.IntN(len(ts))]
		switch r.IntN(4) {
		case 0, 1:
			h.set(tm, r.Int64N(1e6)+1)
			live[tm] = true
		case 2:
			h.cancel(tm)
			delete(live, tm)
		case 3:
			if len(h) > 0 {
				top := h.pop()
				for o := range live {
					if o.at < top.at {
						t.Fatalf("popped %d before %d", top.at, o.at)
					}
				}
				delete(live, top)
			}
		}
		if len(h) != len(live) {
			t.Fatalf("heap holds %d timers, %d scheduled", len(h), len(live))
		}
		for i, e := range h {
			if int(e.idx) != i || !live[e] {
				t.Fatalf("entry %d: index %d, scheduled %v", i, e.idx, live[e])
			}
			if i > 0 && h[(i-1)/2].at > e.at {
				t.Fatalf("heap order broken at %d", i)
			}
		}
	}
	var last int64
	for len(h) > 0 {
		e := h.pop()
		if e.at < last || e.idx != -1 {
			t.Fatalf("pop out of order (%d after %d) or index %d", e.at, last, e.idx)
		}
		last = e.at
	}
}

// TestEndedCallIsFreed: once a call has ended and its transactions' timers
// (D, J, K, the RFC 6026 wait) have run, nothing of it is left: no
// transaction, no timer (the 2 h dialog timer included), and the dialog
// itself is garbage.
func TestEndedCallIsFreed(t *testing.T) {
	_, w, rec, store := newTestProxy(t)
	var c callBufs
	c.build(1)
	w.feed(uac, c.invite)
	dlg := weak.Make(w.dialogs["c1\x00f1"])
	respond(w, rec, &c, 180)
	respond(w, rec, &c, 200)
	w.feed(uac, c.ack)
	w.feed(uac, c.bye)
	respond(w, rec, &c, 200)
	if len(store.recs) != 1 || len(w.dialogs) != 0 {
		t.Fatalf("CDRs %d, dialogs %d", len(store.recs), len(w.dialogs))
	}
	w.advance(64*w.p.opt.T1 + time.Second)
	if len(w.stx) != 0 || len(w.ctx) != 0 {
		t.Fatalf("after the transaction timers: %d server, %d client transactions", len(w.stx), len(w.ctx))
	}
	if len(w.timers) != 0 {
		kinds := []timerKind{}
		for _, e := range w.timers {
			kinds = append(kinds, e.kind)
		}
		t.Fatalf("timers still scheduled for an ended call: kinds %v", kinds)
	}
	w.req.Reset()
	runtime.GC()
	if dlg.Value() != nil {
		t.Fatal("the ended dialog is still reachable")
	}
}

// TestMapsShrinkAfterBurst: the transaction and dialog maps give back the
// space of a burst once it is over.
func TestMapsShrinkAfterBurst(t *testing.T) {
	_, w, rec, _ := newTestProxy(t)
	var c callBufs
	const n = 10000
	for i := range n {
		relayCall(w, rec, &c, i+1)
	}
	if w.stxPeak < n {
		t.Fatalf("peak %d server transactions, want >= %d", w.stxPeak, n)
	}
	w.advance(64*w.p.opt.T1 + time.Second)
	if len(w.stx) != 0 || len(w.ctx) != 0 || w.stxPeak >= 4096 || w.ctxPeak >= 4096 {
		t.Fatalf("after the burst: %d/%d transactions, peaks %d/%d (maps not rebuilt)", len(w.stx), len(w.ctx), w.stxPeak, w.ctxPeak)
	}
}

// registrarStub answers REGISTER with 200 itself, as the registrar stage does.
type registrarStub struct{}

func (registrarStub) Name() string { return "registrar" }
func (registrarStub) Handle(req *chain.Request) chain.Verdict {
	if req.Msg.Method() == sip.REGISTER {
		return chain.ReplyWith(200, "registered")
	}
	return chain.Next()
}

// TestDrainRefusesNewRequests: while draining, every new request that would
// be forwarded or answered with a success gets 503 + Retry-After (INVITE,
// REGISTER, OPTIONS); requests of the calls in progress go on.
func TestDrainRefusesNewRequests(t *testing.T) {
	p, w, rec, _ := newTestProxyWith(t, registrarStub{})
	rec.keep = true
	var c callBufs
	c.build(1)
	w.feed(uac, c.invite)
	respond(w, rec, &c, 200)
	w.feed(uac, c.ack)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = p.Drain(ctx) // draining from now on; returns at once
	rec.take(uac)
	rec.take(uas)

	var c2 callBufs
	c2.build(2)
	reg := strings.NewReplacer("INVITE sip:+15551230001@127.0.0.1:5060", "REGISTER sip:127.0.0.1:5060",
		"CSeq: 1 INVITE", "CSeq: 1 REGISTER", "Call-ID: c2", "Call-ID: r2").Replace(string(c2.invite))
	opt := strings.NewReplacer("INVITE sip:", "OPTIONS sip:", "CSeq: 1 INVITE", "CSeq: 1 OPTIONS", "Call-ID: c2", "Call-ID: o2").Replace(string(c2.invite))
	for _, req := range []string{string(c2.invite), reg, opt} {
		w.feed(uac, []byte(req))
		got := rec.take(uac)
		if len(got) != 1 || got[0].StatusCode() != 503 || string(got[0].Get(sip.HdrRetryAfter)) == "" {
			t.Errorf("%s while draining: answers %v, want one 503 with Retry-After", strings.Fields(req)[0], codes(got))
		}
	}
	if got := rec.take(uas); len(got) != 0 {
		t.Errorf("%d new requests forwarded while draining", len(got))
	}
	// The call in progress still ends normally.
	w.feed(uac, c.bye)
	if got := rec.take(uas); len(got) != 1 || got[0].Method() != sip.BYE {
		t.Fatalf("the BYE of a call in progress was not relayed while draining")
	}
}

// TestEndCallsByeBothWays: at the end of a drain, an answered call gets a
// BYE towards each side in the dialog's terms: Contact as Request-URI, the
// route set beyond us (a proxy on each side recorded a route), From/To tags
// of that direction, a CSeq above the last one seen; its CDR says
// interrupted. A call still ringing is cancelled.
func TestEndCallsByeBothWays(t *testing.T) {
	p, w, rec, store := newTestProxy(t)
	rec.keep = true
	var c callBufs
	c.build(3)
	// A proxy on the caller's side recorded its route.
	inv := bytes.Replace(c.invite, []byte("\r\nFrom:"), []byte("\r\nRecord-Route: <sip:p1.example.net;lr>\r\nFrom:"), 1)
	w.feed(uac, inv)
	var m sip.Msg
	if err := m.Parse(rec.lastInvite()); err != nil {
		t.Fatal(err)
	}
	// The PBX's side has a proxy too: its entry is on top of the 2xx's list.
	extra := []byte("Contact: <sip:pbx@127.0.0.3:5080>\r\nRecord-Route: <sip:p3.example.net:5070;lr>\r\n")
	for i := m.Find(sip.HdrRecordRoute, 0); i >= 0; i = m.Find(sip.HdrRecordRoute, i+1) {
		extra = append(append(append(extra, "Record-Route: "...), m.Header(i).Value...), "\r\n"...)
	}
	c.resp = sip.AppendResponse(nil, &m, 200, "OK", []byte("t1"), "", extra)
	w.feed(uas, c.resp)
	w.feed(uac, c.ack)
	// A second call only rings.
	var r callBufs
	r.build(4)
	w.feed(uac, r.invite)
	respond(w, rec, &r, 180)
	rec.take(uac)
	rec.take(uas)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if n := p.EndCalls(ctx, "shutdown"); n != 2 {
		t.Fatalf("EndCalls ended %d calls, want 2", n)
	}
	byes := waitSent(t, rec, "BYE ", 2)
	seen := map[string]bool{}
	for _, s := range byes {
		var b sip.Msg
		if err := b.Parse(s.b); err != nil {
			t.Fatalf("our BYE does not parse: %v\n%s", err, s.b)
		}
		n, _ := b.CSeq()
		route, reason := string(b.Get(sip.HdrRoute)), string(b.Get(sip.HdrReason))
		switch s.dst {
		case uas:
			seen["callee"] = true
			if string(b.RequestURI()) != "sip:pbx@127.0.0.3:5080" || route != "<sip:p3.example.net:5070;lr>" ||
				string(b.FromTag()) != "f1" || string(b.ToTag()) != "t1" || n != 2 {
				t.Errorf("BYE to the callee:\n%s", s.b)
			}
		case uac:
			seen["caller"] = true
			if string(b.RequestURI()) != "sip:caller@127.0.0.2:5060" || route != "<sip:p1.example.net;lr>" ||
				string(b.FromTag()) != "t1" || string(b.ToTag()) != "f1" || n != 1 {
				t.Errorf("BYE to the caller:\n%s", s.b)
			}
		}
		if !strings.Contains(reason, "cause=503") || !strings.Contains(reason, `text="shutdown"`) {
			t.Errorf("BYE Reason %q", reason)
		}
	}
	if !seen["callee"] || !seen["caller"] {
		t.Fatalf("BYEs sent to %v", seen)
	}
	waitSent(t, rec, "CANCEL ", 1)
	if p.pendingByes.Load() != 2 {
		t.Errorf("%d BYEs pending, want 2 (none answered)", p.pendingByes.Load())
	}
	store.mu.Lock()
	recs := slices.Clone(store.recs)
	store.mu.Unlock()
	if len(recs) != 1 || recs[0].CallID != "c3" || recs[0].Disposition != cdr.Interrupted || recs[0].Reason != "shutdown" {
		t.Fatalf("CDRs %+v, want c3 interrupted by shutdown", recs)
	}
}

// BenchmarkTimerChurn is a call's timer work with 100,000 timers of other
// calls scheduled: start A and B, replace B with C, restart C, replace it
// with L, cancel everything (the transaction ends).
func BenchmarkTimerChurn(b *testing.B) {
	var h timerHeap
	bg := make([]timer, 100000)
	for i := range bg {
		h.set(&bg[i], int64(i)*7919%1_000_000_000+1)
	}
	var ct clientTx
	at := int64(0)
	b.ReportAllocs()
	for b.Loop() {
		at += 1000
		h.set(&ct.retr, at+500e6)
		h.set(&ct.life, at+32e9)
		h.set(&ct.life, at+180e9)
		h.set(&ct.life, at+181e9)
		h.cancel(&ct.retr)
		h.set(&ct.life, at+32e9)
		h.cancel(&ct.life)
	}
}
