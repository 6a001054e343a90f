package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/sipwarden/sipwarden/internal/cdr"
	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/sip"
)

// fakeMedia plays the media relay: it tags each body with what it did, and
// logs the calls.
type fakeMedia struct {
	mu      sync.Mutex
	log     []string
	refuse  bool // refuse offers from the caller
	opened  int
	closed  int
	noMedia bool // Open returns nil
}

func (f *fakeMedia) Open(*chain.Request) chain.MediaSession {
	if f.noMedia {
		return nil
	}
	f.mu.Lock()
	f.opened++
	f.mu.Unlock()
	return f
}

func side(fromCaller bool) string {
	if fromCaller {
		return "caller"
	}
	return "callee"
}

func (f *fakeMedia) record(s string) {
	f.mu.Lock()
	f.log = append(f.log, s)
	f.mu.Unlock()
}

func (f *fakeMedia) Offer(fromCaller bool, body []byte) ([]byte, error) {
	f.record("offer from " + side(fromCaller))
	if f.refuse && fromCaller {
		return nil, &chain.VerdictError{Verdict: chain.Verdict{Action: chain.Reply, Code: 488, Reason: "srtp_required", Warning: "SRTP required"}, Err: errors.New("SRTP required")}
	}
	return []byte("v=0\r\ns=relayed offer from " + side(fromCaller) + "\r\n"), nil
}

func (f *fakeMedia) Answer(fromCaller bool, body []byte) ([]byte, error) {
	f.record("answer from " + side(fromCaller))
	return []byte("v=0\r\ns=relayed answer from " + side(fromCaller) + "\r\n"), nil
}

func (f *fakeMedia) Close() (string, string) {
	f.mu.Lock()
	f.closed++
	f.mu.Unlock()
	f.record("close")
	return "srtp:AES_CM_128_HMAC_SHA1_80", "rtp"
}

func (f *fakeMedia) events() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.log, ", ")
}

func withMedia(t *testing.T, f *fakeMedia) (*worker, *recorder, *cdrs) {
	p, w, rec, store := newTestProxy(t)
	rt := *p.Runtime()
	rt.Media = f
	p.SetRuntime(&rt)
	rec.keep = true
	return w, rec, store
}

// respondSDP answers the request the proxy last sent with code and an SDP body.
func respondSDP(w *worker, rec *recorder, c *callBufs, code int, sdp string) {
	var m sip.Msg
	_ = m.Parse(rec.last)
	r := sip.AppendResponse(c.resp[:0], &m, code, sip.ReasonText(code), []byte("t1"), "", []byte("Contact: <sip:pbx@127.0.0.3:5080>\r\n"))
	if sdp != "" {
		r = bytes.Replace(r, []byte("Content-Length: 0\r\n\r\n"),
			fmt.Appendf(nil, "Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s", len(sdp), sdp), 1)
	}
	c.resp = r
	w.feed(uas, c.resp)
	if code >= 200 && code < 300 && m.Method() == sip.INVITE {
		c.target(rec.resp)
	}
}

// sentTo returns the messages sent to dst, parsed.
func sentTo(t *testing.T, rec *recorder, dst string) []sip.Msg {
	t.Helper()
	var out []sip.Msg
	for _, s := range rec.sent {
		if s.dst.String() != dst {
			continue
		}
		var m sip.Msg
		if err := m.Parse(s.b); err != nil {
			t.Fatalf("unparseable: %v\n%s", err, s.b)
		}
		out = append(out, m)
	}
	return out
}

const sdpPBX = "v=0\r\no=pbx 1 1 IN IP4 127.0.0.3\r\ns=-\r\nc=IN IP4 127.0.0.3\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n"

func TestMediaOfferInInvite(t *testing.T) {
	f := &fakeMedia{}
	w, rec, store := withMedia(t, f)
	var c callBufs
	c.build(1)
	w.feed(uac, c.invite)
	respond(w, rec, &c, 180)
	respondSDP(w, rec, &c, 200, sdpPBX)
	w.feed(uac, c.ack)
	w.feed(uac, c.bye)
	respond(w, rec, &c, 200)

	if got, want := f.events(), "offer from caller, answer from callee, close"; got != want {
		t.Fatalf("session calls: %q, want %q", got, want)
	}
	toPBX := sentTo(t, rec, uas.String())
	if string(toPBX[0].Body()) != "v=0\r\ns=relayed offer from caller\r\n" || toPBX[0].ContentLength() != len(toPBX[0].Body()) {
		t.Errorf("INVITE to the PBX carries %q (Content-Length %d)", toPBX[0].Body(), toPBX[0].ContentLength())
	}
	var answered bool
	for _, m := range sentTo(t, rec, uac.String()) {
		if m.StatusCode() == 200 && bytes.Contains(m.Get(sip.HdrCSeq), []byte("INVITE")) {
			answered = true
			if string(m.Body()) != "v=0\r\ns=relayed answer from callee\r\n" {
				t.Errorf("200 to the caller carries %q", m.Body())
			}
		}
	}
	if !answered {
		t.Fatal("no 200 reached the caller")
	}
	if len(store.recs) != 1 || store.recs[0].CallerMedia != "srtp:AES_CM_128_HMAC_SHA1_80" || store.recs[0].CalleeMedia != "rtp" {
		t.Errorf("CDR: %+v", store.recs)
	}
}

func TestMediaOfferlessInvite(t *testing.T) {
	f := &fakeMedia{}
	w, rec, _ := withMedia(t, f)
	var c callBufs
	c.build(2)
	inv := bytes.Replace(c.invite, []byte("Content-Type: application/sdp\r\nContent-Length: 10\r\n\r\nv=0\r\ns=-\r\n"), []byte("Content-Length: 0\r\n\r\n"), 1)
	w.feed(uac, inv)
	respondSDP(w, rec, &c, 200, sdpPBX)
	ack := bytes.Replace(c.ack, []byte("Content-Length: 0\r\n\r\n"), []byte("Content-Type: application/sdp\r\nContent-Length: 10\r\n\r\nv=0\r\ns=-\r\n"), 1)
	w.feed(uac, ack)
	if got, want := f.events(), "offer from callee, answer from caller"; got != want {
		t.Fatalf("session calls: %q, want %q", got, want)
	}
	toPBX := sentTo(t, rec, uas.String())
	if last := toPBX[len(toPBX)-1]; last.Method() != sip.ACK || string(last.Body()) != "v=0\r\ns=relayed answer from caller\r\n" {
		t.Errorf("ACK to the PBX: %s %q", last.Method(), last.Body())
	}
}

func TestMediaRefusedOffer(t *testing.T) {
	f := &fakeMedia{refuse: true}
	w, rec, store := withMedia(t, f)
	var c callBufs
	c.build(3)
	w.feed(uac, c.invite)
	if n := len(sentTo(t, rec, uas.String())); n != 0 {
		t.Fatalf("%d messages reached the PBX", n)
	}
	toCaller := sentTo(t, rec, uac.String())
	if len(toCaller) != 1 || toCaller[0].StatusCode() != 488 || !bytes.Contains(toCaller[0].Get(sip.HdrWarning), []byte("SRTP required")) {
		t.Fatalf("caller got %d messages, first: %s", len(toCaller), rec.sent[0].b)
	}
	if f.opened != 1 || f.closed != 1 {
		t.Errorf("sessions opened %d closed %d, want 1 and 1", f.opened, f.closed)
	}
	if len(store.recs) != 1 || store.recs[0].Disposition != cdr.Blocked || store.recs[0].Stage != "media" || store.recs[0].Reason != "srtp_required" {
		t.Errorf("CDR: %+v", store.recs)
	}
}

// A re-INVITE from the callee (hold, say) goes through the session too.
func TestMediaReinviteFromCallee(t *testing.T) {
	f := &fakeMedia{}
	w, rec, _ := withMedia(t, f)
	var c callBufs
	c.build(4)
	w.feed(uac, c.invite)
	respondSDP(w, rec, &c, 200, sdpPBX)
	w.feed(uac, c.ack)
	var inv sip.Msg
	_ = inv.Parse(rec.lastInvite())
	rr := string(inv.Get(sip.HdrRecordRoute))
	reinvite := fmt.Sprintf("INVITE sip:caller@127.0.0.2:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.3:5080;branch=z9hG4bK-re4\r\nRoute: %s\r\n"+
		"From: <sip:+15551230001@127.0.0.1>;tag=t1\r\nTo: <sip:+15550001000@127.0.0.2>;tag=f1\r\nCall-ID: c4\r\nCSeq: 7 INVITE\r\n"+
		"Contact: <sip:pbx@127.0.0.3:5080>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s", rr, len(sdpPBX), sdpPBX)
	w.feed(uas, []byte(reinvite))
	toCaller := sentTo(t, rec, uac.String())
	last := toCaller[len(toCaller)-1]
	if last.Method() != sip.INVITE || string(last.Body()) != "v=0\r\ns=relayed offer from callee\r\n" {
		t.Fatalf("re-INVITE to the caller: %s %q", last.Method(), last.Body())
	}
	// the caller answers
	r := sip.AppendResponse(nil, &last, 200, "OK", nil, "", nil)
	r = bytes.Replace(r, []byte("Content-Length: 0\r\n\r\n"), []byte("Content-Type: application/sdp\r\nContent-Length: 10\r\n\r\nv=0\r\ns=-\r\n"), 1)
	w.feed(uac, r)
	if got, want := f.events(), "offer from caller, answer from callee, offer from callee, answer from caller"; got != want {
		t.Fatalf("session calls: %q, want %q", got, want)
	}
	toPBX := sentTo(t, rec, uas.String())
	if l := toPBX[len(toPBX)-1]; l.StatusCode() != 200 || string(l.Body()) != "v=0\r\ns=relayed answer from caller\r\n" {
		t.Errorf("200 to the PBX: %d %q", l.StatusCode(), l.Body())
	}
}
