package testbed

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
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
	// Ready when its socket is bound: a UDP socket, or a listening TCP one
	// (-t t1, -t l1), on ip:port in the kernel's tables.
	deadline := time.Now().Add(10 * time.Second)
	for !bound(ip, port) {
		select {
		case <-u.Done:
			t.Fatalf("UAS sipp exited at start:\n%s", u.Out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("UAS sipp did not bind %s:%d within 10s:\n%s", ip, port, u.Out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return u
}

// bound reports whether a socket is bound to the IPv4 address ip and port:
// a UDP socket, or a TCP socket in the LISTEN state, as /proc/net/udp and
// /proc/net/tcp list them.
func bound(ip string, port int) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.Is4() {
		return false
	}
	b := a.As4()
	// The kernel prints the address as the in-memory 32-bit word: the
	// bytes reversed on a little-endian machine, in order on a big-endian one.
	want := []string{
		fmt.Sprintf("%08X:%04X", binary.LittleEndian.Uint32(b[:]), port),
		fmt.Sprintf("%08X:%04X", binary.BigEndian.Uint32(b[:]), port),
	}
	for _, table := range []struct{ path, state string }{{"/proc/net/udp", ""}, {"/proc/net/tcp", "0A"}} {
		data, err := os.ReadFile(table.path)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 4 || (f[1] != want[0] && f[1] != want[1]) {
				continue
			}
			if table.state == "" || f[3] == table.state {
				return true
			}
		}
	}
	return false
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
