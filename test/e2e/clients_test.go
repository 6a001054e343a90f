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
	const realm = "phones.example.test"
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	if out, err := exec.Command(testbed.Binary, "certs", "--hosts", "127.0.0.1", certs).CombinedOutput(); err != nil {
		t.Fatalf("sipwarden certs: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		algs      string
		registers bool
	}{
		{"[MD5]", true},
		{"[MD5, SHA-256]", false},
		{"", false},
	} {
		name := tc.algs
		if name == "" {
			name = "default"
		}
		t.Run(name, func(t *testing.T) {
			sub := t.TempDir()
			e := testbed.StartEdge(t, linphoneOrderConfig, testbed.FreePort(t), map[string]any{
				"cert": filepath.Join(certs, "server.pem"), "key": filepath.Join(certs, "server-key.pem"), "algs": tc.algs,
				"sha256": auth.HA1(auth.SHA256, "1001", realm, e2ePass), "sha512": auth.HA1(auth.SHA512256, "1001", realm, e2ePass),
				"md5": auth.HA1(auth.MD5, "1001", realm, e2ePass)})
			writeFile(t, filepath.Join(sub, "config"), phoneConfig(
				fmt.Sprintf("sip_listen 127.0.0.45:%d", testbed.FreePort(t)), "sip_cafile "+filepath.Join(certs, "ca.pem")))
			writeFile(t, filepath.Join(sub, "accounts"), fmt.Sprintf(
				"<sip:1001@%s;transport=tls>;auth_pass=%s;outbound=\"sip:127.0.0.1:%d;transport=tls\";regint=600\n",
				realm, e2ePass, e.TLSPort))
			cmd := exec.Command(baresip, "-f", sub, "-t", "20")
			var out testbed.SyncBuffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				if t.Failed() {
					t.Logf("baresip output:\n%s", out.String())
				}
			})
			deadline := time.Now().Add(10 * time.Second)
			for {
				if e.Metric(`sipwarden_registrar_bindings`) == 1 {
					if !tc.registers {
						t.Fatalf("baresip registered with %s first", name)
					}
					return
				}
				// baresip's own word: the registration failed.
				if o := out.String(); strings.Contains(o, "reg: sip:1001@") && strings.Contains(o, "401") ||
					strings.Contains(o, "Function not implemented") || strings.Contains(o, "register failed") {
					if tc.registers {
						t.Fatalf("baresip did not register with %s first", name)
					}
					if v := e.Metric(`sipwarden_auth_requests_total{result="success",trunk="phones"}`); v > 0 {
						t.Fatalf("successes: %v", v)
					}
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("baresip neither registered nor failed within 10 s")
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
}

// TestSipsakChallengeOrders is the sipsak row of docs/clients.md: sipsak
// 0.9.8 (usrloc mode) computes MD5 only and stops at a first challenge of
// another algorithm ("unsupported authentication algorithm"); it registers
// when MD5 comes first. Over UDP: with --transport=tls, Debian's sipsak
// 0.9.8.1 reported "nothing received, select returned error" for its first
// REGISTER (not investigated further).
func TestSipsakChallengeOrders(t *testing.T) {
	sipsak := testbed.RequireTool(t, "sipsak", "sipsak")
	const realm = "phones.example.test"
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	if out, err := exec.Command(testbed.Binary, "certs", "--hosts", "127.0.0.1", certs).CombinedOutput(); err != nil {
		t.Fatalf("sipwarden certs: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		algs      string
		registers bool
	}{
		{"[MD5]", true},
		{"[MD5, SHA-256]", true},
		{"[SHA-256, MD5]", false},
		{"", false},
	} {
		name := tc.algs
		if name == "" {
			name = "default"
		}
		t.Run(name, func(t *testing.T) {
			e := testbed.StartEdge(t, linphoneOrderConfig, testbed.FreePort(t), map[string]any{
				"cert": filepath.Join(certs, "server.pem"), "key": filepath.Join(certs, "server-key.pem"), "algs": tc.algs,
				"sha256": auth.HA1(auth.SHA256, "1001", realm, e2ePass), "sha512": auth.HA1(auth.SHA512256, "1001", realm, e2ePass),
				"md5": auth.HA1(auth.MD5, "1001", realm, e2ePass), "domains": "[127.0.0.1]", "udp": true})
			// sipsak resolves the host of its URI: the trunk's domain is the address.
			cmd := exec.Command(sipsak, "-U", "-s", "sip:1001@127.0.0.1", "-p", e.SIPAddr(),
				"-a", e2ePass, "-u", "1001",
				"-x", "600", "-H", "127.0.0.1", "-vv")
			var out testbed.SyncBuffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan struct{})
			go func() { _ = cmd.Wait(); close(exited) }()
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				<-exited
				if t.Failed() {
					t.Logf("sipsak output:\n%s", out.String())
				}
			})
			deadline := time.After(10 * time.Second)
			for {
				if e.Metric(`sipwarden_registrar_bindings`) == 1 {
					if !tc.registers {
						t.Fatalf("sipsak registered with %s first", name)
					}
					return
				}
				select {
				case <-exited:
					if tc.registers && e.Metric(`sipwarden_registrar_bindings`) != 1 {
						t.Fatalf("sipsak ended without registering with %s first", name)
					}
					if !tc.registers && !strings.Contains(out.String(), "unsupported authentication algorithm") {
						t.Fatalf("sipsak ended for another reason than the algorithm")
					}
					return
				case <-deadline:
					t.Fatal("sipsak neither registered nor ended within 10 s")
				case <-time.After(100 * time.Millisecond):
				}
			}
		})
	}
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
	var out testbed.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("baresip output:\n%s", out.String())
		}
	})
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
