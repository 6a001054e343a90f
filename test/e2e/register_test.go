package e2e

import (
	"github.com/sipwarden/sipwarden/test/testbed"

	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/auth"
)

// registerConfig: a hosted trunk of 100 phone accounts (MD5: SIPp 3.6 knows
// no other digest algorithm) with sipwarden's registrar. Its domain is the
// proxy's address: SIPp puts the remote address, not the Request-URI, in
// the digest uri, so the Request-URI must be that address too.
const registerConfig = `
listen: [udp://127.0.0.1:{{.SIPPort}}]
admin: {listen: "127.0.0.1:{{.AdminPort}}"}
storage: {path: "{{.Dir}}/data"}
log: {level: warn}
sip: {drain_timeout: 1s}
upstreams:
  - name: pbx
    targets: ["udp://127.0.0.3:{{.PBXPort}}"]
trunks:
  - name: phones
    auth: digest
    realm: phones.example.test
    domains: [127.0.0.1]
    algorithms: [MD5]
    upstream: pbx
    registrar: {enabled: true, max_contacts: 1}
    accounts:
{{index .Extra "accounts"}}`

// TestSippRegistersWithDigest: SIPp registers 100 phones with MD5 digest
// (qop=auth) through the binary, each account once, at 20 registrations/s.
func TestSippRegistersWithDigest(t *testing.T) {
	const realm, users = "phones.example.test", 100
	var accounts, csv strings.Builder
	csv.WriteString("SEQUENTIAL\n")
	for i := range users {
		u := strconv.Itoa(2000 + i)
		pass := fmt.Sprintf("Kq7!vz%04d#Lm2xR9", i)
		fmt.Fprintf(&accounts, "      - {username: %q, ha1: {md5: %s}}\n", u, auth.HA1(auth.MD5, u, realm, pass))
		fmt.Fprintf(&csv, "%s;[authentication username=%s password=%s];EDGE\n", u, u, pass)
	}
	pbxPort := testbed.FreePort(t)
	e := testbed.StartEdge(t, registerConfig, pbxPort, map[string]any{"accounts": accounts.String()})
	inf := filepath.Join(t.TempDir(), "users.csv")
	if err := os.WriteFile(inf, []byte(strings.ReplaceAll(csv.String(), "EDGE", e.SIPAddr())), 0o600); err != nil {
		t.Fatal(err)
	}
	res := testbed.RunSipp(t, 60*time.Second, "-sf", testbed.ScenarioPath("register_digest.xml"), "-inf", inf, "-i", "127.0.0.46", "-p", "0",
		"-m", strconv.Itoa(users), "-r", "20", "-timeout", "50s", "-timeout_error", "-recv_timeout", "5000", e.SIPAddr())
	if res.Successful != users || res.Failed != 0 {
		t.Fatalf("SIPp registrations: %s\n%s", testbed.FmtCalls(res), res.Screen)
	}
	if v := e.Metric(`sipwarden_registrar_bindings`); v != users {
		t.Errorf("bindings: %v, want %d", v, users)
	}
	if v := e.Metric(`sipwarden_auth_requests_total{result="success",trunk="phones"}`); v != users {
		t.Errorf("authenticated REGISTERs: %v, want %d", v, users)
	}
}
