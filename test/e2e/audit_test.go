package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/audit"
	"github.com/sipwarden/sipwarden/test/testbed"
)

// runAudit runs the real binary's `sipwarden audit ...` (bounded) and
// returns its JSON report and exit status.
func runAudit(t *testing.T, args ...string) (*audit.Report, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, testbed.Binary, append([]string{"audit"}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	var r audit.Report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("audit %v: exit %d, no JSON report (%v)\nstdout: %s\nstderr: %s", args, code, err, out.String(), errb.String())
	}
	return &r, code
}

func findingsOf(r *audit.Report) []string {
	var out []string
	for _, f := range r.Findings {
		out = append(out, fmt.Sprintf("%s/%s: %s", f.Severity, f.Check, f.Evidence))
	}
	return out
}

// auditEdgeConfig is a good edge: unknown sources dropped, TLS with a
// certificate the probe trusts.
const auditEdgeConfig = baseConfig + `tls: {cert: "{{index .Extra "cert"}}", key: "{{index .Extra "key"}}"}
`

// TestAuditProbeSipwarden probes a running sipwarden, from an address that
// is no peer of it: a stranger gets silence, TLS is 1.2+ with a valid
// certificate, so the probe finds nothing high and exits 0.
func TestAuditProbeSipwarden(t *testing.T) {
	certFile, keyFile, _ := writeCert(t, t.TempDir())
	p := params("udp")
	p["cert"], p["key"] = certFile, keyFile
	cfg := strings.Replace(auditEdgeConfig, "  - tcp://127.0.0.1:{{.SIPPort}}\n", "  - tcp://127.0.0.1:{{.SIPPort}}\n  - tls://127.0.0.1:{{.TLSPort}}\n", 1)
	e := testbed.StartEdge(t, cfg, testbed.FreePort(t), p)

	r, code := runAudit(t, "probe", fmt.Sprintf("sip:127.0.0.1:%d", e.SIPPort), "--i-own-this", "--format", "json",
		"--source", "127.0.0.9", "--tls-port", fmt.Sprint(e.TLSPort), "--ca", certFile, "--server-name", "127.0.0.1",
		"--rate", "50", "--timeout", "300ms")
	if code != 0 || r.HasHigh() {
		t.Errorf("exit %d; findings %v", code, findingsOf(r))
	}
	for _, c := range []string{"answers_unknown_source", "server_header_leak", "extension_enumeration", "open_relay",
		"invite_not_refused", "malformed_answered", "malformed_reveals_software", "tls_not_offered", "tls_certificate_invalid", "tls_legacy_accepted"} {
		if slices.Contains(r.Checks(), c) {
			t.Errorf("sipwarden gave the probe a %s finding: %v", c, findingsOf(r))
		}
	}
	t.Logf("sipwarden: score %d, findings %v, notes %v", r.Score, findingsOf(r), r.Notes)
}

// TestAuditConfigExamples audits the shipped examples through the binary:
// each loads, every finding names a line, and a high finding exits 1.
func TestAuditConfigExamples(t *testing.T) {
	files, _ := filepath.Glob("../../examples/*.yaml")
	for _, f := range files {
		r, code := runAudit(t, "config", f, "--format", "json")
		if want := map[bool]int{true: 1, false: 0}[r.HasHigh()]; code != want {
			t.Errorf("%s: exit %d, want %d", f, code, want)
		}
		t.Logf("%s: score %d, %v", filepath.Base(f), r.Score, r.Checks())
	}
}

// uasStub is the far end of the open Kamailio's relay: it rings every
// INVITE (100, 180) until a CANCEL (200, then 487) and counts what it got.
type uasStub struct {
	conn    *net.UDPConn
	mu      sync.Mutex
	got     []string
	invites map[string][]string // Call-ID: the INVITE's Via headers
}

func startUASStub(t *testing.T, ip string) *uasStub {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	u := &uasStub{conn: c}
	t.Cleanup(func() { c.Close() })
	go u.serve()
	return u
}

func (u *uasStub) port() int { return u.conn.LocalAddr().(*net.UDPAddr).Port }

func (u *uasStub) methods() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.got)
}

func (u *uasStub) serve() {
	buf := make([]byte, 65535)
	for {
		n, src, err := u.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		msg := string(buf[:n])
		method, _, _ := strings.Cut(msg, " ")
		if strings.HasPrefix(method, "SIP/") {
			continue
		}
		u.mu.Lock()
		u.got = append(u.got, method)
		u.mu.Unlock()
		var vias []string
		hdr := map[string]string{}
		for _, l := range strings.Split(msg, "\r\n")[1:] {
			k, v, ok := strings.Cut(l, ":")
			if !ok {
				continue
			}
			k = strings.ToLower(strings.TrimSpace(k))
			if k == "via" || k == "v" {
				vias = append(vias, "Via: "+strings.TrimSpace(v))
				continue
			}
			if _, dup := hdr[k]; !dup {
				hdr[k] = strings.TrimSpace(v)
			}
		}
		reply := func(code int, reason, cseq string, vias []string) {
			to := hdr["to"]
			if !strings.Contains(to, "tag=") && code > 100 {
				to += ";tag=uas1"
			}
			r := fmt.Sprintf("SIP/2.0 %d %s\r\n%s\r\nFrom: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %s\r\nContent-Length: 0\r\n\r\n",
				code, reason, strings.Join(vias, "\r\n"), hdr["from"], to, hdr["call-id"], cseq)
			_, _ = u.conn.WriteToUDP([]byte(r), src)
		}
		switch method {
		case "INVITE":
			// the 487 after a CANCEL goes back along the INVITE's Vias
			u.mu.Lock()
			if u.invites == nil {
				u.invites = map[string][]string{}
			}
			u.invites[hdr["call-id"]] = vias
			u.mu.Unlock()
			reply(100, "Trying", hdr["cseq"], vias)
			reply(180, "Ringing", hdr["cseq"], vias)
		case "CANCEL":
			reply(200, "OK", hdr["cseq"], vias)
			u.mu.Lock()
			iv := u.invites[hdr["call-id"]]
			u.mu.Unlock()
			if iv != nil {
				reply(487, "Request Terminated", strings.Replace(hdr["cseq"], "CANCEL", "INVITE", 1), iv)
			}
		case "BYE":
			reply(200, "OK", hdr["cseq"], vias)
		}
	}
}

// startOpenKamailio runs testdata/kamailio-open.cfg on addr:port, relaying
// INVITEs to uas, and waits until it answers OPTIONS.
func startOpenKamailio(t *testing.T, addr string, port int, uas string) {
	t.Helper()
	testbed.RequireTool(t, "kamailio", "kamailio")
	tmpl, err := os.ReadFile("testdata/kamailio-open.cfg")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := strings.NewReplacer("PROXY_ADDR", addr, "PROXY_PORT", fmt.Sprint(port), "UAS", uas).Replace(string(tmpl))
	path := filepath.Join(dir, "kamailio.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &testbed.SyncBuffer{}
	cmd := exec.Command("kamailio", "-f", path, "-DD", "-E", "-m", "64", "-M", "8", "-w", dir)
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("kamailio output:\n%s", logs.String())
		}
	})
	c, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: net.ParseIP(addr), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 4096)
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		_, _ = fmt.Fprintf(c, "OPTIONS sip:%s:%d SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-ready-%d\r\nMax-Forwards: 70\r\nFrom: <sip:ready@test>;tag=r%d\r\nTo: <sip:%s>\r\nCall-ID: ready-%d\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
			addr, port, c.LocalAddr(), i, i, addr, i)
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := c.Read(buf)
		if err == nil && bytes.HasPrefix(buf[:n], []byte("SIP/2.0 200")) {
			return
		}
		if err != nil && !os.IsTimeout(err) {
			// refused: not listening yet
			time.Sleep(100 * time.Millisecond)
		}
		select {
		case <-done:
			t.Fatalf("kamailio exited at start:\n%s", logs.String())
		default:
		}
	}
	t.Fatalf("kamailio does not answer on %s:%d:\n%s", addr, port, logs.String())
}

// TestAuditProbeOpenKamailio probes a deliberately open Kamailio: the
// probe must find the open relay (and cancel the call it placed), the
// Server header, and the REGISTER enumeration, and exit 1.
func TestAuditProbeOpenKamailio(t *testing.T) {
	uas := startUASStub(t, "127.0.0.46")
	port := testbed.FreePort(t)
	startOpenKamailio(t, "127.0.0.45", port, fmt.Sprintf("sip:127.0.0.46:%d", uas.port()))

	r, code := runAudit(t, "probe", fmt.Sprintf("sip:127.0.0.45:%d", port), "--i-own-this", "--format", "json",
		"--source", "127.0.0.9", "--tls-port", fmt.Sprint(testbed.FreePort(t)), "--rate", "50", "--timeout", "500ms")
	if code != 1 || !r.HasHigh() {
		t.Errorf("exit %d, want 1 (a high finding); findings %v", code, findingsOf(r))
	}
	for _, c := range []string{"open_relay", "server_header_leak", "extension_enumeration", "answers_unknown_source", "md5_only", "tls_not_offered"} {
		if !slices.Contains(r.Checks(), c) {
			t.Errorf("no %s finding: %v", c, findingsOf(r))
		}
	}
	for _, f := range r.Findings {
		if f.Check == "server_header_leak" && !strings.Contains(strings.ToLower(f.Evidence), "kamailio") {
			t.Errorf("server_header_leak evidence %q does not name kamailio", f.Evidence)
		}
		if f.Check == "extension_enumeration" && !strings.Contains(f.Evidence, "100: 401") {
			t.Errorf("enumeration evidence %q lacks user 100's 401", f.Evidence)
		}
	}
	// the relayed call reached the far end and was withdrawn
	m := uas.methods()
	if !slices.Contains(m, "INVITE") || !slices.Contains(m, "CANCEL") {
		t.Errorf("the far end got %v: want the relayed INVITE and its CANCEL", m)
	}
	t.Logf("kamailio: score %d, findings %v", r.Score, findingsOf(r))
}

// TestAuditHTMLReportInChromium opens the HTML report of an example in
// headless Chromium: the page loads on its own (no external resources),
// shows the score and puts each finding under its responsibility.
func TestAuditHTMLReportInChromium(t *testing.T) {
	chromium := testbed.RequireTool(t, "chromium", "chromium")
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	var html bytes.Buffer
	cmd := exec.Command(testbed.Binary, "audit", "config", "../../examples/fraud.yaml", "--format", "html")
	cmd.Stdout = &html
	if err := cmd.Run(); err == nil || cmd.ProcessState.ExitCode() != 1 {
		t.Fatalf("audit of fraud.yaml: %v (want exit 1: it has a high finding)", err)
	}
	if err := os.WriteFile(page, html.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var dom, errb bytes.Buffer
	c := exec.CommandContext(ctx, chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--user-data-dir="+filepath.Join(dir, "profile"),
		"--dump-dom", "file://"+page)
	c.Stdout, c.Stderr = &dom, &errb
	if err := c.Run(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, errb.String())
	}
	d := dom.String()
	// the page must show what the JSON report says
	want, _ := runAudit(t, "config", "../../examples/fraud.yaml", "--format", "json")
	if !strings.Contains(d, fmt.Sprintf(`id="score">%d/100`, want.Score)) {
		t.Errorf("the rendered page does not show the score %d/100:\n%s", want.Score, d)
	}
	group := strings.Index(d, "<h2>International dialling and spend</h2>")
	next := strings.Index(d, "<h2>Monitoring and notification</h2>")
	finding := strings.Index(d, `data-check="international_unbounded"`)
	if group < 0 || next < 0 || finding < group || finding > next {
		t.Errorf("international_unbounded (at %d) is not in its group (%d to %d)", finding, group, next)
	}
	if n := strings.Count(d, `class="finding"`); n != len(want.Findings) {
		t.Errorf("%d findings rendered, want %d", n, len(want.Findings))
	}
	// A screenshot of the page, kept as an artifact: in SIPWARDEN_ARTIFACTS
	// when set (CI can collect the folder), else in the test's own folder.
	shots := os.Getenv("SIPWARDEN_ARTIFACTS")
	if shots == "" {
		shots = dir
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(shots, "audit-report.png")
	c = exec.CommandContext(ctx, chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--user-data-dir="+filepath.Join(dir, "profile"),
		"--hide-scrollbars", "--window-size=1280,2000", "--screenshot="+shot, "file://"+page)
	errb.Reset()
	c.Stderr = &errb
	if err := c.Run(); err != nil {
		t.Fatalf("chromium screenshot: %v\n%s", err, errb.String())
	}
	if st, err := os.Stat(shot); err != nil || st.Size() < 10_000 {
		t.Fatalf("screenshot %s: %v (a rendered report is more than 10 KB)", shot, err)
	}
	t.Logf("screenshot of the HTML report: %s", shot)
}
