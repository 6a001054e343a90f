package transport

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/sip"
)

// The connection budget: strangers cannot use the peers' reserved share,
// peers have a cap of their own, strangers are capped per address and per
// IPv6 /64, and a closed connection gives its slot back.
func TestAdmitPeersAndStrangers(t *testing.T) {
	m, err := NewManager(Options{MaxConns: 12, ReservedPeerConns: 4, MaxConnsPerSource: 2, MaxConnsPerPrefix: 3}, newSink())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	m.SetPeers(NewPeerTable([]PeerConns{
		{Name: "office", Max: 2, Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}},
		{Name: "v6", Prefixes: []netip.Prefix{netip.MustParsePrefix("2001:db8:1::/48")}},
	}))
	port := uint16(1000)
	conn := func(addr string) *Conn {
		port++
		return m.newConn(nil, sip.TLS, netip.AddrPortFrom(netip.MustParseAddr(addr), port), nil)
	}
	var open []*Conn
	steps := []struct {
		addr    string
		dialled bool
		want    string
	}{
		{"198.51.100.1", false, ""},
		{"198.51.100.1", false, ""},
		{"198.51.100.1", false, "max_conns_per_source"},
		{"198.51.100.2", false, ""},
		{"198.51.100.3", false, ""},
		{"198.51.100.4", false, ""},
		{"198.51.100.5", false, ""},
		{"198.51.100.6", false, ""},
		{"198.51.100.7", false, ""},                    // 8 strangers: their share (12-4) is full
		{"198.51.100.8", false, "max_conns_strangers"}, // a new stranger address is refused
		{"198.51.100.8", true, ""},                     // a connection sipwarden dials is not a stranger's choice
		{"192.0.2.10", false, ""},                      // the office trunk uses the reserved share
		{"192.0.2.11", false, ""},
		{"192.0.2.12", false, "max_conns_per_peer"}, // office cap 2
		{"2001:db8:1::1", false, ""},                // another peer: its own count (total 12)
		{"2001:db8:1::2", false, "max_conns"},
	}
	for i, st := range steps {
		c := conn(st.addr)
		if got := m.admit(c, st.dialled); got != st.want {
			t.Fatalf("step %d (%s): admit = %q, want %q", i, st.addr, got, st.want)
		}
		if st.want == "" {
			open = append(open, c)
		}
	}
	// Closing a stranger's connection frees one slot (of the strangers' share).
	open[0].close()
	if got := m.admit(conn("198.51.100.9"), false); got != "" {
		t.Fatalf("after a close: %q", got)
	}
	// Closing an office connection frees an office slot.
	open[len(open)-2].close()
	if got := m.admit(conn("192.0.2.13"), false); got != "" {
		t.Fatalf("office: %q", got)
	}
	m.mu.Lock()
	n, st := m.perPeer["office"], m.strangers
	m.mu.Unlock()
	if n != 2 || st != 8 {
		t.Fatalf("office holds %d, strangers %d", n, st)
	}
}

func TestAdmitIPv6Prefix(t *testing.T) {
	m, _ := NewManager(Options{MaxConns: 100, MaxConnsPerSource: 2, MaxConnsPerPrefix: 3}, newSink())
	defer m.Close()
	m.SetPeers(NewPeerTable([]PeerConns{{Name: "v6", Max: 5, Prefixes: []netip.Prefix{netip.MustParsePrefix("2001:db8:1::/48")}}}))
	tests := []struct {
		addr, want string
	}{
		{"2001:db8:9::1", ""},
		{"2001:db8:9::2", ""},
		{"2001:db8:9::3", ""},
		{"2001:db8:9::4", "max_conns_per_prefix"}, // a fourth address of the same /64
		{"2001:db8:9:1::4", ""},                   // another /64
		{"2001:db8:1::1", ""},                     // the peer's /48: its own cap
		{"2001:db8:1::1", ""},
		{"2001:db8:1::1", ""},
	}
	for i, tt := range tests {
		c := m.newConn(nil, sip.TCP, netip.AddrPortFrom(netip.MustParseAddr(tt.addr), uint16(2000+i)), nil)
		if got := m.admit(c, false); got != tt.want {
			t.Errorf("%d %s: %q, want %q", i, tt.addr, got, tt.want)
		}
	}
}

// Only complete messages reset the idle timer: keep-alives get their pong
// but do not hold the connection open beyond the idle timeout.
func TestIdleNotResetByKeepalives(t *testing.T) {
	s := newSink()
	idle := 400 * time.Millisecond
	m, err := NewManager(Options{HandshakeTimeout: time.Second, IdleTimeout: idle}, s)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	l, _ := m.Listen(sip.TCP, netip.MustParseAddrPort("127.0.0.1:0"), "")
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte(msg("a", "")))
	s.wait(t, 1)
	last := time.Now()
	// Pings every 100ms: each gets its pong, none moves the deadline.
	pong := make([]byte, 2)
	closed := false
	for i := 0; i < 40 && !closed; i++ {
		if _, err := c.Write([]byte("\r\n\r\n")); err != nil {
			closed = true
			break
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := c.Read(pong); err != nil {
			closed = true
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !closed {
		t.Fatal("keep-alives held the connection open for 4s with a 400ms idle timeout")
	}
	if d := time.Since(last); d < idle || d > idle+time.Second {
		t.Fatalf("closed %v after the last message, want about %v", d, idle)
	}
	if v := counterValue(m.met.refused.WithLabelValues("TCP", "timeout")); v != 1 {
		t.Fatalf("timeouts counted: %v", v)
	}
	for _, p := range s.pkts {
		p.Release()
	}
}

// A message a byte at a time (slow loris) does not move the deadline either.
func TestIdleNotResetBySlowMessage(t *testing.T) {
	s := newSink()
	m, _ := NewManager(Options{HandshakeTimeout: time.Second, IdleTimeout: 300 * time.Millisecond}, s)
	defer m.Close()
	l, _ := m.Listen(sip.TCP, netip.MustParseAddrPort("127.0.0.1:0"), "")
	c, _ := net.Dial("tcp", l.Addr().String())
	defer c.Close()
	whole := msg("slow", strings.Repeat("x", 100))
	start := time.Now()
	for i := 0; i < len(whole); i++ {
		if _, err := c.Write([]byte{whole[i]}); err != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
		if time.Since(start) > 3*time.Second {
			break
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection open")
	}
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Fatalf("slow message kept the connection %v", d)
	}
}

// A flood of keep-alives loses the connection.
func TestKeepaliveFlood(t *testing.T) {
	s := newSink()
	m, _ := NewManager(Options{}, s)
	defer m.Close()
	l, _ := m.Listen(sip.TCP, netip.MustParseAddrPort("127.0.0.1:0"), "")
	c, _ := net.Dial("tcp", l.Addr().String())
	defer c.Close()
	_, _ = c.Write([]byte(strings.Repeat("\r\n", 200)))
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 64)
	for {
		if _, err := c.Read(buf); err != nil {
			break
		}
	}
	if v := counterValue(m.met.refused.WithLabelValues("TCP", "keepalive_rate")); v != 1 {
		t.Fatalf("keepalive_rate refusals: %v", v)
	}
}

// A connection a phone registered over (HoldFlow) stays open on keep-alives
// alone until the hold ends; then the idle timeout closes it.
func TestHeldFlowOutlivesIdleTimeout(t *testing.T) {
	s := newSink()
	idle := 300 * time.Millisecond
	m, err := NewManager(Options{HandshakeTimeout: time.Second, IdleTimeout: idle}, s)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	l, _ := m.Listen(sip.TCP, netip.MustParseAddrPort("127.0.0.1:0"), "")
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte(msg("register", "")))
	s.wait(t, 1)
	m.HoldFlow(sip.TCP, netip.MustParseAddrPort(c.LocalAddr().String()), time.Now().Add(time.Hour))
	// Keep-alives for four idle timeouts: each gets its pong, the connection stays.
	pong := make([]byte, 2)
	for end := time.Now().Add(4 * idle); time.Now().Before(end); {
		if _, err := c.Write([]byte("\r\n\r\n")); err != nil {
			t.Fatalf("held connection closed: %v", err)
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := io.ReadFull(c, pong); err != nil {
			t.Fatalf("held connection closed: %v", err)
		}
		time.Sleep(idle / 3) // a phone's ping interval, scaled down
	}
	// The hold ends (unregistered): the idle timeout applies again.
	m.HoldFlow(sip.TCP, netip.MustParseAddrPort(c.LocalAddr().String()), time.Time{})
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(pong); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after the hold ended: %v, want the connection closed by the edge", err)
	}
}
