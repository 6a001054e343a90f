package proxy

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/chain"
)

// meter is what a stage (the fraud engine) holds for a call: it logs what
// the proxy tells it.
type meter struct {
	mu  *sync.Mutex
	log *[]string
	id  string
}

func (m meter) Answered(time.Time) {
	m.mu.Lock()
	*m.log = append(*m.log, m.id+" answered")
	m.mu.Unlock()
}
func (m meter) Release() { m.mu.Lock(); *m.log = append(*m.log, m.id+" released"); m.mu.Unlock() }

// meterStage holds a meter for every initial request.
type meterStage struct {
	mu  sync.Mutex
	log []string
}

func (s *meterStage) Name() string { return "meter" }
func (s *meterStage) Handle(req *chain.Request) chain.Verdict {
	if req.Initial() {
		req.Hold(meter{mu: &s.mu, log: &s.log, id: req.Msg.Method().String() + " " + string(req.Msg.CallID())})
	}
	return chain.Next()
}
func (s *meterStage) events() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.log, ", ")
}

// What a stage holds for a call hears the answer, then the end, once each;
// a call that fails is released unanswered; a request that starts no dialog
// gives back its holds at once.
func TestHoldsHearAnswerAndEnd(t *testing.T) {
	ms := &meterStage{}
	_, w, rec, _ := newTestProxyWith(t, ms)
	var c callBufs

	relayCall(w, rec, &c, 1)
	if got, want := ms.events(), "INVITE c1 answered, INVITE c1 released"; got != want {
		t.Fatalf("answered call: %q, want %q", got, want)
	}

	ms.log = nil
	c.build(2)
	w.feed(uac, c.invite)
	respond(w, rec, &c, 180)
	respond(w, rec, &c, 486)
	if got, want := ms.events(), "INVITE c2 released"; got != want {
		t.Fatalf("busy call: %q, want %q", got, want)
	}

	ms.log = nil
	c.build(3)
	w.feed(uac, []byte(strings.Replace(strings.Replace(string(c.invite), "INVITE", "OPTIONS", 2), "Content-Type: application/sdp\r\nContent-Length: 10\r\n\r\nv=0\r\ns=-\r\n", "Content-Length: 0\r\n\r\n", 1)))
	if got, want := ms.events(), "OPTIONS c3 released"; got != want {
		t.Fatalf("forwarded OPTIONS: %q, want %q", got, want)
	}
}
