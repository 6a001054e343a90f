package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/auth"
	"github.com/sipwarden/sipwarden/test/testbed"
)

// TestBaresipChallengeOrders is the baresip row of docs/clients.md:
// Debian's baresip 1.0 (libre 1.x) knows only MD5 and gives up ("Function
// not implemented") on a 401 that holds any other challenge, even after an
// MD5 one: it registers only where MD5 is offered alone.
func TestBaresipChallengeOrders(t *testing.T) {
	baresip := testbed.RequireTool(t, "baresip", "baresip-core")
	cases := []orderCase{
		{"[MD5]", true},
		{"[MD5, SHA-256]", false},
		{"", false},
	}
	challengeOrders(t, "baresip", cases, nil, func(t *testing.T, e *testbed.Edge, certs string) func() bool {
		sub := t.TempDir()
		writeFile(t, filepath.Join(sub, "config"), phoneConfig(
			fmt.Sprintf("sip_listen 127.0.0.45:%d", testbed.FreePort(t)), "sip_cafile "+filepath.Join(certs, "ca.pem")))
		writeFile(t, filepath.Join(sub, "accounts"), fmt.Sprintf(
			"<sip:1001@%s;transport=tls>;auth_pass=%s;outbound=\"sip:127.0.0.1:%d;transport=tls\";regint=600\n",
			orderRealm, e2ePass, e.TLSPort))
		cmd := exec.Command(baresip, "-f", sub, "-t", "20")
		out := startPeer(t, "baresip", cmd)
		// baresip's own word: the registration failed.
		return func() bool {
			o := out.String()
			return strings.Contains(o, "reg: sip:1001@") && strings.Contains(o, "401") ||
				strings.Contains(o, "Function not implemented") || strings.Contains(o, "register failed")
		}
	})
}

// TestSipsakChallengeOrders is the sipsak row of docs/clients.md: sipsak
// 0.9.8 (usrloc mode) computes MD5 only and stops at a first challenge of
// another algorithm ("unsupported authentication algorithm"); it registers
// when MD5 comes first. Over UDP: with --transport=tls, Debian's sipsak
// 0.9.8.1 reported "nothing received, select returned error" for its first
// REGISTER (not investigated further).
func TestSipsakChallengeOrders(t *testing.T) {
	sipsak := testbed.RequireTool(t, "sipsak", "sipsak")
	cases := []orderCase{
		{"[MD5]", true},
		{"[MD5, SHA-256]", true},
		{"[SHA-256, MD5]", false},
		{"", false},
	}
	extra := map[string]any{"domains": "[127.0.0.1]", "udp": true}
	challengeOrders(t, "sipsak", cases, extra, func(t *testing.T, e *testbed.Edge, _ string) func() bool {
		// sipsak resolves the host of its URI: the trunk's domain is the address.
		cmd := exec.Command(sipsak, "-U", "-s", "sip:1001@127.0.0.1", "-p", e.SIPAddr(),
			"-a", e2ePass, "-u", "1001", "-x", "600", "-H", "127.0.0.1", "-vv")
		out := startPeer(t, "sipsak", cmd)
		return func() bool { return strings.Contains(out.String(), "unsupported authentication algorithm") }
	})
}

// mixedPhonesConfig: one trunk of [SHA-256, MD5] for Linphone (1001) and
// an old baresip (1002) whose account has its own order, MD5 alone.
const mixedPhonesConfig = `
listen: [udp://127.0.0.1:{{.SIPPort}}, tls://127.0.0.1:{{.TLSPort}}]
tls: {cert: "{{index .Extra "cert"}}", key: "{{index .Extra "key"}}"}
admin: {listen: "127.0.0.1:{{.AdminPort}}"}
storage: {path: "{{.Dir}}/data"}
log: {level: info}
upstreams:
  - name: pbx
    targets: ["udp://127.0.0.3:{{.PBXPort}}"]
trunks:
  - name: phones
    auth: digest
    realm: phones.example.test
    algorithms: [SHA-256, MD5]
    require_tls: true
    upstream: pbx
    registrar: {enabled: true}
    accounts:
      - {username: "1001", ha1: {sha-256: {{index .Extra "sha256"}}, md5: {{index .Extra "md5"}}}}
      - {username: "1002", ha1: {md5: {{index .Extra "md5b"}}}, algorithms: [MD5]}
`

// TestLinphoneAndBaresipShareATrunk: phones that need different challenge
// orders register to one trunk, each account challenged in its own order:
// Linphone with the trunk's (SHA-256 first), Debian's baresip 1.0 with MD5
// alone, which it needs. Both bindings are listed by the admin API.
func TestLinphoneAndBaresipShareATrunk(t *testing.T) {
	linphonec := testbed.RequireTool(t, "linphonec", "linphone-cli")
	baresip := testbed.RequireTool(t, "baresip", "baresip-core")
	const realm = "phones.example.test"
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	if out, err := exec.Command(testbed.Binary, "certs", "--hosts", "127.0.0.1", certs).CombinedOutput(); err != nil {
		t.Fatalf("sipwarden certs: %v\n%s", err, out)
	}
	e := testbed.StartEdge(t, mixedPhonesConfig, testbed.FreePort(t), map[string]any{
		"cert": filepath.Join(certs, "server.pem"), "key": filepath.Join(certs, "server-key.pem"),
		"sha256": auth.HA1(auth.SHA256, "1001", realm, e2ePass), "md5": auth.HA1(auth.MD5, "1001", realm, e2ePass),
		"md5b": auth.HA1(auth.MD5, "1002", realm, e2ePass)})
	lin := filepath.Join(dir, "linphone")
	rc := filepath.Join(dir, "linphonerc")
	writeFile(t, rc, linphonerc(filepath.Join(certs, "ca.pem"), fmt.Sprintf("sip:127.0.0.1:%d;transport=tls", e.TLSPort), testbed.FreePort(t)))
	startLinphone(t, linphonec, lin, rc)
	bs := filepath.Join(dir, "baresip")
	if err := os.MkdirAll(bs, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(bs, "config"), phoneConfig(
		fmt.Sprintf("sip_listen 127.0.0.45:%d", testbed.FreePort(t)), "sip_cafile "+filepath.Join(certs, "ca.pem")))
	writeFile(t, filepath.Join(bs, "accounts"), fmt.Sprintf(
		"<sip:1002@%s;transport=tls>;auth_pass=%s;outbound=\"sip:127.0.0.1:%d;transport=tls\";regint=600\n", realm, e2ePass, e.TLSPort))
	cmd := exec.Command(baresip, "-f", bs, "-t", "30")
	startPeer(t, "baresip", cmd)
	deadline := time.Now().Add(15 * time.Second)
	for e.Metric(`sipwarden_registrar_bindings`) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("bindings: %v, want 2 (Linphone and baresip)", e.Metric(`sipwarden_registrar_bindings`))
		}
		time.Sleep(100 * time.Millisecond)
	}
	list, err := exec.Command(testbed.Binary, "registrations", "list", "--config", filepath.Join(e.Dir, "sipwarden.yaml"), "--format", "json").CombinedOutput()
	if err != nil || !strings.Contains(string(list), `"account": "1001"`) || !strings.Contains(string(list), `"account": "1002"`) {
		t.Errorf("registrations list: %v\n%s", err, list)
	}
	if v := e.Metric(`sipwarden_auth_requests_total{result="failure",trunk="phones"}`); v != 0 {
		t.Errorf("auth failures: %v, want 0", v)
	}
}

// orderCase is one challenge order in a client's row of docs/clients.md:
// the trunk's algorithms ("" for the default) and whether the client
// registers with them.
type orderCase struct {
	algs      string
	registers bool
}

// orderRealm is the realm of linphoneOrderConfig's trunk.
const orderRealm = "phones.example.test"

// challengeOrders runs a client against a digest trunk with each challenge
// order of cases. start launches the client at edge e (the test CA and the
// server certificate are in certs) and returns gaveUp, the client's own word
// that it cannot answer the challenge. Where a case registers, the binding
// must appear; elsewhere the client must give up with no success counted.
func challengeOrders(t *testing.T, client string, cases []orderCase, extra map[string]any,
	start func(t *testing.T, e *testbed.Edge, certs string) (gaveUp func() bool)) {
	certs := filepath.Join(t.TempDir(), "certs")
	if out, err := exec.Command(testbed.Binary, "certs", "--hosts", "127.0.0.1", certs).CombinedOutput(); err != nil {
		t.Fatalf("sipwarden certs: %v\n%s", err, out)
	}
	for _, tc := range cases {
		name := tc.algs
		if name == "" {
			name = "default"
		}
		t.Run(name, func(t *testing.T) {
			params := map[string]any{
				"cert": filepath.Join(certs, "server.pem"), "key": filepath.Join(certs, "server-key.pem"), "algs": tc.algs,
				"sha256": auth.HA1(auth.SHA256, "1001", orderRealm, e2ePass), "sha512": auth.HA1(auth.SHA512256, "1001", orderRealm, e2ePass),
				"md5": auth.HA1(auth.MD5, "1001", orderRealm, e2ePass)}
			for k, v := range extra {
				params[k] = v
			}
			e := testbed.StartEdge(t, linphoneOrderConfig, testbed.FreePort(t), params)
			gaveUp := start(t, e, certs)
			deadline := time.Now().Add(15 * time.Second)
			for {
				if e.Metric(`sipwarden_registrar_bindings`) == 1 {
					if !tc.registers {
						t.Fatalf("%s registered with %s first", client, name)
					}
					return
				}
				if gaveUp() {
					if tc.registers {
						t.Fatalf("%s did not register with %s first", client, name)
					}
					if v := e.Metric(`sipwarden_auth_requests_total{result="success",trunk="phones"}`); v > 0 {
						t.Fatalf("successes: %v", v)
					}
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s neither registered nor gave up within 15 s with %s", client, name)
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
}
