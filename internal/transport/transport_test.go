package transport

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/banlist"

	"go.uber.org/goleak"

	"github.com/sipwarden/sipwarden/internal/sip"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// sink collects received packets.
type sink struct {
	mu   sync.Mutex
	msgs []string
	from []netip.AddrPort
	pkts []*Packet
	got  chan struct{}
}

func newSink() *sink { return &sink{got: make(chan struct{}, 100)} }

func (s *sink) HandlePacket(p *Packet) {
	s.mu.Lock()
	s.msgs = append(s.msgs, string(p.Buf))
	s.from = append(s.from, p.Src)
	s.pkts = append(s.pkts, p)
	s.mu.Unlock()
	s.got <- struct{}{}
}

func (s *sink) wait(t *testing.T, n int) []string {
	t.Helper()
	for range n {
		select {
		case <-s.got:
		case <-time.After(3 * time.Second):
			t.Fatalf("timed out waiting for message")
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.msgs...)
}

func msg(callID string, body string) string {
	return fmt.Sprintf("OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nCall-ID: %s\r\nCSeq: 1 OPTIONS\r\nContent-Length: %d\r\n\r\n%s", callID, len(body), body)
}

func TestUDPGateAndSend(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			s := newSink()
			m, err := NewManager(Options{MaxMessageSize: 2000, Gate: blockIP("127.0.0.9")}, s)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			l, err := m.Listen(sip.UDP, netip.MustParseAddrPort(addr), "")
			if err != nil {
				t.Fatal(err)
			}
			peerAddr := "127.0.0.1:0"
			if strings.HasPrefix(addr, "[") {
				peerAddr = "[::1]:0"
			}
			peer, err := net.ListenPacket("udp", peerAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			dst := net.UDPAddrFromAddrPort(l.Addr())
			for _, junk := range []string{"\r\n\r\n", "\x16\x03\x01\x02\x00 tls hello", strings.Repeat("A", 2001)} {
				_, _ = peer.WriteTo([]byte(junk), dst)
			}
			_, _ = peer.WriteTo([]byte(msg("ok-1", "")), dst)
			got := s.wait(t, 1)
			if len(got) != 1 || !strings.Contains(got[0], "ok-1") {
				t.Fatalf("received %q", got)
			}
			for _, r := range []string{dropKeepalive, dropGarbage, dropOversize} {
				if v := counterValue(m.met.dropped.WithLabelValues("UDP", r)); v != 1 {
					t.Errorf("drops %s: %v, want 1", r, v)
				}
			}
			// send back from the listener
			src := s.from[0]
			if err := m.Send(sip.UDP, nil, src, nil, []byte(msg("back", ""))); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 4096)
			_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, from, err := peer.ReadFrom(buf)
			if err != nil || !strings.Contains(string(buf[:n]), "back") || from.(*net.UDPAddr).AddrPort().Port() != l.Addr().Port() {
				t.Fatalf("reply: %q from %v, %v", buf[:n], from, err)
			}
			for _, p := range s.pkts {
				p.Release()
			}
		})
	}
}

type blockIP string

func (b blockIP) Blocked(a netip.Addr) bool { return a.String() == string(b) }

func TestTCPFraming(t *testing.T) {
	s := newSink()
	m, err := NewManager(Options{MaxMessageSize: 4000, MaxConnsPerSource: 2}, s)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	l, err := m.Listen(sip.TCP, netip.MustParseAddrPort("127.0.0.1:0"), "")
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// two messages in one write, then one split over many writes, with a keep-alive ping between
	_, _ = c.Write([]byte(msg("a", "body-a") + msg("b", "")))
	_, _ = c.Write([]byte("\r\n\r\n"))
	whole := msg("c", "split body")
	for i := 0; i < len(whole); i += 7 {
		_, _ = c.Write([]byte(whole[i:min(i+7, len(whole))]))
		time.Sleep(time.Millisecond)
	}
	got := s.wait(t, 3)
	if len(got) != 3 || !strings.HasSuffix(got[0], "body-a") || !strings.Contains(got[1], "Call-ID: b") || !strings.HasSuffix(got[2], "split body") {
		t.Fatalf("framed %q", got)
	}
	pong := make([]byte, 2)
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(pong); err != nil || string(pong) != "\r\n" {
		t.Fatalf("keep-alive pong %q %v", pong, err)
	}
	// the connection is reused to answer
	conn := s.pkts[0].Conn
	if err := m.Send(sip.TCP, nil, conn.RemoteAddr(), conn, []byte(msg("reply", ""))); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "OPTIONS") {
		t.Fatalf("reply line %q %v", line, err)
	}
	// a message without Content-Length closes the connection
	_, _ = c.Write([]byte("OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n"))
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 10)); err == nil {
		t.Fatal("connection still open after a message without Content-Length")
	}
	// per-source connection cap: 2
	c1, _ := net.Dial("tcp", l.Addr().String())
	c2, _ := net.Dial("tcp", l.Addr().String())
	c3, _ := net.Dial("tcp", l.Addr().String())
	defer c1.Close()
	defer c2.Close()
	defer c3.Close()
	_ = c3.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c3.Read(make([]byte, 1)); err == nil {
		t.Fatal("third connection from one source was not closed")
	}
	for _, p := range s.pkts {
		p.Release()
	}
}

func TestIdleAndHandshakeTimeouts(t *testing.T) {
	s := newSink()
	m, err := NewManager(Options{HandshakeTimeout: 200 * time.Millisecond, IdleTimeout: 300 * time.Millisecond}, s)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	l, _ := m.Listen(sip.TCP, netip.MustParseAddrPort("127.0.0.1:0"), "")
	c, _ := net.Dial("tcp", l.Addr().String())
	defer c.Close()
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("silent connection not closed")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("closed after %v, want about 200ms", d)
	}
}

func writeCert(t *testing.T, dir, name string) (string, string, *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	kb, _ := x509.MarshalECPrivateKey(key)
	cf, kf := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	_ = os.WriteFile(cf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return cf, kf, pool
}

func TestTLSReloadAndClientCert(t *testing.T) {
	dir := t.TempDir()
	cf, kf, pool1 := writeCert(t, dir, "server")
	ccf, ckf, clientPool := writeCert(t, dir, "client")
	s := newSink()
	m, err := NewManager(Options{CertFile: cf, KeyFile: kf, ClientCAFile: ccf}, s)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	l, err := m.Listen(sip.TLS, netip.MustParseAddrPort("127.0.0.1:0"), "")
	if err != nil {
		t.Fatal(err)
	}
	_ = clientPool
	clientCert, _ := tls.LoadX509KeyPair(ccf, ckf)
	dial := func(pool *x509.CertPool, certs []tls.Certificate) (*tls.Conn, error) {
		return tls.Dial("tcp", l.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", Certificates: certs, MinVersion: tls.VersionTLS12})
	}
	c, err := dial(pool1, []tls.Certificate{clientCert})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Write([]byte(msg("tls-1", "")))
	s.wait(t, 1)
	if !s.pkts[0].Conn.ClientVerified() || s.pkts[0].Transport != sip.TLS {
		t.Fatal("client certificate not reported as verified")
	}
	c.Close()
	c, err = dial(pool1, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Write([]byte(msg("tls-2", "")))
	s.wait(t, 1)
	if s.pkts[1].Conn.ClientVerified() {
		t.Fatal("a connection without client certificate reported as verified")
	}
	c.Close()
	// TLS 1.1 is refused
	if _, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{RootCAs: pool1, ServerName: "127.0.0.1", MaxVersion: tls.VersionTLS11, MinVersion: tls.VersionTLS10}); err == nil {
		t.Fatal("TLS 1.1 accepted")
	}
	// replace the certificate files: new handshakes get the new one after ReloadTLS
	_, _, pool2 := writeCert(t, dir, "server")
	if err := m.ReloadTLS(); err != nil {
		t.Fatal(err)
	}
	if c, err = dial(pool2, nil); err != nil {
		t.Fatalf("new certificate not served: %v", err)
	}
	c.Close()
	for _, p := range s.pkts {
		p.Release()
	}
}

func TestFrameLength(t *testing.T) {
	tests := []struct {
		in   string
		want int
		err  error
	}{
		{"OPTIONS x SIP/2.0\r\nContent-Length: 3\r\n\r\nabc", 43, nil},
		{"OPTIONS x SIP/2.0\r\nl: 0\r\n\r\n", 27, nil},
		{"OPTIONS x SIP/2.0\r\nContent-Length: 3\r\n", 0, nil},
		{"OPTIONS x SIP/2.0\r\nX: y\r\n\r\n", 0, errNoContentLength},
		{"OPTIONS x SIP/2.0\r\nContent-Length: -1\r\n\r\n", 0, errBadCL},
		{"OPTIONS x SIP/2.0\r\nContent-Length: 99999\r\n\r\n", 0, errTooLarge},
	}
	for _, tc := range tests {
		n, err := frameLength([]byte(tc.in), 1000)
		if n != tc.want || err != tc.err {
			t.Errorf("frameLength(%q) = %d, %v; want %d, %v", tc.in, n, err, tc.want, tc.err)
		}
	}
}

func FuzzFrame(f *testing.F) {
	f.Add([]byte("OPTIONS x SIP/2.0\r\nContent-Length: 3\r\n\r\nabc"))
	f.Add([]byte("\r\n\r\nINVITE x SIP/2.0\r\nl:1\r\n\r\nz"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := frameLength(b, 65535)
		if err == nil && (n < 0 || n > 65535) {
			t.Fatalf("frame length %d", n)
		}
	})
}

func BenchmarkFrameLength(b *testing.B) {
	m := []byte(msg("bench", strings.Repeat("x", 300)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := frameLength(m, 65535); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUDPReceive measures the receive path of one datagram: gate, copy
// into a pooled buffer, hand-off (the socket read itself is not included).
func BenchmarkUDPReceive(b *testing.B) {
	m, _ := NewManager(Options{}, HandlerFunc(func(p *Packet) { p.Release() }))
	defer m.Close()
	l := &Listener{m: m, transport: sip.UDP, addr: netip.MustParseAddrPort("127.0.0.1:5060")}
	data := []byte(msg("bench", strings.Repeat("x", 500)))
	src := netip.MustParseAddrPort("127.0.0.2:5060")
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		m.receive(l, nil, src, data, now)
	}
}

// BenchmarkUDPDropBanned measures the cost of a datagram from a banned
// source once it has been read: the gate's lookup among 10,000 bans and the
// drop (counted), before any parsing.
func BenchmarkUDPDropBanned(b *testing.B) {
	bans := banlist.New(nil, banlist.Options{})
	for i := range 10000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1})
		if _, err := bans.Add(netip.PrefixFrom(a, 32), "flood", "bench", time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	m, _ := NewManager(Options{Gate: bans}, HandlerFunc(func(p *Packet) {
		p.Release()
		b.Fatal("a banned datagram reached the handler")
	}))
	defer m.Close()
	l := &Listener{m: m, transport: sip.UDP, addr: netip.MustParseAddrPort("127.0.0.1:5060")}
	data := []byte(msg("bench", strings.Repeat("x", 500)))
	src := netip.MustParseAddrPort("10.0.39.1:5060") // banned: i = 9985
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		m.receive(l, nil, src, data, now)
	}
}
