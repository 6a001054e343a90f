package proxy

import (
	"bytes"
	"testing"

	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/sip"
)

// editStage asks for the edits a STIR/SHAKEN stage makes: an Identity added,
// From rewritten, an untrusted header removed.
type editStage struct{}

func (editStage) Name() string { return "edit" }
func (editStage) Handle(req *chain.Request) chain.Verdict {
	m := req.Msg
	if m.Method() != sip.INVITE {
		return chain.Next()
	}
	req.AddHeader("Identity", []byte("a.b.c;info=<https://cert.example.org/sp.pem>;alg=ES256;ppt=shaken"))
	if i := m.Find(sip.HdrFrom, 0); i >= 0 {
		req.SetHeader(i, []byte("<sip:+15550001000;verstat=TN-Validation-Passed@127.0.0.2>;tag=f1"))
	}
	if i := m.Find(sip.HdrContact, 0); i >= 0 {
		req.DeleteHeader(i)
	}
	return chain.Next()
}

func TestStageHeaderEdits(t *testing.T) {
	p, w, rec, _ := newTestProxy(t)
	rt := p.runtime.Load()
	stages := rt.Chain.Stages()
	// the edit stage goes before route (the last stage)
	withEdit := append(append([]chain.Stage{}, stages[:len(stages)-1]...), editStage{}, stages[len(stages)-1])
	p.runtime.Store(&Runtime{Config: rt.Config, Chain: chain.New(nil, withEdit...), Alternates: rt.Alternates})

	var c callBufs
	c.build(1)
	w.feed(uac, c.invite)
	var m sip.Msg
	if err := m.Parse(rec.invite); err != nil {
		t.Fatalf("forwarded INVITE does not parse: %v", err)
	}
	if !bytes.Contains(m.Get(sip.HdrIdentity), []byte("ppt=shaken")) ||
		!bytes.Contains(m.Get(sip.HdrFrom), []byte("verstat=TN-Validation-Passed")) || m.Get(sip.HdrContact) != nil {
		t.Fatalf("edits not applied:\n%s", rec.invite)
	}
	if m.Count(sip.HdrVia) != 2 || m.MaxForwards() != 69 || string(m.Body()) != "v=0\r\ns=-\r\n" {
		t.Fatalf("forwarding broken by the edits:\n%s", rec.invite)
	}
	// the rest of the call still works on the edited request
	respond(w, rec, &c, 180)
	respond(w, rec, &c, 200)
	w.feed(uac, c.ack)
	w.feed(uac, c.bye)
	respond(w, rec, &c, 200)
}
