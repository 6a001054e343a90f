package proxy

import (
	"strings"
	"testing"

	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/sip"
)

// consumeStage plays the auth stage: it asks for the first
// Proxy-Authorization field (the credentials it verified) to be removed, and
// adds a header, as the shaken stage does, so that indexes would shift if the
// proxy applied the two kinds of change apart.
type consumeStage struct{}

func (consumeStage) Name() string { return "auth" }
func (consumeStage) Handle(req *chain.Request) chain.Verdict {
	if i := req.Msg.Find(sip.HdrProxyAuthorization, 0); i >= 0 {
		req.Account = "alice"
		req.DeleteHeader(i)
		req.AddHeader("Identity", []byte("x.y.z;info=<https://cert.example/x.pem>"))
	}
	return chain.Next()
}

// Credentials for our own realm end at sipwarden; those for another realm
// travel on (RFC 3261 section 22.3).
func TestOwnCredentialsAreNotForwarded(t *testing.T) {
	_, w, rec, _ := newTestProxyWith(t, consumeStage{})
	var c callBufs
	c.build(1)
	inv := strings.Replace(string(c.invite), "Max-Forwards: 70\r\n",
		"Max-Forwards: 70\r\nProxy-Authorization: Digest username=\"alice\", realm=\"edge.example\", nonce=\"n\", uri=\"sip:x\", response=\"0123\"\r\n"+
			"Proxy-Authorization: Digest username=\"bob\", realm=\"carrier.example\", nonce=\"m\", uri=\"sip:x\", response=\"4567\"\r\n", 1)
	w.feed(uac, []byte(inv))
	var m sip.Msg
	if err := m.Parse(rec.last); err != nil || m.Method() != sip.INVITE {
		t.Fatalf("forwarded: %v\n%s", err, rec.last)
	}
	if m.Get(sip.HdrIdentity) == nil {
		t.Fatalf("the added header is missing:\n%s", rec.last)
	}
	if n := m.Count(sip.HdrProxyAuthorization); n != 1 || !strings.Contains(string(m.Get(sip.HdrProxyAuthorization)), `realm="carrier.example"`) {
		t.Fatalf("forwarded INVITE carries %d Proxy-Authorization fields, want only the carrier's:\n%s", n, rec.last)
	}
}
