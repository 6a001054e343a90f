package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// sippResult is what SIPp's final screen says.
type sippResult struct {
	Successful, Failed int
	ExitCode           int
	Screen             string
}

var screenRe = map[string]*regexp.Regexp{
	"ok":   regexp.MustCompile(`Successful call\s*\|\s*\d+\s*\|\s*(\d+)`),
	"fail": regexp.MustCompile(`Failed call\s*\|\s*\d+\s*\|\s*(\d+)`),
}

// runSipp runs one SIPp process to its end (bounded by timeout) and reads its final screen.
func runSipp(t *testing.T, timeout time.Duration, args ...string) sippResult {
	t.Helper()
	return runSippCtx(context.Background(), t, timeout, args...)
}

// runSippCtx is runSipp that also ends when ctx does.
func runSippCtx(parent context.Context, t *testing.T, timeout time.Duration, args ...string) sippResult {
	t.Helper()
	sipp := requireTool(t, "sipp", "sip-tester")
	dir := t.TempDir()
	screen := filepath.Join(dir, "screen.txt")
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	full := append([]string{"-nostdin", "-trace_screen", "-screen_file", screen}, args...)
	cmd := exec.CommandContext(ctx, sipp, full...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	res := sippResult{ExitCode: cmd.ProcessState.ExitCode()}
	b, _ := os.ReadFile(screen)
	res.Screen = string(b)
	if m := screenRe["ok"].FindStringSubmatch(res.Screen); m != nil {
		res.Successful, _ = strconv.Atoi(m[1])
	}
	if m := screenRe["fail"].FindStringSubmatch(res.Screen); m != nil {
		res.Failed, _ = strconv.Atoi(m[1])
	}
	if ctx.Err() != nil && parent.Err() == nil {
		t.Logf("sipp %v timed out after %v: %v\n%s", args, timeout, err, out)
	}
	return res
}

// uas is a SIPp UAS playing the PBX, running in the background until the test ends.
type uas struct {
	cmd  *exec.Cmd
	done chan struct{}
	out  *syncBuffer
}

func startUAS(t *testing.T, scenario string, port int, extra ...string) *uas {
	t.Helper()
	return startUASAt(t, "127.0.0.3", scenario, port, extra...)
}

// startUASAt starts a SIPp UAS on ip:port.
func startUASAt(t *testing.T, ip, scenario string, port int, extra ...string) *uas {
	t.Helper()
	sipp := requireTool(t, "sipp", "sip-tester")
	args := append([]string{"-nostdin", "-sf", scenarioPath(scenario), "-i", ip, "-p", strconv.Itoa(port)}, extra...)
	u := &uas{cmd: exec.Command(sipp, args...), done: make(chan struct{}), out: &syncBuffer{}}
	u.cmd.Dir = t.TempDir()
	u.cmd.Stdout, u.cmd.Stderr = u.out, u.out
	if err := u.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = u.cmd.Wait(); close(u.done) }()
	t.Cleanup(func() {
		_ = u.cmd.Process.Kill()
		<-u.done
	})
	time.Sleep(300 * time.Millisecond) // let it bind
	select {
	case <-u.done:
		t.Fatalf("UAS sipp exited at start:\n%s", u.out.String())
	default:
	}
	return u
}

func scenarioPath(name string) string {
	p, _ := filepath.Abs(filepath.Join("scenarios", name))
	return p
}

// uacArgs are the common arguments of a SIPp caller on the trunk's address.
func uacArgs(scenario, target string, calls, rate int, extra ...string) []string {
	a := []string{"-sf", scenarioPath(scenario), "-i", "127.0.0.2", "-p", "0", "-s", "+15551230001",
		"-m", strconv.Itoa(calls), "-r", strconv.Itoa(rate), "-timeout", strconv.Itoa(calls/rate+60) + "s", "-timeout_error",
		"-recv_timeout", "10000", "-d", "200"}
	a = append(a, extra...)
	return append(a, target)
}

func fmtCalls(r sippResult) string {
	return fmt.Sprintf("successful=%d failed=%d exit=%d", r.Successful, r.Failed, r.ExitCode)
}
