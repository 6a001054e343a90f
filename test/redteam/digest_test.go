package redteam

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/icholy/digest"

	"github.com/sipwarden/sipwarden/internal/auth"
	"github.com/sipwarden/sipwarden/internal/cdr"
	"github.com/sipwarden/sipwarden/test/testbed"
)

// The digest attacks: a password oracle through stale=true, the lockout and
// register_from bypassed through it, MD5 taken on a SHA-256-only trunk,
// IPv6 address rotation past the brute-force counters (digest_ipv6_test.go),
// and a spoofed UDP INVITE turned into a 407 reflection and a CDR row.

const (
	dgRealm    = "phones.example.test"
	dgPass1001 = "gR8%xk2Lq!vT9#mZ"
	dgPass1002 = "7yH#e2Wq!pL0$vN4"
	// dgInvented is a nonce an attacker makes up: our nonces' length and alphabet.
	dgInvented = "AZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ"
	dgWrong    = "Wrong-password-77"
)

// dgTrunk is a digest trunk found by its domain (no fixed address), offering
// SHA-256 only, with sipwarden's registrar (a REGISTER that authenticates
// gets 200 from sipwarden and a binding). 1001 also has an MD5 HA1 (what
// `sipwarden passwd` prints), 1002 may register from 10.0.0.0/8 only, 1003
// is the account the tests lock. Four failures of one account lock it.
func dgTrunk(listen string) string {
	return `
listen: ["udp://` + listen + `"]
admin: {listen: "127.0.0.1:{{.AdminPort}}"}
storage: {path: "{{.Dir}}/data"}
log: {level: info}
sip: {drain_timeout: 1s}
flood: {enabled: false}
upstreams:
  - name: pbx
    targets: ["udp://127.0.0.3:{{.PBXPort}}"]
auth:
  bruteforce: {source_account_failures: 3, unknown_accounts: 5, source_failures: 100, account_failures: 4, lockout: 10m, lockout_mode: lock}
trunks:
  - name: phones
    auth: digest
    realm: ` + dgRealm + `
    algorithms: [SHA-256]
    upstream: pbx
    registrar: {enabled: true}
    accounts:
      - {username: "1001", ha1: {sha-256: ` + auth.HA1(auth.SHA256, "1001", dgRealm, dgPass1001) + `, md5: ` + auth.HA1(auth.MD5, "1001", dgRealm, dgPass1001) + `}}
      - {username: "1002", ha1: {sha-256: ` + auth.HA1(auth.SHA256, "1002", dgRealm, dgPass1002) + `}, register_from: [10.0.0.0/8]}
      - {username: "1003", ha1: {sha-256: ` + auth.HA1(auth.SHA256, "1003", dgRealm, dgPass1001) + `}}
`
}

// dgRegister sends a REGISTER of user to target and returns the reply (nil
// after 2 s).
func dgRegister(t *testing.T, target string, ua *testbed.RawUA, user, pass, nonce, alg string, n int) *testbed.RawMsg {
	t.Helper()
	dgSendRegister(t, target, ua, user, pass, nonce, alg, n)
	return ua.Recv(2 * time.Second)
}

// dgSendRegister sends a REGISTER of user to target. With a nonce it
// carries an Authorization for (nonce, alg, pass), as a client computes it;
// without, none.
func dgSendRegister(t *testing.T, target string, ua *testbed.RawUA, user, pass, nonce, alg string, n int) {
	t.Helper()
	authz := ""
	if nonce != "" {
		cred, err := digest.Digest(&digest.Challenge{Realm: dgRealm, Nonce: nonce, Algorithm: alg, QOP: []string{"auth"}},
			digest.Options{Method: "REGISTER", URI: "sip:" + dgRealm, Username: user, Password: pass, Count: 1})
		if err != nil {
			t.Fatal(err)
		}
		authz = "Authorization: " + cred.String() + "\n"
	}
	ua.Send(target, fmt.Sprintf("REGISTER sip:%s SIP/2.0\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-r%s-%d;rport\nMax-Forwards: 70\n"+
		"From: <sip:%s@%s>;tag=r%d\nTo: <sip:%s@%s>\nCall-ID: reg-%s-%d@x\nCSeq: %d REGISTER\nContact: <sip:%s@%s>\n%sContent-Length: 0\n\n",
		dgRealm, ua.LocalAddr(), user, n, user, dgRealm, n, user, dgRealm, user, n, n, user, ua.LocalAddr(), authz))
}

var dgNonceRe = regexp.MustCompile(`nonce="([^"]+)"`)

// dgChallenge asks for a challenge for user and returns its nonce (bound to ua's address).
func dgChallenge(t *testing.T, target string, ua *testbed.RawUA, user string, n int) string {
	t.Helper()
	m := dgRegister(t, target, ua, user, "", "", "", n)
	if m == nil {
		t.Fatalf("REGISTER %s from %s: no challenge", user, ua.LocalAddr())
	}
	sm := dgNonceRe.FindStringSubmatch(m.Get("WWW-Authenticate"))
	if m.Code != 401 || sm == nil {
		t.Fatalf("no challenge: %s", m.Raw)
	}
	return sm[1]
}

var dgShapeRe = regexp.MustCompile(`nonce="[^"]+"|tag=[^;\s]+|branch=[^;\s]+|Call-ID: \S+|CSeq: \d+|rport=\d+|received=[^;\s]+`)

// dgShape is a reply without what differs from one request to the next
// (nonce, tags, branch, Call-ID, CSeq): two replies with the same shape tell
// the client nothing apart.
func dgShape(m *testbed.RawMsg) string {
	if m == nil {
		return "<nothing>"
	}
	return dgShapeRe.ReplaceAllString(m.Raw, "*")
}

// TestStaleNonceIsNoPasswordOracle: the response used to be checked before
// the nonce, so the right password with an invented nonce (or one issued to
// another address) got stale=true and a wrong one a plain challenge: a
// password oracle that no counter saw. Now the nonce is checked first and
// both get the same reply.
func TestStaleNonceIsNoPasswordOracle(t *testing.T) {
	e := testbed.StartEdge(t, dgTrunk("127.0.0.1:{{.SIPPort}}"), testbed.FreePort(t), nil)
	ua := testbed.NewRawUA(t, "udp", "127.0.0.61")
	other := testbed.NewRawUA(t, "udp", "127.0.0.62")
	for _, tc := range []struct {
		name  string
		nonce func(n int) string
	}{
		{"invented nonce", func(int) string { return dgInvented }},
		{"nonce of another address", func(n int) string { return dgChallenge(t, e.SIPAddr(), other, "1001", n) }},
	} {
		right := dgRegister(t, e.SIPAddr(), ua, "1001", dgPass1001, tc.nonce(1), "SHA-256", 2)
		wrong := dgRegister(t, e.SIPAddr(), ua, "1001", dgWrong, tc.nonce(3), "SHA-256", 4)
		if right == nil || right.Code != 401 || dgShape(right) != dgShape(wrong) {
			t.Errorf("%s: the right password is told from a wrong one:\n%s\n---\n%s", tc.name, dgShape(right), dgShape(wrong))
		}
	}
	if v := e.Metric(`sipwarden_registrar_bindings`); v != 0 {
		t.Errorf("bindings: %v, want 0", v)
	}
}

// TestLockoutAndRegisterFromNotBypassed: a locked account and a REGISTER
// from outside an account's register_from used to be decided after the
// response (and never for a stale nonce), so the stale=true oracle kept
// working through them. Now both are decided before the response is looked
// at: right and wrong passwords get the same reply, with any nonce.
func TestLockoutAndRegisterFromNotBypassed(t *testing.T) {
	e := testbed.StartEdge(t, dgTrunk("127.0.0.1:{{.SIPPort}}"), testbed.FreePort(t), nil)
	// Lock 1003: four wrong passwords from four addresses.
	for i := range 4 {
		ua := testbed.NewRawUA(t, "udp", fmt.Sprintf("127.0.0.%d", 70+i))
		nonce := dgChallenge(t, e.SIPAddr(), ua, "1003", 1)
		if m := dgRegister(t, e.SIPAddr(), ua, "1003", dgWrong, nonce, "SHA-256", 2); m == nil || m.Code != 401 {
			t.Fatalf("failure %d: %v", i+1, m)
		}
	}
	if v := e.Metric(`sipwarden_bruteforce_lockouts_total`); v != 1 {
		t.Fatalf("lockouts: %v, want 1", v)
	}
	ua := testbed.NewRawUA(t, "udp", "127.0.0.75")
	n := 10
	for _, tc := range []struct{ name, user, pass string }{
		{"locked account", "1003", dgPass1001},
		{"REGISTER outside register_from", "1002", dgPass1002},
	} {
		for _, kind := range []string{"invented", "valid"} {
			attempt := func(pass string) *testbed.RawMsg {
				n += 2
				nonce := dgInvented
				if kind == "valid" {
					nonce = dgChallenge(t, e.SIPAddr(), ua, tc.user, n)
				}
				return dgRegister(t, e.SIPAddr(), ua, tc.user, pass, nonce, "SHA-256", n+1)
			}
			right, wrong := attempt(tc.pass), attempt(dgWrong)
			if right == nil || right.Code != 401 || dgShape(right) != dgShape(wrong) {
				t.Errorf("%s, %s nonce: the right password is told from a wrong one:\n%s\n---\n%s", tc.name, kind, dgShape(right), dgShape(wrong))
			}
		}
	}
	if v := e.Metric(`sipwarden_registrar_bindings`); v != 0 {
		t.Errorf("bindings: %v, want 0", v)
	}
}

// TestMD5RefusedOnSHA256OnlyTrunk: an account's MD5 HA1 was used for an MD5
// answer although the trunk offers only SHA-256. Now only offered
// algorithms are accepted.
func TestMD5RefusedOnSHA256OnlyTrunk(t *testing.T) {
	e := testbed.StartEdge(t, dgTrunk("127.0.0.1:{{.SIPPort}}"), testbed.FreePort(t), nil)
	ua := testbed.NewRawUA(t, "udp", "127.0.0.63")
	nonce := dgChallenge(t, e.SIPAddr(), ua, "1001", 1)
	if m := dgRegister(t, e.SIPAddr(), ua, "1001", dgPass1001, nonce, "MD5", 2); m == nil || m.Code != 401 {
		t.Fatalf("an MD5 answer on a SHA-256-only trunk: %v", m)
	}
	if v := e.Metric(`sipwarden_registrar_bindings`); v != 0 {
		t.Fatalf("bindings after an MD5 answer: %v", v)
	}
	// the offered algorithm still works
	nonce = dgChallenge(t, e.SIPAddr(), ua, "1001", 3)
	if m := dgRegister(t, e.SIPAddr(), ua, "1001", dgPass1001, nonce, "SHA-256", 4); m == nil || m.Code != 200 {
		t.Fatalf("the SHA-256 answer: %v", m)
	}
}

// dgInvite is an INVITE to a number at the trunk's domain (which is how a
// stranger's request reaches a digest trunk without a fixed address).
func dgInvite(ua *testbed.RawUA, target, callID string) string {
	return strings.ReplaceAll(ua.InviteText(target, callID, "z9hG4bK-"+callID, 1), "@"+target, "@"+dgRealm)
}

// TestChallengeNotReflected: a UDP INVITE with a forged source, sent to a
// digest trunk's domain, got its 407 resent by timer G until timer H (about
// 33 times the request in bytes, at the victim). Now the challenge goes
// once, and a flood of them at one victim stays within its reply budget
// (32 a second; over it: dropped and counted).
func TestChallengeNotReflected(t *testing.T) {
	e := testbed.StartEdge(t, dgTrunk("127.0.0.1:{{.SIPPort}}"), testbed.FreePort(t), nil)
	victim := testbed.NewRawUA(t, "udp", "127.0.0.64") // stands for the forged source
	req := dgInvite(victim, e.SIPAddr(), "refl-1")
	victim.Send(e.SIPAddr(), req)
	first := victim.Recv(2 * time.Second)
	if first == nil || first.Code != 407 {
		t.Fatalf("no 407: %v", first)
	}
	n, bytes := 1, len(first.Raw)
	// Timer G resends at T1 and 3*T1 (T1 = 500 ms): count what arrives in 1.8 s.
	deadline := time.Now().Add(1800 * time.Millisecond)
	for m := victim.Recv(time.Until(deadline)); m != nil; m = victim.Recv(time.Until(deadline)) {
		n++
		bytes += len(m.Raw)
	}
	t.Logf("one %d-byte INVITE: %d replies, %d bytes", len(req), n, bytes)
	if n != 1 || bytes > 2*len(req) {
		t.Errorf("one forged INVITE got %d replies (%d bytes for a %d-byte request)", n, bytes, len(req))
	}

	// A flood of 100 forged INVITEs at one victim: at most two windows' budget.
	for i := range 100 {
		victim.Send(e.SIPAddr(), dgInvite(victim, e.SIPAddr(), fmt.Sprintf("refl-f%d", i)))
	}
	handled := `sipwarden_auth_requests_total{result="challenge",trunk="phones"}`
	deadline = time.Now().Add(10 * time.Second)
	for e.Metric(handled) < 101 {
		if time.Now().After(deadline) {
			t.Fatalf("the edge handled %v of 101 INVITEs in 10 s", e.Metric(handled))
		}
		time.Sleep(20 * time.Millisecond)
	}
	got := 0
	for victim.Recv(300*time.Millisecond) != nil { // the replies are already in the socket
		got++
	}
	dropped := e.Metric(`sipwarden_proxy_dropped_total{reason="reply_budget"}`)
	t.Logf("100 forged INVITEs: %d replies, %v dropped over budget", got, dropped)
	if got > 64 || dropped < float64(100-got) {
		t.Errorf("100 forged INVITEs got %d replies (%v counted over budget)", got, dropped)
	}
}

// TestNoCDRPerChallenge: each challenged INVITE of a digest trunk wrote a
// "blocked" CDR row, so forged INVITEs filled the CDR store. Now they are
// counted (and sampled into an event), never written one row each.
func TestNoCDRPerChallenge(t *testing.T) {
	e := testbed.StartEdge(t, dgTrunk("127.0.0.1:{{.SIPPort}}"), testbed.FreePort(t), nil)
	victim := testbed.NewRawUA(t, "udp", "127.0.0.65")
	for i := range 5 {
		victim.Send(e.SIPAddr(), dgInvite(victim, e.SIPAddr(), fmt.Sprintf("cdr-%d", i)))
		if m := victim.Recv(2 * time.Second); m == nil || m.Code != 407 {
			t.Fatalf("INVITE %d: %v", i, m)
		}
	}
	if v := e.Metric(`sipwarden_proxy_unauthenticated_calls_total{reason="challenge",trunk="phones"}`); v != 5 {
		t.Errorf("unauthenticated INVITEs counted: %v, want 5", v)
	}
	e.Stop()
	if n := testbed.CountDisposition(e.CDRs(), cdr.Blocked); n != 0 {
		t.Errorf("%d CDRs for 5 challenges, want 0", n)
	}
}
