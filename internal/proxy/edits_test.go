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

// badEditStage asks for an edit whose result does not parse (a header line
// without a colon spliced in) and for the removal of a header it must not
// let through.
type badEditStage struct{}

func (badEditStage) Name() string { return "bad_edit" }
func (badEditStage) Handle(req *chain.Request) chain.Verdict {
	if i := req.Msg.Find(sip.HdrContact, 0); i >= 0 {
		req.DeleteHeader(i)
	}
	if i := req.Msg.Find(sip.HdrFrom, 0); i >= 0 {
		req.SetHeader(i, []byte("<sip:a@b>;tag=1\r\nno colon here"))
	}
	return chain.Next()
}

// Edits that cannot be applied refuse the request (500): forwarding the
// original would pass on what a stage meant to remove.
func TestFailedEditsRefuseTheRequest(t *testing.T) {
	p, w, rec, _ := newTestProxy(t)
	rt := p.runtime.Load()
	stages := rt.Chain.Stages()
	withEdit := append(append([]chain.Stage{}, stages[:len(stages)-1]...), badEditStage{}, stages[len(stages)-1])
	p.runtime.Store(&Runtime{Config: rt.Config, Chain: chain.New(nil, withEdit...), Alternates: rt.Alternates})

	var c callBufs
	c.build(1)
	w.feed(uac, c.invite)
	if rec.lastInvite() != nil {
		t.Fatalf("forwarded an INVITE whose edits failed:\n%s", rec.lastInvite())
	}
	if !bytes.HasPrefix(rec.resp, []byte("SIP/2.0 500 ")) {
		t.Fatalf("reply %q, want 500", rec.resp)
	}
}
