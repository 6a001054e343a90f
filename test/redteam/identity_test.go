package redteam

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/auth"
	"github.com/sipwarden/sipwarden/internal/shaken"
	"github.com/sipwarden/sipwarden/test/testbed"
)

// rawPBX is a PBX that only listens: what sipwarden forwards to it.
type rawPBX struct {
	t    *testing.T
	conn *net.UDPConn
	port int
}

func newRawPBX(t *testing.T) *rawPBX {
	t.Helper()
	port := testbed.FreePort(t)
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.3"), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawPBX{t: t, conn: c, port: port}
}

// nextInvite returns the next INVITE that reaches the PBX (nil after 3 s).
func (p *rawPBX) nextInvite() *testbed.RawMsg {
	buf := make([]byte, 65536)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		_ = p.conn.SetReadDeadline(deadline)
		n, _, err := p.conn.ReadFromUDP(buf)
		if err != nil {
			return nil
		}
		if m := testbed.ParseRaw(buf[:n]); m.Method == "INVITE" {
			return m
		}
	}
	return nil
}

// invite is an INVITE from ua to the edge with the From number and the
// extra header lines given.
func invite(ua *testbed.RawUA, edge, ruriHost, callID, from string, cseq int, extra ...string) string {
	h := ""
	for _, x := range extra {
		h += x + "\n"
	}
	return fmt.Sprintf(`INVITE sip:+15559870002@%[2]s SIP/2.0
Via: %[1]s
From: <sip:%[4]s@%[2]s>;tag=f-%[3]s
To: <sip:+15559870002@%[2]s>
Call-ID: %[3]s
CSeq: %[5]d INVITE
Contact: <sip:caller@%[6]s>
Max-Forwards: 70
%[7]sContent-Length: 0

`, ua.Via(fmt.Sprintf("z9hG4bK-%s-%d", callID, cseq)), ruriHost, callID, from, cseq, ua.LocalAddr(), h)
}

// response waits for the first response above 100 to callID (nil after 3 s).
func response(ua *testbed.RawUA, callID string) *testbed.RawMsg {
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		m := ua.Recv(time.Until(deadline))
		if m == nil {
			return nil
		}
		if m.Get("Call-ID") == callID && m.Code > 100 {
			return m
		}
	}
	return nil
}

const identityConfig = `
listen: [udp://127.0.0.1:{{.SIPPort}}]
admin: {listen: "127.0.0.1:{{.AdminPort}}"}
storage: {path: "{{.Dir}}/data"}
log: {level: info}
sip: {drain_timeout: 1s}
upstreams:
  - {name: pbx, targets: ["udp://127.0.0.3:{{.PBXPort}}"]}
trunks:
  - {name: acme, allow: [127.0.0.2/32], upstream: pbx, numbers: ["+15551230000/4"]}
`

// TestForgedPAIFromTrunkReachesPBX: a customer trunk puts a
// P-Asserted-Identity (and P-Preferred-Identity, Diversion,
// Remote-Party-ID) of somebody else's number on its call; the PBX trusts
// asserted identities (RFC 3325) and shows or bills the forged one. A
// trunk is outside the trust domain unless it says trust_identity: true:
// those headers never reach the PBX, the caller's own From does.
func TestForgedPAIFromTrunkReachesPBX(t *testing.T) {
	pbx := newRawPBX(t)
	e := testbed.StartEdge(t, identityConfig, pbx.port, nil)
	acme := testbed.NewRawUA(t, "udp", "127.0.0.2")
	acme.Send(e.SIPAddr(), invite(acme, e.SIPAddr(), "127.0.0.1", "forged-pai", "+15551230001", 1,
		"P-Asserted-Identity: \"Bank\" <sip:+18005550199@bank.example>",
		"P-Asserted-Identity: <tel:+18005550199>",
		"P-Preferred-Identity: <sip:+18005550199@bank.example>",
		"Diversion: <sip:+18005550100@bank.example>;reason=unconditional",
		"Remote-Party-ID: \"Bank\" <sip:+18005550199@bank.example>;party=calling;screen=yes"))
	m := pbx.nextInvite()
	if m == nil {
		t.Fatal("the call did not reach the PBX")
	}
	for _, h := range []string{"p-asserted-identity", "p-preferred-identity", "diversion", "remote-party-id"} {
		if v := m.Headers[h]; len(v) > 0 {
			t.Errorf("%s from an untrusted trunk reached the PBX: %q", h, v)
		}
	}
	if strings.Contains(m.Raw, "+18005550") {
		t.Errorf("the forged number reached the PBX:\n%s", m.Raw)
	}
	if !strings.Contains(m.Get("From"), "+15551230001") {
		t.Errorf("From %q, want the caller's own", m.Get("From"))
	}
}

var proxyChallenge = regexp.MustCompile(`realm="([^"]+)".*nonce="([^"]+)"`)

// TestDigestAccountClaimsAnotherDID: a phone account of a hosted PBX
// (digest) calls with the number of another customer as caller ID; the
// carrier behind the PBX signs or shows it as that customer. An account
// calls only with its own numbers (here the trunk's, as the account has
// none of its own): 403, and the call never reaches the PBX; a call with
// its own number goes through.
func TestDigestAccountClaimsAnotherDID(t *testing.T) {
	const realm, user, pass = "phones.example.test", "1001", "gR8%xk2Lq!vT9#mZ"
	cfg := identityConfig + `  - name: phones
    auth: digest
    realm: phones.example.test
    algorithms: [MD5]
    upstream: pbx
    numbers: ["+15557770000/2"]
    accounts:
      - {username: "1001", ha1: {md5: ` + auth.HA1(auth.MD5, user, realm, pass) + `}}
`
	pbx := newRawPBX(t)
	e := testbed.StartEdge(t, cfg, pbx.port, nil)
	phone := testbed.NewRawUA(t, "udp", "127.0.0.20")
	h := func(s string) string { x := md5.Sum([]byte(s)); return hex.EncodeToString(x[:]) }
	call := func(callID, from string) *testbed.RawMsg {
		t.Helper()
		phone.Send(e.SIPAddr(), invite(phone, e.SIPAddr(), realm, callID, from, 1))
		ch := response(phone, callID)
		if ch == nil || ch.Code != 407 {
			t.Fatalf("%s: first INVITE: %+v", callID, ch)
		}
		phone.Send(e.SIPAddr(), fmt.Sprintf("ACK sip:+15559870002@%s SIP/2.0\nVia: %s\nFrom: <sip:%s@%s>;tag=f-%s\nTo: %s\nCall-ID: %s\nCSeq: 1 ACK\nMax-Forwards: 70\nContent-Length: 0\n\n",
			realm, phone.Via(fmt.Sprintf("z9hG4bK-%s-1", callID)), from, realm, callID, ch.Get("To"), callID))
		c := proxyChallenge.FindStringSubmatch(ch.Get("Proxy-Authenticate"))
		if c == nil {
			t.Fatalf("challenge %q", ch.Get("Proxy-Authenticate"))
		}
		uri := "sip:+15559870002@" + realm
		resp := h(h(user+":"+realm+":"+pass) + ":" + c[2] + ":00000001:c0ffee:auth:" + h("INVITE:"+uri))
		authz := fmt.Sprintf("Proxy-Authorization: Digest username=%q, realm=%q, nonce=%q, uri=%q, response=%q, algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c0ffee\"",
			user, realm, c[2], uri, resp)
		phone.Send(e.SIPAddr(), invite(phone, e.SIPAddr(), realm, callID, from, 2, authz))
		return response(phone, callID)
	}
	// another customer's DID (acme's)
	r := call("claims-acme", "+15551230001")
	if r == nil || r.Code != 403 {
		t.Errorf("a call with another customer's number: %+v, want 403", r)
	}
	// the sentinel: a call with the account's own number reaches the PBX,
	// and it is the first INVITE the PBX sees
	call("own-number", "+15557770042") // the PBX does not answer: no final response
	m := pbx.nextInvite()
	if m == nil || m.Get("Call-ID") != "own-number" {
		t.Fatalf("the first INVITE at the PBX: %+v, want the call with the account's own number", m)
	}
}

// newCertServer serves the certificate chain of the test PKI over HTTPS (x5u).
func newCertServer(t *testing.T, chain []byte) *httptest.Server {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(chain) }))
	t.Cleanup(srv.Close)
	return srv
}

// TestVerstatOnUnsignedPAI: a carrier's call carries a PASSporT whose orig
// is the From number, and an unsigned P-Asserted-Identity of another
// number; the PBX shows the P-Asserted-Identity with the verified mark
// sipwarden put there. verstat goes on the identity that verified
// (ATIS-1000074): the From; the unsigned P-Asserted-Identity gets none.
func TestVerstatOnUnsignedPAI(t *testing.T) {
	dir := t.TempDir()
	pki, err := shaken.NewTestPKI(shaken.TestPKIOptions{SPC: "709J"})
	if err != nil {
		t.Fatal(err)
	}
	srv := newCertServer(t, pki.ChainPEM())
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("SSL_CERT_FILE", write("https.pem", shaken.CertPEM(srv.Certificate())))
	keyPEM, _ := shaken.KeyPEM(pki.LeafKey)
	cfg := identityConfig + `  - {name: carrier, allow: [127.0.0.4/32], upstream: pbx}
shaken:
  trust_anchors: "{{index .Extra "root"}}"
  fetch_budget: 2s
  relax_x5u_for_tests: true
  signers: [{name: main, key: "{{index .Extra "key"}}", x5u: "{{index .Extra "x5u"}}"}]
  trunks:
    - {trunk: carrier, verify: mark}
`
	extra := map[string]any{"root": write("root.pem", shaken.CertPEM(pki.Root)), "key": write("sp.key", keyPEM), "x5u": srv.URL + "/sp.pem"}
	pbx := newRawPBX(t)
	e := testbed.StartEdge(t, cfg, pbx.port, extra)
	signer, err := shaken.NewSigner(pki.LeafKey, srv.URL+"/sp.pem", true)
	if err != nil {
		t.Fatal(err)
	}
	carrier := testbed.NewRawUA(t, "udp", "127.0.0.4")
	check := func(callID string) {
		t.Helper()
		sg, err := signer.SignCall("15551230001", []string{"15559870002"}, "A", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		carrier.Send(e.SIPAddr(), invite(carrier, e.SIPAddr(), "127.0.0.1", callID, "+15551230001", 1,
			"P-Asserted-Identity: <sip:+18005550199@carrier.example>", "Identity: "+sg.Identity))
		m := pbx.nextInvite()
		if m == nil || m.Get("Call-ID") != callID {
			t.Fatalf("%s: the call did not reach the PBX: %+v", callID, m)
		}
		for _, pai := range m.Headers["p-asserted-identity"] {
			if strings.Contains(pai, "verstat") {
				t.Errorf("%s: verstat on the unsigned P-Asserted-Identity: %q", callID, pai)
			}
		}
		if !strings.Contains(m.Get("From"), "verstat=TN-Validation-Passed") {
			t.Errorf("%s: From %q, want the verstat of the PASSporT that matched it", callID, m.Get("From"))
		}
	}
	check("carrier-untrusted")
	// the same from a carrier whose asserted identities are trusted: the
	// P-Asserted-Identity goes on, without a verstat nobody earned
	e.Reload(strings.Replace(cfg, "{name: carrier, allow: [127.0.0.4/32], upstream: pbx}",
		"{name: carrier, allow: [127.0.0.4/32], upstream: pbx, trust_identity: true}", 1), extra)
	e.WaitLog("configuration reloaded", 1)
	check("carrier-trusted")
}

// TestOwnPASSporTPastTheSigner: a customer of a signing trunk sends more
// Identity headers of its own than the edits of one request can remove;
// those left over reached the carrier, next to no signature of ours (the
// edits were full) or instead of it. Such a request is refused (403), and
// a call with none gets exactly one Identity: ours.
func TestOwnPASSporTPastTheSigner(t *testing.T) {
	dir := t.TempDir()
	pki, err := shaken.NewTestPKI(shaken.TestPKIOptions{SPC: "709J"})
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := shaken.KeyPEM(pki.LeafKey)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := identityConfig + `shaken:
  trust_anchors: "{{index .Extra "root"}}"
  relax_x5u_for_tests: true
  signers: [{name: main, key: "{{index .Extra "key"}}", x5u: "https://cert.example.org/sp.pem"}]
  trunks:
    - {trunk: acme, sign: main}
`
	pbx := newRawPBX(t)
	e := testbed.StartEdge(t, cfg, pbx.port, map[string]any{"root": write("root.pem", shaken.CertPEM(pki.Root)), "key": write("sp.key", keyPEM)})
	acme := testbed.NewRawUA(t, "udp", "127.0.0.2")
	forged := make([]string, 17)
	for i := range forged {
		forged[i] = fmt.Sprintf("Identity: eyJhbGciOiJFUzI1NiJ9.forged%d.c2ln;info=<https://evil.example/x.pem>;alg=ES256;ppt=shaken", i)
	}
	acme.Send(e.SIPAddr(), invite(acme, e.SIPAddr(), "127.0.0.1", "own-passports", "+15551230001", 1, forged...))
	if r := response(acme, "own-passports"); r == nil || r.Code != 403 {
		t.Errorf("%d Identity headers of the customer's own: %+v, want 403", len(forged), r)
	}
	acme.Send(e.SIPAddr(), invite(acme, e.SIPAddr(), "127.0.0.1", "plain-call", "+15551230001", 1))
	m := pbx.nextInvite()
	if m == nil || m.Get("Call-ID") != "plain-call" {
		t.Fatalf("the first INVITE at the PBX: %+v, want the plain call", m)
	}
	if ids := m.Headers["identity"]; len(ids) != 1 || strings.Contains(ids[0], "forged") {
		t.Fatalf("Identity headers at the PBX: %q, want ours only", ids)
	}
}

// TestForgedPAIInReInvite: the same forged P-Asserted-Identity, sent by a
// trunk in a re-INVITE of an answered call, where the PBX reads it as the
// caller's new asserted identity. In-dialog requests of a trunk outside
// the trust domain lose their identity headers too.
func TestForgedPAIInReInvite(t *testing.T) {
	pbx := newRawPBX(t)
	e := testbed.StartEdge(t, identityConfig, pbx.port, nil)
	acme := testbed.NewRawUA(t, "udp", "127.0.0.2")
	acme.Send(e.SIPAddr(), invite(acme, e.SIPAddr(), "127.0.0.1", "reinvite", "+15551230001", 1))
	in := pbx.nextInvite()
	if in == nil {
		t.Fatal("the call did not reach the PBX")
	}
	// the PBX answers 200 with its tag and Contact
	contact := fmt.Sprintf("<sip:pbx@%s>", pbx.conn.LocalAddr())
	var b strings.Builder
	b.WriteString("SIP/2.0 200 OK\r\n")
	for _, v := range in.Headers["via"] {
		fmt.Fprintf(&b, "Via: %s\r\n", v)
	}
	for _, v := range in.Headers["record-route"] {
		fmt.Fprintf(&b, "Record-Route: %s\r\n", v)
	}
	fmt.Fprintf(&b, "From: %s\r\nTo: %s;tag=pbx-1\r\nCall-ID: %s\r\nCSeq: %s\r\nContact: %s\r\nContent-Length: 0\r\n\r\n",
		in.Get("From"), in.Get("To"), in.Get("Call-ID"), in.Get("CSeq"), contact)
	edgeAddr, _ := net.ResolveUDPAddr("udp", e.SIPAddr())
	if _, err := pbx.conn.WriteToUDP([]byte(b.String()), edgeAddr); err != nil {
		t.Fatal(err)
	}
	ok := response(acme, "reinvite")
	if ok == nil || ok.Code != 200 {
		t.Fatalf("the caller got %+v, want the 200", ok)
	}
	route := ""
	if rr := ok.Headers["record-route"]; len(rr) > 0 {
		route = "Route: " + strings.Join(rr, ", ") + "\n"
	}
	target := strings.Trim(ok.Get("Contact"), "<>")
	inDialog := func(method string, cseq int, extra string) string {
		return fmt.Sprintf("%s %s SIP/2.0\nVia: %s\n%sFrom: <sip:+15551230001@127.0.0.1>;tag=f-reinvite\nTo: %s\nCall-ID: reinvite\nCSeq: %d %s\nContact: <sip:caller@%s>\nMax-Forwards: 70\n%sContent-Length: 0\n\n",
			method, target, acme.Via(fmt.Sprintf("z9hG4bK-reinvite-%s-%d", method, cseq)), route, ok.Get("To"), cseq, method, acme.LocalAddr(), extra)
	}
	acme.Send(e.SIPAddr(), inDialog("ACK", 1, ""))
	acme.Send(e.SIPAddr(), inDialog("INVITE", 2, "P-Asserted-Identity: \"Bank\" <sip:+18005550199@bank.example>\nDiversion: <sip:+18005550100@bank.example>\n"))
	re := pbx.nextInvite()
	for re != nil && strings.HasPrefix(re.Get("CSeq"), "1 ") { // a retransmission of the first
		re = pbx.nextInvite()
	}
	if re == nil || re.Get("Call-ID") != "reinvite" || !strings.HasPrefix(re.Get("CSeq"), "2 ") {
		t.Fatalf("the re-INVITE did not reach the PBX: %+v", re)
	}
	if strings.Contains(re.Raw, "+18005550") {
		t.Fatalf("the forged identity of the re-INVITE reached the PBX:\n%s", re.Raw)
	}
}
