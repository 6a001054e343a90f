package e2e

import (
	"github.com/sipwarden/sipwarden/test/testbed"

	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"

	"github.com/sipwarden/sipwarden/internal/auth"
)

// hostedConfig is a hosted PBX: phones register with digest to sipwarden's
// registrar; the PBX behind it calls them at sip:user@phones.example.test.
const hostedConfig = `
listen: [udp://127.0.0.1:{{.SIPPort}}, tcp://127.0.0.1:{{.SIPPort}}]
admin: {listen: "127.0.0.1:{{.AdminPort}}"}
storage: {path: "{{.Dir}}/data"}
log: {level: info}
sip: {drain_timeout: 1s}
upstreams:
  - name: pbx
    targets: ["udp://127.0.0.3:{{.PBXPort}}"]
trunks:
  - name: phones
    auth: digest
    realm: phones.example.test
    algorithms: [MD5]
    upstream: pbx
    registrar: {enabled: true}
    accounts:
{{index .Extra "accounts"}}`

// TestCallToRegisteredPhone: phones register over UDP and over TCP through
// sipwarden's registrar; the PBX calls each at its address of record and
// the INVITE reaches the phone at the address (and on the very connection)
// it registered from, with its contact as Request-URI and without any
// credentials. A call to an account that is not registered gets 480.
func TestCallToRegisteredPhone(t *testing.T) {
	const realm = "phones.example.test"
	pbxPort := testbed.FreePort(t)
	pbxConn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.3"), Port: pbxPort})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pbxConn.Close() })
	pbx := &testbed.RawUA{T: t, Network: "udp", IP: "127.0.0.3", UDP: pbxConn}

	var accounts strings.Builder
	for _, u := range []string{"1001", "1002", "1003"} {
		fmt.Fprintf(&accounts, "      - {username: %q, ha1: {md5: %s}}\n", u, auth.HA1(auth.MD5, u, realm, e2ePass))
	}
	e := testbed.StartEdge(t, hostedConfig, pbxPort, map[string]any{"accounts": accounts.String()})

	phones := map[string]*testbed.RawUA{"1001": testbed.NewRawUA(t, "udp", "127.0.0.41"), "1002": testbed.NewRawUA(t, "tcp", "127.0.0.42")}
	for user, ph := range phones {
		registerDigest(t, ph, e.SIPAddr(), user, realm)
	}

	for user, ph := range phones {
		callID := "to-" + user
		pbx.Send(e.SIPAddr(), fmt.Sprintf(`INVITE sip:%[1]s@%[2]s SIP/2.0
Via: SIP/2.0/UDP 127.0.0.3:%[3]d;branch=z9hG4bK-%[4]s
From: <sip:pbx@127.0.0.3>;tag=p-%[4]s
To: <sip:%[1]s@%[2]s>
Call-ID: %[4]s
CSeq: 1 INVITE
Contact: <sip:pbx@127.0.0.3:%[3]d>
Max-Forwards: 70
Content-Length: 0

`, user, realm, pbxPort, callID))
		var inv *testbed.RawMsg
		deadline := time.Now().Add(3 * time.Second)
		for inv == nil && time.Now().Before(deadline) {
			if m := ph.Recv(time.Until(deadline)); m != nil && m.Method == "INVITE" {
				inv = m
			}
		}
		if inv == nil {
			t.Fatalf("phone %s (%s) got no INVITE", user, ph.Network)
		}
		want := fmt.Sprintf("INVITE sip:%s@%s;transport=%s SIP/2.0", user, ph.LocalAddr(), ph.Network)
		if first, _, _ := strings.Cut(inv.Raw, "\r\n"); first != want {
			t.Errorf("phone %s: request line %q, want %q (its contact)", user, first, want)
		}
		if inv.Get("Authorization") != "" || inv.Get("Proxy-Authorization") != "" {
			t.Errorf("phone %s: the INVITE carries credentials:\n%s", user, inv.Raw)
		}
		// The phone declines; the PBX hears it.
		ph.Send(e.SIPAddr(), responseTo(inv, 486, "Busy Here"))
		if m := waitCode(pbx, callID, 486); m == nil {
			t.Errorf("phone %s: the PBX did not get the 486", user)
		}
	}

	pbx.Send(e.SIPAddr(), fmt.Sprintf(`INVITE sip:1003@%[1]s SIP/2.0
Via: SIP/2.0/UDP 127.0.0.3:%[2]d;branch=z9hG4bK-nobody
From: <sip:pbx@127.0.0.3>;tag=p-nobody
To: <sip:1003@%[1]s>
Call-ID: nobody
CSeq: 1 INVITE
Max-Forwards: 70
Content-Length: 0

`, realm, pbxPort))
	if m := waitCode(pbx, "nobody", 480); m == nil {
		t.Errorf("a call to an account without a registration did not get 480")
	}
}

var challengeRe = regexp.MustCompile(`realm="([^"]+)".*nonce="([^"]+)"`)

// registerDigest registers ua as user with a contact of its own address,
// answering the MD5 challenge (qop=auth) by hand; it fails the test unless
// the registration succeeds.
func registerDigest(t *testing.T, ua *testbed.RawUA, target, user, realm string) {
	t.Helper()
	if ok := digestRegister(t, ua, target, user, realm, e2ePass); ok == nil || ok.Code != 200 {
		t.Fatalf("%s: authenticated REGISTER: %+v", user, ok)
	}
}

var regSeq atomic.Int32

// digestRegister sends a REGISTER, answers its challenge with pass and
// returns the response to the authenticated REGISTER (nil: none).
func digestRegister(t *testing.T, ua *testbed.RawUA, target, user, realm, pass string) *testbed.RawMsg {
	t.Helper()
	ua.Dial(target) // a stream UA's contact names its connection's own address
	contact := fmt.Sprintf("<sip:%s@%s;transport=%s>", user, ua.LocalAddr(), ua.Network)
	callID := fmt.Sprintf("reg-%s-%d", user, regSeq.Add(1))
	reg := func(cseq int, authz string) *testbed.RawMsg {
		ua.Send(target, fmt.Sprintf(`REGISTER sip:%[1]s SIP/2.0
Via: %[2]s
From: <sip:%[3]s@%[1]s>;tag=r-%[3]s
To: <sip:%[3]s@%[1]s>
Call-ID: %[7]s
CSeq: %[4]d REGISTER
Contact: %[5]s
Expires: 600
Max-Forwards: 70
%[6]sContent-Length: 0

`, realm, ua.Via(fmt.Sprintf("z9hG4bK-%s-%d", callID, cseq)), user, cseq, contact, authz, callID))
		return waitCode(ua, callID, 0)
	}
	ch := reg(1, "")
	if ch == nil || ch.Code != 401 {
		t.Fatalf("%s: first REGISTER: %+v", user, ch)
	}
	m := challengeRe.FindStringSubmatch(ch.Get("WWW-Authenticate"))
	if m == nil {
		t.Fatalf("%s: challenge %q", user, ch.Get("WWW-Authenticate"))
	}
	h := func(s string) string { x := md5.Sum([]byte(s)); return hex.EncodeToString(x[:]) }
	uri := "sip:" + realm
	ha1 := h(user + ":" + realm + ":" + pass)
	resp := h(ha1 + ":" + m[2] + ":00000001:c0ffee:auth:" + h("REGISTER:"+uri))
	authz := fmt.Sprintf("Authorization: Digest username=%q, realm=%q, nonce=%q, uri=%q, response=%q, algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c0ffee\"\n",
		user, realm, m[2], uri, resp)
	return reg(2, authz)
}

// waitCode waits for a response with Call-ID callID and code (0: any final
// or challenge response above 100).
func waitCode(ua *testbed.RawUA, callID string, code int) *testbed.RawMsg {
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		m := ua.Recv(time.Until(deadline))
		if m == nil {
			return nil
		}
		if m.Get("Call-ID") == callID && m.Code > 100 && (code == 0 || m.Code == code) {
			return m
		}
	}
	return nil
}

// responseTo builds a response to the request m (its Via, From, To with a
// tag, Call-ID and CSeq).
func responseTo(m *testbed.RawMsg, code int, reason string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "SIP/2.0 %d %s\n", code, reason)
	for _, v := range m.Headers["via"] {
		fmt.Fprintf(&b, "Via: %s\n", v)
	}
	fmt.Fprintf(&b, "From: %s\nTo: %s;tag=callee\nCall-ID: %s\nCSeq: %s\nContent-Length: 0\n\n",
		m.Get("From"), m.Get("To"), m.Get("Call-ID"), m.Get("CSeq"))
	return b.String()
}

// lockoutConfig: account 1002 may register only from 127.0.0.60; four
// failures of one account from anywhere lock it for 3 s (lockout_mode lock).
const lockoutConfig = hostedConfig + `
auth:
  bruteforce: {source_account_failures: 3, account_failures: 4, lockout: 3s, lockout_mode: lock}
`

// TestRegisterFromAndAccountLockout: the right password from outside an
// account's register_from is refused exactly like a wrong one; guessing one
// account's password from many addresses (each under the per-address ban)
// locks the account for the configured time, then it works again.
func TestRegisterFromAndAccountLockout(t *testing.T) {
	const realm = "phones.example.test"
	accounts := fmt.Sprintf("      - {username: \"1001\", ha1: {md5: %s}}\n      - {username: \"1002\", ha1: {md5: %s}, register_from: [127.0.0.60/32]}\n",
		auth.HA1(auth.MD5, "1001", realm, e2ePass), auth.HA1(auth.MD5, "1002", realm, e2ePass))
	e := testbed.StartEdge(t, lockoutConfig, testbed.FreePort(t), map[string]any{"accounts": accounts})

	// register_from
	outside := digestRegister(t, testbed.NewRawUA(t, "udp", "127.0.0.61"), e.SIPAddr(), "1002", realm, e2ePass)
	wrong := digestRegister(t, testbed.NewRawUA(t, "udp", "127.0.0.62"), e.SIPAddr(), "1001", realm, "Not-the-password-1")
	if outside == nil || wrong == nil || outside.Code != 401 || wrong.Code != 401 {
		t.Fatalf("right password from outside register_from: %+v; wrong password: %+v; want 401 for both", outside, wrong)
	}
	if m := digestRegister(t, testbed.NewRawUA(t, "udp", "127.0.0.60"), e.SIPAddr(), "1002", realm, e2ePass); m == nil || m.Code != 200 {
		t.Fatalf("right password from inside register_from: %+v", m)
	}

	// Distributed guessing of 1001: three more addresses, one guess each
	// (127.0.0.62 already failed once): the fourth failure locks the account.
	lockStart := time.Now() // no later than the fourth failure
	for i := range 3 {
		if m := digestRegister(t, testbed.NewRawUA(t, "udp", fmt.Sprintf("127.0.0.%d", 63+i)), e.SIPAddr(), "1001", realm, fmt.Sprintf("Guess-%d-password", i)); m == nil || m.Code != 401 {
			t.Fatalf("guess %d: %+v", i, m)
		}
	}
	if v := e.Metric(`sipwarden_bruteforce_lockouts_total`); v != 1 {
		t.Fatalf("lockouts: %v, want 1", v)
	}
	owner := testbed.NewRawUA(t, "udp", "127.0.0.70")
	if m := digestRegister(t, owner, e.SIPAddr(), "1001", realm, e2ePass); m == nil || m.Code != 401 {
		t.Fatalf("the right password during the lockout: %+v, want 401", m)
	}
	// The owner tries again until it works, each time from another address
	// (a refused try counts as a failure of its source): it works again
	// once the lockout's 3 s are over, and not before.
	deadline := time.Now().Add(10 * time.Second)
	for n := 1; ; n++ {
		m := digestRegister(t, testbed.NewRawUA(t, "udp", fmt.Sprintf("127.0.0.%d", 70+n)), e.SIPAddr(), "1001", realm, e2ePass)
		if m != nil && m.Code == 200 {
			break
		}
		if m == nil || m.Code != 401 {
			t.Fatalf("the right password, try %d: %+v, want 401 or 200", n, m)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the right password still refused %v after the lockout started, want 3s", time.Since(lockStart).Round(time.Millisecond))
		}
		time.Sleep(200 * time.Millisecond) // the next try
	}
	if d := time.Since(lockStart); d < 3*time.Second {
		t.Fatalf("the lockout ended after %v, want 3s", d.Round(time.Millisecond))
	}
}

// TestNewCountryAlert: with a country database, a phone that registers from
// another country than before raises a new_country event.
func TestNewCountryAlert(t *testing.T) {
	const realm = "phones.example.test"
	w, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "GeoLite2-Country", RecordSize: 24, IncludeReservedNetworks: true})
	if err != nil {
		t.Fatal(err)
	}
	for cidr, iso := range map[string]string{"127.0.0.0/24": "US", "127.0.1.0/24": "FR"} {
		_, n, _ := net.ParseCIDR(cidr)
		if err := w.Insert(n, mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.String(iso)}}); err != nil {
			t.Fatal(err)
		}
	}
	db := filepath.Join(t.TempDir(), "country.mmdb")
	f, err := os.Create(db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	accounts := fmt.Sprintf("      - {username: \"1001\", ha1: {md5: %s}}\n", auth.HA1(auth.MD5, "1001", realm, e2ePass))
	e := testbed.StartEdge(t, hostedConfig+"geoip: {country_db: \""+db+"\"}\n", testbed.FreePort(t), map[string]any{"accounts": accounts})
	registerDigest(t, testbed.NewRawUA(t, "udp", "127.0.0.41"), e.SIPAddr(), "1001", realm)
	registerDigest(t, testbed.NewRawUA(t, "udp", "127.0.0.42"), e.SIPAddr(), "1001", realm)
	if strings.Contains(e.Logs.String(), "new_country") {
		t.Fatalf("a new country reported within the same country:\n%s", e.Logs.String())
	}
	registerDigest(t, testbed.NewRawUA(t, "udp", "127.0.1.41"), e.SIPAddr(), "1001", realm)
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(e.Logs.String(), `"reason":"new_country"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no new_country event:\n%s", e.Logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(e.Logs.String(), "country FR, before from US") {
		t.Errorf("the event does not say which countries:\n%s", e.Logs.String())
	}
}
