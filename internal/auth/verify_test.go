package auth

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"
)

const testRealm = "sip.example.com"

// clientAuth is what a UAC sends: the Authorization value for one challenge.
func clientAuth(alg Algorithm, user, pass, nonce, method, uri string, nc uint32) string {
	ha1 := HA1(alg, user, testRealm, pass)
	ncs := fmt.Sprintf("%08x", nc)
	resp := appendResponse(nil, alg, []byte(ha1), []byte(method), []byte(uri), []byte(nonce), []byte(ncs), []byte("c0ffee"), []byte("auth"))
	return fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", algorithm=%s, cnonce="c0ffee", qop=auth, nc=%s`,
		user, testRealm, nonce, uri, resp, alg, ncs)
}

func account(user, pass string, shaOnly bool) Account {
	a := Account{Username: user, SHAOnly: shaOnly}
	for _, alg := range Algorithms {
		if alg == MD5 && shaOnly {
			continue
		}
		a.HA1[alg] = HA1(alg, user, testRealm, pass)
	}
	return a
}

func newVerifier(t testing.TB, lifetime time.Duration) *Verifier {
	t.Helper()
	accts := []Account{account("1001", "gR8%xk2Lq!vT9#mZ", false), account("1002", "7yH#e2Wq!pL0$vN4", true)}
	accts[1].RegisterFrom = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	v, err := NewVerifier(testRealm, Algorithms, accts, NewNonces([]byte("k")), NewReplayGuard(1024), lifetime)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

var nonceRe = regexp.MustCompile(`nonce="([^"]+)"`)

func TestVerify(t *testing.T) {
	v := newVerifier(t, time.Minute)
	src := netip.MustParseAddr("192.0.2.10")
	now := time.Unix(1_800_000_000, 0)
	ch := string(v.AppendChallenge(nil, "WWW-Authenticate", v.Offer([]byte("1001")), src, false, now))
	nonce := nonceRe.FindStringSubmatch(ch)[1]
	const uri = "sip:sip.example.com"
	verify := func(hdr string, from netip.Addr, at time.Time) Outcome {
		t.Helper()
		var c Credentials
		if err := ParseCredentials(&c, []byte(hdr)); err != nil {
			t.Fatal(err)
		}
		return v.Verify(&c, []byte("REGISTER"), []byte(uri), from, at)
	}
	tests := []struct {
		name string
		hdr  string
		from netip.Addr
		at   time.Time
		want Result
		why  string
	}{
		{"sha-512-256", clientAuth(SHA512256, "1001", "gR8%xk2Lq!vT9#mZ", nonce, "REGISTER", uri, 1), src, now, Success, ""},
		{"captured header replayed", clientAuth(SHA512256, "1001", "gR8%xk2Lq!vT9#mZ", nonce, "REGISTER", uri, 1), src, now, Replay, "nonce_count_reused"},
		{"next count, sha-256", clientAuth(SHA256, "1001", "gR8%xk2Lq!vT9#mZ", nonce, "REGISTER", uri, 2), src, now, Success, ""},
		{"md5", clientAuth(MD5, "1001", "gR8%xk2Lq!vT9#mZ", nonce, "REGISTER", uri, 3), src, now, Success, ""},
		{"wrong password", clientAuth(SHA256, "1001", "wrong-Password-99", nonce, "REGISTER", uri, 4), src, now, Failure, "wrong_response"},
		{"unknown account", clientAuth(SHA256, "9999", "gR8%xk2Lq!vT9#mZ", nonce, "REGISTER", uri, 5), src, now, UnknownAccount, "unknown_account"},
		{"md5 for a sha-only account", clientAuth(MD5, "1002", "7yH#e2Wq!pL0$vN4", nonce, "REGISTER", uri, 6), src, now, Failure, "algorithm_refused"},
		{"sha-only account with sha-256", clientAuth(SHA256, "1002", "7yH#e2Wq!pL0$vN4", nonce, "REGISTER", uri, 7), src, now, Success, ""},
		{"expired nonce, right password", clientAuth(SHA256, "1001", "gR8%xk2Lq!vT9#mZ", nonce, "REGISTER", uri, 8), src, now.Add(2 * time.Minute), Stale, "nonce_expired"},
		// The nonce is checked before the response: a right and a wrong
		// password get the same outcome with a nonce that is not valid here.
		{"expired nonce, wrong password", clientAuth(SHA256, "1001", "nope-Nope-nope-1", nonce, "REGISTER", uri, 8), src, now.Add(2 * time.Minute), Stale, "nonce_expired"},
		{"nonce of another address", clientAuth(SHA256, "1001", "gR8%xk2Lq!vT9#mZ", nonce, "REGISTER", uri, 9), netip.MustParseAddr("192.0.2.11"), now, Stale, "nonce_invalid"},
		{"nonce of another address, wrong password", clientAuth(SHA256, "1001", "nope-Nope-nope-1", nonce, "REGISTER", uri, 9), netip.MustParseAddr("192.0.2.11"), now, Stale, "nonce_invalid"},
		{"forged nonce", clientAuth(SHA256, "1001", "gR8%xk2Lq!vT9#mZ", "forged", "REGISTER", uri, 1), src, now, Stale, "nonce_invalid"},
		{"forged nonce, wrong password", clientAuth(SHA256, "1001", "nope-Nope-nope-1", "forged", "REGISTER", uri, 1), src, now, Stale, "nonce_invalid"},
		{"forged nonce, unknown account", clientAuth(SHA256, "9999", "nope-Nope-nope-1", "forged", "REGISTER", uri, 1), src, now, Stale, "nonce_invalid"},
		{"invented nonce of the right length", clientAuth(SHA256, "1001", "gR8%xk2Lq!vT9#mZ", strings.Repeat("A", NonceLen), "REGISTER", uri, 1), src, now, Stale, "nonce_invalid"},
		{"invented nonce of the right length, wrong password", clientAuth(SHA256, "1001", "nope-Nope-nope-1", strings.Repeat("A", NonceLen), "REGISTER", uri, 1), src, now, Stale, "nonce_invalid"},
		{"other uri", clientAuth(SHA256, "1001", "gR8%xk2Lq!vT9#mZ", nonce, "REGISTER", "sip:other", 10), src, now, Malformed, "uri_mismatch"},
		{"other user in the uri", clientAuth(SHA256, "1001", "gR8%xk2Lq!vT9#mZ", nonce, "REGISTER", "sip:x@sip.example.com", 10), src, now, Malformed, "uri_mismatch"},
		{"uri without the Request-URI's parameters", clientAuth(SHA256, "1001", "gR8%xk2Lq!vT9#mZ", nonce, "REGISTER", "sip:SIP.example.com", 10), src, now, Success, ""},
		{"no qop", strings.Replace(clientAuth(SHA256, "1001", "gR8%xk2Lq!vT9#mZ", nonce, "REGISTER", uri, 11), "qop=auth", "qop=auth-int", 1), src, now, Malformed, "qop_required"},
		{"upper-case hex response", upperResponse(clientAuth(SHA256, "1001", "gR8%xk2Lq!vT9#mZ", nonce, "REGISTER", uri, 12)), src, now, Success, ""},
	}
	for _, tc := range tests {
		o := verify(tc.hdr, tc.from, tc.at)
		if o.Result != tc.want || o.Why != tc.why {
			t.Errorf("%s: %v (%s), want %v (%s)", tc.name, o.Result, o.Why, tc.want, tc.why)
		}
	}
}

// TestVerifyOfferedAlgorithmsOnly: a realm that offers only SHA-256 refuses
// an MD5 (or SHA-512-256) answer even from an account that has those HA1s,
// before the response is looked at: a right and a wrong password look alike.
func TestVerifyOfferedAlgorithmsOnly(t *testing.T) {
	accts := []Account{account("1001", "gR8%xk2Lq!vT9#mZ", false)}
	v, err := NewVerifier(testRealm, []Algorithm{SHA256}, accts, NewNonces([]byte("k")), NewReplayGuard(1024), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddr("192.0.2.10")
	now := time.Unix(1_800_000_000, 0)
	nonce := string(v.nonces.Append(nil, testRealm, src, now))
	const uri = "sip:sip.example.com"
	tests := []struct {
		name string
		alg  Algorithm
		user string
		pass string
		want Result
		why  string
	}{
		{"md5, right password", MD5, "1001", "gR8%xk2Lq!vT9#mZ", Failure, "algorithm_refused"},
		{"md5, wrong password", MD5, "1001", "nope-Nope-nope-1", Failure, "algorithm_refused"},
		{"sha-512-256, right password", SHA512256, "1001", "gR8%xk2Lq!vT9#mZ", Failure, "algorithm_refused"},
		{"md5, unknown account", MD5, "9999", "nope-Nope-nope-1", UnknownAccount, "unknown_account"},
		{"sha-256, right password", SHA256, "1001", "gR8%xk2Lq!vT9#mZ", Success, ""},
	}
	for i, tc := range tests {
		var c Credentials
		if err := ParseCredentials(&c, []byte(clientAuth(tc.alg, tc.user, tc.pass, nonce, "REGISTER", uri, uint32(i+1)))); err != nil {
			t.Fatal(err)
		}
		if o := v.Verify(&c, []byte("REGISTER"), []byte(uri), src, now); o.Result != tc.want || o.Why != tc.why {
			t.Errorf("%s: %v (%s), want %v (%s)", tc.name, o.Result, o.Why, tc.want, tc.why)
		}
	}
	a := v.Account("1001")
	if a.Accepts(MD5) || a.Accepts(SHA512256) || !a.Accepts(SHA256) {
		t.Errorf("Accepts on a SHA-256-only realm: md5 %v, sha-512-256 %v, sha-256 %v", a.Accepts(MD5), a.Accepts(SHA512256), a.Accepts(SHA256))
	}
}

var respRe = regexp.MustCompile(`response="([^"]+)"`)

func upperResponse(h string) string {
	return respRe.ReplaceAllStringFunc(h, func(s string) string { return `response="` + strings.ToUpper(s[10:len(s)-1]) + `"` })
}

// TestOfferOrder: the challenges go out in the order of the offer (phones
// answer only the first one), SHA-256 alone by default, and a SHA-only
// account is never offered MD5 wherever MD5 stands in the offer.
func TestOfferOrder(t *testing.T) {
	accts := []Account{account("1001", "gR8%xk2Lq!vT9#mZ", false), account("1002", "7yH#e2Wq!pL0$vN4", true)}
	src := netip.MustParseAddr("192.0.2.10")
	now := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		offer       []Algorithm
		user        string
		want        []string
		firstAccept Algorithm
	}{
		{nil, "1001", []string{"SHA-256"}, SHA256},
		{nil, "1002", []string{"SHA-256"}, SHA256},
		{[]Algorithm{MD5, SHA256}, "1001", []string{"MD5", "SHA-256"}, MD5},
		{[]Algorithm{MD5, SHA256}, "1002", []string{"SHA-256"}, SHA256},
		{[]Algorithm{SHA256, MD5, SHA512256}, "1001", []string{"SHA-256", "MD5", "SHA-512-256"}, SHA256},
		{[]Algorithm{SHA256, MD5, SHA512256}, "1002", []string{"SHA-256", "SHA-512-256"}, SHA256},
	} {
		v, err := NewVerifier(testRealm, tc.offer, accts, NewNonces([]byte("k")), NewReplayGuard(1024), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		ch := string(v.AppendChallenge(nil, "WWW-Authenticate", v.Offer([]byte(tc.user)), src, false, now))
		var got []string
		for _, l := range strings.Split(strings.TrimSuffix(ch, "\r\n"), "\r\n") {
			got = append(got, l[strings.Index(l, "algorithm=")+len("algorithm="):strings.Index(l, ", qop")])
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("offer %v to %s: challenges %v, want %v", tc.offer, tc.user, got, tc.want)
		}
		if !v.Account(tc.user).Accepts(tc.firstAccept) {
			t.Errorf("offer %v: %s does not accept %v", tc.offer, tc.user, tc.firstAccept)
		}
		if v.Account("1002").Accepts(MD5) {
			t.Errorf("offer %v: the SHA-only account accepts MD5", tc.offer)
		}
	}
}

func TestChallenge(t *testing.T) {
	v := newVerifier(t, time.Minute)
	src := netip.MustParseAddr("192.0.2.10")
	now := time.Unix(1_800_000_000, 0)
	ch := string(v.AppendChallenge(nil, "Proxy-Authenticate", v.Offer([]byte("1001")), src, true, now))
	lines := strings.Split(strings.TrimSuffix(ch, "\r\n"), "\r\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "algorithm=SHA-512-256") || !strings.Contains(lines[1], "algorithm=SHA-256") ||
		!strings.Contains(lines[2], "algorithm=MD5") || !strings.HasPrefix(lines[0], `Proxy-Authenticate: Digest realm="sip.example.com", nonce="`) ||
		!strings.HasSuffix(lines[0], `qop="auth", stale=true`) {
		t.Fatalf("challenge:\n%s", ch)
	}
	if off := v.Offer([]byte("1002")); len(off) != 2 || off[1] != SHA256 {
		t.Fatalf("a SHA-only account is offered %v", off)
	}
	// Unknown names are offered MD5 about as often as the accounts are (1 in 2 here).
	noMD5 := 0
	for i := range 1000 {
		if off := v.Offer(fmt.Appendf(nil, "u%d", i)); off[len(off)-1] != MD5 {
			noMD5++
		}
	}
	if noMD5 < 400 || noMD5 > 600 {
		t.Fatalf("%d of 1000 unknown names were not offered MD5, want about 500", noMD5)
	}
	if _, err := NewVerifier("bad\"realm", nil, nil, nil, nil, 0); err == nil {
		t.Fatal("a realm with a quote was accepted")
	}
	a := Account{Username: "x"}
	a.HA1[MD5] = "00" // the default offer is SHA-256
	if _, err := NewVerifier("r", nil, []Account{a}, nil, nil, 0); err == nil {
		t.Fatal("an account without the HA1 of an offered algorithm was accepted")
	}
}

// TestVerifyAllocs: verification allocates nothing, for known and unknown accounts.
func TestVerifyAllocs(t *testing.T) {
	v := newVerifier(t, time.Minute)
	src := netip.MustParseAddr("192.0.2.10")
	now := time.Unix(1_800_000_000, 0)
	nonce := string(v.nonces.Append(nil, testRealm, src, now))
	for _, user := range []string{"1001", "9999"} {
		var c Credentials
		hdr := []byte(clientAuth(SHA256, user, "x", nonce, "INVITE", "sip:a@b", 1))
		if n := testing.AllocsPerRun(100, func() {
			_ = ParseCredentials(&c, hdr)
			v.Verify(&c, []byte("INVITE"), []byte("sip:a@b"), src, now)
		}); n != 0 {
			t.Errorf("%s: %v allocations per verification", user, n)
		}
		if n := testing.AllocsPerRun(100, func() { v.Spend(&c) }); n != 0 {
			t.Errorf("%s: %v allocations per Spend", user, n)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	for _, alg := range []Algorithm{MD5, SHA256, SHA512256} {
		b.Run(alg.String(), func(b *testing.B) {
			v := newVerifier(b, time.Hour)
			src := netip.MustParseAddr("192.0.2.10")
			now := time.Now()
			nonce := string(v.nonces.Append(nil, testRealm, src, now))
			hdrs := make([][]byte, 4096)
			for i := range hdrs {
				hdrs[i] = []byte(clientAuth(alg, "1001", "gR8%xk2Lq!vT9#mZ", nonce, "REGISTER", "sip:sip.example.com", uint32(i+1)))
			}
			var c Credentials
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				_ = ParseCredentials(&c, hdrs[i%len(hdrs)])
				o := v.Verify(&c, []byte("REGISTER"), []byte("sip:sip.example.com"), src, now)
				if o.Result != Success && o.Result != Replay {
					b.Fatal(o.Result)
				}
			}
		})
	}
}

func BenchmarkChallenge(b *testing.B) {
	v := newVerifier(b, time.Hour)
	src := netip.MustParseAddr("192.0.2.10")
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = v.AppendChallenge(buf[:0], "WWW-Authenticate", v.Offer([]byte("1001")), src, false, time.Now())
	}
}

func FuzzParseCredentials(f *testing.F) {
	f.Add([]byte(`Digest username="1001", realm="r", nonce="n", uri="sip:x", response="00", algorithm=SHA-256, cnonce="c", qop=auth, nc=00000001`))
	f.Add([]byte(`Digest username="a\"b", realm="r\\", x=y`))
	f.Add([]byte(`digest   username = "a" ,realm="b"`))
	f.Add([]byte(`Digest nc=FFFFFFFF, algorithm=md5`))
	v := newVerifier(f, time.Minute)
	src := netip.MustParseAddr("192.0.2.1")
	f.Fuzz(func(t *testing.T, b []byte) {
		var c Credentials
		if err := ParseCredentials(&c, b); err != nil {
			return
		}
		for _, s := range [][]byte{c.Username, c.Realm, c.Nonce, c.URI, c.Response, c.CNonce, c.QOP} {
			if len(s) > maxValueLen {
				t.Fatalf("value of %d bytes", len(s))
			}
		}
		if c.Algorithm == AlgUnknown {
			t.Fatal("parsed credentials without an algorithm")
		}
		v.Verify(&c, []byte("REGISTER"), c.URI, src, time.Now())
	})
}

// TestAccountOffer: an account with its own offer is challenged with it,
// in its order, and accepts only those algorithms; unknown names get the
// accounts' offers in their proportion, so no offer tells a name exists.
func TestAccountOffer(t *testing.T) {
	old := account("1003", "7yH#e2Wq!pL0$vN4", false)
	old.Offer = []Algorithm{MD5}
	accts := []Account{account("1001", "gR8%xk2Lq!vT9#mZ", false), old}
	v, err := NewVerifier(testRealm, []Algorithm{SHA256, MD5}, accts, NewNonces([]byte("k")), NewReplayGuard(1024), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if o := v.Offer([]byte("1003")); len(o) != 1 || o[0] != MD5 {
		t.Errorf("1003 is offered %v, want [MD5]", o)
	}
	if o := v.Offer([]byte("1001")); len(o) != 2 || o[0] != SHA256 || o[1] != MD5 {
		t.Errorf("1001 is offered %v, want [SHA-256 MD5]", o)
	}
	if a := v.Account("1003"); a.Accepts(SHA256) || !a.Accepts(MD5) {
		t.Errorf("1003 accepts SHA-256 %v, MD5 %v", a.Accepts(SHA256), a.Accepts(MD5))
	}
	seen := map[int]int{}
	for i := range 200 {
		seen[len(v.Offer(fmt.Appendf(nil, "u%d", i)))]++
	}
	if seen[1] == 0 || seen[2] == 0 || seen[1]+seen[2] != 200 {
		t.Errorf("offers to unknown names: %v", seen)
	}
	if o1, o2 := v.Offer([]byte("u7")), v.Offer([]byte("u7")); len(o1) != len(o2) {
		t.Error("an unknown name's offer changes between requests")
	}
	// An account's offer must be within the realm's.
	bad := account("1004", "7yH#e2Wq!pL0$vN4", false)
	bad.Offer = []Algorithm{SHA512256}
	if _, err := NewVerifier(testRealm, []Algorithm{SHA256}, []Account{bad}, NewNonces([]byte("k")), NewReplayGuard(1024), time.Minute); err == nil {
		t.Error("an account offered an algorithm the realm does not offer was accepted")
	}
}
