package audit

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakePBX is a careless SIP endpoint on loopback: it answers everyone,
// names itself, tells users apart, relays any INVITE (rings; a CANCEL
// ends it) and challenges with MD5.
type fakePBX struct {
	conn  *net.UDPConn
	users []string
	// tryingOnly: an INVITE abroad gets 100 Trying and nothing more
	tryingOnly bool
	mu         sync.Mutex
	got        []string // methods received
}

func startFakePBX(t *testing.T, users ...string) *fakePBX {
	t.Helper()
	return startFakePBXWith(t, false, users...)
}

func startFakePBXWith(t *testing.T, tryingOnly bool, users ...string) *fakePBX {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakePBX{conn: c, users: users, tryingOnly: tryingOnly}
	t.Cleanup(func() { c.Close() })
	go f.serve()
	return f
}

func (f *fakePBX) port() int { return f.conn.LocalAddr().(*net.UDPAddr).Port }

func (f *fakePBX) serve() {
	buf := make([]byte, 65535)
	for {
		n, src, err := f.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		msg := string(buf[:n])
		line, _, _ := strings.Cut(msg, "\r\n")
		fields := strings.Fields(line)
		hdr := func(name string) string {
			for _, l := range strings.Split(msg, "\r\n") {
				if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
					return strings.TrimSpace(v)
				}
			}
			return ""
		}
		reply := func(code int, reason string, extra string) {
			to := hdr("To")
			if !strings.Contains(to, "tag=") {
				to += ";tag=pbx1"
			}
			r := fmt.Sprintf("SIP/2.0 %d %s\r\nVia: %s\r\nFrom: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %s\r\nServer: FakePBX 1.2.3\r\n%sContent-Length: 0\r\n\r\n",
				code, reason, hdr("Via"), hdr("From"), to, hdr("Call-ID"), hdr("CSeq"), extra)
			_, _ = f.conn.WriteToUDP([]byte(r), src)
		}
		if len(fields) < 3 || fields[2] != "SIP/2.0" || hdr("Call-ID") == "" {
			reply(400, "Bad Request", "Warning: 399 fakepbx \"parse error\"\r\n")
			continue
		}
		f.mu.Lock()
		f.got = append(f.got, fields[0])
		f.mu.Unlock()
		user := ""
		if u, _, ok := strings.Cut(strings.TrimPrefix(hdr("To"), "<sip:"), "@"); ok {
			user = u
		}
		known := slices.Contains(f.users, user)
		switch fields[0] {
		case "OPTIONS":
			reply(200, "OK", "")
		case "REGISTER":
			if known {
				reply(401, "Unauthorized", "WWW-Authenticate: Digest realm=\"fake\", nonce=\"abc\", algorithm=MD5\r\n")
			} else {
				reply(404, "Not Found", "")
			}
		case "INVITE":
			if strings.HasPrefix(user, "+") {
				reply(100, "Trying", "")
				if !f.tryingOnly {
					reply(180, "Ringing", "")
				}
			} else if known {
				reply(407, "Proxy Authentication Required", "Proxy-Authenticate: Digest realm=\"fake\", nonce=\"abc\"\r\n")
			} else {
				reply(404, "Not Found", "")
			}
		case "CANCEL":
			reply(200, "OK", "")
			// the INVITE's 487
			r := strings.Replace(msg, "CANCEL", "INVITE", -1)
			_ = r
			cseq := strings.Replace(hdr("CSeq"), "CANCEL", "INVITE", 1)
			_, _ = f.conn.WriteToUDP(fmt.Appendf(nil, "SIP/2.0 487 Request Terminated\r\nVia: %s\r\nFrom: %s\r\nTo: %s;tag=pbx1\r\nCall-ID: %s\r\nCSeq: %s\r\nContent-Length: 0\r\n\r\n",
				hdr("Via"), hdr("From"), hdr("To"), hdr("Call-ID"), cseq), src)
		}
	}
}

func (f *fakePBX) methods() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.got)
}

func TestProbeCarelessEndpoint(t *testing.T) {
	f := startFakePBX(t, "100", "1000")
	r, err := Probe(context.Background(), ProbeOptions{Target: fmt.Sprintf("sip:127.0.0.1:%d", f.port()),
		TLSPort: freeTCPPort(t), Rate: 100, MaxMessages: 60, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"answers_unknown_source", "server_header_leak", "extension_enumeration", "open_relay",
		"md5_only", "malformed_reveals_software", "tls_not_offered"} {
		if !slices.Contains(r.Checks(), c) {
			t.Errorf("no %s finding; got %v", c, describe(r))
		}
	}
	if !r.HasHigh() {
		t.Error("an open relay is a high finding")
	}
	if !slices.Contains(f.methods(), "CANCEL") {
		t.Errorf("the relayed INVITE was not cancelled: %v", f.methods())
	}
	if n := len(f.methods()); n > 60 {
		t.Errorf("%d messages, budget 60", n)
	}
}

// A silent endpoint (what sipwarden shows a stranger) yields no finding
// but the missing TLS.
func TestProbeSilentEndpoint(t *testing.T) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := Probe(context.Background(), ProbeOptions{Target: fmt.Sprintf("sip:127.0.0.1:%d", c.LocalAddr().(*net.UDPAddr).Port),
		TLSPort: -1, Rate: 100, MaxMessages: 60, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Findings) != 0 || r.Score != 100 {
		t.Errorf("findings %v, score %d", describe(r), r.Score)
	}
}

// An endpoint that takes an INVITE abroad (100 Trying) and says no more
// may be relaying it: the probe cancels it and reports it.
func TestProbeInviteNotRefused(t *testing.T) {
	f := startFakePBXWith(t, true)
	r, err := Probe(context.Background(), ProbeOptions{Target: fmt.Sprintf("sip:127.0.0.1:%d", f.port()),
		TLSPort: -1, Rate: 100, Timeout: 200 * time.Millisecond, Extensions: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(r.Checks(), "invite_not_refused") || slices.Contains(r.Checks(), "open_relay") {
		t.Errorf("checks %v", describe(r))
	}
	if !slices.Contains(f.methods(), "CANCEL") {
		t.Errorf("the unanswered INVITE was not cancelled: %v", f.methods())
	}
}

func TestProbeBudget(t *testing.T) {
	f := startFakePBX(t, "100")
	r, err := Probe(context.Background(), ProbeOptions{Target: fmt.Sprintf("sip:127.0.0.1:%d", f.port()),
		TLSPort: -1, Rate: 100, MaxMessages: 5, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(f.methods()); n > 5 {
		t.Errorf("%d messages received, budget 5", n)
	}
	if !slices.ContainsFunc(r.Notes, func(n string) bool { return strings.Contains(n, "budget") }) {
		t.Errorf("no budget note: %v", r.Notes)
	}
}

func freeTCPPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestProbeTLS(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "audit test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	for _, tc := range []struct {
		name  string
		min   uint16
		roots *x509.CertPool
		want  []string
	}{
		{"self-signed, unknown CA", tls.VersionTLS12, nil, []string{"tls_certificate_invalid"}},
		{"trusted, TLS 1.2+", tls.VersionTLS12, pool, nil},
		{"trusted, TLS 1.0 accepted", tls.VersionTLS10, pool, []string{"tls_legacy_accepted"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{MinVersion: tc.min, //nolint:gosec // the old version is the test
				Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					_ = c.(*tls.Conn).Handshake()
					c.Close()
				}
			}()
			silent, _ := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			defer silent.Close()
			r, err := Probe(context.Background(), ProbeOptions{Target: fmt.Sprintf("sip:127.0.0.1:%d", silent.LocalAddr().(*net.UDPAddr).Port),
				TLSPort: l.Addr().(*net.TCPAddr).Port, RootCAs: tc.roots, Rate: 100, Timeout: 100 * time.Millisecond, Extensions: []string{}})
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Checks(); !slices.Equal(got, tc.want) {
				t.Errorf("checks %v, want %v (%+v)", got, tc.want, r.Findings)
			}
		})
	}
}
