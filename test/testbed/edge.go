// Package testbed is the harness of the end-to-end and red-team suites: it
// builds the real sipwarden binary once, starts it on a configuration
// template with free ports, and gives the tests real peers to talk to it with
// (SIPp processes, raw SIP user agents on UDP, TCP and TLS). Every run is
// bounded in time and count.
//
// Addresses: the trunk's peers send from 127.0.0.2, the upstream PBX listens
// on 127.0.0.3, unknown sources use 127.0.0.9; sipwarden listens on 127.0.0.1.
package testbed

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
	"github.com/sipwarden/sipwarden/internal/testenv"
)

// Binary is the path of the sipwarden binary that Main built.
var Binary string

// Main builds the binary into a temporary folder, runs the package's tests
// and exits with their code: a test package's TestMain is
// `func TestMain(m *testing.M) { testbed.Main(m) }`.
func Main(m *testing.M) {
	dir, err := os.MkdirTemp("", "sipwarden-testbed")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	Binary = filepath.Join(dir, "sipwarden")
	build := exec.Command("go", "build", "-o", Binary, "github.com/sipwarden/sipwarden/cmd/sipwarden")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build sipwarden:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// RequireTool fails in CI (where .ci/run installs the tool) and skips locally.
func RequireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	return testenv.Tool(t, name, pkg)
}

var nextPort atomic.Int32

func init() { nextPort.Store(int32(21000 + os.Getpid()%2000*10)) }

// FreePort returns a port free for both UDP and TCP on 127.0.0.1.
func FreePort(t *testing.T) int {
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

// Edge is one running sipwarden process.
type Edge struct {
	T       *testing.T
	Cmd     *exec.Cmd
	Dir     string
	SIPPort int
	TLSPort int
	Admin   string
	Logs    *SyncBuffer
	Done    chan struct{}
	ExitErr error
	Params  EdgeParams
}

// Reload writes a new configuration (from tmpl, with the same ports) over
// the running Edge's file and sends SIGHUP.
func (e *Edge) Reload(tmpl string, extra map[string]any) {
	e.T.Helper()
	p := e.Params
	p.Extra = extra
	WriteConfig(e.T, tmpl, p)
	_ = e.Cmd.Process.Signal(syscall.SIGHUP)
}

// WaitLog waits until the output contains s n times.
func (e *Edge) WaitLog(s string, n int) {
	e.T.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(e.Logs.String(), s) < n {
		if time.Now().After(deadline) {
			e.T.Fatalf("no %q in the log after 5s:\n%s", s, e.Logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// EdgeParams fill a configuration template.
type EdgeParams struct {
	SIPPort, TLSPort, AdminPort, PBXPort int
	Dir                                  string
	Extra                                map[string]any
}

// StartEdge writes the configuration from tmpl and starts sipwarden with it.
func StartEdge(t *testing.T, tmpl string, pbxPort int, extra map[string]any) *Edge {
	t.Helper()
	p := EdgeParams{SIPPort: FreePort(t), TLSPort: FreePort(t), AdminPort: FreePort(t), PBXPort: pbxPort, Dir: t.TempDir(), Extra: extra}
	cfgPath := WriteConfig(t, tmpl, p)
	e := &Edge{T: t, Dir: p.Dir, Params: p, SIPPort: p.SIPPort, TLSPort: p.TLSPort, Admin: fmt.Sprintf("127.0.0.1:%d", p.AdminPort)}
	e.Run(exec.Command(Binary, "serve", "--config", cfgPath), e.Ready)
	return e
}

// WriteConfig fills tmpl with p and writes it as p.Dir/sipwarden.yaml,
// whose path it returns.
func WriteConfig(t *testing.T, tmpl string, p EdgeParams) string {
	t.Helper()
	var buf bytes.Buffer
	if err := template.Must(template.New("cfg").Parse(tmpl)).Execute(&buf, p); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(p.Dir, "sipwarden.yaml")
	if err := os.WriteFile(cfgPath, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath
}

// Run starts cmd as the edge's process (its output in Logs, killed when
// the test ends) and waits up to 15 s until ready reports true; the test
// fails if the process exits first. StartEdge runs the binary with Ready;
// a test may run it otherwise (in a network namespace, say) with a
// readiness check of its own.
func (e *Edge) Run(cmd *exec.Cmd, ready func() bool) {
	t := e.T
	t.Helper()
	e.Cmd, e.Logs, e.Done, e.ExitErr = cmd, &SyncBuffer{}, make(chan struct{}), nil
	e.Cmd.Stdout, e.Cmd.Stderr = e.Logs, e.Logs
	if err := e.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done, logs := e.Done, e.Logs
	go func() {
		e.ExitErr = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("sipwarden output:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for !ready() {
		select {
		case <-e.Done:
			t.Fatalf("sipwarden exited at start: %v\n%s", e.ExitErr, e.Logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sipwarden not ready after 15s\n%s", e.Logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Ready reports whether the edge's /readyz answers 200.
func (e *Edge) Ready() bool {
	resp, err := http.Get("http://" + e.Admin + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Restart starts sipwarden again, after Stop, on the same configuration
// and storage (what survives a restart), and returns the new edge.
func (e *Edge) Restart() *Edge {
	e.T.Helper()
	n := *e
	n.Run(exec.Command(Binary, "serve", "--config", filepath.Join(e.Dir, "sipwarden.yaml")), n.Ready)
	return &n
}

func (e *Edge) SIPAddr() string { return fmt.Sprintf("127.0.0.1:%d", e.SIPPort) }

// Stop sends SIGTERM and waits (bounded) for a clean exit.
func (e *Edge) Stop() {
	e.T.Helper()
	_ = e.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.Done:
		if e.ExitErr != nil {
			e.T.Errorf("sipwarden exited with %v\n%s", e.ExitErr, e.Logs.String())
		}
	case <-time.After(30 * time.Second):
		e.T.Errorf("sipwarden did not stop within 30s after SIGTERM")
		e.Kill()
	}
}

func (e *Edge) Kill() {
	select {
	case <-e.Done:
	default:
		_ = e.Cmd.Process.Kill()
		<-e.Done
	}
}

// CDRs returns the CDRs the (stopped) Edge wrote.
func (e *Edge) CDRs() []cdr.Record {
	e.T.Helper()
	st, err := cdrsqlite.Open(filepath.Join(e.Dir, "data", "cdr.db"))
	if err != nil {
		e.T.Fatalf("open CDR store: %v", err)
	}
	defer st.Close()
	recs, err := st.List(context.Background(), cdr.Filter{})
	if err != nil {
		e.T.Fatalf("list CDRs: %v", err)
	}
	return recs
}

// Metric returns the value of one sample line of /metrics ("name{labels}"), or -1.
func (e *Edge) Metric(sample string) float64 {
	req, err := http.NewRequest(http.MethodGet, "http://"+e.Admin+"/metrics", nil)
	if err != nil {
		return -1
	}
	if tok := e.AdminToken(); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
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

// AdminToken is the admin API's bearer token that the edge keeps in its
// storage folder (the templates put storage.path at Dir/data), or "".
func (e *Edge) AdminToken() string {
	b, err := os.ReadFile(filepath.Join(e.Dir, "data", "admin.token"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// CountDisposition counts the records with disposition d.
func CountDisposition(recs []cdr.Record, d cdr.Disposition) int {
	n := 0
	for _, r := range recs {
		if r.Disposition == d {
			n++
		}
	}
	return n
}
