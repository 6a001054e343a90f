package auth

import (
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// RFC 7616 section 3.9.1 (MD5 and SHA-256) and RFC 2617 section 3.5.
func TestResponseVectors(t *testing.T) {
	tests := []struct {
		name                                  string
		alg                                   Algorithm
		user, realm, pass, method, uri, nonce string
		cnonce, want                          string
	}{
		{"rfc7616 MD5", MD5, "Mufasa", "http-auth@example.org", "Circle of Life", "GET", "/dir/index.html",
			"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", "8ca523f5e9506fed4657c9700eebdbec"},
		{"rfc7616 SHA-256", SHA256, "Mufasa", "http-auth@example.org", "Circle of Life", "GET", "/dir/index.html",
			"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"},
		{"rfc2617", MD5, "Mufasa", "testrealm@host.com", "Circle Of Life", "GET", "/dir/index.html",
			"dcd98b7102dd2f0e8b11d0f600bfb0c093", "0a4f113b", "6629fae49393a05397450978507c4ef1"},
		// RFC 7616 section 3.9.2, with the username in clear (userhash is not
		// used in SIP). The RFC prints ae66e67d...79dd, which is SHA-512
		// truncated to 256 bits (checked in TestSHA512256Erratum); RFC 7616
		// section 3.3 and RFC 8760 name SHA-512/256 of FIPS 180-4, whose
		// result for these inputs is this one (also computed with Python's
		// hashlib "sha512_256").
		{"rfc7616 SHA-512-256", SHA512256, "J\u00e4s\u00f8n Doe", "api@example.org", "Secret, or not?", "GET", "/doe.json",
			"5TsQWLVdgBdmrQ0XsxbDODV+57QdFR34I9HAbC/RVvkK", "NTg6RKcb9boFIAS3KrFK9BGeh+iDa/sm6jUMp2wds69v", "3798d4131c277846293534c3edc11bd8a5e4cdcbff78b05db9d95eeb1cec68a5"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ha1 := HA1(tc.alg, tc.user, tc.realm, tc.pass)
			got := appendResponse(nil, tc.alg, []byte(ha1), []byte(tc.method), []byte(tc.uri), []byte(tc.nonce),
				[]byte("00000001"), []byte(tc.cnonce), []byte("auth"))
			if string(got) != tc.want {
				t.Fatalf("response %s, want %s", got, tc.want)
			}
		})
	}
}

// TestSHA512256Erratum shows that the example of RFC 7616 section 3.9.2 was
// computed with SHA-512 truncated to 256 bits, not with SHA-512/256: the
// inputs of the vector above are right, the printed value is the erratum.
func TestSHA512256Erratum(t *testing.T) {
	h := func(s string) string { x := sha512.Sum512([]byte(s)); return hex.EncodeToString(x[:32]) }
	ha1 := h("J\u00e4s\u00f8n Doe:api@example.org:Secret, or not?")
	ha2 := h("GET:/doe.json")
	got := h(ha1 + ":5TsQWLVdgBdmrQ0XsxbDODV+57QdFR34I9HAbC/RVvkK:00000001:NTg6RKcb9boFIAS3KrFK9BGeh+iDa/sm6jUMp2wds69v:auth:" + ha2)
	if got != "ae66e67d6b427bd3f120414a82e4acff38e8ecd9101d6c861229025f607a79dd" {
		t.Fatal(got)
	}
}

func TestParseCredentials(t *testing.T) {
	var c Credentials
	in := `Digest username="Mufasa",realm="http-auth@example.org", nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",` +
		` uri="/dir/index.html", algorithm=sha-256, nc=0000000a, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",` +
		` qop=auth, response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", opaque="FQhe", x-ext=1`
	if err := ParseCredentials(&c, []byte(in)); err != nil {
		t.Fatal(err)
	}
	if string(c.Username) != "Mufasa" || string(c.Realm) != "http-auth@example.org" || c.Algorithm != SHA256 ||
		c.NonceCnt != 10 || string(c.QOP) != "auth" || string(c.URI) != "/dir/index.html" || string(c.Opaque) != "FQhe" {
		t.Fatalf("%+v", c)
	}
	if err := ParseCredentials(&c, []byte(`digest username="a\"b\\c", realm="r", qop="auth"`)); err != nil || string(c.Username) != `a"b\c` || c.Algorithm != MD5 {
		t.Fatalf("escapes: %v %q", err, c.Username)
	}
	bad := []struct{ in, want string }{
		{`Basic dXNlcjpwYXNz`, "not Digest"},
		{`Digest`, "no parameters"},
		{`Digest username="a", username="b"`, "twice"},
		{`Digest username="a`, "unterminated"},
		{`Digest username="a" realm="b"`, "',' expected"},
		{`Digest nc=1`, "8 hex digits"},
		{`Digest nc=0000000g`, "8 hex digits"},
		{`Digest algorithm=MD5-sess`, "unsupported algorithm"},
		{`Digest username`, "'=' expected"},
		{`Digest =x`, "parameter name expected"},
		{`Digest a="` + strings.Repeat("x", maxValueLen+1) + `"`, "longer than"},
		{`Digest ` + strings.Repeat("a=1,", maxParams) + "a=1", "parameters"},
		{"Digest username=\"a\x01\"", "control byte"},
		{"Digest " + strings.Repeat("x", MaxCredentialsLen), "longer than"},
	}
	for _, tc := range bad {
		err := ParseCredentials(&c, []byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%.40q: error %v, want %q", tc.in, err, tc.want)
		}
	}
	if err := ParseCredentials(&c, []byte("Basic x")); !errors.Is(err, ErrNotDigest) {
		t.Fatal(err)
	}
}

func TestParseAllocs(t *testing.T) {
	var c Credentials
	in := []byte(`Digest username="1001", realm="sip.example.com", nonce="abc", uri="sip:sip.example.com", response="0123", algorithm=SHA-256, cnonce="x", qop=auth, nc=00000001`)
	if n := testing.AllocsPerRun(100, func() { _ = ParseCredentials(&c, in) }); n != 0 {
		t.Fatalf("%v allocations per parse", n)
	}
}

func TestNonces(t *testing.T) {
	n := NewNonces([]byte("secret"))
	src := netip.MustParseAddr("192.0.2.1")
	now := time.Unix(1_800_000_000, 0)
	nonce := n.Append(nil, "r", src, now)
	if len(nonce) != NonceLen {
		t.Fatalf("nonce %q has length %d, want %d", nonce, len(nonce), NonceLen)
	}
	if other := n.Append(nil, "r", src, now); string(other) == string(nonce) {
		t.Fatal("two nonces at the same instant are equal")
	}
	check := func(name string, nonce []byte, realm string, src netip.Addr, at time.Time, want NonceStatus) {
		t.Helper()
		if st, _, _ := n.Check(nonce, realm, src, at, time.Minute); st != want {
			t.Errorf("%s: status %d, want %d", name, st, want)
		}
	}
	check("fresh", nonce, "r", src, now, NonceValid)
	check("at the end of its lifetime", nonce, "r", src, now.Add(time.Minute), NonceValid)
	check("past its lifetime", nonce, "r", src, now.Add(time.Minute+time.Nanosecond), NonceExpired)
	check("other realm", nonce, "s", src, now, NonceInvalid)
	check("other source", nonce, "r", netip.MustParseAddr("192.0.2.2"), now, NonceInvalid)
	check("mapped source", nonce, "r", netip.MustParseAddr("::ffff:192.0.2.1"), now, NonceValid)
	check("other secret", NewNonces([]byte("other")).Append(nil, "r", src, now), "r", src, now, NonceInvalid)
	tampered := append([]byte(nil), nonce...)
	tampered[5] ^= 1
	check("tampered", tampered, "r", src, now, NonceInvalid)
	check("short", nonce[:10], "r", src, now, NonceInvalid)
	check("garbage", []byte(strings.Repeat("*", NonceLen)), "r", src, now, NonceInvalid)
	if a := testing.AllocsPerRun(100, func() { n.Check(nonce, "r", src, now, time.Minute) }); a != 0 {
		t.Errorf("%v allocations per check", a)
	}
}

func TestReplayGuard(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	g := NewReplayGuard(16) // one nonce per shard
	k := NonceKey{1}
	steps := []struct {
		nc   uint32
		want NCResult
	}{{1, NCFresh}, {1, NCReplay}, {3, NCFresh}, {2, NCFresh}, {2, NCReplay}, {0, NCReplay}, {100, NCFresh}, {37, NCFresh}, {37, NCReplay}, {36, NCReplay}, {30, NCReplay}}
	for i, s := range steps {
		if got := g.Use(k, now, s.nc, now); got != s.want {
			t.Fatalf("step %d nc=%d: %d, want %d", i, s.nc, got, s.want)
		}
	}
	// Another key in the same shard evicts k: k is now forgotten, never fresh again.
	var k2 NonceKey
	copy(k2[:], k[:4])
	k2[15] = 9
	if g.Use(k2, now.Add(time.Second), 1, now.Add(time.Second)) != NCFresh {
		t.Fatal("new nonce refused")
	}
	if got := g.Use(k, now, 101, now); got != NCForgotten {
		t.Fatalf("evicted nonce: %d, want forgotten", got)
	}
	// A nonce issued after the forgotten one was never used: it is fresh.
	var k3 NonceKey
	copy(k3[:], k[:4])
	k3[15] = 7
	if g.Use(k3, now.Add(2*time.Second), 1, now.Add(2*time.Second)) != NCFresh {
		t.Fatal("a nonce issued later than the forgotten one is refused")
	}
	if g.Len() > 16 {
		t.Fatalf("guard holds %d nonces, capacity 16", g.Len())
	}
}

func TestPolicy(t *testing.T) {
	p := DefaultPolicy
	tests := []struct{ user, pass, rule string }{
		{"1001", "", RuleEmpty},
		{"1001", "Sh0rt!", RuleMinLength},
		{"1001", "alllowercaseletters", RuleClasses},
		{"1001", "lowercase1234567890", RuleClasses},
		{"alice", "xXalice-in-chains-9", RuleUsername},
		{"alice", "ALICE-in-Chains-99", RuleUsername},
		{"1001", "Password1234567890", RuleCommon},
		{"1001", "P@ssw0rdP@ssw0rd", RuleCommon},
		{"1001", "Ab1!Ab1!Ab1!Ab1!", RuleCommon},
		{"1001", "Tab\tSeparated-Pass9", RuleControlCharacter},
		{"1001", "correct-Horse-7-battery", ""},
		{"1001", "gR8%xk2Lq!vT9#mZ", ""},
		{"ab", "ab-Good-Enough-Pass-1", ""}, // short usernames only refused when equal
	}
	for _, tc := range tests {
		err := p.Check(tc.user, tc.pass)
		var pe *PolicyError
		switch {
		case tc.rule == "" && err != nil:
			t.Errorf("%q refused: %v", tc.pass, err)
		case tc.rule != "" && (!errors.As(err, &pe) || pe.Rule != tc.rule):
			t.Errorf("%q: %v, want rule %s", tc.pass, err, tc.rule)
		case err != nil && tc.pass != "" && strings.Contains(err.Error(), tc.pass):
			t.Errorf("the error names the password: %v", err)
		}
	}
	custom := Policy{MinLength: 8, MinClasses: 2, RejectCommon: true, Extra: map[string]bool{"acme-2026!": true}}
	if err := custom.Check("u", "Acme-2026!"); err == nil {
		t.Error("a password of the extra list was accepted")
	}
	if err := custom.Check("u", "short-ok-9"); err != nil {
		t.Errorf("custom policy: %v", err)
	}
}

func TestWeakHA1(t *testing.T) {
	for _, tc := range []struct {
		pass string
		rule string
	}{{"1001", RuleUsername}, {"10011001", RuleUsername}, {"password", RuleCommon}, {"Password1", RuleCommon}, {"gR8%xk2Lq!vT9#mZ", ""}} {
		a := Account{Username: "1001"}
		a.HA1[SHA256] = HA1(SHA256, "1001", "r", tc.pass)
		rule, weak := WeakHA1(&a, "r", nil)
		if weak != (tc.rule != "") || rule != tc.rule {
			t.Errorf("%q: %q %v, want %q", tc.pass, rule, weak, tc.rule)
		}
	}
}
