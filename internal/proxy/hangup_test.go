package proxy

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/sip"
)

// answerWithContact answers the request the proxy last sent with a 200
// carrying the PBX's Contact.
func answerWithContact(w *worker, rec *recorder, c *callBufs) {
	var m sip.Msg
	_ = m.Parse(rec.last)
	r := sip.AppendResponse(nil, &m, 200, "OK", []byte("t1"), "", []byte("Contact: <sip:pbx@127.0.0.3:5080>\r\n"))
	c.resp = r
	w.feed(uas, r)
}

// waitSent waits until n messages starting with prefix were sent, and returns them.
func waitSent(t *testing.T, rec *recorder, prefix string, n int) []sent {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		rec.mu.Lock()
		var got []sent
		for _, s := range rec.sent {
			if bytes.HasPrefix(s.b, []byte(prefix)) {
				got = append(got, s)
			}
		}
		rec.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d %q messages sent, want %d", len(got), prefix, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Hangup of an answered call sends a BYE to each side, in the dialog's
// terms (tags, Contact as Request-URI, a higher CSeq), and ends the dialog
// with the reason on the CDR.
func TestHangupAnsweredCall(t *testing.T) {
	p, w, rec, store := newTestProxy(t)
	rec.keep = true
	var c callBufs
	c.build(7)
	w.feed(uac, c.invite)
	answerWithContact(w, rec, &c)
	w.feed(uac, c.ack)
	p.Hangup("c7", "fraud", "fraud_hangup:score_5m")
	byes := waitSent(t, rec, "BYE ", 2)
	for _, s := range byes {
		var m sip.Msg
		if err := m.Parse(s.b); err != nil {
			t.Fatalf("our BYE does not parse: %v\n%s", err, s.b)
		}
		n, _ := m.CSeq()
		switch s.dst {
		case uas:
			if string(m.RequestURI()) != "sip:pbx@127.0.0.3:5080" || string(m.FromTag()) != "f1" || string(m.ToTag()) != "t1" || n != 2 {
				t.Errorf("BYE to the callee:\n%s", s.b)
			}
		case uac:
			if string(m.RequestURI()) != "sip:caller@127.0.0.2:5060" || string(m.FromTag()) != "t1" || string(m.ToTag()) != "f1" || n != 1 {
				t.Errorf("BYE to the caller:\n%s", s.b)
			}
		default:
			t.Errorf("BYE sent to %v", s.dst)
		}
		if !strings.Contains(string(m.Get(sip.HdrReason)), `text="fraud_hangup:score_5m"`) {
			t.Errorf("BYE without the reason:\n%s", s.b)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for p.ActiveCalls() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	store.mu.Lock()
	defer store.mu.Unlock()
	if p.ActiveCalls() != 0 || len(store.recs) != 1 || store.recs[0].Stage != "fraud" || store.recs[0].Reason != "fraud_hangup:score_5m" {
		t.Fatalf("after the hangup: %d calls, CDRs %+v", p.ActiveCalls(), store.recs)
	}
}

// Hangup of a ringing call cancels the callee's INVITE; the 487 reaches the
// caller and the CDR carries the reason.
func TestHangupRingingCall(t *testing.T) {
	_, w, rec, store := newTestProxy(t)
	rec.keep = true
	var c callBufs
	c.build(8)
	w.feed(uac, c.invite)
	respond(w, rec, &c, 180)
	// directly on the test goroutine, which feeds the worker afterwards (the
	// queued path of Proxy.Hangup is TestHangupAnsweredCall's)
	w.hangup("c8", "fraud", "fraud_block:premium")
	cancels := waitSent(t, rec, "CANCEL ", 1)
	if cancels[0].dst != uas {
		t.Fatalf("CANCEL sent to %v", cancels[0].dst)
	}
	// The PBX answers the INVITE with 487.
	var inv sip.Msg
	_ = inv.Parse(rec.lastInvite())
	w.feed(uas, sip.AppendResponse(nil, &inv, 487, "Request Terminated", []byte("t1"), "", nil))
	store.mu.Lock()
	defer store.mu.Unlock()
	if len(store.recs) != 1 || store.recs[0].Stage != "fraud" || store.recs[0].Reason != "fraud_block:premium" {
		t.Fatalf("CDRs %+v", store.recs)
	}
}

// A callee that answers after the hangup of its ringing call (the 200
// crossed our CANCEL) gets the call ended at once: BYE both ways.
func TestHangupRaceWithAnswer(t *testing.T) {
	_, w, rec, store := newTestProxy(t)
	rec.keep = true
	var c callBufs
	c.build(9)
	w.feed(uac, c.invite)
	respond(w, rec, &c, 180)
	w.hangup("c9", "fraud", "fraud_block:premium")
	waitSent(t, rec, "CANCEL ", 1)
	var inv sip.Msg
	_ = inv.Parse(rec.lastInvite())
	w.feed(uas, sip.AppendResponse(nil, &inv, 200, "OK", []byte("t1"), "", []byte("Contact: <sip:pbx@127.0.0.3:5080>\r\n")))
	waitSent(t, rec, "BYE ", 2)
	store.mu.Lock()
	defer store.mu.Unlock()
	if len(store.recs) != 1 || store.recs[0].Reason != "fraud_block:premium" {
		t.Fatalf("CDRs %+v", store.recs)
	}
}
