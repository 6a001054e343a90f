//go:build linux

package firewall

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/testenv"
	"golang.org/x/sys/unix"
)

var nsCount atomic.Int32

// newNetNS creates a network namespace for the test (with lo up) and returns
// a file descriptor of it. It needs root and iproute2: locally the test is
// skipped without them, in CI (CI=true) it fails.
func newNetNS(t *testing.T) int {
	t.Helper()
	testenv.Root(t, "a network namespace")
	testenv.Tool(t, "ip", "iproute2")
	name := fmt.Sprintf("swfw-%d-%d", os.Getpid(), nsCount.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}
	// a second IPv6 loopback address: a sender that is never banned
	if out, err := exec.Command("ip", "-n", name, "addr", "add", "::2/128", "dev", "lo").CombinedOutput(); err != nil {
		t.Fatalf("add ::2: %v: %s", err, out)
	}
	f, err := os.Open("/run/netns/" + name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return int(f.Fd())
}

// inNetNS runs f on a thread switched into the namespace ns. Sockets belong
// to the namespace they were created in, so f can create sockets that the
// test then uses from any goroutine.
func inNetNS(t *testing.T, ns int, f func()) {
	t.Helper()
	runtime.LockOSThread()
	self, err := os.Open(fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer self.Close()
	if err := unix.Setns(ns, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("setns: %v", err)
	}
	f()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatalf("setns back: %v", err) // the thread stays locked and dies with the goroutine
	}
	runtime.UnlockOSThread()
}

func TestMirrorDropsBannedSourcesInTheKernel(t *testing.T) {
	ns := newNetNS(t)
	m, err := OpenMirror(MirrorOptions{Table: "sipwarden_bans_test", Ports: []uint16{5060}, NetNS: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	var sip4, other4, sip6 *net.UDPConn
	senders := map[string]*net.UDPConn{}
	inNetNS(t, ns, func() {
		var err error
		if sip4, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.1"), Port: 5060}); err != nil {
			t.Fatal(err)
		}
		if other4, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.1"), Port: 5070}); err != nil {
			t.Fatal(err)
		}
		if sip6, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("::1"), Port: 5060}); err != nil {
			t.Fatal(err)
		}
		for _, a := range []string{"127.0.0.2", "127.0.0.3", "127.0.1.9", "::1", "::2"} {
			c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(a)})
			if err != nil {
				t.Fatal(err)
			}
			senders[a] = c
		}
	})
	defer func() {
		for _, c := range append([]*net.UDPConn{sip4, other4, sip6}, values(senders)...) {
			c.Close()
		}
	}()

	// arrives reports whether a datagram from src reaches dst. A datagram
	// from an address never banned follows it: once that one is read, the
	// first, sent before, has arrived or was dropped. (want: the first
	// should arrive; then it is also waited for after the second.)
	seq := 0
	arrives := func(src string, dst *net.UDPConn, want bool) bool {
		t.Helper()
		seq++
		msg := []byte("OPTIONS sip:x SIP/2.0\r\n\r\n" + src + " " + strconv.Itoa(seq))
		sentinel := []byte("OPTIONS sip:x SIP/2.0\r\n\r\nsentinel " + strconv.Itoa(seq))
		never := "127.0.0.3"
		if dst == sip6 {
			never = "::2"
		}
		for _, d := range []struct {
			from string
			b    []byte
		}{{src, msg}, {never, sentinel}} {
			if _, err := senders[d.from].WriteToUDP(d.b, dst.LocalAddr().(*net.UDPAddr)); err != nil {
				t.Fatalf("send from %s: %v", d.from, err)
			}
		}
		got, last := false, false
		buf := make([]byte, 1500)
		_ = dst.SetReadDeadline(time.Now().Add(2 * time.Second))
		for !last || (want && !got) {
			n, _, err := dst.ReadFromUDP(buf)
			if err != nil {
				if !last {
					t.Fatalf("the datagram from %s (never banned) did not arrive within 2s", never)
				}
				return got
			}
			switch string(buf[:n]) {
			case string(msg):
				got = true
			case string(sentinel):
				last = true
			}
		}
		return got
	}
	type probe struct {
		src  string
		dst  *net.UDPConn
		want bool
	}
	check := func(step string, probes []probe) {
		t.Helper()
		for _, p := range probes {
			if got := arrives(p.src, p.dst, p.want); got != p.want {
				t.Errorf("%s: datagram from %s to %s arrived = %v, want %v", step, p.src, p.dst.LocalAddr(), got, p.want)
			}
		}
	}

	check("no bans", []probe{{"127.0.0.2", sip4, true}, {"::1", sip6, true}})

	if err := m.Replace([]netip.Prefix{
		netip.MustParsePrefix("127.0.0.2/32"),
		netip.MustParsePrefix("127.0.1.0/24"),
		netip.MustParsePrefix("::1/128"),
	}); err != nil {
		t.Fatal(err)
	}
	check("banned", []probe{
		{"127.0.0.2", sip4, false},  // a banned address
		{"127.0.1.9", sip4, false},  // inside a banned /24
		{"127.0.0.3", sip4, true},   // its neighbour is not banned
		{"127.0.0.2", other4, true}, // another port is none of our business
		{"::1", sip6, false},        // IPv6
	})

	if err := m.Replace([]netip.Prefix{netip.MustParsePrefix("127.0.1.0/24")}); err != nil {
		t.Fatal(err)
	}
	check("after unbanning", []probe{{"127.0.0.2", sip4, true}, {"::1", sip6, true}, {"127.0.1.9", sip4, false}})

	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	check("table removed on close", []probe{{"127.0.1.9", sip4, true}})
}

func values(m map[string]*net.UDPConn) []*net.UDPConn {
	var out []*net.UDPConn
	for _, c := range m {
		out = append(out, c)
	}
	return out
}
