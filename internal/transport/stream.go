package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sipwarden/sipwarden/internal/events"
	"github.com/sipwarden/sipwarden/internal/sip"
)

func errorsIs(err, target error) bool { return errors.Is(err, target) }

// Conn is one TCP or TLS connection, accepted or dialled.
type Conn struct {
	m         *Manager
	transport sip.Transport
	remote    netip.AddrPort
	listener  *Listener
	nc        net.Conn
	out       chan []byte
	closed    atomic.Bool
	verified  atomic.Bool
	closeOnce sync.Once
	done      chan struct{}
	counted   bool   // holds a slot in the connection counts
	peer      string // the configured peer whose slot it holds ("": a stranger's)
	stranger  bool   // holds a slot of the strangers' share
	// lastMsg is when the last complete message arrived (at first: when the
	// connection was accepted or dialled); the idle timeout runs from it.
	lastMsg time.Time
	// heldUntil (Unix nanoseconds) keeps the connection open past its idle
	// timeout while a registration made over it lasts (Manager.HoldFlow).
	heldUntil atomic.Int64
	// pingTokens is the keep-alive budget (reader only): keep-alives spend
	// it, complete messages and time refill it.
	pingTokens float64
	pingAt     time.Time
}

// RemoteAddr returns the peer's address.
func (c *Conn) RemoteAddr() netip.AddrPort { return c.remote }

// Transport returns TCP or TLS.
func (c *Conn) Transport() sip.Transport { return c.transport }

// ClientVerified reports whether the peer presented a client certificate that
// verified against the configured client CA.
func (c *Conn) ClientVerified() bool { return c.verified.Load() }

// Closed reports whether the connection is closed.
func (c *Conn) Closed() bool { return c.closed.Load() }

func (c *Conn) close() {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		close(c.done)
		if c.nc != nil {
			_ = c.nc.Close()
		}
		m := c.m
		m.mu.Lock()
		key := connKey{c.transport, c.remote}
		if m.conns[key] == c {
			delete(m.conns, key)
		}
		if c.counted {
			m.total--
			if c.peer != "" {
				decKey(m.perPeer, c.peer)
			} else {
				decKey(m.perSource, c.remote.Addr())
				if a := c.remote.Addr(); a.Is6() {
					decKey(m.perPrefix, block64(a))
				}
			}
			if c.stranger {
				m.strangers--
			}
			m.met.conns.WithLabelValues(c.transport.String()).Dec()
		}
		m.mu.Unlock()
	})
}

// enqueue queues a copy of b for the writer; a full queue closes the
// connection (the peer does not read).
func (c *Conn) enqueue(b []byte) error {
	if c.closed.Load() {
		return errors.New("transport: connection closed")
	}
	cp := append([]byte(nil), b...)
	select {
	case c.out <- cp:
		return nil
	default:
		c.m.met.refused.WithLabelValues(c.transport.String(), "write_queue_full").Inc()
		c.m.publish(c, "write_queue_full")
		c.close()
		return errors.New("transport: peer too slow, connection closed")
	}
}

func (m *Manager) publish(c *Conn, reason string) {
	m.opt.Bus.Publish(events.Event{Kind: events.ConnLimit, Stage: "transport", Reason: reason, Src: c.remote, Transport: c.transport.String()})
}

// admit counts a new connection from (or, dialled, to) c's peer, or refuses
// it with a reason. Connections of configured peers count against their
// peer's cap and may use the whole budget; a stranger's count against its
// address and its IPv6 /64, and strangers together may not use the share
// reserved for peers. A connection sipwarden dials itself is not refused for
// the strangers' share (it was not a stranger's choice to open it).
func (m *Manager) admit(c *Conn, dialled bool) string {
	a := c.remote.Addr()
	pe, isPeer := m.peers.Load().lookup(a)
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.closed:
		return "closing"
	case m.total >= m.opt.MaxConns:
		return "max_conns"
	}
	if isPeer {
		if m.perPeer[pe.name] >= pe.max {
			return "max_conns_per_peer"
		}
		m.perPeer[pe.name]++
		c.peer = pe.name
	} else {
		var blk netip.Prefix
		if a.Is6() {
			blk = block64(a)
		}
		switch {
		case !dialled && m.strangers >= m.opt.MaxConns-m.opt.ReservedPeerConns:
			return "max_conns_strangers"
		case m.perSource[a] >= m.opt.MaxConnsPerSource:
			return "max_conns_per_source"
		case a.Is6() && m.perPrefix[blk] >= m.opt.MaxConnsPerPrefix:
			return "max_conns_per_prefix"
		}
		m.perSource[a]++
		if a.Is6() {
			m.perPrefix[blk]++
		}
		if !dialled {
			m.strangers++
			c.stranger = true
		}
	}
	m.total++
	c.counted = true
	m.conns[connKey{c.transport, c.remote}] = c
	m.met.conns.WithLabelValues(c.transport.String()).Inc()
	return ""
}

// block64 is the /64 of an IPv6 address.
func block64(a netip.Addr) netip.Prefix {
	p, _ := a.Prefix(64)
	return p
}

// decKey decrements m[k], deleting the key at zero.
func decKey[K comparable](m map[K]int, k K) {
	if n := m[k] - 1; n > 0 {
		m[k] = n
	} else {
		delete(m, k)
	}
}

func (m *Manager) newConn(l *Listener, t sip.Transport, remote netip.AddrPort, nc net.Conn) *Conn {
	return &Conn{m: m, transport: t, remote: remote, listener: l, nc: nc,
		out: make(chan []byte, m.opt.WriteQueue), done: make(chan struct{})}
}

func (m *Manager) serveStream(l *Listener) {
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			if isClosed(err) {
				return
			}
			m.log.Warn("accept failed", "listener", l.addr.String(), "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		ap := nc.RemoteAddr().(*net.TCPAddr).AddrPort()
		remote := netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if m.opt.Gate != nil && m.opt.Gate.Blocked(remote.Addr()) {
			m.met.refused.WithLabelValues(l.transport.String(), dropBlocked).Inc()
			_ = nc.Close()
			continue
		}
		if l.transport == sip.TLS {
			nc = tls.Server(nc, m.serverTLSConfig())
		}
		c := m.newConn(l, l.transport, remote, nc)
		if reason := m.admit(c, false); reason != "" {
			m.met.refused.WithLabelValues(l.transport.String(), reason).Inc()
			m.publish(c, reason)
			_ = nc.Close()
			continue
		}
		m.wg.Add(2)
		go func() {
			defer m.wg.Done()
			m.readLoop(c)
		}()
		go func() {
			defer m.wg.Done()
			m.writeLoop(c)
		}()
	}
}

// connTo finds an open connection to dst or starts dialling one.
func (m *Manager) connTo(t sip.Transport, dst netip.AddrPort) (*Conn, error) {
	m.mu.Lock()
	c := m.conns[connKey{t, dst}]
	m.mu.Unlock()
	if c != nil && !c.Closed() {
		return c, nil
	}
	l := m.ListenerFor(t, dst.Addr())
	if l == nil {
		// Dial even without a listener of that transport (no Record-Route needed to come back).
		l = m.ListenerFor(sip.TCP, dst.Addr())
	}
	c = m.newConn(l, t, dst, nil)
	if reason := m.admit(c, true); reason != "" {
		m.met.refused.WithLabelValues(t.String(), reason).Inc()
		return nil, fmt.Errorf("transport: connection to %s refused: %s", dst, reason)
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.dialAndServe(c)
	}()
	return c, nil
}

// dialAndServe dials c's peer, then runs its writer, and its reader alongside.
func (m *Manager) dialAndServe(c *Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), m.opt.HandshakeTimeout)
	defer cancel()
	go func() {
		select {
		case <-c.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	d := net.Dialer{}
	nc, err := d.DialContext(ctx, "tcp", c.remote.String())
	if err == nil && c.transport == sip.TLS {
		tc := tls.Client(nc, m.clientTLSConfig(c.remote))
		if err = tc.HandshakeContext(ctx); err != nil {
			_ = nc.Close()
		}
		nc = tc
	}
	if err != nil {
		m.log.Debug("dial failed", "dst", c.remote.String(), "transport", c.transport.String(), "err", err)
		m.met.refused.WithLabelValues(c.transport.String(), "dial_failed").Inc()
		c.close()
		return
	}
	c.nc = nc
	if c.closed.Load() {
		_ = nc.Close()
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.readLoop(c)
	}()
	m.writeLoop(c)
}

func (m *Manager) writeLoop(c *Conn) {
	defer c.close()
	for {
		select {
		case <-c.done:
			return
		case <-m.done:
			return
		case b := <-c.out:
			_ = c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.nc.Write(b); err != nil {
				return
			}
			m.met.tx[c.transport].Inc()
		}
	}
}

// readLoop frames messages out of the stream (RFC 3261 18.3) until an error,
// a timeout or a framing error.
func (m *Manager) readLoop(c *Conn) {
	defer c.close()
	if tc, ok := c.nc.(*tls.Conn); ok {
		_ = tc.SetDeadline(time.Now().Add(m.opt.HandshakeTimeout))
		if err := tc.Handshake(); err != nil {
			m.met.refused.WithLabelValues(c.transport.String(), "handshake").Inc()
			return
		}
		_ = tc.SetWriteDeadline(time.Time{})
		if st := tc.ConnectionState(); len(st.VerifiedChains) > 0 {
			c.verified.Store(true)
		}
	}
	buf := make([]byte, 0, 4096)
	chunk := make([]byte, 16384)
	start := time.Now()
	c.lastMsg, c.pingAt, c.pingTokens = start, start, keepaliveBurst
	first := true
	for {
		// Only complete messages move the idle deadline (frame sets
		// lastMsg): a trickle of bytes or of keep-alives cannot hold a
		// connection open, unless a registration over it holds it
		// (HoldFlow). The read wakes at least once an idle period to see
		// a hold that ended.
		deadline := c.idleDeadline(m.opt.IdleTimeout)
		if first {
			deadline = start.Add(m.opt.HandshakeTimeout)
		} else if wake := time.Now().Add(m.opt.IdleTimeout); wake.Before(deadline) {
			deadline = wake
		}
		_ = c.nc.SetReadDeadline(deadline)
		n, err := c.nc.Read(chunk)
		if n > 0 {
			first = false
			buf = append(buf, chunk[:n]...)
			var ferr error
			buf, ferr = m.frame(c, buf)
			if ferr == errKeepaliveRate {
				m.met.refused.WithLabelValues(c.transport.String(), "keepalive_rate").Inc()
				m.log.Debug("stream keep-alives too fast", "src", c.remote.String())
				return
			}
			if ferr != nil {
				m.met.drop(c.transport, dropFraming)
				m.log.Debug("stream framing error", "src", c.remote.String(), "err", ferr)
				return
			}
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if !first && time.Now().Before(c.idleDeadline(m.opt.IdleTimeout)) {
					continue // held, or woken to look at the hold: wait on
				}
				m.met.refused.WithLabelValues(c.transport.String(), "timeout").Inc()
			}
			return
		}
	}
}

// idleDeadline is when c is idle for too long: an idle period after its
// last complete message, or the end of its hold if that is later (reader only).
func (c *Conn) idleDeadline(idle time.Duration) time.Time {
	d := c.lastMsg.Add(idle)
	if held := time.Unix(0, c.heldUntil.Load()); held.After(d) {
		return held
	}
	return d
}

// HoldFlow keeps the TCP or TLS connection from remote open until until,
// even when only keep-alives cross it (within their budget): the registrar
// holds the flow a phone registered over (RFC 5626), so that calls reach it
// between its registrations. A zero until ends the hold; the idle timeout
// then runs from the last complete message again.
func (m *Manager) HoldFlow(t sip.Transport, remote netip.AddrPort, until time.Time) {
	m.mu.Lock()
	c := m.conns[connKey{t, remote}]
	m.mu.Unlock()
	if c == nil {
		return
	}
	if until.IsZero() {
		c.heldUntil.Store(0)
		return
	}
	c.heldUntil.Store(until.UnixNano())
}

// Keep-alives (RFC 5626 section 4.4.1) a connection may send: keepaliveBurst
// at once, then keepaliveRate a second; a client pings every half minute
// or more, so only a flood exceeds it (and loses its connection).
const (
	keepaliveBurst = 16
	keepaliveRate  = 1.0
)

// keepalive spends one keep-alive of c's budget at now; false when none is left.
func (c *Conn) keepalive(now time.Time) bool {
	c.pingTokens = min(keepaliveBurst, c.pingTokens+now.Sub(c.pingAt).Seconds()*keepaliveRate)
	c.pingAt = now
	if c.pingTokens < 1 {
		return false
	}
	c.pingTokens--
	return true
}

// pong answers a double-CRLF ping (enqueue copies it).
var pong = []byte("\r\n")

var (
	errNoContentLength = errors.New("stream message without Content-Length")
	errTooLarge        = errors.New("stream message larger than the maximum")
	errBadCL           = errors.New("invalid Content-Length")
	errKeepaliveRate   = errors.New("keep-alives faster than allowed")
)

// frame hands every complete message in buf to the handler and returns the
// unconsumed rest (moved to the front of buf).
func (m *Manager) frame(c *Conn, buf []byte) ([]byte, error) {
	for {
		// Keep-alives between messages (RFC 5626 section 4.4.1): a "\r\n\r\n"
		// ping gets a "\r\n" pong. They are counted against the
		// connection's keep-alive budget and do not move its idle deadline.
		i := 0
		for i+1 < len(buf) && buf[i] == '\r' && buf[i+1] == '\n' {
			if !c.keepalive(time.Now()) {
				return buf, errKeepaliveRate
			}
			m.met.drop(c.transport, dropKeepalive)
			if i+3 < len(buf) && buf[i+2] == '\r' && buf[i+3] == '\n' {
				_ = c.enqueue(pong)
				i += 4
				continue
			}
			i += 2
		}
		if i > 0 {
			buf = append(buf[:0], buf[i:]...)
		}
		if len(buf) == 0 {
			return buf, nil
		}
		total, err := frameLength(buf, m.opt.MaxMessageSize)
		if err != nil {
			return buf, err
		}
		if total == 0 || total > len(buf) {
			return buf, nil // need more bytes
		}
		now := time.Now()
		c.lastMsg = now
		m.receive(c.listener, c, c.remote, buf[:total], now)
		buf = append(buf[:0], buf[total:]...)
	}
}

// frameLength returns the length of the message at the start of b: 0 when
// the header section is not complete yet.
func frameLength(b []byte, max int) (int, error) {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		if len(b) > max {
			return 0, errTooLarge
		}
		return 0, nil
	}
	head := b[:end+2]
	cl := -1
	for len(head) > 0 {
		nl := bytes.IndexByte(head, '\n')
		line := head[:nl+1]
		head = head[nl+1:]
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			continue
		}
		name := bytes.TrimRight(line[:colon], " \t")
		if !bytes.EqualFold(name, []byte("content-length")) && !bytes.EqualFold(name, []byte("l")) {
			continue
		}
		v := bytes.TrimSpace(line[colon+1:])
		n := 0
		if len(v) == 0 || len(v) > 6 {
			return 0, errBadCL
		}
		for _, d := range v {
			if d < '0' || d > '9' {
				return 0, errBadCL
			}
			n = n*10 + int(d-'0')
		}
		if cl >= 0 && cl != n {
			return 0, errBadCL
		}
		cl = n
	}
	if cl < 0 {
		return 0, errNoContentLength
	}
	total := end + 4 + cl
	if total > max {
		return 0, errTooLarge
	}
	return total, nil
}
