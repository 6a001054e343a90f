package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/auth"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/test/testbed"
)

// repoFile is the path of a file of the repository, from test/e2e.
func repoFile(parts ...string) string {
	return filepath.Join(append([]string{"..", ".."}, parts...)...)
}

// copyFile copies src to dst (mode 0600).
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// unitValues returns the values of key in a systemd unit file, in order.
func unitValues(t *testing.T, path, key string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var vals []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") && k == key {
			vals = append(vals, v)
		}
	}
	return vals
}

// TestDeployUnitVerifies runs systemd-analyze verify over deploy/sipwarden.service
// (with its nftables drop-in beside it), its ExecStart pointed at the test
// binary, and checks that the production example deploy/sipwarden.yaml passes
// check-config with the files it names (the certificates of sipwarden certs,
// the sample rate deck) and its audit without a high finding, and that the
// unit's stop timeout outlasts its drain.
func TestDeployUnitVerifies(t *testing.T) {
	testbed.RequireTool(t, "systemd-analyze", "systemd")

	// The unit and its drop-in, with the binary the test built.
	dir := t.TempDir()
	unit, err := os.ReadFile(repoFile("deploy", "sipwarden.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "/usr/local/bin/sipwarden ") {
		t.Fatal("deploy/sipwarden.service does not run /usr/local/bin/sipwarden")
	}
	unitPath := filepath.Join(dir, "sipwarden.service")
	if err := os.WriteFile(unitPath, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/sipwarden ", testbed.Binary+" ")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sipwarden.service.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, repoFile("deploy", "sipwarden.service.d", "nftables.conf"), filepath.Join(dir, "sipwarden.service.d", "nftables.conf"))
	out, err := exec.Command("systemd-analyze", "verify", unitPath).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// Unknown keys and bad values are warnings with exit status 0: none may
	// concern the unit or its drop-in.
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, dir) || strings.Contains(line, "sipwarden") {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}

	// CAP_NET_ADMIN only with the nftables drop-in.
	for _, k := range []string{"AmbientCapabilities", "CapabilityBoundingSet"} {
		if v := strings.Join(unitValues(t, unitPath, k), " "); v != "CAP_NET_BIND_SERVICE" {
			t.Errorf("unit %s=%q, want CAP_NET_BIND_SERVICE only", k, v)
		}
		if v := unitValues(t, filepath.Join(dir, "sipwarden.service.d", "nftables.conf"), k); len(v) != 1 || !strings.Contains(v[0], "CAP_NET_ADMIN") {
			t.Errorf("drop-in %s=%q, want CAP_NET_ADMIN", k, v)
		}
	}

	// The example configuration, with what it names beside it as in /etc/sipwarden.
	etc := t.TempDir()
	copyFile(t, repoFile("deploy", "sipwarden.yaml"), filepath.Join(etc, "sipwarden.yaml"))
	copyFile(t, repoFile("examples", "rates.csv"), filepath.Join(etc, "rates.csv"))
	if out, err := exec.Command(testbed.Binary, "certs", filepath.Join(etc, "certs")).CombinedOutput(); err != nil {
		t.Fatalf("sipwarden certs: %v\n%s", err, out)
	}
	if out, err := exec.Command(testbed.Binary, "check-config", filepath.Join(etc, "sipwarden.yaml")).CombinedOutput(); err != nil {
		t.Fatalf("sipwarden check-config deploy/sipwarden.yaml: %v\n%s", err, out)
	}
	// A production example with no high finding of its own audit.
	if out, err := exec.Command(testbed.Binary, "audit", "config", filepath.Join(etc, "sipwarden.yaml")).CombinedOutput(); err != nil {
		t.Errorf("sipwarden audit config deploy/sipwarden.yaml: %v\n%s", err, out)
	}
	cfg, err := config.Load(filepath.Join(etc, "sipwarden.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Storage.Path != "/var/lib/sipwarden" {
		t.Errorf("storage.path = %q, want /var/lib/sipwarden (the unit's ReadWritePaths)", cfg.Storage.Path)
	}
	if rw := unitValues(t, unitPath, "ReadWritePaths"); len(rw) != 1 || rw[0] != cfg.Storage.Path {
		t.Errorf("ReadWritePaths=%q, want %s", rw, cfg.Storage.Path)
	}
	stop := unitValues(t, unitPath, "TimeoutStopSec")
	if len(stop) != 1 {
		t.Fatalf("TimeoutStopSec=%q, want one", stop)
	}
	d, err := time.ParseDuration(stop[0])
	if err != nil {
		t.Fatalf("TimeoutStopSec=%q: %v", stop[0], err)
	}
	if d <= cfg.SIP.DrainTimeout {
		t.Errorf("TimeoutStopSec=%s is not longer than sip.drain_timeout %s", d, cfg.SIP.DrainTimeout)
	}
}

// deployMetricsConfig turns on every stage whose metrics the dashboard shows.
const deployMetricsConfig = `
listen: [udp://127.0.0.1:{{.SIPPort}}]
admin: {listen: "127.0.0.1:{{.AdminPort}}"}
storage: {path: "{{.Dir}}/data"}
log: {level: info}
sip: {drain_timeout: 1s}
unknown_sources: drop
bans: {unknown_source_probes: 2/1m, probe_burst: 1}
scanner: {enabled: true, ban_after: 1}
media: {enabled: true}
fraud:
  enabled: true
  rate_deck: {{index .Extra "rates"}}
  default: {country: US, timezone: UTC, international: false}
upstreams:
  - name: pbx
    targets: ["udp://127.0.0.3:{{.PBXPort}}"]
trunks:
  - name: acme
    auth: ip
    allow: [127.0.0.2/32]
    upstream: pbx
    numbers: ["+15551230000/4"]
    flood: {options: 2/1m}
    fraud:
      rules: [{name: same, metric: same_number, window: 15m, limit: 1, action: alert}]
  - name: phones
    auth: digest
    realm: phones.example.test
    upstream: pbx
    accounts:
      - {username: "1001", ha1: {sha-256: {{index .Extra "ha1"}}}}
`

var dashboardMetric = regexp.MustCompile(`\bsipwarden_[a-z0-9_]+`)

// dashboardMetrics returns the metric names the queries of the Grafana
// dashboard use (panel targets and template variables).
func dashboardMetrics(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(repoFile("deploy", "grafana", "sipwarden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("deploy/grafana/sipwarden.json: %v", err)
	}
	seen := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && (k == "expr" || k == "query") {
					for _, m := range dashboardMetric.FindAllString(s, -1) {
						seen[m] = true
					}
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	var names []string
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) < 10 {
		t.Fatalf("the dashboard queries only %d sipwarden metrics: %v", len(names), names)
	}
	return names
}

// TestDeployDashboardMetricsExist starts the binary, makes the events after
// which the labelled metrics have samples (calls through SIPp, a probing
// stranger that gets banned, a trunk over its OPTIONS budget, a REGISTER challenged by a
// digest trunk), and checks that every metric the Grafana dashboard queries
// is in /metrics (its # TYPE line).
func TestDeployDashboardMetricsExist(t *testing.T) {
	testbed.RequireTool(t, "sipp", "sip-tester")
	names := dashboardMetrics(t)

	rates, err := filepath.Abs(repoFile("examples", "rates.csv"))
	if err != nil {
		t.Fatal(err)
	}
	pbx := testbed.FreePort(t)
	testbed.StartUAS(t, "uas.xml", pbx)
	e := testbed.StartEdge(t, deployMetricsConfig, pbx, map[string]any{
		"rates": rates, "ha1": auth.HA1(auth.SHA256, "1001", "phones.example.test", "gR8%xk2Lq!vT9#mZ")})

	// Two calls to the same number: CDRs, fraud exposure and an incident.
	res := testbed.RunSipp(t, 60*time.Second, withService(testbed.UACArgs("uac.xml", e.SIPAddr(), 2, 10), "+12124567890")...)
	if res.Successful != 2 {
		t.Fatalf("calls: %s", testbed.FmtCalls(res))
	}

	// A stranger that keeps probing (a scanner's User-Agent): dropped, then banned.
	sc := testbed.NewRawUA(t, "udp", "127.0.0.9")
	for i := 0; i < 5; i++ {
		sc.Send(e.SIPAddr(), fmt.Sprintf("OPTIONS sip:10%d@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-dscan%d\nFrom: <sip:100@127.0.0.1>;tag=1\nTo: <sip:10%d@127.0.0.1>\nCall-ID: deploy-scan-%d\nCSeq: 1 OPTIONS\nUser-Agent: friendly-scanner\nContent-Length: 0\n\n", i, sc.LocalAddr(), i, i, i))
	}

	// The trunk over its OPTIONS budget (2 a minute): shed, never banned.
	tr := testbed.NewRawUA(t, "udp", "127.0.0.2")
	for i := 0; i < 5; i++ {
		tr.Send(e.SIPAddr(), fmt.Sprintf("OPTIONS sip:pbx@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-dopt%d\nFrom: <sip:acme@127.0.0.2>;tag=%d\nTo: <sip:pbx@127.0.0.1>\nCall-ID: deploy-opt-%d\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n", tr.LocalAddr(), i, i, i))
	}

	// A phone's REGISTER without credentials: challenged by the digest trunk.
	ph := testbed.NewRawUA(t, "udp", "127.0.0.5")
	ph.Send(e.SIPAddr(), fmt.Sprintf("REGISTER sip:phones.example.test SIP/2.0\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-dreg\nFrom: <sip:1001@phones.example.test>;tag=r1\nTo: <sip:1001@phones.example.test>\nCall-ID: deploy-reg\nCSeq: 1 REGISTER\nContact: <sip:1001@%s>\nMax-Forwards: 70\nExpires: 60\nContent-Length: 0\n\n", ph.LocalAddr(), ph.LocalAddr()))
	if m := ph.Recv(5 * time.Second); m == nil || m.Code != 401 {
		t.Fatalf("REGISTER without credentials: got %v, want 401", m)
	}

	// Wait (bounded) until every name has its # TYPE line; the fraud gauges
	// are set on the engine's ticker.
	var missing []string
	deadline := time.Now().Add(20 * time.Second)
	for {
		body := adminMetrics(t, e)
		missing = missing[:0]
		for _, n := range names {
			if !strings.Contains(body, "\n# TYPE "+n+" ") && !strings.HasPrefix(body, "# TYPE "+n+" ") {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(missing) > 0 {
		t.Errorf("the dashboard queries metrics that /metrics lacks: %v\n%s", missing, adminMetrics(t, e))
	}
}

// adminMetrics returns the body of /metrics, read with the admin token.
func adminMetrics(t *testing.T, e *testbed.Edge) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+e.Admin+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.AdminToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d %v", resp.StatusCode, err)
	}
	return string(b)
}
