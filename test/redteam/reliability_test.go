package redteam

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/auth"
	"github.com/sipwarden/sipwarden/internal/cdr"
	"github.com/sipwarden/sipwarden/test/testbed"
)

// soakConfig: one IP trunk in front of the PBX, as bench/sipwarden.yaml:
// one SIPp caller places hundreds of calls per second from one address,
// which the default flood budgets would ban.
const soakConfig = `
listen: [udp://127.0.0.1:{{.SIPPort}}]
admin: {listen: "127.0.0.1:{{.AdminPort}}"}
storage: {path: "{{.Dir}}/data"}
log: {level: warn}
sip: {drain_timeout: {{index .Extra "drain"}}}
unknown_sources: drop
flood: {enabled: false}
upstreams:
  - name: pbx
    targets: ["udp://127.0.0.3:{{.PBXPort}}"]
trunks:
  - name: acme
    auth: ip
    allow: [127.0.0.2/32]
    upstream: pbx
    numbers: ["+15551230000/4"]
`

// waitMetric waits until sample reaches want (bounded by d).
func soakWaitMetric(t *testing.T, e *testbed.Edge, sample string, want float64, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		v := e.Metric(sample)
		if v == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v after %v, want %v", sample, v, d, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestSoakHeapReturnsToWarm: the memory of calls that have ended is given
// back. An attacker with a trunk (or just a busy day) places many short
// calls; every ended call used to stay reachable from the proxy's timer heap
// for the dialog timeout (2 h) with its copies of the messages, so memory
// grew with every call ever made until the process ran out. After 20,000
// calls and the RFC 3261 timers (64*T1 = 32 s), the heap must be back
// within 20 MB of its level after a warm-up.
//
// The heap is read from /metrics (go_memstats_heap_inuse_bytes) with the
// edge run at GOGC=10, so that garbage not yet collected is at most a tenth
// of the live heap in any sample.
func TestSoakHeapReturnsToWarm(t *testing.T) {
	testbed.RequireTool(t, "sipp", "sip-tester")
	const (
		warmCalls = 2000
		calls     = 20000
		rate      = 400
		slack     = 20 << 20
	)
	t.Setenv("GOGC", "10") // inherited by the edge process
	pbx := testbed.FreePort(t)
	testbed.StartUAS(t, "uas.xml", pbx)
	e := testbed.StartEdge(t, soakConfig, pbx, map[string]any{"drain": "1s"})
	place := func(n int) {
		t.Helper()
		res := testbed.RunSipp(t, time.Duration(n/rate+90)*time.Second,
			testbed.UACArgs("uac.xml", e.SIPAddr(), n, rate, "-l", strconv.Itoa(rate*4), "-d", "100")...)
		if res.Successful < n*999/1000 {
			t.Fatalf("calls: %s, want %d successful\n%s", testbed.FmtCalls(res), n, res.Screen)
		}
	}
	settle := func() float64 {
		t.Helper()
		// Timers D, H, J, K and the RFC 6026 waits: 32 s after the last
		// call, no transaction and no dialog may be left.
		soakWaitMetric(t, e, "sipwarden_proxy_dialogs", 0, 30*time.Second)
		soakWaitMetric(t, e, "sipwarden_proxy_transactions", 0, 60*time.Second)
		soakWaitMetric(t, e, "sipwarden_cdr_queue_depth", 0, 30*time.Second)
		return e.Metric("go_memstats_heap_inuse_bytes")
	}
	place(warmCalls)
	warm := settle()
	place(calls)
	after := settle()
	t.Logf("heap in use: warm %.1f MB, after %d calls and the timers %.1f MB", warm/(1<<20), calls, after/(1<<20))
	if warm <= 0 || after-warm > slack {
		t.Fatalf("heap in use grew from %.1f MB (warm) to %.1f MB after %d ended calls: ended calls are kept",
			warm/(1<<20), after/(1<<20), calls)
	}
}

// TestDrainEndsCallsWithByeBothWays: calls still up when the drain after
// SIGTERM ends used to be recorded as interrupted while neither side heard
// of it: the PBX kept them up, unmetered, with nobody in the path. Now each
// side gets a BYE in the dialog's terms (tags of its direction, Reason
// cause=503 "shutdown") and each CDR says interrupted.
func TestDrainEndsCallsWithByeBothWays(t *testing.T) {
	testbed.RequireTool(t, "sipp", "sip-tester")
	const calls = 50
	pbx := testbed.FreePort(t)
	uasScreen := filepath.Join(t.TempDir(), "uas-screen.txt")
	uas := testbed.StartUAS(t, "uas_held.xml", pbx, "-m", strconv.Itoa(calls), "-trace_screen", "-screen_file", uasScreen)
	e := testbed.StartEdge(t, soakConfig, pbx, map[string]any{"drain": "2s"})
	uac := make(chan testbed.SippResult, 1)
	go func() {
		uac <- testbed.RunSipp(t, 60*time.Second, testbed.UACArgs("uac_held.xml", e.SIPAddr(), calls, 50,
			"-l", strconv.Itoa(calls), "-recv_timeout", "20000")...)
	}()
	soakWaitMetric(t, e, "sipwarden_proxy_active_calls", calls, 30*time.Second)
	e.Stop() // SIGTERM: 2 s of drain, then the calls still up are ended
	res := <-uac
	if res.Successful != calls || res.Failed != 0 {
		t.Errorf("callers: %s, want %d that got the edge's BYE\n%s", testbed.FmtCalls(res), calls, res.Screen)
	}
	select {
	case <-uas.Done:
	case <-time.After(15 * time.Second):
		t.Fatal("the PBX's SIPp did not end its calls: not every call got a BYE towards the PBX")
	}
	if r := testbed.ReadScreen(uasScreen); r.Successful != calls || r.Failed != 0 {
		t.Errorf("PBX: %s, want %d that got the edge's BYE\n%s", testbed.FmtCalls(r), calls, r.Screen)
	}
	recs := e.CDRs()
	n := 0
	for _, r := range recs {
		if r.Disposition == cdr.Interrupted && r.Reason == "shutdown" {
			n++
		}
	}
	if len(recs) != calls || n != calls {
		t.Errorf("CDRs: %d, %d of them interrupted by the shutdown; want %d and %d", len(recs), n, calls, calls)
	}
}

// drainRegisterConfig: the IP trunk (whose call keeps the drain going) and
// a hosted trunk of phones that register with digest at sipwarden's
// registrar.
const drainRegisterConfig = soakConfig + `
  - name: phones
    auth: digest
    realm: phones.example.test
    domains: [127.0.0.1]
    algorithms: [MD5]
    upstream: pbx
    registrar: {enabled: true, max_contacts: 1}
    accounts:
      - {username: "2001", ha1: {md5: {{index .Extra "ha1"}}}}
`

// TestRegisterDuringDrainGets503: during the drain after SIGTERM a phone
// that registered (digest answered correctly) used to get 200 from the
// draining node, and so stayed bound to a node about to vanish; an OPTIONS
// ping saw a healthy node. Both now get 503 with Retry-After (so the peer
// turns to another node), and /readyz says why it fails.
func TestRegisterDuringDrainGets503(t *testing.T) {
	testbed.RequireTool(t, "sipp", "sip-tester")
	const realm, user, pass = "phones.example.test", "2001", "Kq7!vz2001#Lm2xR9"
	pbx := testbed.FreePort(t)
	testbed.StartUAS(t, "uas_held.xml", pbx)
	e := testbed.StartEdge(t, drainRegisterConfig, pbx, map[string]any{"drain": "4s", "ha1": auth.HA1(auth.MD5, user, realm, pass)})

	// A call up, so that the drain lasts.
	caller := testbed.NewRawUA(t, "udp", "127.0.0.2")
	ok := caller.Invite(e.SIPAddr(), "held-1")
	for ok.Code > 0 && ok.Code < 200 {
		if ok = caller.Recv(3 * time.Second); ok == nil {
			ok = &testbed.RawMsg{}
		}
	}
	if ok.Code != 200 {
		t.Fatalf("call before the drain: %d, want 200", ok.Code)
	}
	caller.Send(e.SIPAddr(), fmt.Sprintf(`ACK %s SIP/2.0
Via: %s
Route: %s
From: %s
To: %s
Call-ID: held-1
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

`, drainBetween(ok.Get("Contact"), "<", ">"), caller.Via("z9hG4bK-ack1"), ok.Get("Record-Route"), ok.Get("From"), ok.Get("To")))
	// The phone gets its challenge before the drain.
	phone := testbed.NewRawUA(t, "udp", "127.0.0.46")
	register := func(cseq int, authz string) *testbed.RawMsg {
		t.Helper()
		msg := fmt.Sprintf(`REGISTER sip:127.0.0.1 SIP/2.0
Via: %s
From: <sip:%s@127.0.0.1>;tag=reg-%d
To: <sip:%s@127.0.0.1>
Call-ID: reg-drain
CSeq: %d REGISTER
Contact: <sip:%s@%s>
Expires: 300
Max-Forwards: 70
%sContent-Length: 0

`, phone.Via(fmt.Sprintf("z9hG4bK-reg%d", cseq)), user, cseq, user, cseq, user, phone.LocalAddr(), authz)
		phone.Send(e.SIPAddr(), msg)
		r := phone.Recv(3 * time.Second)
		if r == nil {
			t.Fatalf("REGISTER %d: no answer", cseq)
		}
		return r
	}
	ch := register(1, "")
	nonce := drainBetween(ch.Get("WWW-Authenticate"), `nonce="`, `"`)
	if ch.Code != 401 || nonce == "" {
		t.Fatalf("first REGISTER: %d %q, want a 401 challenge", ch.Code, ch.Get("WWW-Authenticate"))
	}

	if err := e.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		code, body := drainGet(t, "http://"+e.Admin+"/readyz")
		if code == http.StatusServiceUnavailable {
			if !strings.Contains(body, "draining") {
				t.Errorf("/readyz while draining: %q, want the reason", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d after SIGTERM", code)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The answer to the challenge, during the drain.
	ha1 := auth.HA1(auth.MD5, user, realm, pass)
	ha2 := drainMD5("REGISTER:sip:127.0.0.1")
	cnonce, nc := "0a4f113b", "00000001"
	resp := drainMD5(ha1 + ":" + nonce + ":" + nc + ":" + cnonce + ":auth:" + ha2)
	authz := fmt.Sprintf("Authorization: Digest username=%q, realm=%q, nonce=%q, uri=\"sip:127.0.0.1\", response=%q, algorithm=MD5, qop=auth, nc=%s, cnonce=%q\n",
		user, realm, nonce, resp, nc, cnonce)
	if r := register(2, authz); r.Code != 503 || r.RetryAfter == "" {
		t.Errorf("authenticated REGISTER during the drain: %d (Retry-After %q), want 503 with Retry-After", r.Code, r.RetryAfter)
	}
	opt := fmt.Sprintf(`OPTIONS sip:127.0.0.1 SIP/2.0
Via: %s
From: <sip:ping@127.0.0.2>;tag=o1
To: <sip:127.0.0.1>
Call-ID: options-drain
CSeq: 1 OPTIONS
Max-Forwards: 70
Content-Length: 0

`, caller.Via("z9hG4bK-opt1"))
	caller.Send(e.SIPAddr(), opt)
	var r *testbed.RawMsg
	for r = caller.Recv(3 * time.Second); r != nil && r.Get("Call-ID") != "options-drain"; r = caller.Recv(3 * time.Second) {
	}
	if r == nil || r.Code != 503 || r.RetryAfter == "" {
		code := 0
		if r != nil {
			code = r.Code
		}
		t.Errorf("OPTIONS from the trunk during the drain: %d, want 503 with Retry-After", code)
	}
	select {
	case <-e.Done:
	case <-time.After(20 * time.Second):
		t.Fatal("the edge did not stop after its drain")
	}
}

func drainBetween(s, start, end string) string {
	_, rest, ok := strings.Cut(s, start)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, end)
	return v
}

func drainMD5(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

func drainGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
