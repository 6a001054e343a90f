package transport

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/sipwarden/sipwarden/internal/sip"
)

// BenchmarkStreamFrame measures the stream receive path of one message once
// read: framing, the idle bookkeeping, gate, copy into a pooled buffer,
// hand-off.
func BenchmarkStreamFrame(b *testing.B) {
	m, _ := NewManager(Options{}, HandlerFunc(func(p *Packet) { p.Release() }))
	defer m.Close()
	l := &Listener{m: m, transport: sip.TCP, addr: netip.MustParseAddrPort("127.0.0.1:5060")}
	c := m.newConn(l, sip.TCP, netip.MustParseAddrPort("127.0.0.2:40000"), nil)
	data := []byte(msg("bench", strings.Repeat("x", 500)))
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf = append(buf[:0], data...)
		var err error
		if buf, err = m.frame(c, buf); err != nil || len(buf) != 0 {
			b.Fatal(err)
		}
	}
}

// The stream receive path allocates nothing per message.
func TestStreamFrameAllocs(t *testing.T) {
	m, _ := NewManager(Options{}, HandlerFunc(func(p *Packet) { p.Release() }))
	defer m.Close()
	l := &Listener{m: m, transport: sip.TCP, addr: netip.MustParseAddrPort("127.0.0.1:5060")}
	c := m.newConn(l, sip.TCP, netip.MustParseAddrPort("127.0.0.2:40000"), nil)
	data := []byte(msg("allocs", "body") + "\r\n") // a message and a single-CRLF keep-alive
	buf := make([]byte, 0, 4096)
	c.pingTokens = keepaliveBurst
	want := 0.0
	if raceEnabled {
		want = 2 // the packet and its buffer, when the race detector dropped them from their pools
	}
	if n := testing.AllocsPerRun(10, func() {
		buf = append(buf[:0], data...)
		buf, _ = m.frame(c, buf)
	}); n > want {
		t.Errorf("%v allocations per message", n)
	}
}
