package cli

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/events"
	"github.com/sipwarden/sipwarden/internal/events/smtptest"
)

// The notify.email section is wired: the password file (its line break
// trimmed) authenticates, the CA file verifies STARTTLS, a ban is mailed.
func TestStartEmailSink(t *testing.T) {
	dir := t.TempDir()
	caFile, passFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "smtp.pass")
	mb := smtptest.Start(t, caFile)
	_ = os.WriteFile(passFile, []byte("s3cret pass\n"), 0o600)

	cfg := &config.Config{Notify: config.Notify{Email: &config.Email{Server: mb.Addr, TLS: events.TLSStartTLS,
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
	if auths := mb.Auths(); len(auths) != 1 || auths[0] != "alerts:s3cret pass" {
		t.Errorf("auths %q", auths)
	}
	if mails := mb.Mails(); len(mails) != 1 || !strings.Contains(mails[0], "Subject: [test] ban scanner") || !strings.Contains(mails[0], "ban 203.0.113.9/32 by scanner") {
		t.Errorf("mails %q", mails)
	}
	if strings.Contains(logs.String(), "s3cret") {
		t.Errorf("the password is in the log:\n%s", logs.String())
	}

	// a CA file without a certificate is a clear error at start
	_ = os.WriteFile(caFile, []byte("not pem"), 0o600)
	err := (&server{}).startWebhooks(context.Background(), cfg, events.NewBus(), nil, log)
	if err == nil || !strings.Contains(err.Error(), "notify.email.ca_file "+caFile+" holds no PEM certificate") {
		t.Errorf("bad CA file: %v", err)
	}
}
