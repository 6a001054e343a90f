package e2e

import (
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
	pbxPort := freePort(t)
	pbx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.3"), Port: pbxPort})
	if err != nil {
		t.Fatal(err)
	}
	defer pbx.Close()
	e := startEdge(t, shakenConfig, pbxPort, map[string]any{
		"root": write("root.pem", shaken.CertPEM(pki.Root)), "key": write("sp.key", keyPEM), "x5u": x5u})

	// received returns the INVITE of callID that reached the PBX (nil after 3 s).
	received := func(callID string) *rawMsg {
		t.Helper()
		buf := make([]byte, 65536)
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			_ = pbx.SetReadDeadline(deadline)
			n, _, err := pbx.ReadFromUDP(buf)
			if err != nil {
				return nil
			}
			if m := parseRaw(buf[:n]); m.method == "INVITE" && m.get("Call-ID") == callID {
				return m
			}
		}
		return nil
	}
	send := func(ua *rawUA, callID, from, identity string) {
		t.Helper()
		extra := ""
		if identity != "" {
			extra = "Identity: " + identity + "\n"
		}
		ua.send(e.sipAddr(), fmt.Sprintf(`INVITE sip:+15559870002@127.0.0.1 SIP/2.0
Via: SIP/2.0/UDP %s;branch=z9hG4bK-%s;rport
From: <sip:%s@%s>;tag=f-%s
To: <sip:+15559870002@127.0.0.1>
Call-ID: %s
CSeq: 1 INVITE
Contact: <sip:caller@%s>
Max-Forwards: 70
%sContent-Length: 0

`, ua.localAddr(), callID, from, ua.ip, callID, callID, ua.localAddr(), extra))
	}
	verifier, err := shaken.NewVerifier(shaken.VerifierConfig{Roots: pki.Roots(), Certs: mustStatic(t, pki)})
	if err != nil {
		t.Fatal(err)
	}
	attestOf := func(m *rawMsg) string {
		t.Helper()
		id, err := shaken.ParseIdentity([]byte(m.get("Identity")))
		if err != nil {
			t.Fatalf("Identity %q: %v", m.get("Identity"), err)
		}
		vals := [][]byte{[]byte(m.get("Identity"))}
		if r := verifier.Verify(vals, shaken.Call{Orig: []string{"15551230001", "15559990001"}, Dest: []string{"15559870002"}}); !r.Passed() {
			t.Fatalf("the Identity sipwarden added does not verify: %+v", r)
		}
		p, _ := shaken.ParsePASSporT(id.Token)
		return p.Claims.Attest
	}

	acme := newRawUA(t, "udp", "127.0.0.2")
	send(acme, "own", "+15551230001", "")
	if m := received("own"); m == nil || attestOf(m) != "A" || m.get("Date") == "" {
		t.Fatalf("own number: %+v", m)
	}
	send(acme, "other", "+15559990001", "forged.identity.token;info=<https://evil.example/x>")
	if m := received("other"); m == nil || attestOf(m) != "B" || len(m.headers["identity"]) != 1 {
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
	carrier := newRawUA(t, "udp", "127.0.0.4")
	send(carrier, "valid", "+15551230001;verstat=TN-Validation-Passed", sign())
	if m := received("valid"); m == nil || !strings.Contains(m.get("From"), ";verstat=TN-Validation-Passed@") || strings.Count(m.get("From"), "verstat") != 1 {
		t.Fatalf("valid identity: %+v", m)
	}
	send(carrier, "tampered", "+15551230001", tamper(sign()))
	if m := received("tampered"); m == nil || !strings.Contains(m.get("From"), "verstat=TN-Validation-Failed") ||
		m.get("Reason") != `SIP ;cause=438 ;text="Invalid Identity Header"` {
		t.Fatalf("tampered identity, marked: %+v", m)
	}
	// an x5u that never answers: the call goes on after the budget (300ms), marked 436
	start := time.Now()
	s, _ := shaken.NewSigner(pki.LeafKey, srv.URL+"/slow.pem", true)
	slow, _ := s.SignCall("15551230001", []string{"15559870002"}, "A", "", nil)
	send(carrier, "slow", "+15551230001", slow.Identity)
	m := received("slow")
	if el := time.Since(start); m == nil || el > 1500*time.Millisecond || !strings.Contains(m.get("Reason"), "cause=436") {
		t.Fatalf("unreachable x5u: after %v: %+v", el, m)
	}

	strict := newRawUA(t, "udp", "127.0.0.5")
	send(strict, "refused", "+15551230001", tamper(sign()))
	var resp *rawMsg
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
		if r := strict.recv(time.Until(deadline)); r != nil && r.code > 100 {
			resp = r
			break
		}
	}
	if resp == nil || resp.code != 438 || !strings.Contains(resp.get("Warning"), "Invalid Identity Header") {
		t.Fatalf("tampered identity, strict: %+v", resp)
	}
	if m := received("refused"); m != nil {
		t.Fatal("a refused call reached the PBX")
	}
	if v := e.metric(`sipwarden_shaken_signed_total{attest="A",trunk="acme"}`); v != 1 {
		t.Errorf("signed A metric = %v", v)
	}
	e.stop()
	found := false
	for _, r := range e.cdrs() {
		if r.CallID == "refused" && r.Disposition == cdr.Blocked && r.Stage == "shaken" && r.Reason == "shaken_bad_signature" && r.FinalCode == 438 {
			found = true
		}
	}
	if !found {
		t.Fatalf("no CDR for the refused call: %+v", e.cdrs())
	}
}

func mustStatic(t *testing.T, pki *shaken.TestPKI) shaken.StaticCerts {
	certs, err := shaken.ParseCertificates(pki.ChainPEM())
	if err != nil {
		t.Fatal(err)
	}
	return shaken.StaticCerts{Entry: &shaken.CertEntry{Certs: certs}}
}
