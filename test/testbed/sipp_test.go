package testbed

import (
	"net"
	"testing"
)

// TestBound: a bound UDP socket and a listening TCP socket are seen in the
// kernel's tables; a closed one, another address or another port is not.
func TestBound(t *testing.T) {
	u, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3)})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp4", "127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	up, tp := u.LocalAddr().(*net.UDPAddr).Port, l.Addr().(*net.TCPAddr).Port
	for _, tc := range []struct {
		name string
		ip   string
		port int
		want bool
	}{
		{"udp", "127.0.0.3", up, true},
		{"tcp listen", "127.0.0.3", tp, true},
		{"other address", "127.0.0.4", up, false},
		{"not ipv4", "::1", up, false},
	} {
		if got := bound(tc.ip, tc.port); got != tc.want {
			t.Errorf("%s: bound(%s, %d) = %v, want %v", tc.name, tc.ip, tc.port, got, tc.want)
		}
	}
	u.Close()
	l.Close()
	if bound("127.0.0.3", up) || bound("127.0.0.3", tp) {
		t.Error("closed sockets still seen as bound")
	}
}
