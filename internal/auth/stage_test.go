package auth

import (
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/acl"
	"github.com/sipwarden/sipwarden/internal/banlist"
	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/events"
	"github.com/sipwarden/sipwarden/internal/sip"
)

const (
	pass1001 = "gR8%xk2Lq!vT9#mZ"
	pass1002 = "7yH#e2Wq!pL0$vN4"
)

func stageYAML() string {
	acct := func(user, pass string, shaOnly bool, extra string) string {
		var b strings.Builder
		fmt.Fprintf(&b, "      - username: %q\n        ha1: {", user)
		sep := ""
		for _, alg := range Algorithms {
			if alg == MD5 && shaOnly {
				continue
			}
			fmt.Fprintf(&b, "%s%s: %s", sep, alg.Key(), HA1(alg, user, testRealm, pass))
			sep = ", "
		}
		b.WriteString("}\n")
		if shaOnly {
			b.WriteString("        sha_only: true\n")
		}
		b.WriteString(extra)
		return b.String()
	}
	return `listen: [udp://127.0.0.1:5060, tls://127.0.0.1:5061]
tls: {cert: c.pem, key: k.pem}
upstreams:
  - {name: pbx, targets: [udp://127.0.0.1:5080]}
auth:
  bruteforce: {source_account_failures: 3, source_failures: 8, unknown_accounts: 5, account_failures: 6, lockout: 10m}
trunks:
  - name: phones
    auth: digest
    realm: sip.example.com
    algorithms: [SHA-512-256, SHA-256, MD5]
    upstream: pbx
    accounts:
` + acct("1001", pass1001, false, "") + acct("1002", pass1002, true, "        register_from: [10.0.0.0/8]\n") + `
  - name: secure
    auth: digest
    realm: secure.example.com
    allow: [198.51.100.0/24]
    require_tls: true
    upstream: pbx
    accounts:
      - {username: pbx, ha1: {md5: ` + HA1(MD5, "pbx", "secure.example.com", "x") + `, sha-256: ` + HA1(SHA256, "pbx", "secure.example.com", "x") + `, sha-512-256: ` + HA1(SHA512256, "pbx", "secure.example.com", "x") + `}}
  - {name: ipt, allow: [192.0.2.0/24], upstream: pbx}
`
}

type fixture struct {
	t     *testing.T
	cfg   *config.Config
	st    *State
	stage *Stage
	bans  *banlist.List
	sub   *events.Subscription
	now   time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	cfg, err := config.Parse([]byte(stageYAML()), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, cfg: cfg, now: time.Unix(1_800_000_000, 0)}
	f.bans = banlist.New(nil, banlist.Options{Now: func() time.Time { return f.now }})
	f.st = NewState(cfg, f.bans, nil)
	bus := events.NewBus()
	f.sub = bus.Subscribe("test", 1024)
	f.stage, err = NewStage(cfg, f.st, bus)
	if err != nil {
		t.Fatal(err)
	}
	f.stage.now = func() time.Time { return f.now }
	return f
}

var cseq int

// msg builds a request; auth is a full header line or "".
func msg(t testing.TB, method, ruri, user, auth string) *sip.Msg {
	t.Helper()
	cseq++
	to := "<sip:" + user + "@sip.example.com>"
	switch method {
	case "REGISTER":
	case "BYE":
		to = "<sip:+15550001111@sip.example.com>;tag=callee"
	default:
		to = "<sip:+15550001111@sip.example.com>"
	}
	s := fmt.Sprintf("%s %s SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bK%d\r\nMax-Forwards: 70\r\n"+
		"From: <sip:%s@sip.example.com>;tag=f%d\r\nTo: %s\r\nCall-ID: c%d@x\r\nCSeq: %d %s\r\n",
		method, ruri, cseq, user, cseq, to, cseq, cseq, method)
	if auth != "" {
		s += auth + "\r\n"
	}
	s += "Content-Length: 0\r\n\r\n"
	var m sip.Msg
	if err := m.Parse([]byte(s)); err != nil {
		t.Fatal(err)
	}
	return &m
}

func (f *fixture) handle(m *sip.Msg, src string, tr sip.Transport, trunk string) (chain.Verdict, *chain.Request) {
	req := &chain.Request{Msg: m, Src: netip.MustParseAddrPort(src), Transport: tr, Config: f.cfg,
		PeerKind: chain.PeerTrunk, Trunk: f.cfg.Trunk(trunk), InDialog: len(m.ToTag()) > 0}
	return f.stage.Handle(req), req
}

// challengeFor sends a request without credentials and returns the nonce of the challenge.
func (f *fixture) challengeFor(method, ruri, user, src string) (chain.Verdict, string) {
	f.t.Helper()
	v, _ := f.handle(msg(f.t, method, ruri, user, ""), src, sip.UDP, "phones")
	m := nonceRe.FindStringSubmatch(v.Header)
	if m == nil {
		f.t.Fatalf("no challenge: %+v", v)
	}
	return v, m[1]
}

func authLine(method string, alg Algorithm, user, pass, nonce, uri string, nc uint32) string {
	h := "Authorization: "
	if method != "REGISTER" {
		h = "Proxy-Authorization: "
	}
	return h + clientAuth(alg, user, pass, nonce, method, uri, nc)
}

func TestStageChallengeAndSuccess(t *testing.T) {
	f := newFixture(t)
	const src, ruri = "203.0.113.7:5060", "sip:sip.example.com"
	v, nonce := f.challengeFor("REGISTER", ruri, "1001", src)
	lines := strings.Split(v.Header, "\r\n")
	if v.Action != chain.Reply || v.Code != 401 || v.Reason != "challenge" || len(lines) != 3 ||
		!strings.HasPrefix(lines[0], `WWW-Authenticate: Digest realm="sip.example.com", nonce="`) ||
		!strings.Contains(lines[0], "algorithm=SHA-512-256") || !strings.Contains(lines[2], "algorithm=MD5") {
		t.Fatalf("REGISTER challenge: %+v", v)
	}
	// A SHA-only account is never offered MD5.
	if v, _ := f.challengeFor("REGISTER", ruri, "1002", src); strings.Contains(v.Header, "MD5") {
		t.Fatalf("SHA-only account offered MD5: %s", v.Header)
	}
	iv, _ := f.handle(msg(t, "INVITE", "sip:+15550001111@sip.example.com", "1001", ""), src, sip.UDP, "phones")
	if iv.Code != 407 || !strings.HasPrefix(iv.Header, "Proxy-Authenticate: Digest ") {
		t.Fatalf("INVITE challenge: %+v", iv)
	}
	for i, alg := range []Algorithm{SHA512256, SHA256, MD5} {
		hdr := authLine("REGISTER", alg, "1001", pass1001, nonce, ruri, uint32(i+1))
		v, req := f.handle(msg(t, "REGISTER", ruri, "1001", hdr), src, sip.UDP, "phones")
		if v.Action != chain.Continue || req.Account != "1001" {
			t.Fatalf("%s: %+v", alg, v)
		}
	}
	// The INVITE takes its credentials from Proxy-Authorization.
	inv := "sip:+15550001111@sip.example.com"
	_, nonce = f.challengeFor("INVITE", inv, "1001", src)
	if v, _ := f.handle(msg(t, "INVITE", inv, "1001", authLine("INVITE", SHA256, "1001", pass1001, nonce, inv, 1)), src, sip.UDP, "phones"); v.Action != chain.Continue {
		t.Fatalf("authenticated INVITE: %+v", v)
	}
	// Replay of a captured header: refused with a new challenge, stale=true.
	captured := authLine("INVITE", SHA256, "1001", pass1001, nonce, inv, 1)
	v, _ = f.handle(msg(t, "INVITE", inv, "1001", captured), src, sip.UDP, "phones")
	if v.Code != 407 || v.Reason != "replay" || !strings.Contains(v.Header, "stale=true") {
		t.Fatalf("replay: %+v", v)
	}
	// Expired nonce, right password: stale=true; no failure counted.
	f.now = f.now.Add(f.cfg.Auth.NonceLifetime + time.Second)
	v, _ = f.handle(msg(t, "INVITE", inv, "1001", authLine("INVITE", SHA256, "1001", pass1001, nonce, inv, 2)), src, sip.UDP, "phones")
	if v.Code != 407 || v.Reason != "stale_nonce" || !strings.Contains(v.Header, "stale=true") {
		t.Fatalf("stale: %+v", v)
	}
	// In-dialog requests, ACK and CANCEL pass without credentials.
	bye := msg(t, "BYE", "sip:1001@10.1.1.1", "1001", "")
	if v, _ := f.handle(bye, src, sip.UDP, "phones"); v.Action != chain.Continue {
		t.Fatalf("BYE: %+v", v)
	}
}

func TestStageUnknownAccountLooksLikeWrongPassword(t *testing.T) {
	f := newFixture(t)
	const ruri = "sip:sip.example.com"
	strip := regexp.MustCompile(`nonce="[^"]+"`)
	answer := func(user, pass, src string) chain.Verdict {
		_, nonce := f.challengeFor("REGISTER", ruri, user, src)
		v, _ := f.handle(msg(t, "REGISTER", ruri, user, authLine("REGISTER", SHA256, user, pass, nonce, ruri, 1)), src, sip.UDP, "phones")
		v.Header = strip.ReplaceAllString(v.Header, `nonce="-"`)
		v.Reason = ""
		return v
	}
	// Wrong passwords of an account offered MD5 (1001) and of a SHA-only
	// one (1002), and unknown names: each unknown name gets exactly the
	// answer of one of the accounts.
	wrong := map[string]bool{
		fmt.Sprint(answer("1001", "Wrong-password-12", "203.0.113.1:5060")): true,
		fmt.Sprint(answer("1002", "Wrong-password-12", "203.0.113.1:5060")): true,
	}
	for i := range 4 {
		unknown := answer(fmt.Sprintf("47%02d", i), "Wrong-password-12", fmt.Sprintf("203.0.113.%d:5060", 100+i))
		if !wrong[fmt.Sprint(unknown)] || unknown.Code != 401 || strings.Contains(unknown.Header, "stale") {
			t.Fatalf("an unknown account is told apart from a wrong password:\n%+v\n%v", unknown, wrong)
		}
	}
	// Unknown names are offered the same algorithms as accounts, in the
	// same proportion: over many names both offers appear.
	offers := map[string]int{}
	for i := range 200 {
		v, _ := f.challengeFor("REGISTER", ruri, fmt.Sprintf("%d", 5000+i), "203.0.113.3:5060")
		offers[fmt.Sprint(strings.Count(v.Header, "\r\n")+1)]++
	}
	if offers["2"] == 0 || offers["3"] == 0 {
		t.Fatalf("offers to unknown names: %v", offers)
	}
}

func TestStageBruteForceBansAndLocks(t *testing.T) {
	f := newFixture(t)
	const ruri = "sip:sip.example.com"
	guess := func(user, pass, src string) chain.Verdict {
		_, nonce := f.challengeFor("REGISTER", ruri, user, src)
		v, _ := f.handle(msg(t, "REGISTER", ruri, user, authLine("REGISTER", SHA256, user, pass, nonce, ruri, 1)), src, sip.UDP, "phones")
		return v
	}
	// Challenges alone never count: 50 REGISTERs without credentials.
	for range 50 {
		f.challengeFor("REGISTER", ruri, "1001", "203.0.113.9:5060")
	}
	if f.bans.Blocked(netip.MustParseAddr("203.0.113.9")) {
		t.Fatal("plain challenges got the source banned")
	}
	// Password guessing: the 3rd failure from one source bans it.
	attacker := "198.18.0.1:5060"
	for i := range 2 {
		if v := guess("1001", fmt.Sprintf("Guess-number-%04d", i), attacker); v.Code != 401 {
			t.Fatalf("guess %d: %+v", i+1, v)
		}
	}
	if v := guess("1001", "Guess-number-0003", attacker); v.Action != chain.Drop || v.Reason != "auth_bruteforce" {
		t.Fatalf("3rd guess: %+v", v)
	}
	if b, ok := f.bans.Lookup(netip.MustParseAddr("198.18.0.1")); !ok || b.Reason != "auth_bruteforce" || b.Source != "auth" {
		t.Fatalf("ban: %+v %v", b, ok)
	}
	// Enumeration: the 5th unknown username bans the source.
	enum := "198.18.0.2:5060"
	var v chain.Verdict
	for i := range 5 {
		v = guess(fmt.Sprintf("%d", 2000+i), "Whatever-pass-123", enum)
	}
	if v.Action != chain.Drop || v.Reason != "auth_enumeration" || !f.bans.Blocked(netip.MustParseAddr("198.18.0.2")) {
		t.Fatalf("enumeration: %+v", v)
	}
	// Distributed guessing: 6 failures of 1002 from 6 sources lock it; its
	// home address (where it registered before) keeps working.
	home := "10.0.0.5:5060"
	if v := guess("1002", pass1002, home); v.Action != chain.Continue {
		t.Fatalf("1002 from home: %+v", v)
	}
	for i := range 6 {
		guess("1002", "Nope-nope-nope-9", fmt.Sprintf("198.18.1.%d:5060", i))
	}
	if !f.st.Guard.Locked("phones", "1002") {
		t.Fatal("1002 not locked after distributed failures")
	}
	if v := guess("1002", pass1002, "10.9.9.9:5060"); v.Code != 401 || v.Reason != "auth_failed" {
		t.Fatalf("locked account from a new source with the right password: %+v", v)
	}
	if v := guess("1002", pass1002, home); v.Action != chain.Continue {
		t.Fatalf("locked account from its known source: %+v", v)
	}
	kinds := map[events.Kind]int{}
	for len(f.sub.C) > 0 {
		kinds[(<-f.sub.C).Kind]++
	}
	if kinds[events.AccountLocked] != 1 || kinds[events.AuthFailure] < 10 || kinds[events.AuthSuccess] != 2 {
		t.Fatalf("events: %v", kinds)
	}
}

func TestStageRegisterFromAndTLS(t *testing.T) {
	f := newFixture(t)
	const ruri = "sip:sip.example.com"
	src := "203.0.113.50:5060" // outside 1002's register_from
	_, nonce := f.challengeFor("REGISTER", ruri, "1002", src)
	v, _ := f.handle(msg(t, "REGISTER", ruri, "1002", authLine("REGISTER", SHA256, "1002", pass1002, nonce, ruri, 1)), src, sip.UDP, "phones")
	if v.Code != 401 || v.Reason != "auth_failed" {
		t.Fatalf("REGISTER from outside register_from with the right password: %+v", v)
	}
	// but an INVITE from there is fine (register_from is about registrations)
	inv := "sip:+15550001111@sip.example.com"
	_, nonce = f.challengeFor("INVITE", inv, "1002", src)
	if v, _ := f.handle(msg(t, "INVITE", inv, "1002", authLine("INVITE", SHA256, "1002", pass1002, nonce, inv, 1)), src, sip.UDP, "phones"); v.Action != chain.Continue {
		t.Fatalf("INVITE: %+v", v)
	}
	m := msg(t, "REGISTER", "sip:secure.example.com", "pbx", "")
	if v, _ := f.handle(m, "198.51.100.1:5060", sip.UDP, "secure"); v.Code != 403 || v.Reason != "tls_required" || v.Warning == "" {
		t.Fatalf("require_tls over UDP: %+v", v)
	}
	if v, _ := f.handle(m, "198.51.100.1:5060", sip.TLS, "secure"); v.Code != 401 {
		t.Fatalf("require_tls over TLS: %+v", v)
	}
	// IP trunks are none of this stage's business.
	if v, _ := f.handle(m, "192.0.2.1:5060", sip.UDP, "ipt"); v.Action != chain.Continue {
		t.Fatalf("ip trunk: %+v", v)
	}
}

// TestStageNoPasswordOracle: whatever the nonce, the lockout or the source
// restriction, the right password and a wrong one get the same answer
// unless everything else is in order: the nonce is checked before the
// response, the lockout and register_from before the response is looked at.
func TestStageNoPasswordOracle(t *testing.T) {
	const ruri = "sip:sip.example.com"
	invented := strings.Repeat("A", NonceLen)
	strip := regexp.MustCompile(`nonce="[^"]+"`)
	tests := []struct {
		name  string
		user  string
		pass  string // the right one
		src   string
		nonce func(f *fixture, src string) string
		setup func(f *fixture)
		want  string // reason of the verdict for both passwords
	}{
		{"invented nonce", "1001", pass1001, "203.0.113.70:5060",
			func(*fixture, string) string { return invented }, nil, "stale_nonce"},
		{"nonce of another source", "1001", pass1001, "203.0.113.71:5060",
			func(f *fixture, _ string) string {
				_, n := f.challengeFor("REGISTER", ruri, "1001", "203.0.113.99:5060")
				return n
			}, nil, "stale_nonce"},
		{"expired nonce", "1001", pass1001, "203.0.113.72:5060",
			func(f *fixture, src string) string {
				_, n := f.challengeFor("REGISTER", ruri, "1001", src)
				f.now = f.now.Add(f.cfg.Auth.NonceLifetime + time.Second)
				return n
			}, nil, "stale_nonce"},
		{"outside register_from, invented nonce", "1002", pass1002, "203.0.113.73:5060",
			func(*fixture, string) string { return invented }, nil, "stale_nonce"},
		{"outside register_from", "1002", pass1002, "203.0.113.74:5060",
			func(f *fixture, src string) string { _, n := f.challengeFor("REGISTER", ruri, "1002", src); return n }, nil, "auth_failed"},
		{"locked account", "1001", pass1001, "203.0.113.75:5060",
			func(f *fixture, src string) string { _, n := f.challengeFor("REGISTER", ruri, "1001", src); return n },
			func(f *fixture) { lockAccount(f, "1001") }, "auth_failed"},
		{"locked account, invented nonce", "1001", pass1001, "203.0.113.76:5060",
			func(*fixture, string) string { return invented },
			func(f *fixture) { lockAccount(f, "1001") }, "stale_nonce"},
	}
	for _, tc := range tests {
		var got [2]string
		for i, pass := range []string{tc.pass, "Wrong-password-77"} {
			f := newFixture(t)
			if tc.setup != nil {
				tc.setup(f)
			}
			nonce := tc.nonce(f, tc.src)
			v, req := f.handle(msg(t, "REGISTER", ruri, tc.user, authLine("REGISTER", SHA256, tc.user, pass, nonce, ruri, 1)), tc.src, sip.UDP, "phones")
			if v.Action != chain.Reply || v.Reason != tc.want || req.Account != "" {
				t.Errorf("%s, password %d: %+v, want a reply %s", tc.name, i, v, tc.want)
			}
			v.Header = strip.ReplaceAllString(v.Header, `nonce="-"`)
			got[i] = fmt.Sprint(v)
		}
		if got[0] != got[1] {
			t.Errorf("%s: the right and a wrong password are told apart:\n%s\n%s", tc.name, got[0], got[1])
		}
	}
}

// TestStageRefusalBeforeResponse: a locked account's right answer is
// refused without being looked at, so its nonce-count is not used up: once
// the lockout is lifted, the same answer succeeds.
func TestStageRefusalBeforeResponse(t *testing.T) {
	f := newFixture(t)
	const ruri, src = "sip:sip.example.com", "203.0.113.80:5060"
	lockAccount(f, "1001")
	_, nonce := f.challengeFor("REGISTER", ruri, "1001", src)
	hdr := authLine("REGISTER", SHA256, "1001", pass1001, nonce, ruri, 1)
	if v, _ := f.handle(msg(t, "REGISTER", ruri, "1001", hdr), src, sip.UDP, "phones"); v.Reason != "auth_failed" {
		t.Fatalf("locked: %+v", v)
	}
	f.st.Guard.Unlock("phones", "1001")
	if v, req := f.handle(msg(t, "REGISTER", ruri, "1001", hdr), src, sip.UDP, "phones"); v.Action != chain.Continue || req.Account != "1001" {
		t.Fatalf("after the lockout: %+v", v)
	}
}

// lockAccount locks an account of the fixture through distributed failures
// (account_failures: 6, from 6 sources).
func lockAccount(f *fixture, user string) {
	f.t.Helper()
	const ruri = "sip:sip.example.com"
	for i := range 6 {
		src := fmt.Sprintf("198.18.7.%d:5060", i)
		_, nonce := f.challengeFor("REGISTER", ruri, user, src)
		f.handle(msg(f.t, "REGISTER", ruri, user, authLine("REGISTER", SHA256, user, "Nope-nope-nope-9", nonce, ruri, 1)), src, sip.UDP, "phones")
	}
	if !f.st.Guard.Locked("phones", user) {
		f.t.Fatalf("%s not locked", user)
	}
}

func TestStageMalformedAndOtherRealms(t *testing.T) {
	f := newFixture(t)
	const ruri, src = "sip:sip.example.com", "203.0.113.60:5060"
	tests := []struct {
		name, hdr string
		code      uint16
		reason    string
	}{
		{"unparsable", `Authorization: Digest username="1001", realm="sip.example.com`, 400, "bad_credentials"},
		{"other realm only", `Authorization: Digest username="1001", realm="elsewhere", nonce="x", uri="sip:sip.example.com", response="00"`, 401, "challenge"},
		{"basic", `Authorization: Basic MTAwMTp4`, 401, "challenge"},
		{"no qop", `Authorization: Digest username="1001", realm="sip.example.com", nonce="x", uri="sip:sip.example.com", response="00"`, 400, "bad_credentials"},
	}
	for _, tc := range tests {
		v, _ := f.handle(msg(t, "REGISTER", ruri, "1001", tc.hdr), src, sip.UDP, "phones")
		if v.Code != tc.code || v.Reason != tc.reason {
			t.Errorf("%s: %+v", tc.name, v)
		}
	}
}

func TestStageRefusesWeakHA1(t *testing.T) {
	y := strings.Replace(stageYAML(), "{username: pbx, ha1: {md5: "+HA1(MD5, "pbx", "secure.example.com", "x"),
		"{username: pbx, ha1: {md5: "+HA1(MD5, "pbx", "secure.example.com", "password"), 1)
	cfg, err := config.Parse([]byte(y), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewStage(cfg, NewState(cfg, nil, nil), nil)
	if err == nil || !strings.Contains(err.Error(), `t.yaml:28: trunks[1].accounts[0]: account "pbx": its HA1 is that of a weak password (common_password)`) {
		t.Fatalf("got %v", err)
	}
}

// TestACLResolver: a digest trunk without allow prefixes is found by the
// domain of the Request-URI, then by the address that authenticated.
func TestACLResolver(t *testing.T) {
	f := newFixture(t)
	a, err := acl.NewStage(f.cfg, nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.SetResolver(f.stage.Resolve)
	run := func(m *sip.Msg, src string) (*chain.Request, chain.Verdict) {
		req := &chain.Request{Msg: m, Src: netip.MustParseAddrPort(src), Transport: sip.UDP, Config: f.cfg}
		v := a.Handle(req)
		return req, v
	}
	const phone = "203.0.113.77:5060"
	if req, v := run(msg(t, "REGISTER", "sip:SIP.Example.COM", "1001", ""), phone); v.Action != chain.Continue || req.Trunk.Name != "phones" {
		t.Fatalf("REGISTER to the domain: %+v", v)
	}
	if _, v := run(msg(t, "OPTIONS", "sip:100@203.0.113.1", "100", ""), phone); v.Action != chain.Drop {
		t.Fatalf("a scanner's OPTIONS to an address: %+v", v)
	}
	if _, v := run(msg(t, "REGISTER", "sip:secure.example.com", "pbx", ""), phone); v.Action != chain.Drop {
		t.Fatalf("a trunk with allow prefixes is not found by domain: %+v", v)
	}
	bye := msg(t, "BYE", "sip:pbx@127.0.0.1:5080", "1001", "")
	if _, v := run(bye, phone); v.Action != chain.Drop {
		t.Fatalf("BYE from a phone that never authenticated: %+v", v)
	}
	_, nonce := f.challengeFor("REGISTER", "sip:sip.example.com", "1001", phone)
	if v, _ := f.handle(msg(t, "REGISTER", "sip:sip.example.com", "1001", authLine("REGISTER", SHA256, "1001", pass1001, nonce, "sip:sip.example.com", 1)), phone, sip.UDP, "phones"); v.Action != chain.Continue {
		t.Fatalf("REGISTER: %+v", v)
	}
	if req, v := run(bye, phone); v.Action != chain.Continue || req.Trunk.Name != "phones" {
		t.Fatalf("BYE after the phone authenticated: %+v", v)
	}
	if n := testing.AllocsPerRun(100, func() {
		req := chain.Request{Msg: bye, Src: netip.MustParseAddrPort("203.0.113.78:5060"), Transport: sip.UDP}
		f.stage.Resolve(&req)
	}); n != 0 {
		t.Fatalf("%v allocations per resolve", n)
	}
}

func BenchmarkStageAuthenticatedRegister(b *testing.B) {
	for _, alg := range []Algorithm{MD5, SHA256} {
		b.Run(alg.String(), func(b *testing.B) {
			cfg, err := config.Parse([]byte(stageYAML()), "t.yaml")
			if err != nil {
				b.Fatal(err)
			}
			st := NewState(cfg, nil, nil)
			s, _ := NewStage(cfg, st, nil)
			src := netip.MustParseAddrPort("203.0.113.7:5060")
			nonce := string(st.Nonces.Append(nil, testRealm, src.Addr(), time.Now()))
			msgs := make([]*sip.Msg, 4096)
			for i := range msgs {
				msgs[i] = msg(b, "REGISTER", "sip:sip.example.com", "1001", authLine("REGISTER", alg, "1001", pass1001, nonce, "sip:sip.example.com", uint32(i+1)))
			}
			tr := cfg.Trunk("phones")
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				req := chain.Request{Msg: msgs[i%len(msgs)], Src: src, Transport: sip.UDP, PeerKind: chain.PeerTrunk, Trunk: tr}
				s.Handle(&req)
			}
		})
	}
}

// TestExampleBuilds: the digest example of the documentation builds a stage.
func TestExampleBuilds(t *testing.T) {
	b, err := os.ReadFile("../../examples/digest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(b, "digest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewStage(cfg, NewState(cfg, nil, nil), nil)
	if err != nil || !s.Enabled() {
		t.Fatalf("%v", err)
	}
}
