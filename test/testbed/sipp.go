package testbed

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// SippResult is what SIPp's final screen says.
type SippResult struct {
	Successful, Failed int
	ExitCode           int
	Screen             string
}

var screenRe = map[string]*regexp.Regexp{
	"ok":   regexp.MustCompile(`Successful call\s*\|\s*\d+\s*\|\s*(\d+)`),
	"fail": regexp.MustCompile(`Failed call\s*\|\s*\d+\s*\|\s*(\d+)`),
}

// ReadScreen reads the counts of a SIPp screen file (-trace_screen).
func ReadScreen(path string) SippResult {
	b, _ := os.ReadFile(path)
	res := SippResult{Screen: string(b)}
	if m := screenRe["ok"].FindStringSubmatch(res.Screen); m != nil {
		res.Successful, _ = strconv.Atoi(m[1])
	}
	if m := screenRe["fail"].FindStringSubmatch(res.Screen); m != nil {
		res.Failed, _ = strconv.Atoi(m[1])
	}
	return res
}

// RunSipp runs one SIPp process to its end (bounded by timeout) and reads its final screen.
func RunSipp(t *testing.T, timeout time.Duration, args ...string) SippResult {
	t.Helper()
	return RunSippCtx(context.Background(), t, timeout, args...)
}

// RunSippCtx is RunSipp that also ends when ctx does.
func RunSippCtx(parent context.Context, t *testing.T, timeout time.Duration, args ...string) SippResult {
	t.Helper()
	sipp := RequireTool(t, "sipp", "sip-tester")
	dir := t.TempDir()
	screen := filepath.Join(dir, "screen.txt")
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	full := append([]string{"-nostdin", "-trace_screen", "-screen_file", screen}, args...)
	cmd := exec.CommandContext(ctx, sipp, full...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	res := ReadScreen(screen)
	res.ExitCode = cmd.ProcessState.ExitCode()
	if ctx.Err() != nil && parent.Err() == nil {
		t.Logf("sipp %v timed out after %v: %v\n%s", args, timeout, err, out)
	}
	return res
}

// UAS is a SIPp UAS playing the PBX, running in the background until the test ends.
type UAS struct {
	Cmd  *exec.Cmd
	Done chan struct{}
	Out  *SyncBuffer
}

func StartUAS(t *testing.T, scenario string, port int, extra ...string) *UAS {
	t.Helper()
	return StartUASAt(t, "127.0.0.3", scenario, port, extra...)
}

// StartUASAt starts a SIPp UAS on ip:port.
func StartUASAt(t *testing.T, ip, scenario string, port int, extra ...string) *UAS {
	t.Helper()
	sipp := RequireTool(t, "sipp", "sip-tester")
	args := append([]string{"-nostdin", "-sf", ScenarioPath(scenario), "-i", ip, "-p", strconv.Itoa(port)}, extra...)
	u := &UAS{Cmd: exec.Command(sipp, args...), Done: make(chan struct{}), Out: &SyncBuffer{}}
	u.Cmd.Dir = t.TempDir()
	u.Cmd.Stdout, u.Cmd.Stderr = u.Out, u.Out
	if err := u.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = u.Cmd.Wait(); close(u.Done) }()
	t.Cleanup(func() {
		_ = u.Cmd.Process.Kill()
		<-u.Done
	})
	time.Sleep(300 * time.Millisecond) // let it bind
	select {
	case <-u.Done:
		t.Fatalf("UAS sipp exited at start:\n%s", u.Out.String())
	default:
	}
	return u
}

// ScenarioPath finds a SIPp scenario: first in the test package's own
// scenarios folder, then among the shared ones beside this file.
func ScenarioPath(name string) string {
	if p, err := filepath.Abs(filepath.Join("scenarios", name)); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	_, self, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(self), "scenarios", name)
}

// UACArgs are the common arguments of a SIPp caller on the trunk's address.
func UACArgs(scenario, target string, calls, rate int, extra ...string) []string {
	a := []string{"-sf", ScenarioPath(scenario), "-i", "127.0.0.2", "-p", "0", "-s", "+15551230001",
		"-m", strconv.Itoa(calls), "-r", strconv.Itoa(rate), "-timeout", strconv.Itoa(calls/rate+60) + "s", "-timeout_error",
		"-recv_timeout", "10000", "-d", "200"}
	a = append(a, extra...)
	return append(a, target)
}

func FmtCalls(r SippResult) string {
	return fmt.Sprintf("successful=%d failed=%d exit=%d", r.Successful, r.Failed, r.ExitCode)
}
