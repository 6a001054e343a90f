package media

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/logging"
)

// DTLS handshakes on the relay's ports (RFC 5764).
//
// A leg that uses DTLS-SRTP gets one DTLS association per relay socket
// facing it: one on the RTP port and, since the relay does not multiplex
// RTCP, one on the RTCP port (RFC 5764 section 4.1: a DTLS-SRTP session
// protects the packets of one port pair only). The socket's poller keeps
// reading the port: it hands records whose first byte is 20-63 (RFC 7983
// section 7) to the socket's dtlsEndpoint and treats 128-191 as RTP/RTCP.
// The endpoint feeds them, through a bounded queue, to a pion/dtls
// connection running in its own goroutine; pion writes its flights back
// through the socket. When the handshake ends, the endpoint derives the
// SRTP keys from the exporter (RFC 5764 section 4.2) and the relay installs
// them in the packet path, which from then on is the same as with SDES.

// dtlsHandshakeTimeout bounds one handshake attempt; pion retransmits
// flights within it (1 s, doubling).
const dtlsHandshakeTimeout = 10 * time.Second

// dtlsAttempts bounds the handshakes one endpoint runs (a failed one, for
// instance from a forged source, does not kill the leg at once).
const dtlsAttempts = 3

// dtlsQueue bounds the records waiting for the handshake goroutine: a
// flight is a few records; more is a flood and dropped.
const dtlsQueue = 16

// isDTLSRecord reports whether a datagram's first byte is a DTLS record
// content type (RFC 7983 section 7: 20-63).
func isDTLSRecord(b byte) bool { return b >= 20 && b <= 63 }

// consumed is the result of a packet handed to a DTLS endpoint: neither
// forwarded nor dropped.
const consumed dropReason = 254

// dtlsEnv is what the relay gives every endpoint.
type dtlsEnv struct {
	cert    tls.Certificate
	log     *slog.Logger
	met     *metrics
	timeout time.Duration
}

// dtlsParams are what the SDP decided for one association.
type dtlsParams struct {
	client bool           // the relay starts the handshake (its a=setup is active)
	fps    []Fingerprint  // the peer's certificate must match one
	dst    netip.AddrPort // where the peer's SDP says it receives (the client sends there first)
	srtp   []dtls.SRTPProtectionProfile
}

// same reports whether an endpoint started with p can go on under q: the
// roles and the peer's certificate are unchanged. A re-INVITE that only
// moves the peer keeps an established association (its keys stay); a
// client still waiting for an address (on hold) or connecting to the old
// one starts over.
func (p *dtlsParams) same(q *dtlsParams, ready bool) bool {
	if p.client != q.client || !sameFingerprints(p.fps, q.fps) {
		return false
	}
	return ready || !p.client || p.dst == q.dst
}

type dtlsPacket struct {
	b   []byte
	src netip.AddrPort
}

// dtlsEndpoint is the DTLS side of one relay socket. It is created armed
// (records are queued, so that a peer that starts the handshake before its
// SDP answer reaches the relay is not lost) and started once the answer
// fixes the roles and the peer's fingerprint.
type dtlsEndpoint struct {
	sock *socket
	env  *dtlsEnv
	// onKeys runs (in the endpoint's goroutine) once the handshake has
	// produced keys: the relay installs them in the packet path.
	onKeys func()
	in     chan dtlsPacket
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool // stop was called: nothing is written through sock any more
	params *dtlsParams
	// remote is the peer this endpoint talks to; bound once a record came
	// from it (the client starts with the SDP's address, unbound).
	remote netip.AddrPort
	bound  bool
	recv   Crypto // keys from the finished handshake
	send   Crypto
	ready  bool
}

func newDTLSEndpoint(sock *socket, env *dtlsEnv, onKeys func()) *dtlsEndpoint {
	ctx, cancel := context.WithCancel(context.Background())
	return &dtlsEndpoint{sock: sock, env: env, onKeys: onKeys, in: make(chan dtlsPacket, dtlsQueue), ctx: ctx, cancel: cancel}
}

// start runs the handshake with p in a new goroutine; wg counts it.
func (e *dtlsEndpoint) start(p *dtlsParams, wg *sync.WaitGroup) {
	e.mu.Lock()
	if e.closed || e.params != nil {
		e.mu.Unlock()
		return
	}
	e.params = p
	e.mu.Unlock()
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.run(p)
	}()
}

// started returns the endpoint's parameters (nil while armed).
func (e *dtlsEndpoint) started() *dtlsParams {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.params
}

// keys returns the SRTP keys once the handshake is done.
func (e *dtlsEndpoint) keys() (recv, send Crypto, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.recv, e.send, e.ready
}

// stop ends the endpoint: after it returns nothing more is written through
// the socket (which may then be closed); the goroutine ends on its own.
func (e *dtlsEndpoint) stop() {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	e.cancel()
}

// input takes a DTLS record read by the socket's poller. It never blocks:
// a full queue drops the record (the peer retransmits).
func (s *socket) dtlsInput(p *relayParams, pkt []byte, src netip.AddrPort, now int64) dropReason {
	e := s.dtls.Load()
	if e == nil {
		return dropMalformed
	}
	if !s.rateOK(p, now) {
		return dropRate
	}
	e.mu.Lock()
	closed, remote, bound := e.closed, e.remote, e.bound
	e.mu.Unlock()
	switch {
	case closed:
		return dropNotReady
	case bound && src != remote:
		return dropSource
	}
	select {
	case e.in <- dtlsPacket{b: append([]byte(nil), pkt...), src: src}:
		return consumed
	default:
		return dropRate
	}
}

// run performs up to dtlsAttempts handshakes until one succeeds, then keeps
// the association open (pion answers retransmitted flights) until stop.
func (e *dtlsEndpoint) run(p *dtlsParams) {
	log := e.env.log.With("call_id", e.sock.callID, "leg", e.sock.leg.String(), "kind", e.sock.kind.String())
	for range dtlsAttempts {
		if e.ctx.Err() != nil {
			return
		}
		conn, err := e.attempt(p)
		if err == nil {
			e.env.met.dtls.WithLabelValues("ok").Inc()
			e.onKeys()
			<-e.ctx.Done()
			_ = conn.Close()
			return
		}
		if e.ctx.Err() != nil {
			return
		}
		e.env.met.dtls.WithLabelValues("failed").Inc()
		log.Warn("media: DTLS-SRTP handshake failed", "reason", err.Error())
		e.mu.Lock()
		e.remote, e.bound = netip.AddrPort{}, false // the next attempt may come from elsewhere
		e.mu.Unlock()
	}
}

// attempt runs one handshake and, on success, records the SRTP keys.
func (e *dtlsEndpoint) attempt(p *dtlsParams) (*dtls.Conn, error) {
	c := &dtlsConn{e: e, closed: make(chan struct{}), wake: make(chan struct{})}
	if p.client {
		if !p.dst.IsValid() {
			<-e.ctx.Done() // on hold: nothing to connect to until a re-INVITE
			return nil, e.ctx.Err()
		}
		e.mu.Lock()
		e.remote, e.bound = p.dst, false
		e.mu.Unlock()
	} else {
		select {
		case <-e.ctx.Done():
			return nil, e.ctx.Err()
		case pkt := <-e.in:
			c.bind(pkt.src)
			c.first = &pkt
		}
	}
	e.mu.Lock()
	raddr := net.UDPAddrFromAddrPort(e.remote)
	e.mu.Unlock()

	verify := func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("peer sent no certificate")
		}
		for _, f := range p.fps {
			if f.matches(raw[0]) {
				return nil
			}
		}
		return errors.New("peer certificate does not match the SDP fingerprint")
	}
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	common := []dtls.Option{
		dtls.WithCertificates(e.env.cert),
		dtls.WithSRTPProtectionProfiles(p.srtp...),
		dtls.WithInsecureSkipVerify(true), // no chain: the fingerprint pins the certificate
		dtls.WithVerifyPeerCertificate(verify),
		dtls.WithExtendedMasterSecret(dtls.RequestExtendedMasterSecret),
		dtls.WithLoggerFactory(lf),
	}
	var conn *dtls.Conn
	var err error
	if p.client {
		opts := make([]dtls.ClientOption, 0, len(common))
		for _, o := range common {
			opts = append(opts, o)
		}
		conn, err = dtls.ClientWithOptions(c, raddr, opts...)
	} else {
		opts := make([]dtls.ServerOption, 0, len(common)+1)
		for _, o := range common {
			opts = append(opts, o)
		}
		opts = append(opts, dtls.WithClientAuth(dtls.RequireAnyClientCert))
		conn, err = dtls.ServerWithOptions(c, raddr, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("DTLS setup: %w", err)
	}
	ctx, cancel := context.WithTimeout(e.ctx, e.env.timeout)
	err = conn.HandshakeContext(ctx)
	cancel()
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	profile, ok := conn.SelectedSRTPProtectionProfile()
	suite := suiteOfProfile(profile)
	if !ok || suite == SuiteNone {
		_ = conn.Close()
		return nil, errors.New("no SRTP protection profile negotiated (use_srtp)")
	}
	state, ok := conn.ConnectionState()
	if !ok {
		_ = conn.Close()
		return nil, errors.New("no DTLS connection state")
	}
	recv, send, err := srtpKeys(&state, suite, p.client)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	e.mu.Lock()
	e.recv, e.send, e.ready = recv, send, true
	e.mu.Unlock()
	return conn, nil
}

// dtlsConn is the net.PacketConn pion/dtls runs over for one handshake
// attempt: reads come from the endpoint's queue (records the poller read),
// writes go out through the relay socket to the bound peer.
type dtlsConn struct {
	e     *dtlsEndpoint
	first *dtlsPacket

	mu       sync.Mutex
	deadline time.Time
	wake     chan struct{} // closed and replaced when the deadline changes
	closed   chan struct{}
	once     sync.Once
}

func (c *dtlsConn) ReadFrom(b []byte) (int, net.Addr, error) {
	c.mu.Lock()
	if c.first != nil {
		pkt := c.first
		c.first = nil
		c.mu.Unlock()
		return copy(b, pkt.b), net.UDPAddrFromAddrPort(pkt.src), nil
	}
	c.mu.Unlock()
	for {
		select {
		case <-c.closed: // a finished attempt must not take the next one's records
			return 0, nil, net.ErrClosed
		default:
		}
		c.mu.Lock()
		deadline, wake := c.deadline, c.wake
		c.mu.Unlock()
		var timer *time.Timer
		var expired <-chan time.Time
		if !deadline.IsZero() {
			d := time.Until(deadline)
			if d <= 0 {
				return 0, nil, os.ErrDeadlineExceeded
			}
			timer = time.NewTimer(d)
			expired = timer.C
		}
		var pkt dtlsPacket
		var err error
		got := false
		select {
		case <-c.closed:
			err = net.ErrClosed
		case <-c.e.ctx.Done():
			err = net.ErrClosed
		case <-wake:
		case <-expired:
			err = os.ErrDeadlineExceeded
		case pkt = <-c.e.in:
			// Records queued before the endpoint bound to its peer may come from elsewhere.
			got = c.bind(pkt.src)
		}
		if timer != nil {
			timer.Stop()
		}
		if err != nil {
			return 0, nil, err
		}
		if got {
			return copy(b, pkt.b), net.UDPAddrFromAddrPort(pkt.src), nil
		}
	}
}

func (c *dtlsConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	e := c.e
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return 0, net.ErrClosed
	}
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	if err := e.sock.sock.sendTo(b, e.remote); err != nil {
		return 0, err
	}
	return len(b), nil
}

// bind makes src the attempt's peer if none has sent yet, and reports
// whether a record from src belongs to the attempt. The peer is whoever
// answers (or, for a server, starts) the handshake, not necessarily the
// SDP's address: a peer behind NAT or on several addresses replies from
// elsewhere. That is safe because only a peer holding the key of the SDP's
// fingerprint completes it; an impostor costs one attempt.
func (c *dtlsConn) bind(src netip.AddrPort) bool {
	e := c.e
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.bound {
		e.remote, e.bound = src, true
	}
	return src == e.remote
}

// Close ends this attempt's reads; it does not close the relay socket.
func (c *dtlsConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *dtlsConn) LocalAddr() net.Addr {
	return &net.UDPAddr{Port: c.e.sock.port}
}

func (c *dtlsConn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

func (c *dtlsConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	close(c.wake)
	c.wake = make(chan struct{})
	c.mu.Unlock()
	return nil
}

// SetWriteDeadline is a no-op: writes never block (a UDP sendto).
func (c *dtlsConn) SetWriteDeadline(time.Time) error { return nil }
