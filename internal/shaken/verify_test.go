package shaken

import (
	"crypto/ecdsa"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/sip"
)

// lab is a test PKI whose chain is served over HTTPS, and a verifier using it.
type lab struct {
	pki   *TestPKI
	srv   *certServer
	x5u   string
	clk   *fakeClock
	cache *Cache
	v     *Verifier
}

func newLab(t *testing.T) *lab {
	t.Helper()
	l := &lab{pki: newPKI(t), clk: newFakeClock()}
	l.srv = newCertServer(t, l.pki.ChainPEM())
	l.x5u = l.srv.URL + "/sp.pem"
	l.cache = newTestCache(t, l.srv, l.clk, nil)
	var err error
	l.v, err = NewVerifier(VerifierConfig{Roots: l.pki.Roots(), Certs: l.cache, Now: l.clk.Now, Budget: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func (l *lab) claims() *Claims {
	return &Claims{Attest: "A", Orig: "15551230001", Dest: []string{"15559870002"}, IAT: l.clk.Now().Unix(),
		OrigID: "123e4567-e89b-12d3-a456-426655440000"}
}

func (l *lab) identity(t *testing.T, key *ecdsa.PrivateKey, x5u string, c *Claims) string {
	t.Helper()
	tok, err := Sign(key, x5u, c)
	if err != nil {
		t.Fatal(err)
	}
	return string(AppendIdentity(nil, tok, x5u))
}

func invite(t *testing.T, identities ...string) *sip.Msg {
	t.Helper()
	return inviteFrom(t, "<sip:+15551230001@pbx.example.com>;tag=1", "<sip:+15559870002@carrier.example.net>", "sip:+15559870002@carrier.example.net", "", identities...)
}

func inviteFrom(t *testing.T, from, to, ruri, pai string, identities ...string) *sip.Msg {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "INVITE %s SIP/2.0\r\n", ruri)
	b.WriteString("Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1\r\n")
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\n", from, to)
	if pai != "" {
		fmt.Fprintf(&b, "P-Asserted-Identity: %s\r\n", pai)
	}
	b.WriteString("Call-ID: abc@192.0.2.1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n")
	for _, id := range identities {
		fmt.Fprintf(&b, "Identity: %s\r\n", id)
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	m := new(sip.Msg)
	if err := m.Parse([]byte(b.String())); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestVerifyOutcomes(t *testing.T) {
	l := newLab(t)
	good := l.identity(t, l.pki.LeafKey, l.x5u, l.claims())
	mod := func(f func(c *Claims)) string {
		c := l.claims()
		f(c)
		return l.identity(t, l.pki.LeafKey, l.x5u, c)
	}
	other := newPKI(t)
	otherSrv := newCertServer(t, other.ChainPEM())
	missing := newCertServer(t, nil)
	missing.code = 404
	tampered := []byte(good)
	tampered[len(good)/3] ^= 0x01 // inside the claims

	tests := []struct {
		name    string
		msg     *sip.Msg
		verstat string
		code    int
		reason  string
	}{
		{"valid", invite(t, good), VerstatPassed, 0, ReasonPassed},
		{"no identity", invite(t), VerstatNone, 0, ReasonNoIdentity},
		{"quoted ppt", invite(t, strings.Replace(good, "ppt=shaken", `ppt="shaken"`, 1)), VerstatPassed, 0, ReasonPassed},
		{"div only", invite(t, "e30.e30.e30;info=<https://x/y>;ppt=div"), VerstatNone, 0, ReasonUnsupported},
		{"div then valid", invite(t, "e30.e30.e30;info=<https://x/y>;ppt=div", good), VerstatPassed, 0, ReasonPassed},
		{"bad then valid", invite(t, "garbage", good), VerstatPassed, 0, ReasonPassed},
		{"two in one field", invite(t, "e30.e30.e30;info=<https://x/y>;ppt=rcd, "+good), VerstatPassed, 0, ReasonPassed},
		{"malformed", invite(t, "!!!;info=<https://x/y>"), VerstatFailed, 438, ReasonInvalid},
		{"stale", invite(t, mod(func(c *Claims) { c.IAT -= 61 })), VerstatFailed, 403, ReasonStale},
		{"at the limit", invite(t, mod(func(c *Claims) { c.IAT -= 60 })), VerstatPassed, 0, ReasonPassed},
		{"future", invite(t, mod(func(c *Claims) { c.IAT += 30 })), VerstatFailed, 403, ReasonFuture},
		{"orig mismatch", invite(t, mod(func(c *Claims) { c.Orig = "15551230009" })), VerstatFailed, 438, ReasonOrigMismatch},
		{"dest mismatch", invite(t, mod(func(c *Claims) { c.Dest = []string{"15559870009"} })), VerstatFailed, 438, ReasonDestMismatch},
		{"dest among several", invite(t, mod(func(c *Claims) { c.Dest = []string{"15559870009", "15559870002"} })), VerstatPassed, 0, ReasonPassed},
		{"x5u 404", invite(t, l.identity(t, l.pki.LeafKey, missing.URL+"/sp.pem", l.claims())), VerstatFailed, 436, ReasonX5U},
		{"x5u http", invite(t, l.identity(t, l.pki.LeafKey, "http://cert.example.org/sp.pem", l.claims())), VerstatFailed, 436, ReasonX5U},
		{"untrusted chain", invite(t, l.identity(t, other.LeafKey, otherSrv.URL+"/sp.pem", l.claims())), VerstatFailed, 437, ReasonCertificate},
		{"wrong key", invite(t, l.identity(t, other.LeafKey, l.x5u, l.claims())), VerstatFailed, 438, ReasonSignature},
		{"tampered", invite(t, string(tampered)), VerstatFailed, 438, ReasonInvalid},
		{"info mismatch", invite(t, strings.Replace(good, "info=<"+l.x5u, "info=<https://elsewhere.example/x.pem", 1)), VerstatFailed, 438, ReasonInfoMismatch},
		{"alg param", invite(t, strings.Replace(good, "alg=ES256", "alg=RS256", 1)), VerstatFailed, 437, ReasonBadAlg},
		{"orig from PAI", inviteFrom(t, "<sip:anonymous@anonymous.invalid>;tag=1", "<sip:+15559870002@b>", "sip:+15559870002@b", "<tel:+1-555-123-0001>", good), VerstatPassed, 0, ReasonPassed},
		{"dest from R-URI", inviteFrom(t, "<sip:+15551230001@a>;tag=1", "<sip:bob@b>", "sip:+15559870002@b;user=phone", "", good), VerstatPassed, 0, ReasonPassed},
		{"first failure reported", invite(t, mod(func(c *Claims) { c.IAT -= 100 }), mod(func(c *Claims) { c.Orig = "1" })), VerstatFailed, 403, ReasonStale},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := l.v.VerifyMsg(tc.msg)
			if r.Verstat != tc.verstat || r.Code != tc.code || r.Reason != tc.reason {
				t.Fatalf("got %s %d %s (%v), want %s %d %s", r.Verstat, r.Code, r.Reason, r.Err, tc.verstat, tc.code, tc.reason)
			}
			if r.Passed() && (r.SPC != "709J" || r.Attest != "A") {
				t.Fatalf("passed without SPC/attest: %+v", r)
			}
		})
	}
}

func TestVerifyNonCanonicalJSON(t *testing.T) {
	l := newLab(t)
	hdr := `{ "x5u": "` + l.x5u + `", "typ": "passport", "alg": "ES256", "ppt": "shaken" }`
	claims := fmt.Sprintf(`{"origid":"123e4567-e89b-12d3-a456-426655440000","orig":{"tn":"+15551230001"},"iat":%d,"dest":{"tn":["15559870002"]},"attest":"B"}`, l.clk.Now().Unix())
	tok := signRaw(t, l.pki.LeafKey, hdr, claims)
	r := l.v.VerifyMsg(invite(t, tok+";info=<"+l.x5u+">;alg=ES256;ppt=\"shaken\""))
	if !r.Passed() || r.Attest != "B" {
		t.Fatalf("non-canonical token: %+v", r)
	}
}

func TestVerifyBudget(t *testing.T) {
	l := newLab(t)
	slow := newCertServer(t, l.pki.ChainPEM())
	block := make(chan struct{})
	slow.block = block
	defer close(block)
	v, err := NewVerifier(VerifierConfig{Roots: l.pki.Roots(), Certs: l.cache, Now: l.clk.Now, Budget: 30 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := v.VerifyMsg(invite(t, l.identity(t, l.pki.LeafKey, slow.URL+"/sp.pem", l.claims())))
	if el := time.Since(start); r.Code != 436 || el > time.Second {
		t.Fatalf("slow x5u: %+v after %v", r, el)
	}
}

func TestAppendVerstat(t *testing.T) {
	tests := []struct{ in, verstat, want string }{
		{"<sip:+15551230001@example.com;user=phone>", VerstatPassed, "<sip:+15551230001;verstat=TN-Validation-Passed@example.com;user=phone>"},
		{`"Alice" <sip:+15551230001;verstat=TN-Validation-Passed@example.com>;tag=1`, VerstatFailed, `"Alice" <sip:+15551230001;verstat=TN-Validation-Failed@example.com>;tag=1`},
		{"<sip:+15551230001;cpc=x;VERSTAT=TN-Validation-Passed;y@example.com>", "", "<sip:+15551230001;cpc=x;y@example.com>"},
		{"<tel:+15551230001;verstat=TN-Validation-Passed>, <sip:+15551230001@a>", VerstatNone, "<tel:+15551230001;verstat=No-TN-Validation>, <sip:+15551230001;verstat=No-TN-Validation@a>"},
		{"sip:+15551230001@a;tag=x", VerstatPassed, "sip:+15551230001;verstat=TN-Validation-Passed@a;tag=x"},
		{"<sip:a.example.com>", VerstatPassed, "<sip:a.example.com>"},
		{"<sip:alice:pw@a>", VerstatPassed, "<sip:alice;verstat=TN-Validation-Passed:pw@a>"},
	}
	for _, tc := range tests {
		got, err := AppendVerstat(nil, []byte(tc.in), tc.verstat)
		if err != nil || string(got) != tc.want {
			t.Errorf("AppendVerstat(%q, %q) = %q, %v; want %q", tc.in, tc.verstat, got, err, tc.want)
		}
	}
	if _, err := AppendVerstat(nil, []byte("<sip:a@b"), VerstatPassed); err == nil {
		t.Error("unterminated name-addr accepted")
	}
}

func FuzzAppendVerstat(f *testing.F) {
	f.Add("<sip:+15551230001;verstat=x@example.com>;tag=1, <tel:+1;verstat=y>")
	f.Fuzz(func(t *testing.T, s string) {
		out, err := AppendVerstat(nil, []byte(s), "")
		if err == nil && len(out) > len(s) {
			t.Fatalf("stripping grew %q to %q", s, out)
		}
	})
}

func BenchmarkVerifyMsgCached(b *testing.B) {
	pki, err := NewTestPKI(TestPKIOptions{SPC: "709J"})
	if err != nil {
		b.Fatal(err)
	}
	certs, _ := ParseCertificates(pki.ChainPEM())
	now := time.Now()
	v, _ := NewVerifier(VerifierConfig{Roots: pki.Roots(), Certs: StaticCerts{&CertEntry{Certs: certs}}, Now: func() time.Time { return now }})
	c := &Claims{Attest: "A", Orig: "15551230001", Dest: []string{"15559870002"}, IAT: now.Unix(), OrigID: "123e4567-e89b-12d3-a456-426655440000"}
	tok, _ := Sign(pki.LeafKey, "https://cert.example.org/sp.pem", c)
	id := string(AppendIdentity(nil, tok, "https://cert.example.org/sp.pem"))
	msg := "INVITE sip:+15559870002@b SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:+15551230001@a>;tag=1\r\nTo: <sip:+15559870002@b>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nIdentity: " + id + "\r\nContent-Length: 0\r\n\r\n"
	var m sip.Msg
	if err := m.Parse([]byte(msg)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if r := v.VerifyMsg(&m); !r.Passed() {
			b.Fatal(r.Err)
		}
	}
}

// FuzzVerifyMsg runs the whole verification on arbitrary messages and
// Identity values (certificates fixed, so no network).
func FuzzVerifyMsg(f *testing.F) {
	pki, err := NewTestPKI(TestPKIOptions{SPC: "709J"})
	if err != nil {
		f.Fatal(err)
	}
	certs, _ := ParseCertificates(pki.ChainPEM())
	now := time.Now()
	v, _ := NewVerifier(VerifierConfig{Roots: pki.Roots(), Certs: StaticCerts{&CertEntry{Certs: certs}}, Now: func() time.Time { return now }})
	c := &Claims{Attest: "A", Orig: "15551230001", Dest: []string{"15559870002"}, IAT: now.Unix(), OrigID: "123e4567-e89b-12d3-a456-426655440000"}
	tok, _ := Sign(pki.LeafKey, "https://cert.example.org/sp.pem", c)
	f.Add("<sip:+15551230001@a>;tag=1", "<sip:+15559870002@b>", string(AppendIdentity(nil, tok, "https://cert.example.org/sp.pem")))
	f.Add("<tel:+1-555-123-0001;verstat=x>", "sip:+15559870002@b", "a.b.c;info=<x>, d.e.f;ppt=div")
	f.Fuzz(func(t *testing.T, from, to, identity string) {
		msg := "INVITE sip:+15559870002@b SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: " + from +
			"\r\nTo: " + to + "\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nIdentity: " + identity + "\r\nContent-Length: 0\r\n\r\n"
		var m sip.Msg
		if m.Parse([]byte(msg)) != nil {
			return
		}
		r := v.VerifyMsg(&m)
		switch r.Verstat {
		case VerstatPassed:
			if r.Code != 0 || r.SPC != "709J" {
				t.Fatalf("passed with %+v", r)
			}
		case VerstatFailed:
			if r.Code == 0 || r.Reason == "" {
				t.Fatalf("failed without code: %+v", r)
			}
		case VerstatNone:
		default:
			t.Fatalf("verstat %q", r.Verstat)
		}
		if from != "" {
			_, _ = AppendVerstat(nil, m.Get(sip.HdrFrom), r.Verstat)
		}
	})
}

// Calls waiting for certificates are bounded: beyond MaxWaiting, a call
// with an uncached x5u does not wait at all.
func TestVerifyMaxWaiting(t *testing.T) {
	l := newLab(t)
	slow := newCertServer(t, l.pki.ChainPEM())
	block := make(chan struct{})
	slow.block = block
	defer close(block)
	v, err := NewVerifier(VerifierConfig{Roots: l.pki.Roots(), Certs: l.cache, Now: l.clk.Now, Budget: 2 * time.Second, MaxWaiting: 2})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan time.Duration, 6)
	for i := 0; i < 6; i++ {
		id := l.identity(t, l.pki.LeafKey, slow.URL+"/"+strconv.Itoa(i), l.claims())
		go func() {
			start := time.Now()
			r := v.VerifyMsg(invite(t, id))
			if r.Code != 436 {
				t.Errorf("slow x5u: %+v", r)
			}
			done <- time.Since(start)
		}()
	}
	fast := 0
	for i := 0; i < 6; i++ {
		if d := <-done; d < time.Second {
			fast++
		}
	}
	if fast < 4 {
		t.Fatalf("%d of 6 calls returned at once, want at least 4 (MaxWaiting 2)", fast)
	}
}
