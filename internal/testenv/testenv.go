// Package testenv decides, in one place, what a test does when its machine
// lacks something it needs: a tool, root, a service, IPv6 or a fixed port.
// Under CI (the CI variable set, as .ci/run does) every such need is part of
// the machine .ci/run prepares, so a missing one fails the test; on a
// developer's machine the test is skipped with a message that says what to
// install or free. Green in CI therefore means that every test ran.
package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run under CI.
func InCI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "false" && v != "0"
}

// Missing ends the test for a missing need: it fails under CI and skips
// elsewhere, with the message either way.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("%s (CI must provide it: .ci/run installs and starts what the tests need)", msg)
	}
	t.Skip(msg)
}

// Tool returns the path of the command name, from the Debian package pkg.
func Tool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, "%s not found: apt-get install %s", name, pkg)
	}
	return p
}

// Root requires root, for why (network namespaces, nftables, captures).
func Root(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "%s needs root", why)
	}
}

// IPv6Loopback requires a usable ::1.
func IPv6Loopback(t testing.TB) {
	t.Helper()
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		Missing(t, "no IPv6 loopback: %v", err)
		return
	}
	c.Close()
}

// ListenUDP binds a UDP socket at a fixed address the test cannot choose
// (a torture message's Via names port 5060, say), closed when the test ends.
func ListenUDP(t testing.TB, addr string) *net.UDPConn {
	t.Helper()
	a, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.ListenUDP("udp", a)
	if err != nil {
		Missing(t, "%s is busy: %v", addr, err)
		return nil
	}
	t.Cleanup(func() { c.Close() })
	return c
}
