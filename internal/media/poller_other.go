//go:build !linux

package media

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// udpSock wraps a net.UDPConn where epoll is not available: each socket
// then has a reader goroutine parked in Go's netpoller.
type udpSock struct{ c *net.UDPConn }

func openUDP(ap netip.AddrPort) (udpSock, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
	return udpSock{c}, err
}

func (u *udpSock) close() { _ = u.c.Close() }

func (u *udpSock) sendTo(b []byte, dst netip.AddrPort) error {
	_, err := u.c.WriteToUDPAddrPort(b, dst)
	return err
}

// poller runs one goroutine per socket.
type poller struct{ p *relayParams }

// newPollers ignores delay: Config.MeasureDelay needs Linux.
func newPollers(n int, p *relayParams, base, size int, _ prometheus.Histogram) ([]*poller, error) {
	return []*poller{{p: p}}, nil
}

func stopPollers([]*poller) {}

func (w *poller) add(st *relayStream) error {
	st.poller = w
	var wg sync.WaitGroup
	st.all(func(s *socket) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.read(s)
		}()
	})
	st.wait = wg.Wait
	return nil
}

func (w *poller) remove(st *relayStream, done func()) {
	st.all(func(s *socket) { s.sock.close() })
	go func() {
		st.wait()
		if done != nil {
			done()
		}
	}()
}

func (w *poller) read(s *socket) {
	b := newBuffers()
	defer s.flush(w.p.met)
	errs := 0
	for {
		n, src, err := s.sock.c.ReadFromUDPAddrPort(b.in)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if errs++; errs > 100 {
				time.Sleep(10 * time.Millisecond)
			}
			continue
		}
		errs = 0
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		s.count(w.p.met, s.handle(w.p, b.in[:n], b.mid, b.out, src, time.Now().UnixNano()))
	}
}
