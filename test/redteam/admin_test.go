package redteam

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/test/testbed"
)

// adminConfig is an edge whose admin API listens on loopback (the default
// everywhere in the examples).
const adminConfig = `
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

// adminGet sends GET path to the edge's admin API with the Host and bearer
// token given ("" for none) and returns the status and body.
func adminGet(t *testing.T, e *testbed.Edge, path, host, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+e.Admin+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

// TestAdminReadWithoutToken: a local user or a web page in the operator's
// browser reads the admin API (per-trunk spend in /metrics, the bans, the
// fraud incidents, the configuration path in the status) without any
// token. Every read now needs the read token (or the full one): 401
// without; the health checks stay open.
func TestAdminReadWithoutToken(t *testing.T) {
	e := testbed.StartEdge(t, adminConfig, testbed.FreePort(t), nil)
	for _, path := range []string{"/metrics", "/api/v1/status", "/api/v1/bans", "/api/v1/incidents"} {
		if code, body := adminGet(t, e, path, "", ""); code != http.StatusUnauthorized {
			t.Errorf("GET %s without a token: %d, want 401\n%.300s", path, code, body)
		}
		if code, _ := adminGet(t, e, path, "", "0123456789abcdef0123456789abcdef"); code != http.StatusUnauthorized {
			t.Errorf("GET %s with a wrong token: %d, want 401", path, code)
		}
	}
	read, err := os.ReadFile(filepath.Join(e.Dir, "data", "admin.read.token"))
	if err != nil {
		t.Fatalf("the read token file: %v", err)
	}
	if st, err := os.Stat(filepath.Join(e.Dir, "data", "admin.read.token")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("read token file mode: %v %v, want 0600", st.Mode(), err)
	}
	if code, body := adminGet(t, e, "/metrics", "", strings.TrimSpace(string(read))); code != 200 || !strings.Contains(body, "sipwarden_") {
		t.Errorf("GET /metrics with the read token: %d", code)
	}
	if code, body := adminGet(t, e, "/api/v1/status", "", e.AdminToken()); code != 200 || !strings.Contains(body, "sipwarden.yaml") {
		t.Errorf("GET /api/v1/status with the full token: %d %.200s", code, body)
	}
	// the read token changes nothing
	req, _ := http.NewRequest(http.MethodPost, "http://"+e.Admin+"/api/v1/bans", strings.NewReader(`{"prefix":"192.0.2.7"}`))
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(read)))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST /api/v1/bans with the read token: %v %v, want 401", resp, err)
	} else {
		resp.Body.Close()
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, _ := adminGet(t, e, path, "", ""); code != 200 {
			t.Errorf("GET %s without a token: %d, want 200", path, code)
		}
	}
}

// TestAdminDNSRebinding: a web page whose host name resolves to 127.0.0.1
// reads the admin API as its own origin (DNS rebinding); its requests
// carry its own name in Host. The admin server answers only for its
// allowed names: 421, whatever the token.
func TestAdminDNSRebinding(t *testing.T) {
	e := testbed.StartEdge(t, adminConfig, testbed.FreePort(t), nil)
	port := e.Admin[strings.LastIndexByte(e.Admin, ':'):]
	for _, host := range []string{"evil.example", "evil.example" + port, "127.0.0.1.evil.example" + port, "localhost.evil.example"} {
		for _, path := range []string{"/metrics", "/api/v1/status", "/api/v1/bans"} {
			if code, body := adminGet(t, e, path, host, e.AdminToken()); code != http.StatusMisdirectedRequest {
				t.Errorf("GET %s with Host %s: %d, want 421\n%.200s", path, host, code, body)
			}
		}
	}
	for _, host := range []string{"127.0.0.1" + port, "localhost" + port, "LOCALHOST"} {
		if code, _ := adminGet(t, e, "/api/v1/status", host, e.AdminToken()); code != 200 {
			t.Errorf("GET /api/v1/status with Host %s: %d, want 200", host, code)
		}
	}
}

// TestAdminPlaintextOnTheNetwork: an admin API on an address other
// machines reach, without TLS, sends its tokens and the whole API in clear.
// check-config (and serve) refuse it unless the configuration says
// admin.insecure_plaintext: true, or gives admin.tls.
func TestAdminPlaintextOnTheNetwork(t *testing.T) {
	dir := t.TempDir()
	port := testbed.FreePort(t)
	write := func(name, admin string) string {
		p := filepath.Join(dir, name)
		cfg := fmt.Sprintf("listen: [udp://127.0.0.1:%d]\nadmin: %s\nstorage: {path: %q}\nupstreams: [{name: pbx, targets: [\"udp://127.0.0.3:5080\"]}]\n",
			testbed.FreePort(t), admin, filepath.Join(dir, "data-"+name))
		if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	run := func(args ...string) (int, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, testbed.Binary, args...).CombinedOutput()
		var ee *exec.ExitError
		switch {
		case err == nil:
			return 0, string(out)
		case errors.As(err, &ee) && ctx.Err() == nil:
			return ee.ExitCode(), string(out)
		}
		return -1, string(out) + err.Error()
	}
	for _, listen := range []string{"0.0.0.0", "[::]"} {
		cfg := write("plain.yaml", fmt.Sprintf("{listen: \"%s:%d\"}", listen, port))
		if code, out := run("check-config", cfg); code != 1 || !strings.Contains(out, "admin.listen") || !strings.Contains(out, "insecure_plaintext") {
			t.Errorf("check-config of a plaintext admin API on %s: exit %d\n%s", listen, code, out)
		}
		if code, out := run("serve", "--config", cfg); code != 1 || !strings.Contains(out, "admin.listen") {
			t.Errorf("serve with a plaintext admin API on %s: exit %d\n%s", listen, code, out)
		}
	}
	cfg := write("explicit.yaml", fmt.Sprintf("{listen: \"0.0.0.0:%d\", insecure_plaintext: true}", port))
	if code, out := run("check-config", cfg); code != 0 {
		t.Errorf("check-config with insecure_plaintext: true: exit %d\n%s", code, out)
	}
	cfg = write("loopback.yaml", fmt.Sprintf("{listen: \"127.0.0.1:%d\"}", port))
	if code, out := run("check-config", cfg); code != 0 {
		t.Errorf("check-config of a loopback admin API: exit %d\n%s", code, out)
	}
}
