package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/events"
)

// mailbox is a real SMTP server (emersion/go-smtp) on loopback with
// STARTTLS; it keeps the credentials and the messages it was given.
type mailbox struct {
	mu    sync.Mutex
	auths []string
	mails []string
}

type mailboxSession struct{ mb *mailbox }

func (s mailboxSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s mailboxSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		s.mb.mu.Lock()
		defer s.mb.mu.Unlock()
		s.mb.auths = append(s.mb.auths, user+":"+pass)
		return nil
	}), nil
}
func (s mailboxSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s mailboxSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s mailboxSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	s.mb.mu.Lock()
	defer s.mb.mu.Unlock()
	s.mb.mails = append(s.mb.mails, string(b))
	return err
}
func (s mailboxSession) Reset()        {}
func (s mailboxSession) Logout() error { return nil }

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}
func (nopLogger) Println(...any)        {}

// The notify.email section is wired: the password file (its line break
// trimmed) authenticates, the CA file verifies STARTTLS, a ban is mailed.
func TestStartEmailSink(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "mail"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile, passFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "smtp.pass")
	_ = os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(passFile, []byte("s3cret pass\n"), 0o600)

	mb := &mailbox{}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return mailboxSession{mb}, nil }))
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	srv.ErrorLog = nopLogger{}
	srv.ReadTimeout, srv.WriteTimeout = 5*time.Second, 5*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	defer func() { _ = srv.Close() }()

	cfg := &config.Config{Notify: config.Notify{Email: &config.Email{Server: ln.Addr().String(), TLS: events.TLSStartTLS,
		CAFile: caFile, Username: "alerts", PasswordFile: passFile, From: "edge@example.net", To: []string{"ops@example.net"},
		SubjectPrefix: "[test]", MinInterval: time.Minute, DedupWindow: time.Minute}}}
	var logs strings.Builder
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	bus := events.NewBus()
	s := &server{}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.startWebhooks(ctx, cfg, bus, nil, log); err != nil {
		t.Fatal(err)
	}
	bus.Publish(events.Event{Kind: events.Ban, Stage: "banlist", Reason: "scanner", Detail: "ban 203.0.113.9/32 by scanner"})
	// Flush is 10s by default: the shutdown delivers what was queued
	cancel()
	done := make(chan struct{})
	go func() { s.webhooks.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("the e-mail sink did not stop")
	}
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if len(mb.auths) != 1 || mb.auths[0] != "alerts:s3cret pass" {
		t.Errorf("auths %q", mb.auths)
	}
	if len(mb.mails) != 1 || !strings.Contains(mb.mails[0], "Subject: [test] ban scanner") || !strings.Contains(mb.mails[0], "ban 203.0.113.9/32 by scanner") {
		t.Errorf("mails %q", mb.mails)
	}
	if strings.Contains(logs.String(), "s3cret") {
		t.Errorf("the password is in the log:\n%s", logs.String())
	}

	// a CA file without a certificate is a clear error at start
	_ = os.WriteFile(caFile, []byte("not pem"), 0o600)
	err = (&server{}).startWebhooks(context.Background(), cfg, events.NewBus(), nil, log)
	if err == nil || !strings.Contains(err.Error(), "notify.email.ca_file "+caFile+" holds no PEM certificate") {
		t.Errorf("bad CA file: %v", err)
	}
}
