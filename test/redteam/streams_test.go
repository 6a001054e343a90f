package redteam

// Attacks on the TCP/TLS connection budget: strangers filling it so that a
// trunk cannot connect, keep-alives holding connections past the idle
// timeout, and an office NAT trunk refused beyond a stranger's cap.

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
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/test/testbed"
)

// streamsConfig: a trunk (acme, 127.0.0.2) and its upstream PBX
// (127.0.0.3, a smPBX); TCP and TLS listeners; Extra "sip" is the sip section.
const streamsConfig = `
listen: [udp://127.0.0.1:{{.SIPPort}}, tcp://127.0.0.1:{{.SIPPort}}, tls://127.0.0.1:{{.TLSPort}}]
tls: {cert: "{{index .Extra "cert"}}", key: "{{index .Extra "key"}}"}
admin: {listen: "127.0.0.1:{{.AdminPort}}"}
storage: {path: "{{.Dir}}/data"}
log: {level: info}
sip: {{index .Extra "sip"}}
upstreams:
  - name: pbx
    targets: ["udp://127.0.0.3:{{.PBXPort}}"]
trunks:
  - name: acme
    auth: ip
    allow: [127.0.0.2/32]
    upstream: pbx
    numbers: ["+15551230000/4"]
    targets: ["udp://127.0.0.2:5070"]
`

func smStartStreamsEdge(t *testing.T, sip string) *testbed.Edge {
	t.Helper()
	cert, key := smWriteCert(t, t.TempDir())
	pbx := smStartPBX(t, "127.0.0.3", "")
	return testbed.StartEdge(t, streamsConfig, pbx.port, map[string]any{"cert": cert, "key": key, "sip": sip})
}

// TestStrangersCannotLockTrunkOutOfStreams: strangers on many addresses
// (127.0.0.100-111, each at its per-address cap) open every TCP connection
// they may; the trunk still connects and its requests are served, because
// strangers cannot use the share reserved for configured peers. (Before:
// connections were admitted per address only, so max_conns/32 addresses
// locked every trunk out of TCP and TLS.)
func TestStrangersCannotLockTrunkOutOfStreams(t *testing.T) {
	e := smStartStreamsEdge(t, "{max_conns: 40, max_conns_per_source: 4}")
	const strangers, perStranger = 12, 4 // 48 attempts for 40 slots, 10 of them reserved
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < strangers; i++ {
		ip := fmt.Sprintf("127.0.0.%d", 100+i)
		for j := 0; j < perStranger; j++ {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 3 * time.Second}
			c, err := d.Dial("tcp", e.SIPAddr())
			if err != nil {
				t.Fatalf("stranger %s: %v", ip, err)
			}
			conns = append(conns, c)
			_, _ = c.Write([]byte("\r\n")) // its first bytes, within the handshake timeout
		}
	}
	// Wait until every attempt is either held or refused.
	refused := func(reason string) float64 {
		return max(0, e.Metric(`sipwarden_transport_conn_refused_total{reason="`+reason+`",transport="TCP"}`))
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		open := max(0, e.Metric(`sipwarden_transport_connections{transport="TCP"}`))
		if open+refused("max_conns")+refused("max_conns_strangers")+refused("max_conns_per_source") >= strangers*perStranger {
			t.Logf("strangers hold %v connections; refused: max_conns %v, max_conns_strangers %v", open, refused("max_conns"), refused("max_conns_strangers"))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("strangers' connections not settled: %v open", open)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The trunk connects over TCP and over TLS and gets its answers.
	for _, network := range []string{"tcp", "tls"} {
		target := e.SIPAddr()
		if network == "tls" {
			target = fmt.Sprintf("127.0.0.1:%d", e.TLSPort)
		}
		c, err := smDial(network, "127.0.0.2", target)
		if err != nil {
			t.Fatalf("trunk over %s: %v", network, err)
		}
		defer c.Close()
		if code := smOptions(c, network, "lockout-"+network); code != 200 {
			t.Errorf("trunk's OPTIONS over %s with the strangers' connections open: %d, want 200 (locked out)", network, code)
		}
	}
	if refused("max_conns_strangers") == 0 {
		t.Errorf("no stranger was refused for the strangers' share")
	}
}

// TestCRLFKeepalivesCannotHoldStreamOpen: a connection that sends only
// keep-alives (RFC 5626 double-CRLF pings, each answered with its pong) is
// closed at the idle timeout counted from its last complete message; a
// trunk sending requests more often than the idle timeout stays connected.
// (Before: any byte moved the idle deadline, so a CRLF a minute held a
// connection slot for ever.)
func TestCRLFKeepalivesCannotHoldStreamOpen(t *testing.T) {
	e := smStartStreamsEdge(t, "{tcp_idle_timeout: 2s}")
	// The trunk: a request every 800ms keeps its connection.
	trunk, err := smDial("tcp", "127.0.0.2", e.SIPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer trunk.Close()
	// The stranger: pings every 400ms.
	c, err := smDial("tcp", "127.0.0.9", e.SIPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	pongs, closedAfter := 0, time.Duration(0)
	for i := 0; time.Since(start) < 6*time.Second; i++ {
		if i%2 == 0 {
			if code := smOptions(trunk, "tcp", fmt.Sprintf("keep-%d", i)); code != 200 {
				t.Fatalf("trunk's OPTIONS %d at %v: %d", i, time.Since(start), code)
			}
		}
		if _, err := c.Write([]byte("\r\n\r\n")); err != nil {
			closedAfter = time.Since(start)
			break
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		b := make([]byte, 2)
		if _, err := io.ReadFull(c.r, b); err != nil {
			closedAfter = time.Since(start)
			break
		}
		if string(b) != "\r\n" {
			t.Fatalf("pong %q", b)
		}
		pongs++
		time.Sleep(400 * time.Millisecond)
	}
	if closedAfter == 0 {
		t.Fatalf("a connection sending only keep-alives was open after %v with a 2s idle timeout (%d pongs)", time.Since(start), pongs)
	}
	if pongs == 0 {
		t.Errorf("no pong to a double-CRLF ping")
	}
	if closedAfter > 3500*time.Millisecond {
		t.Errorf("closed after %v, want about the 2s idle timeout", closedAfter)
	}
	if v := e.Metric(`sipwarden_transport_conn_refused_total{reason="timeout",transport="TCP"}`); v < 1 {
		t.Errorf("idle timeouts counted: %v", v)
	}
	// The trunk is still connected: one more request on the same connection.
	if code := smOptions(trunk, "tcp", "keep-last"); code != 200 {
		t.Errorf("trunk's connection after %v: %d", time.Since(start), code)
	}
}

// TestOfficeNATTrunkOpensManyTLSConnections: 40 phones of an office behind
// one NAT address (the trunk's 127.0.0.2) each keep a TLS connection; all
// are served, as the trunk has a cap of its own (limits.max_connections,
// 1000 by default) instead of a stranger's 32. (Before: refused from the
// 33rd connection.)
func TestOfficeNATTrunkOpensManyTLSConnections(t *testing.T) {
	e := smStartStreamsEdge(t, "{}")
	const phones = 40
	target := fmt.Sprintf("127.0.0.1:%d", e.TLSPort)
	var conns []*smConn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	failed := 0
	for i := 0; i < phones; i++ {
		c, err := smDial("tls", "127.0.0.2", target)
		if err != nil {
			failed++
			continue
		}
		conns = append(conns, c)
	}
	// Every connection is served (requests on each, after all are open).
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code := smOptions(c, "tls", fmt.Sprintf("office-%d", i)); code != 200 {
				mu.Lock()
				failed++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if failed > 0 {
		t.Fatalf("%d of %d TLS connections from the office trunk were refused or not served", failed, phones)
	}
	if v := e.Metric(`sipwarden_transport_connections{transport="TLS"}`); v != phones {
		t.Errorf("TLS connections open: %v, want %d", v, phones)
	}
}

// smConn is a stream connection with its reader.
type smConn struct {
	net.Conn
	r *bufio.Reader
}

// smDial opens a TCP or TLS connection from ip (TLS: handshake done, the
// edge's self-signed certificate accepted).
func smDial(network, ip, target string) (*smConn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 3 * time.Second}
	var c net.Conn
	var err error
	if network == "tls" {
		c, err = tls.DialWithDialer(&d, "tcp", target, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the test edge's self-signed certificate
	} else {
		c, err = d.Dial("tcp", target)
	}
	if err != nil {
		return nil, err
	}
	return &smConn{Conn: c, r: bufio.NewReader(c)}, nil
}

// smOptions sends an OPTIONS on c and returns the status of the response
// with its Call-ID (0: none within 3s, or the connection closed).
func smOptions(c *smConn, network, callID string) int {
	local := c.LocalAddr().String()
	msg := fmt.Sprintf("OPTIONS sip:+15551230001@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/%s %s;branch=z9hG4bK-%s;rport\r\n"+
		"From: <sip:+15550001000@127.0.0.2>;tag=f-%s\r\nTo: <sip:+15551230001@127.0.0.1>\r\nCall-ID: %s\r\nCSeq: 1 OPTIONS\r\n"+
		"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n", strings.ToUpper(network), local, callID, callID, callID)
	if _, err := c.Write([]byte(msg)); err != nil {
		return 0
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	for {
		m := smReadMsg(c.r)
		if m == nil {
			return 0
		}
		if m.Get("Call-ID") == callID && m.Code >= 200 {
			return m.Code
		}
	}
}

// smReadMsg reads one SIP message from a stream (keep-alives skipped).
func smReadMsg(r *bufio.Reader) *testbed.RawMsg {
	var head strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil
		}
		if line == "\r\n" && head.Len() == 0 {
			continue
		}
		head.WriteString(line)
		if line == "\r\n" {
			break
		}
	}
	m := testbed.ParseRaw([]byte(head.String()))
	var n int
	fmt.Sscanf(m.Get("Content-Length"), "%d", &n)
	if n > 0 {
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return nil
		}
		m.Raw += string(body)
	}
	return m
}

// smWriteCert writes a self-signed certificate for 127.0.0.1 and its key.
func smWriteCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "sipwarden test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
