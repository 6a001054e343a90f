package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

const notifyConfig = baseConfig + `notify:
  webhooks:
    - {url: "{{index .Extra "hook"}}/services/T0KEN", format: slack}
  email:
    server: "{{index .Extra "smtp"}}"
    ca_file: "{{index .Extra "ca"}}"
    username: alerts
    password_file: "{{index .Extra "pass"}}"
    from: "sipwarden <edge@example.net>"
    to: [noc@example.net]
    subject_prefix: "[e2e]"
`

// smtpPeer is a real SMTP server (emersion/go-smtp) on loopback offering
// STARTTLS; it keeps the logins and messages it was given.
type smtpPeer struct {
	mu    sync.Mutex
	auths []string
	mails [][]byte
}

type smtpPeerSession struct{ p *smtpPeer }

func (s smtpPeerSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s smtpPeerSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		s.p.mu.Lock()
		defer s.p.mu.Unlock()
		s.p.auths = append(s.p.auths, user+":"+pass)
		return nil
	}), nil
}
func (s smtpPeerSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s smtpPeerSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s smtpPeerSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	s.p.mails = append(s.p.mails, b)
	return err
}
func (s smtpPeerSession) Reset()        {}
func (s smtpPeerSession) Logout() error { return nil }

type quietLog struct{}

func (quietLog) Printf(string, ...any) {}
func (quietLog) Println(...any)        {}

// startSMTPPeer starts the server with a certificate for 127.0.0.1 and
// writes its CA to caFile.
func startSMTPPeer(t *testing.T, caFile string) (*smtpPeer, string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "mx"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &smtpPeer{}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return smtpPeerSession{p}, nil }))
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	srv.ErrorLog = quietLog{}
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return p, ln.Addr().String()
}

// TestBanIsNotified: a scanner is banned, and the ban reaches a
// Slack-format webhook and, over STARTTLS with AUTH, a mailbox, each once;
// the password and the webhook's token stay out of the log.
func TestBanIsNotified(t *testing.T) {
	dir := t.TempDir()
	caFile, passFile := filepath.Join(dir, "mail-ca.pem"), filepath.Join(dir, "smtp.pass")
	if err := os.WriteFile(passFile, []byte("e2e-pa55\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	peer, smtpAddr := startSMTPPeer(t, caFile)
	var mu sync.Mutex
	var texts []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Text string }
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		texts = append(texts, body.Text)
		mu.Unlock()
	}))
	defer hook.Close()
	extra := params("udp")
	extra["hook"], extra["smtp"], extra["ca"], extra["pass"] = hook.URL, smtpAddr, caFile, passFile
	pbx := freePort(t)
	e := startEdge(t, notifyConfig, pbx, extra)
	ua := newRawUA(t, "udp", "127.0.0.2")
	ua.send(e.sipAddr(), "OPTIONS sip:100@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP "+ua.localAddr()+";branch=z9hG4bK-scan\nFrom: \"sipvicious\"<sip:100@1.1.1.1>;tag=1\nTo: <sip:100@127.0.0.1>\nCall-ID: scan-1\nCSeq: 1 OPTIONS\nUser-Agent: friendly-scanner\nContent-Length: 0\n\n")
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(texts)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no webhook POST within 5s of the ban")
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.stop() // the e-mail digest waits 10 s for company; the shutdown sends it
	mu.Lock()
	defer mu.Unlock()
	if len(texts) != 1 || !strings.HasPrefix(texts[0], "sipwarden: 1 event\n• ") || !strings.Contains(texts[0], " ban reason=scanner: ban 127.0.0.2/32") {
		t.Errorf("webhook texts %q", texts)
	}
	peer.mu.Lock()
	defer peer.mu.Unlock()
	if len(peer.auths) != 1 || peer.auths[0] != "alerts:e2e-pa55" || len(peer.mails) != 1 {
		t.Fatalf("auths %q, %d mails", peer.auths, len(peer.mails))
	}
	m, err := mail.ReadMessage(strings.NewReader(string(peer.mails[0])))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(quotedprintable.NewReader(m.Body))
	if subj := m.Header.Get("Subject"); subj != "[e2e] ban scanner" || !strings.Contains(string(body), " ban reason=scanner: ban 127.0.0.2/32") {
		t.Errorf("subject %q, body:\n%s", subj, body)
	}
	if logs := e.logs.String(); strings.Contains(logs, "e2e-pa55") || strings.Contains(logs, "T0KEN") {
		t.Errorf("a secret in the log:\n%s", logs)
	}
}
