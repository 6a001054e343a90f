package transport

import (
	"net"
	"net/netip"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// batchSize is how many datagrams one recvmmsg call may return.
const batchSize = 32

// batchReader reads several datagrams per system call.
type batchReader interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
}

func (m *Manager) serveUDP(l *Listener) {
	var br batchReader
	if l.addr.Addr().Is4() {
		br = ipv4.NewPacketConn(l.udp)
	} else {
		br = ipv6.NewPacketConn(l.udp)
	}
	msgs := make([]ipv4.Message, batchSize)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 65536)}
	}
	for {
		n, err := br.ReadBatch(msgs, 0)
		if err != nil {
			if isClosed(err) {
				return
			}
			m.log.Warn("udp read failed", "listener", l.addr.String(), "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		now := time.Now()
		for i := 0; i < n; i++ {
			msg := &msgs[i]
			ua, ok := msg.Addr.(*net.UDPAddr)
			if !ok {
				continue
			}
			src := ua.AddrPort()
			src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
			m.receive(l, nil, src, msg.Buffers[0][:msg.N], now)
		}
	}
}

// receive runs the gate on one message and hands it to the handler.
func (m *Manager) receive(l *Listener, c *Conn, src netip.AddrPort, b []byte, now time.Time) {
	t := l.transport
	if m.opt.Gate != nil && m.opt.Gate.Blocked(src.Addr()) {
		m.met.drop(t, dropBlocked)
		return
	}
	if reason := classify(b, m.opt.MaxMessageSize); reason != "" {
		m.met.drop(t, reason)
		return
	}
	p := newPacket(b)
	p.Src = src
	p.Local = l.addr
	p.Transport = t
	p.Conn = c
	p.Listener = l
	p.Received = now
	m.met.rx[t].Inc()
	m.met.rxBytes[t].Add(float64(len(b)))
	m.h.HandlePacket(p)
}

func isClosed(err error) bool {
	return err != nil && (errorsIs(err, net.ErrClosed))
}
