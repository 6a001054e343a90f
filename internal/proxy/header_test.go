package proxy

import (
	"bytes"
	"testing"

	"github.com/sipwarden/sipwarden/internal/chain"
)

// challengeStage answers every request like the auth stage does: a 401 with
// two header lines in Verdict.Header.
type challengeStage struct{}

func (challengeStage) Name() string { return "auth" }
func (challengeStage) Handle(*chain.Request) chain.Verdict {
	return chain.Verdict{Action: chain.Reply, Code: 401, Reason: "challenge",
		Header: "WWW-Authenticate: Digest realm=\"r\", nonce=\"n\", algorithm=SHA-256, qop=\"auth\"\r\nWWW-Authenticate: Digest realm=\"r\", nonce=\"n\", algorithm=MD5, qop=\"auth\""}
}

// TestReplyCarriesVerdictHeader: the header lines of a verdict are sent with the reply.
func TestReplyCarriesVerdictHeader(t *testing.T) {
	p, w, rec, _ := newTestProxy(t)
	rt := *p.Runtime()
	rt.Chain = chain.New(nil, challengeStage{})
	p.SetRuntime(&rt)
	rec.keep = true
	var c callBufs
	c.build(1)
	w.feed(uac, c.invite)
	if len(rec.sent) != 1 {
		t.Fatalf("sent %d messages", len(rec.sent))
	}
	out := rec.sent[0].b
	want := "\r\nWWW-Authenticate: Digest realm=\"r\", nonce=\"n\", algorithm=SHA-256, qop=\"auth\"\r\nWWW-Authenticate: Digest realm=\"r\", nonce=\"n\", algorithm=MD5, qop=\"auth\"\r\n"
	if !bytes.HasPrefix(out, []byte("SIP/2.0 401 ")) || !bytes.Contains(out, []byte(want)) || !bytes.HasSuffix(out, []byte("Content-Length: 0\r\n\r\n")) {
		t.Fatalf("reply:\n%s", out)
	}
}
