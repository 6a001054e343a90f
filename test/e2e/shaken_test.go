package e2e

import (
	"github.com/sipwarden/sipwarden/test/testbed"

	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/cdr"
	"github.com/sipwarden/sipwarden/internal/shaken"
)

// shakenConfig: acme (127.0.0.2) is signed; carrier (127.0.0.4) is verified
// and marked; strict (127.0.0.5) is verified and refused on failure.
const shakenConfig = `
listen: [udp://127.0.0.1:{{.SIPPort}}]
admin: {listen: "127.0.0.1:{{.AdminPort}}"}
storage: {path: "{{.Dir}}/data"}
log: {level: info}
sip: {drain_timeout: 1s}
upstreams:
  - {name: pbx, targets: ["udp://127.0.0.3:{{.PBXPort}}"]}
trunks:
  - {name: acme, allow: [127.0.0.2/32], upstream: pbx, numbers: ["+15551230000/4"]}
  - {name: carrier, allow: [127.0.0.4/32], upstream: pbx}
  - {name: strict, allow: [127.0.0.5/32], upstream: pbx}
shaken:
  trust_anchors: "{{index .Extra "root"}}"
  fetch_budget: 300ms
  relax_x5u_for_tests: true
  signers: [{name: main, key: "{{index .Extra "key"}}", x5u: "{{index .Extra "x5u"}}"}]
  trunks:
    - {trunk: acme, sign: main}
    - {trunk: carrier, verify: mark}
    - {trunk: strict, verify: reject}
`

// TestShaken runs STIR/SHAKEN through the binary: calls from a trunk leave
// signed (A for its own number, B for another), calls from a carrier reach
// the PBX with verstat, a tampered Identity is marked or refused as
// configured (and the CDR says why), and an x5u that does not answer never
// holds a call longer than the fetch budget.
func TestShaken(t *testing.T) {
	dir := t.TempDir()
	pki, err := shaken.NewTestPKI(shaken.TestPKIOptions{SPC: "709J"})
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow.pem" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		_, _ = w.Write(pki.ChainPEM())
	}))
	defer srv.Close()
	defer close(release)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyPEM, _ := shaken.KeyPEM(pki.LeafKey)
	x5u := srv.URL + "/sp.pem"
	// sipwarden trusts the test HTTPS server through its system roots
	t.Setenv("SSL_CERT_FILE", write("https.pem", shaken.CertPEM(srv.Certificate())))
	pbxPort := testbed.FreePort(t)
	pbx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.3"), Port: pbxPort})
	if err != nil {
		t.Fatal(err)
	}
	defer pbx.Close()
	e := testbed.StartEdge(t, shakenConfig, pbxPort, map[string]any{
		"root": write("root.pem", shaken.CertPEM(pki.Root)), "key": write("sp.key", keyPEM), "x5u": x5u})

	// received returns the INVITE of callID that reached the PBX (nil after 3 s).
	received := func(callID string) *testbed.RawMsg {
		t.Helper()
		buf := make([]byte, 65536)
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			_ = pbx.SetReadDeadline(deadline)
			n, _, err := pbx.ReadFromUDP(buf)
			if err != nil {
				return nil
			}
			if m := testbed.ParseRaw(buf[:n]); m.Method == "INVITE" && m.Get("Call-ID") == callID {
				return m
			}
		}
		return nil
	}
	send := func(ua *testbed.RawUA, callID, from, identity string) {
		t.Helper()
		extra := ""
		if identity != "" {
			extra = "Identity: " + identity + "\n"
		}
		ua.Send(e.SIPAddr(), fmt.Sprintf(`INVITE sip:+15559870002@127.0.0.1 SIP/2.0
Via: SIP/2.0/UDP %s;branch=z9hG4bK-%s;rport
From: <sip:%s@%s>;tag=f-%s
To: <sip:+15559870002@127.0.0.1>
Call-ID: %s
CSeq: 1 INVITE
Contact: <sip:caller@%s>
Max-Forwards: 70
%sContent-Length: 0

`, ua.LocalAddr(), callID, from, ua.IP, callID, callID, ua.LocalAddr(), extra))
	}
	verifier, err := shaken.NewVerifier(shaken.VerifierConfig{Roots: pki.Roots(), Certs: mustStatic(t, pki)})
	if err != nil {
		t.Fatal(err)
	}
	attestOf := func(m *testbed.RawMsg) string {
		t.Helper()
		id, err := shaken.ParseIdentity([]byte(m.Get("Identity")))
		if err != nil {
			t.Fatalf("Identity %q: %v", m.Get("Identity"), err)
		}
		vals := [][]byte{[]byte(m.Get("Identity"))}
		if r := verifier.Verify(vals, shaken.Call{Orig: []string{"15551230001", "15559990001"}, Dest: []string{"15559870002"}}); !r.Passed() {
			t.Fatalf("the Identity sipwarden added does not verify: %+v", r)
		}
		p, _ := shaken.ParsePASSporT(id.Token)
		return p.Claims.Attest
	}

	acme := testbed.NewRawUA(t, "udp", "127.0.0.2")
	send(acme, "own", "+15551230001", "")
	if m := received("own"); m == nil || attestOf(m) != "A" || m.Get("Date") == "" {
		t.Fatalf("own number: %+v", m)
	}
	send(acme, "other", "+15559990001", "forged.identity.token;info=<https://evil.example/x>")
	if m := received("other"); m == nil || attestOf(m) != "B" || len(m.Headers["identity"]) != 1 {
		t.Fatalf("another number: %+v", m)
	}

	sign := func() string {
		s, err := shaken.NewSigner(pki.LeafKey, x5u, true)
		if err != nil {
			t.Fatal(err)
		}
		sg, err := s.SignCall("15551230001", []string{"15559870002"}, "A", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		return sg.Identity
	}
	tamper := func(id string) string {
		i := strings.IndexByte(id, ';') - 4
		c := byte('A')
		if id[i] == 'A' {
			c = 'B'
		}
		return id[:i] + string(c) + id[i+1:]
	}
	carrier := testbed.NewRawUA(t, "udp", "127.0.0.4")
	send(carrier, "valid", "+15551230001;verstat=TN-Validation-Passed", sign())
	if m := received("valid"); m == nil || !strings.Contains(m.Get("From"), ";verstat=TN-Validation-Passed@") || strings.Count(m.Get("From"), "verstat") != 1 {
		t.Fatalf("valid identity: %+v", m)
	}
	send(carrier, "tampered", "+15551230001", tamper(sign()))
	if m := received("tampered"); m == nil || !strings.Contains(m.Get("From"), "verstat=TN-Validation-Failed") ||
		m.Get("Reason") != `SIP ;cause=438 ;text="Invalid Identity Header"` {
		t.Fatalf("tampered identity, marked: %+v", m)
	}
	// an x5u that never answers: the call goes on after the budget (300ms), marked 436
	start := time.Now()
	s, _ := shaken.NewSigner(pki.LeafKey, srv.URL+"/slow.pem", true)
	slow, _ := s.SignCall("15551230001", []string{"15559870002"}, "A", "", nil)
	send(carrier, "slow", "+15551230001", slow.Identity)
	m := received("slow")
	if el := time.Since(start); m == nil || el > 1500*time.Millisecond || !strings.Contains(m.Get("Reason"), "cause=436") {
		t.Fatalf("unreachable x5u: after %v: %+v", el, m)
	}

	strict := testbed.NewRawUA(t, "udp", "127.0.0.5")
	send(strict, "refused", "+15551230001", tamper(sign()))
	var resp *testbed.RawMsg
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
		if r := strict.Recv(time.Until(deadline)); r != nil && r.Code > 100 {
			resp = r
			break
		}
	}
	if resp == nil || resp.Code != 438 || !strings.Contains(resp.Get("Warning"), "Invalid Identity Header") {
		t.Fatalf("tampered identity, strict: %+v", resp)
	}
	// A valid call from the same trunk after it reaches the PBX; the
	// refused one, answered before it was sent, would have come first.
	send(strict, "after-refused", "+15551230001", sign())
	buf := make([]byte, 65536)
	for deadline := time.Now().Add(3 * time.Second); ; {
		_ = pbx.SetReadDeadline(deadline)
		n, _, err := pbx.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("the valid call after the refused one did not reach the PBX: %v", err)
		}
		if m := testbed.ParseRaw(buf[:n]); m.Method == "INVITE" && m.Get("Call-ID") == "refused" {
			t.Fatal("a refused call reached the PBX")
		} else if m.Method == "INVITE" && m.Get("Call-ID") == "after-refused" {
			break
		}
	}
	if v := e.Metric(`sipwarden_shaken_signed_total{attest="A",trunk="acme"}`); v != 1 {
		t.Errorf("signed A metric = %v", v)
	}
	e.Stop()
	found := false
	identity := map[string]string{}
	for _, r := range e.CDRs() {
		identity[r.CallID] = r.Identity
		if r.CallID == "refused" && r.Disposition == cdr.Blocked && r.Stage == "shaken" && r.Reason == "shaken_bad_signature" && r.FinalCode == 438 {
			found = true
		}
	}
	if !found {
		t.Fatalf("no CDR for the refused call: %+v", e.CDRs())
	}
	// every CDR says what STIR/SHAKEN made of the call
	for callID, want := range map[string]string{"own": "signed:A", "other": "signed:B", "valid": "TN-Validation-Passed;attest=A;spc=709J",
		"tampered": "TN-Validation-Failed:438:bad_signature;spc=709J", "refused": "TN-Validation-Failed:438:bad_signature;spc=709J"} {
		if identity[callID] != want {
			t.Errorf("CDR of %s: identity %q, want %q", callID, identity[callID], want)
		}
	}
}

func mustStatic(t *testing.T, pki *shaken.TestPKI) shaken.StaticCerts {
	certs, err := shaken.ParseCertificates(pki.ChainPEM())
	if err != nil {
		t.Fatal(err)
	}
	return shaken.StaticCerts{Entry: &shaken.CertEntry{Certs: certs}}
}

// TestShakenSipp: the same through SIPp on both sides. Ten calls from a
// trunk that owns the calling number leave with a full-form SHAKEN Identity
// (SIPp's PBX refuses a call without one) attested A; ten calls from a
// carrier with a valid Identity reach SIPp's PBX with
// verstat=TN-Validation-Passed (it refuses a call without it).
func TestShakenSipp(t *testing.T) {
	dir := t.TempDir()
	pki, err := shaken.NewTestPKI(shaken.TestPKIOptions{SPC: "709J"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(pki.ChainPEM()) }))
	defer srv.Close()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyPEM, _ := shaken.KeyPEM(pki.LeafKey)
	x5u := srv.URL + "/sp.pem"
	t.Setenv("SSL_CERT_FILE", write("https.pem", shaken.CertPEM(srv.Certificate())))
	pbxPort := testbed.FreePort(t)
	e := testbed.StartEdge(t, shakenConfig, pbxPort, map[string]any{
		"root": write("root.pem", shaken.CertPEM(pki.Root)), "key": write("sp.key", keyPEM), "x5u": x5u})
	const calls = 10

	// pbxResult waits for SIPp's PBX to end and reads its final screen: its
	// scenario fails a call whose INVITE lacks what it checks.
	pbxResult := func(u *testbed.UAS, screen string) testbed.SippResult {
		t.Helper()
		select {
		case <-u.Done:
		case <-time.After(15 * time.Second):
			t.Fatal("the PBX did not end after its calls")
		}
		return testbed.ReadScreen(screen)
	}

	// Outbound: acme owns +15551230001.
	screen := filepath.Join(dir, "pbx1.txt")
	u := testbed.StartUAS(t, "uas_identity.xml", pbxPort, "-m", fmt.Sprint(calls), "-trace_screen", "-screen_file", screen)
	res := testbed.RunSipp(t, 60*time.Second, testbed.UACArgs("uac_caller.xml", e.SIPAddr(), calls, 5, "-key", "caller", "+15551230001")...)
	if res.Successful != calls {
		t.Fatalf("signed calls through SIPp: %s\n%s\nPBX:\n%s", testbed.FmtCalls(res), res.Screen, u.Out.String())
	}
	if v := e.Metric(`sipwarden_shaken_signed_total{attest="A",trunk="acme"}`); v != calls {
		t.Errorf("calls signed with attestation A: %v, want %d", v, calls)
	}
	if r := pbxResult(u, screen); r.Successful != calls || r.Failed != 0 {
		t.Fatalf("the PBX's checks of the Identity header: %s\n%s", testbed.FmtCalls(r), r.Screen)
	}

	// Inbound: the carrier's calls carry a valid Identity (iat is fresh for 60 s).
	s, err := shaken.NewSigner(pki.LeafKey, x5u, true)
	if err != nil {
		t.Fatal(err)
	}
	sg, err := s.SignCall("15559990001", []string{"15551230001"}, "A", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	screen = filepath.Join(dir, "pbx2.txt")
	u = testbed.StartUAS(t, "uas_verstat.xml", pbxPort, "-m", fmt.Sprint(calls), "-trace_screen", "-screen_file", screen)
	args := testbed.UACArgs("uac_identity.xml", e.SIPAddr(), calls, 5, "-key", "caller", "+15559990001", "-key", "identity", sg.Identity)
	for i := range args {
		if args[i] == "127.0.0.2" { // the carrier's address instead of acme's
			args[i] = "127.0.0.4"
		}
	}
	res = testbed.RunSipp(t, 60*time.Second, args...)
	if res.Successful != calls {
		t.Fatalf("verified calls through SIPp: %s\n%s\nPBX:\n%s", testbed.FmtCalls(res), res.Screen, u.Out.String())
	}
	if r := pbxResult(u, screen); r.Successful != calls || r.Failed != 0 {
		t.Fatalf("the PBX's checks of verstat: %s\n%s", testbed.FmtCalls(r), r.Screen)
	}
}
