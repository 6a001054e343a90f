package transport

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipwarden/sipwarden/internal/events"
	"github.com/sipwarden/sipwarden/internal/sip"
)

// Options configure a Manager. Zero values take the defaults in the package doc.
type Options struct {
	MaxMessageSize   int
	IdleTimeout      time.Duration
	HandshakeTimeout time.Duration
	// MaxConnsPerSource caps the connections of one stranger's address (an
	// address of no configured peer).
	MaxConnsPerSource int
	// MaxConnsPerPrefix caps the connections of the strangers of one IPv6
	// /64, which one subscriber usually holds whole.
	MaxConnsPerPrefix int
	MaxConns          int
	// ReservedPeerConns is the share of MaxConns that only configured peers
	// (SetPeers) may use: strangers together hold at most MaxConns minus it.
	ReservedPeerConns int
	WriteQueue        int
	// CertFile and KeyFile are the TLS server certificate (PEM), reloaded
	// when the files change and on ReloadTLS.
	CertFile, KeyFile string
	// ClientCAFile, when set, verifies client certificates (optional for the
	// client; Conn.ClientVerified tells the result).
	ClientCAFile string
	// RootCAFile verifies the servers sipwarden dials over TLS (default: the
	// system roots). InsecureSkipVerifyUpstream disables that check (tests only).
	RootCAFile                 string
	InsecureSkipVerifyUpstream bool
	Gate                       Gate
	Bus                        *events.Bus
	Registerer                 prometheus.Registerer
	Logger                     *slog.Logger
}

// Manager owns the listeners and the stream connections.
type Manager struct {
	opt Options
	h   Handler
	met *metrics
	log *slog.Logger
	tls *certStore

	mu        sync.Mutex
	listeners []*Listener
	conns     map[connKey]*Conn
	perSource map[netip.Addr]int   // strangers' connections by address
	perPrefix map[netip.Prefix]int // strangers' connections by IPv6 /64
	perPeer   map[string]int       // peers' connections by peer name
	strangers int                  // connections of strangers (accepted)
	total     int
	closed    bool
	peers     atomic.Pointer[PeerTable]

	wg   sync.WaitGroup
	done chan struct{}
}

type connKey struct {
	t    sip.Transport
	addr netip.AddrPort
}

// NewManager creates a manager that passes received messages to h.
func NewManager(opt Options, h Handler) (*Manager, error) {
	if opt.MaxMessageSize <= 0 || opt.MaxMessageSize > 65535 {
		opt.MaxMessageSize = sip.DefaultMaxMessageSize
	}
	if opt.IdleTimeout <= 0 {
		opt.IdleTimeout = 3 * time.Minute
	}
	if opt.HandshakeTimeout <= 0 {
		opt.HandshakeTimeout = 5 * time.Second
	}
	if opt.MaxConnsPerSource <= 0 {
		opt.MaxConnsPerSource = 32
	}
	if opt.MaxConnsPerPrefix <= 0 {
		opt.MaxConnsPerPrefix = 2 * opt.MaxConnsPerSource
	}
	if opt.MaxConns <= 0 {
		opt.MaxConns = 10000
	}
	if opt.ReservedPeerConns <= 0 {
		opt.ReservedPeerConns = opt.MaxConns / 4
	}
	opt.ReservedPeerConns = min(opt.ReservedPeerConns, opt.MaxConns)
	if opt.WriteQueue <= 0 {
		opt.WriteQueue = 256
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	m := &Manager{
		opt:       opt,
		h:         h,
		met:       newMetrics(opt.Registerer),
		log:       opt.Logger,
		conns:     make(map[connKey]*Conn),
		perSource: make(map[netip.Addr]int),
		perPrefix: make(map[netip.Prefix]int),
		perPeer:   make(map[string]int),
		done:      make(chan struct{}),
	}
	if opt.CertFile != "" || opt.ClientCAFile != "" || opt.RootCAFile != "" {
		cs, err := newCertStore(opt.CertFile, opt.KeyFile, opt.ClientCAFile, opt.RootCAFile)
		if err != nil {
			return nil, err
		}
		m.tls = cs
		if opt.CertFile != "" {
			m.wg.Add(1)
			go func() {
				defer m.wg.Done()
				m.watchCert()
			}()
		}
	}
	return m, nil
}

// Listener is one bound SIP listener.
type Listener struct {
	m         *Manager
	transport sip.Transport
	addr      netip.AddrPort
	advertise string
	udp       *net.UDPConn
	ln        net.Listener
}

// Transport returns the listener's transport.
func (l *Listener) Transport() sip.Transport { return l.transport }

// Addr returns the bound address.
func (l *Listener) Addr() netip.AddrPort { return l.addr }

// Advertise returns the host[:port] used in Via and Record-Route.
func (l *Listener) Advertise() string { return l.advertise }

// Listen binds a listener and starts serving it.
func (m *Manager) Listen(t sip.Transport, addr netip.AddrPort, advertise string) (*Listener, error) {
	l := &Listener{m: m, transport: t}
	switch t {
	case sip.UDP:
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		if err != nil {
			return nil, err
		}
		_ = c.SetReadBuffer(4 << 20)
		_ = c.SetWriteBuffer(4 << 20)
		l.udp = c
		l.addr = c.LocalAddr().(*net.UDPAddr).AddrPort()
	case sip.TCP, sip.TLS:
		if t == sip.TLS && (m.tls == nil || m.tls.current() == nil) {
			return nil, errors.New("a tls listener needs tls.cert and tls.key")
		}
		ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(addr))
		if err != nil {
			return nil, err
		}
		l.ln = ln
		l.addr = ln.Addr().(*net.TCPAddr).AddrPort()
	default:
		return nil, fmt.Errorf("unknown transport %v", t)
	}
	l.addr = netip.AddrPortFrom(l.addr.Addr().Unmap(), l.addr.Port())
	l.advertise = advertise
	if l.advertise == "" {
		l.advertise = l.addr.String()
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		l.close()
		return nil, errors.New("transport: manager closed")
	}
	m.listeners = append(m.listeners, l)
	m.mu.Unlock()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if l.udp != nil {
			m.serveUDP(l)
		} else {
			m.serveStream(l)
		}
	}()
	return l, nil
}

func (l *Listener) close() {
	if l.udp != nil {
		_ = l.udp.Close()
	}
	if l.ln != nil {
		_ = l.ln.Close()
	}
}

// Listeners returns the bound listeners.
func (m *Manager) Listeners() []*Listener {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*Listener(nil), m.listeners...)
}

// ListenerFor picks the listener to send from for transport t towards dst:
// one of the same address family if there is one.
func (m *Manager) ListenerFor(t sip.Transport, dst netip.Addr) *Listener {
	m.mu.Lock()
	defer m.mu.Unlock()
	var fallback *Listener
	for _, l := range m.listeners {
		if l.transport != t {
			continue
		}
		if !dst.IsValid() || l.addr.Addr().Is4() == dst.Unmap().Is4() {
			return l
		}
		if fallback == nil {
			fallback = l
		}
	}
	return fallback
}

// Send sends one message; b is not kept after Send returns. See the package
// documentation for how TCP and TLS connections are chosen.
func (m *Manager) Send(t sip.Transport, from *Listener, dst netip.AddrPort, conn *Conn, b []byte) error {
	switch t {
	case sip.UDP:
		if from == nil || from.udp == nil {
			from = m.ListenerFor(sip.UDP, dst.Addr())
		}
		if from == nil || from.udp == nil {
			return errors.New("transport: no UDP listener")
		}
		if from.addr.Addr().Is6() && dst.Addr().Is4() {
			dst = netip.AddrPortFrom(netip.AddrFrom16(dst.Addr().As16()), dst.Port())
		}
		if _, err := from.udp.WriteToUDPAddrPort(b, dst); err != nil {
			return err
		}
		m.met.tx[sip.UDP].Inc()
		return nil
	case sip.TCP, sip.TLS:
		if conn == nil || conn.Closed() {
			var err error
			conn, err = m.connTo(t, dst)
			if err != nil {
				return err
			}
		}
		return conn.enqueue(b)
	}
	return fmt.Errorf("transport: cannot send over %v", t)
}

// Close stops every listener and connection and waits for their goroutines.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	close(m.done)
	ls := m.listeners
	conns := make([]*Conn, 0, len(m.conns))
	for _, c := range m.conns {
		conns = append(conns, c)
	}
	m.mu.Unlock()
	for _, l := range ls {
		l.close()
	}
	for _, c := range conns {
		c.close()
	}
	m.wg.Wait()
	return nil
}

// ReloadTLS reloads the certificate files now.
func (m *Manager) ReloadTLS() error {
	if m.tls == nil {
		return nil
	}
	return m.tls.reload()
}

func (m *Manager) watchCert() {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-m.done:
			return
		case <-t.C:
			if changed, err := m.tls.changed(); err == nil && changed {
				if err := m.tls.reload(); err != nil {
					m.log.Warn("TLS certificate reload failed; the old certificate stays", "err", err)
				} else {
					m.log.Info("TLS certificate reloaded", "file", m.opt.CertFile)
				}
			}
		}
	}
}

// serverTLSConfig is the configuration of accepted TLS connections.
func (m *Manager) serverTLSConfig() *tls.Config {
	return m.tls.serverConfig()
}
