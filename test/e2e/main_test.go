// Package e2e runs the real sipwarden binary against real peers (SIPp, and Go
// clients on raw sockets where SIPp cannot go: TLS, exact retransmissions,
// silence checks) on loopback addresses. Every run is bounded in time and count.
//
// Addresses: the trunk's peers send from 127.0.0.2, the upstream PBX listens
// on 127.0.0.3, unknown sources use 127.0.0.9; sipwarden listens on 127.0.0.1.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/sipwarden/sipwarden/internal/cdr"
	cdrsqlite "github.com/sipwarden/sipwarden/internal/cdr/sqlite"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sipwarden-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "sipwarden")
	build := exec.Command("go", "build", "-o", binary, "../../cmd/sipwarden")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build sipwarden:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// requireTool fails in CI (where .ci/run installs the tool) and skips locally.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found: .ci/run must install the Debian package %s", name, pkg)
		}
		t.Skipf("%s not found: apt-get install %s", name, pkg)
	}
	return p
}

var nextPort atomic.Int32

func init() { nextPort.Store(int32(21000 + os.Getpid()%2000*10)) }

// freePort returns a port free for both UDP and TCP on 127.0.0.1.
func freePort(t *testing.T) int {
	t.Helper()
	for range 200 {
		p := int(nextPort.Add(1))
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		u.Close()
		if err != nil {
			continue
		}
		l.Close()
		return p
	}
	t.Fatal("no free port")
	return 0
}

// edge is one running sipwarden process.
type edge struct {
	t       *testing.T
	cmd     *exec.Cmd
	dir     string
	sipPort int
	tlsPort int
	admin   string
	logs    *syncBuffer
	done    chan struct{}
	exitErr error
	params  edgeParams
}

// rewrite writes a new configuration (from tmpl, with the same ports) over
// the running edge's file and sends SIGHUP.
func (e *edge) reload(tmpl string, extra map[string]any) {
	e.t.Helper()
	p := e.params
	p.Extra = extra
	var buf bytes.Buffer
	if err := template.Must(template.New("cfg").Parse(tmpl)).Execute(&buf, p); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.dir, "sipwarden.yaml"), buf.Bytes(), 0o600); err != nil {
		e.t.Fatal(err)
	}
	_ = e.cmd.Process.Signal(syscall.SIGHUP)
}

// waitLog waits until the output contains s n times.
func (e *edge) waitLog(s string, n int) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(e.logs.String(), s) < n {
		if time.Now().After(deadline) {
			e.t.Fatalf("no %q in the log after 5s:\n%s", s, e.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// edgeParams fill a configuration template.
type edgeParams struct {
	SIPPort, TLSPort, AdminPort, PBXPort int
	Dir                                  string
	Extra                                map[string]any
}

// startEdge writes the configuration from tmpl and starts sipwarden with it.
func startEdge(t *testing.T, tmpl string, pbxPort int, extra map[string]any) *edge {
	t.Helper()
	dir := t.TempDir()
	p := edgeParams{SIPPort: freePort(t), TLSPort: freePort(t), AdminPort: freePort(t), PBXPort: pbxPort, Dir: dir, Extra: extra}
	var buf bytes.Buffer
	if err := template.Must(template.New("cfg").Parse(tmpl)).Execute(&buf, p); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "sipwarden.yaml")
	if err := os.WriteFile(cfgPath, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	e := &edge{t: t, dir: dir, params: p, sipPort: p.SIPPort, tlsPort: p.TLSPort, admin: fmt.Sprintf("127.0.0.1:%d", p.AdminPort),
		logs: &syncBuffer{}, done: make(chan struct{})}
	e.cmd = exec.Command(binary, "serve", "--config", cfgPath)
	e.cmd.Stdout = e.logs
	e.cmd.Stderr = e.logs
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		e.exitErr = e.cmd.Wait()
		close(e.done)
	}()
	t.Cleanup(func() {
		e.kill()
		if t.Failed() {
			t.Logf("sipwarden output:\n%s", e.logs.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + e.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return e
			}
		}
		select {
		case <-e.done:
			t.Fatalf("sipwarden exited at start: %v\n%s", e.exitErr, e.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sipwarden not ready after 15s\n%s", e.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *edge) sipAddr() string { return fmt.Sprintf("127.0.0.1:%d", e.sipPort) }

// stop sends SIGTERM and waits (bounded) for a clean exit.
func (e *edge) stop() {
	e.t.Helper()
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.done:
		if e.exitErr != nil {
			e.t.Errorf("sipwarden exited with %v\n%s", e.exitErr, e.logs.String())
		}
	case <-time.After(30 * time.Second):
		e.t.Errorf("sipwarden did not stop within 30s after SIGTERM")
		e.kill()
	}
}

func (e *edge) kill() {
	select {
	case <-e.done:
	default:
		_ = e.cmd.Process.Kill()
		<-e.done
	}
}

// cdrs returns the CDRs the (stopped) edge wrote.
func (e *edge) cdrs() []cdr.Record {
	e.t.Helper()
	st, err := cdrsqlite.Open(filepath.Join(e.dir, "data", "cdr.db"))
	if err != nil {
		e.t.Fatalf("open CDR store: %v", err)
	}
	defer st.Close()
	recs, err := st.List(context.Background(), cdr.Filter{})
	if err != nil {
		e.t.Fatalf("list CDRs: %v", err)
	}
	return recs
}

// adminGet reads path of the admin API with the read token of the edge's
// storage.path (reads need a token).
func (e *edge) adminGet(path string) (*http.Response, error) {
	tok, err := os.ReadFile(filepath.Join(e.dir, "data", "admin.read.token"))
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest(http.MethodGet, "http://"+e.admin+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	return http.DefaultClient.Do(req)
}

// metric returns the value of one sample line of /metrics ("name{labels}"), or -1.
func (e *edge) metric(sample string) float64 {
	resp, err := e.adminGet("/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	for _, line := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(line, sample+" ") {
			var v float64
			fmt.Sscanf(strings.TrimPrefix(line, sample+" "), "%g", &v)
			return v
		}
	}
	return -1
}

func countDisposition(recs []cdr.Record, d cdr.Disposition) int {
	n := 0
	for _, r := range recs {
		if r.Disposition == d {
			n++
		}
	}
	return n
}
