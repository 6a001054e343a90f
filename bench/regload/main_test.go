package main

import (
	"crypto/md5" //nolint:gosec // RFC 2617 vectors
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"net/netip"
	"strings"
	"testing"

	"github.com/icholy/digest"
)

func TestParseResponse(t *testing.T) {
	for _, tc := range []struct {
		name       string
		msg        string
		code, cseq int
		callID     string
		challenges int
		ok         bool
	}{
		{"challenge with two algorithms", "SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP x\r\nCall-ID: a@b\r\nCSeq: 1 REGISTER\r\n" +
			"WWW-Authenticate: Digest realm=\"r\", nonce=\"n\", algorithm=SHA-256, qop=\"auth\"\r\n" +
			"www-authenticate: Digest realm=\"r\", nonce=\"m\", algorithm=MD5, qop=\"auth\"\r\nContent-Length: 0\r\n\r\n", 401, 1, "a@b", 2, true},
		{"compact Call-ID", "SIP/2.0 200 OK\r\ni: c\r\nCSeq: 2 REGISTER\r\n\r\n", 200, 2, "c", 0, true},
		{"no Call-ID", "SIP/2.0 200 OK\r\nCSeq: 2 REGISTER\r\n\r\n", 200, 2, "", 0, false},
		{"a request", "REGISTER sip:x SIP/2.0\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n\r\n", 0, 0, "", 0, false},
		{"short status line", "SIP/2.0 20", 0, 0, "", 0, false},
		{"bad code", "SIP/2.0 2x0 OK\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n\r\n", 0, 0, "", 0, false},
		{"empty", "", 0, 0, "", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, callID, cseq, ch, ok := parseResponse([]byte(tc.msg))
			if ok != tc.ok || (ok && (code != tc.code || callID != tc.callID || cseq != tc.cseq || len(ch) != tc.challenges)) {
				t.Errorf("got %d %q %d %d challenges %v", code, callID, cseq, len(ch), ok)
			}
		})
	}
}

func FuzzParseResponse(f *testing.F) {
	f.Add([]byte("SIP/2.0 401 Unauthorized\r\nCall-ID: a\r\nCSeq: 1 REGISTER\r\nWWW-Authenticate: Digest realm=\"r\"\r\n\r\n"))
	f.Add([]byte("SIP/2.0 200 OK\r\ni: c\r\nCSeq: 2 REGISTER\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _, _, _ = parseResponse(b)
	})
}

func hexsum(h hash.Hash, s string) string {
	h.Write([]byte(s))
	return hex.EncodeToString(h.Sum(nil))
}

// TestAnswer: the answer picks the challenge of the configured algorithm and
// its response is the RFC 7616 section 3.4.1 computation with qop=auth.
func TestAnswer(t *testing.T) {
	challenges := []string{
		`Digest realm="phones.example.test", nonce="n256", algorithm=SHA-256, qop="auth"`,
		`Digest realm="phones.example.test", nonce="nmd5", algorithm=MD5, qop="auth"`,
	}
	for _, tc := range []struct {
		alg   string
		nonce string
		h     func() hash.Hash
	}{
		{"MD5", "nmd5", md5.New},
		{"SHA-256", "n256", sha256.New},
	} {
		t.Run(tc.alg, func(t *testing.T) {
			c := config{algorithm: tc.alg, realm: "phones.example.test", first: 2000, domain: "127.0.0.1", dst: netip.MustParseAddrPort("127.0.0.1:5060")}
			r := &reg{account: 5}
			a1 := ha1(tc.alg, "2005", c.realm, "pw")
			if want := hexsum(tc.h(), "2005:phones.example.test:pw"); a1 != want {
				t.Fatalf("HA1 %s, want %s", a1, want)
			}
			got, err := answer(c, r, challenges, a1)
			if err != nil {
				t.Fatal(err)
			}
			cred, err := digest.ParseCredentials(got)
			if err != nil {
				t.Fatal(err)
			}
			ha2 := hexsum(tc.h(), "REGISTER:sip:127.0.0.1")
			want := hexsum(tc.h(), a1+":"+tc.nonce+":00000001:"+cred.Cnonce+":auth:"+ha2)
			if cred.Nonce != tc.nonce || cred.Username != "2005" || cred.URI != "sip:127.0.0.1" || cred.QOP != "auth" || cred.Response != want {
				t.Errorf("credentials %s, want response %s", got, want)
			}
		})
	}
	c := config{algorithm: "SHA-256", realm: "other"}
	if _, err := answer(c, &reg{}, challenges, "x"); err == nil || !strings.Contains(err.Error(), "realm") {
		t.Errorf("another realm: %v", err)
	}
	c = config{algorithm: "SHA-256", realm: "phones.example.test"}
	if _, err := answer(c, &reg{}, challenges[1:], "x"); err == nil {
		t.Error("no SHA-256 challenge: no error")
	}
}
