package e2e

import (
	"github.com/sipwarden/sipwarden/test/testbed"

	"context"
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	sipgosip "github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/sipwarden/sipwarden/internal/auth"
)

// digestConfig has three digest trunks found by domain (no fixed address),
// each offering one algorithm, so that sipgo's client (which answers the
// first challenge) is tested with MD5, SHA-256 and SHA-512-256.
const digestConfig = `
listen: [udp://127.0.0.1:{{.SIPPort}}]
admin: {listen: "127.0.0.1:{{.AdminPort}}"}
storage: {path: "{{.Dir}}/data"}
log: {level: info}
sip: {drain_timeout: 1s}
flood: {enabled: false}
upstreams:
  - name: pbx
    targets: ["udp://127.0.0.3:{{.PBXPort}}"]
auth:
  bruteforce: {source_account_failures: 3, unknown_accounts: 5, source_failures: 100}
trunks:
{{range $alg, $acct := .Extra}}  - name: t-{{$alg}}
    auth: digest
    realm: {{$alg}}.example.test
    algorithms: [{{$alg}}]
    upstream: pbx
    accounts:
{{$acct}}{{end}}`

const (
	e2eUser = "1001"
	e2ePass = "gR8%xk2Lq!vT9#mZ"
)

// TestDigestRegisterSipgo: sipgo's client registers with digest through
// sipwarden with each algorithm (the REGISTER reaches the PBX only after
// authentication, or is answered by sipwarden's registrar); a wrong password and an unknown username get the same
// answer; password guessing and enumeration get their sources banned.
func TestDigestRegisterSipgo(t *testing.T) {
	pbxPort := testbed.FreePort(t)
	var registered atomic.Int32
	pbxUA, err := sipgo.NewUA()
	if err != nil {
		t.Fatal(err)
	}
	defer pbxUA.Close()
	srv, err := sipgo.NewServer(pbxUA)
	if err != nil {
		t.Fatal(err)
	}
	srv.OnRegister(func(req *sipgosip.Request, tx sipgosip.ServerTransaction) {
		// Only authenticated REGISTERs get here (counted below), and the
		// credentials for sipwarden's realm end at sipwarden.
		if req.GetHeader("Authorization") != nil {
			t.Errorf("sipwarden's realm credentials reached the PBX:\n%s", req)
		}
		registered.Add(1)
		_ = tx.Respond(sipgosip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = srv.ListenAndServe(ctx, "udp", fmt.Sprintf("127.0.0.3:%d", pbxPort)) }()

	algs := map[string]auth.Algorithm{"MD5": auth.MD5, "SHA-256": auth.SHA256, "SHA-512-256": auth.SHA512256}
	accounts := map[string]any{}
	for name, alg := range algs {
		accounts[name] = fmt.Sprintf("      - {username: %q, ha1: {%s: %s}}\n", e2eUser, alg.Key(),
			auth.HA1(alg, e2eUser, name+".example.test", e2ePass))
	}
	// The MD5 trunk has sipwarden's registrar: its REGISTER is answered
	// here and never reaches the PBX.
	accounts["MD5"] = accounts["MD5"].(string) + "    registrar: {enabled: true, max_expires: 10m}\n"
	e := testbed.StartEdge(t, digestConfig, pbxPort, accounts)

	// 1. sipgo registers with each algorithm, from its own address.
	i := 0
	for name := range algs {
		i++
		realm := name + ".example.test"
		ua, err := sipgo.NewUA()
		if err != nil {
			t.Fatal(err)
		}
		defer ua.Close()
		local := fmt.Sprintf("127.0.0.%d:%d", 20+i, testbed.FreePort(t))
		cl, err := sipgo.NewClient(ua, sipgo.WithClientConnectionAddr(local), sipgo.WithClientAddr(local))
		if err != nil {
			t.Fatal(err)
		}
		req := sipgosip.NewRequest(sipgosip.REGISTER, sipgosip.Uri{Host: realm})
		req.AppendHeader(sipgosip.NewHeader("To", fmt.Sprintf("<sip:%s@%s>", e2eUser, realm)))
		req.AppendHeader(sipgosip.NewHeader("From", fmt.Sprintf("<sip:%s@%s>;tag=r%d", e2eUser, realm, i)))
		req.AppendHeader(sipgosip.NewHeader("Contact", fmt.Sprintf("<sip:%s@%s>", e2eUser, local)))
		req.SetDestination(e.SIPAddr())
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		res, err := cl.Do(rctx, req)
		if err != nil {
			rcancel()
			t.Fatalf("%s: first REGISTER: %v", name, err)
		}
		if res.StatusCode != 401 || len(res.GetHeaders("WWW-Authenticate")) != 1 ||
			!strings.Contains(res.GetHeader("WWW-Authenticate").Value(), "algorithm="+name+",") {
			rcancel()
			t.Fatalf("%s: challenge:\n%s", name, res)
		}
		res, err = cl.DoDigestAuth(rctx, req, res, sipgo.DigestAuth{Username: e2eUser, Password: e2ePass})
		rcancel()
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("%s: authenticated REGISTER: %v %v", name, err, res)
		}
		if name == "MD5" {
			c := res.GetHeader("Contact")
			if c == nil || c.Value() != fmt.Sprintf("<sip:%s@%s>;expires=600", e2eUser, local) {
				t.Fatalf("registrar's 200 OK:\n%s", res)
			}
		}
	}
	if registered.Load() != 2 {
		t.Fatalf("the PBX saw %d REGISTERs, want 2 (the third trunk has sipwarden's registrar)", registered.Load())
	}
	if v := e.Metric(`sipwarden_registrar_bindings`); v != 1 {
		t.Errorf("bindings: %v, want 1", v)
	}

	// 2. A wrong password and an unknown username get the same answer.
	realm := "SHA-256.example.test"
	// send sends a REGISTER, reads the challenge and sends the REGISTER
	// with credentials; attempt also reads the answer to that.
	send := func(ua *testbed.RawUA, user, pass string, cseq int) {
		t.Helper()
		reg := func(authz string, n int) string {
			return fmt.Sprintf("REGISTER sip:%s SIP/2.0\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-%s-%d-%d\nMax-Forwards: 70\n"+
				"From: <sip:%s@%s>;tag=a%d\nTo: <sip:%s@%s>\nCall-ID: %s-%d@x\nCSeq: %d REGISTER\n%sContent-Length: 0\n\n",
				realm, ua.LocalAddr(), user, cseq, n, user, realm, cseq, user, realm, user, cseq, n, authz)
		}
		ua.Send(e.SIPAddr(), reg("", 1))
		ch := ua.Recv(2 * time.Second)
		if ch == nil || ch.Code != 401 {
			t.Fatalf("no challenge: %v", ch)
		}
		c, err := digest.ParseChallenge(ch.Get("WWW-Authenticate"))
		if err != nil {
			t.Fatal(err)
		}
		cred, err := digest.Digest(c, digest.Options{Method: "REGISTER", URI: "sip:" + realm, Username: user, Password: pass, Count: 1})
		if err != nil {
			t.Fatal(err)
		}
		ua.Send(e.SIPAddr(), reg("Authorization: "+cred.String()+"\n", 2))
	}
	attempt := func(ua *testbed.RawUA, user, pass string, cseq int) *testbed.RawMsg {
		t.Helper()
		send(ua, user, pass, cseq)
		return ua.Recv(2 * time.Second)
	}
	// dropped: the REGISTER with credentials got a drop verdict (no answer,
	// ever) for reason, and nothing came back.
	dropped := func(ua *testbed.RawUA, reason, what string) {
		t.Helper()
		waitSum(t, e, 1, "sipwarden_chain_verdicts_total", `action="drop"`, `reason="`+reason+`"`, `stage="auth"`)
		if m := ua.Recv(time.Millisecond); m != nil {
			t.Fatalf("%s answered: %s", what, m.Raw)
		}
	}
	nonce := regexp.MustCompile(`nonce="[^"]+"|tag=[^;\s]+|branch=[^;\s]+|Call-ID: \S+|CSeq: \d+|sip:\w+@|a\d+`)
	shape := func(m *testbed.RawMsg) string {
		if m == nil {
			return "<nothing>"
		}
		return nonce.ReplaceAllString(m.Raw, "*")
	}
	prober := testbed.NewRawUA(t, "udp", "127.0.0.31")
	wrong := attempt(prober, e2eUser, "Wrong-password-99", 1)
	unknown := attempt(prober, "4711", "Wrong-password-99", 2)
	if wrong == nil || wrong.Code != 401 || shape(wrong) != shape(unknown) {
		t.Fatalf("a wrong password and an unknown user are told apart:\n%s\n---\n%s", shape(wrong), shape(unknown))
	}

	// 3. Password guessing: the 3rd wrong password from one address is
	// dropped and the address banned (no answer to anything from then on).
	guesser := testbed.NewRawUA(t, "udp", "127.0.0.32")
	for n := 1; n <= 2; n++ {
		if m := attempt(guesser, e2eUser, fmt.Sprintf("Guess-number-%04d", n), n); m == nil || m.Code != 401 {
			t.Fatalf("guess %d: %v", n, m)
		}
	}
	send(guesser, e2eUser, "Guess-number-0003", 3)
	dropped(guesser, "auth_bruteforce", "3rd guess")
	blocked := `sipwarden_transport_dropped_total{reason="blocked",transport="UDP"}`
	blockedBefore := e.Metric(blocked)
	guesser.Send(e.SIPAddr(), "OPTIONS sip:"+realm+" SIP/2.0\nVia: SIP/2.0/UDP "+guesser.LocalAddr()+";branch=z9hG4bK-o\nFrom: <sip:x@y>;tag=1\nTo: <sip:x@y>\nCall-ID: o@x\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n")
	waitMetric(t, e, blocked, blockedBefore+1) // dropped at the gate
	if m := guesser.Recv(time.Millisecond); m != nil {
		t.Fatalf("a banned address got an answer: %s", m.Raw)
	}
	if v := e.Metric(`sipwarden_bruteforce_bans_total{reason="auth_bruteforce"}`); v != 1 {
		t.Errorf("auth_bruteforce bans: %v, want 1", v)
	}

	// 4. Enumeration: the 5th unknown username from one address bans it.
	enum := testbed.NewRawUA(t, "udp", "127.0.0.33")
	for n := 1; n <= 4; n++ {
		if m := attempt(enum, fmt.Sprintf("%d", 3000+n), "Whatever-pass-1", n); m == nil || m.Code != 401 {
			t.Fatalf("probe %d: %v", n, m)
		}
	}
	send(enum, "3005", "Whatever-pass-1", 5)
	dropped(enum, "auth_enumeration", "5th probe")
	if v := e.Metric(`sipwarden_bruteforce_bans_total{reason="auth_enumeration"}`); v != 1 {
		t.Errorf("auth_enumeration bans: %v, want 1", v)
	}
	if v := e.Metric(`sipwarden_auth_requests_total{result="success",trunk="t-SHA-256"}`); v != 1 {
		t.Errorf("successes of t-SHA-256: %v, want 1", v)
	}

	// 5. The registrar's binding survives a restart (storage.path/registrar.db).
	e.Stop()
	e2 := e.Restart()
	if v := e2.Metric(`sipwarden_registrar_bindings`); v != 1 {
		t.Errorf("bindings after a restart: %v, want 1", v)
	}
}
