//go:build linux

package redteam

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sipwarden/sipwarden/internal/testenv"
	"github.com/sipwarden/sipwarden/test/testbed"
)

// Loopback has one IPv6 address (::1), so the IPv6 attack runs in a network
// namespace of its own: a ULA /64 on its lo, sipwarden started inside it
// (ip netns exec), and the test's sockets created inside it (setns on a
// locked thread: a socket stays in the namespace it was created in). Needs
// root and iproute2, as the firewall tests do (testenv: fail in CI, skip elsewhere).

const dgNet6 = "fd57:d16e:5eed:1::" // the /64 the guesser rotates through

// dgNetNS is a network namespace with lo up and the given addresses on lo.
type dgNetNS struct {
	ip   string // the ip command
	name string
	fd   int
}

func dgNewNetNS(t *testing.T, addrs ...string) *dgNetNS {
	t.Helper()
	testenv.Root(t, "a network namespace")
	ip := testenv.Tool(t, "ip", "iproute2")
	name := fmt.Sprintf("swdg-%d", os.Getpid())
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ip, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	run("netns", "add", name)
	t.Cleanup(func() { _ = exec.Command(ip, "netns", "del", name).Run() })
	run("-n", name, "link", "set", "lo", "up")
	for _, a := range addrs {
		run("-n", name, "addr", "add", a, "dev", "lo", "nodad")
	}
	f, err := os.Open("/run/netns/" + name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &dgNetNS{ip: ip, name: name, fd: int(f.Fd())}
}

// do runs f on a thread switched into the namespace.
func (ns *dgNetNS) do(f func() error) error {
	runtime.LockOSThread()
	self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer self.Close()
	if err := unix.Setns(ns.fd, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	ferr := f()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		return err // the thread stays locked and ends with its goroutine
	}
	runtime.UnlockOSThread()
	return ferr
}

// rawUA is a testbed.RawUA whose socket lives in the namespace.
func (ns *dgNetNS) rawUA(t *testing.T, addr string) *testbed.RawUA {
	t.Helper()
	var ua *testbed.RawUA
	if err := ns.do(func() error { ua = testbed.NewRawUA(t, "udp", addr); return nil }); err != nil {
		t.Fatal(err)
	}
	return ua
}

// client is an HTTP client whose connections are made in the namespace.
func (ns *dgNetNS) client() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			derr := ns.do(func() error {
				var d net.Dialer
				c, err = d.DialContext(ctx, network, addr)
				return nil
			})
			if derr != nil {
				return nil, derr
			}
			return c, err
		},
	}}
}

// startEdge starts sipwarden inside the namespace with the configuration
// tmpl (SIP on port 5060 of the namespace's addresses, admin on its
// 127.0.0.1:8080) and waits until it is ready. The returned metric reads
// one sample of /metrics.
func (ns *dgNetNS) startEdge(t *testing.T, tmpl string) (*testbed.Edge, func(string) float64) {
	t.Helper()
	dir := t.TempDir()
	p := testbed.EdgeParams{SIPPort: 5060, AdminPort: 8080, PBXPort: 5080, Dir: dir}
	cfg := testbed.WriteConfig(t, tmpl, p)
	e := &testbed.Edge{T: t, Dir: dir, Params: p, SIPPort: p.SIPPort, Admin: "127.0.0.1:8080"}
	hc := ns.client()
	get := func(path string) (string, int) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+e.Admin+path, nil)
		if tok := e.AdminToken(); tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return "", 0
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return b.String(), resp.StatusCode
	}
	metric := func(sample string) float64 {
		body, _ := get("/metrics")
		for _, line := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(line, sample+" "); ok {
				var f float64
				fmt.Sscanf(v, "%g", &f)
				return f
			}
		}
		return -1
	}
	e.Run(exec.Command(ns.ip, "netns", "exec", ns.name, testbed.Binary, "serve", "--config", cfg), func() bool {
		_, code := get("/readyz")
		return code == http.StatusOK
	})
	return e, metric
}

// TestIPv6RotationWithinSlash64MeetsCounters: the brute-force counters were
// per address, so a guesser taking a new address of its /64 for every guess
// (it has 2^64 of them) never met a threshold. Now the /64 is counted too:
// with source_account_failures: 3, the third wrong password from the /64
// bans it, whichever of its addresses come next; another /64 still gets
// its challenge (the sentinel that shows the edge answers).
func TestIPv6RotationWithinSlash64MeetsCounters(t *testing.T) {
	addrs := []string{dgNet6 + "1/64", "fd57:d16e:5eed:2::1/64"}
	for i := range 5 {
		addrs = append(addrs, fmt.Sprintf("%s%x/64", dgNet6, 0x11+i))
	}
	ns := dgNewNetNS(t, addrs...)
	_, metric := ns.startEdge(t, dgTrunk("["+dgNet6+"1]:{{.SIPPort}}"))
	target := "[" + dgNet6 + "1]:5060"
	sentinel := ns.rawUA(t, "fd57:d16e:5eed:2::1")
	// silent checks that ua got no answer: a request from another /64, sent
	// after, is answered first.
	silent := func(ua *testbed.RawUA, what string, n int) {
		t.Helper()
		if m := dgRegister(t, target, sentinel, "1001", "", "", "", n); m == nil || m.Code != 401 {
			t.Fatalf("the sentinel from another /64 got no challenge: %v", m)
		}
		if m := ua.Recv(100 * time.Millisecond); m != nil {
			t.Fatalf("%s was answered:\n%s", what, m.Raw)
		}
	}
	for i := range 3 {
		ua := ns.rawUA(t, fmt.Sprintf("%s%x", dgNet6, 0x11+i))
		nonce := dgChallenge(t, target, ua, "1001", 1)
		guess := fmt.Sprintf("Guess-number-%04d", i)
		if i < 2 {
			if m := dgRegister(t, target, ua, "1001", guess, nonce, "SHA-256", 2); m == nil || m.Code != 401 {
				t.Fatalf("guess %d from %s: %v", i+1, ua.LocalAddr(), m)
			}
			continue
		}
		dgSendRegister(t, target, ua, "1001", guess, nonce, "SHA-256", 2)
		silent(ua, "the 3rd wrong password from the /64 (from its 3rd address)", 10)
	}
	if v := metric(`sipwarden_bruteforce_bans_total{reason="auth_bruteforce"}`); v != 1 {
		t.Errorf("auth_bruteforce bans: %v, want 1", v)
	}
	// The /64 is banned: a fresh address of it hears nothing.
	fresh := ns.rawUA(t, dgNet6+"15")
	dgSendRegister(t, target, fresh, "1001", "", "", "", 1)
	silent(fresh, "a fresh address of the banned /64", 11)
}
