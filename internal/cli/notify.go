package cli

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/events"
)

// startWebhooks subscribes the notification sinks: one per configured
// webhook (notify.webhooks) and the e-mail digests (notify.email); they live
// until ctx ends. Sinks change at a restart.
func (s *server) startWebhooks(ctx context.Context, cfg *config.Config, bus *events.Bus, reg prometheus.Registerer, log *slog.Logger) error {
	if err := s.startEmail(ctx, cfg.Notify.Email, bus, reg, log); err != nil {
		return err
	}
	if len(cfg.Notify.Webhooks) == 0 {
		return nil
	}
	met := events.NewWebhookMetrics(reg)
	for i, w := range cfg.Notify.Webhooks {
		hook := events.Webhook{URL: w.URL, Format: w.Format, Kinds: w.Kinds, DedupWindow: w.DedupWindow, Bus: bus}
		if w.SecretFile != "" {
			b, err := os.ReadFile(w.SecretFile)
			if err != nil {
				return fmt.Errorf("notify.webhooks[%d].secret_file: %w", i, err)
			}
			if hook.Secret = []byte(strings.TrimSpace(string(b))); len(hook.Secret) == 0 {
				return fmt.Errorf("notify.webhooks[%d].secret_file %s is empty", i, w.SecretFile)
			}
		}
		sub := bus.Subscribe("webhook", 4096)
		s.webhooks.Add(1)
		go func() {
			defer s.webhooks.Done()
			events.WebhookSink(ctx, hook, sub, met, log)
		}()
		// the host only: a webhook URL often carries a token in its path
		log.Info("sending events to a webhook", "host", events.WebhookHost(w.URL), "format", hook.Format, "kinds", len(w.Kinds))
	}
	return nil
}

// startEmail starts the e-mail sink of notify.email, if any. The password
// is read here and goes nowhere but the SMTP AUTH exchange.
func (s *server) startEmail(ctx context.Context, e *config.Email, bus *events.Bus, reg prometheus.Registerer, log *slog.Logger) error {
	if e == nil {
		return nil
	}
	conf := events.Email{Server: e.Server, TLS: e.TLS, Username: e.Username, From: e.From, To: e.To, Kinds: e.Kinds,
		SubjectPrefix: e.SubjectPrefix, MinInterval: e.MinInterval, DedupWindow: e.DedupWindow, Bus: bus}
	if e.PasswordFile != "" {
		b, err := os.ReadFile(e.PasswordFile)
		if err != nil {
			return fmt.Errorf("notify.email.password_file: %w", err)
		}
		// the file's last line break is not part of the password
		if conf.Password = strings.TrimRight(string(b), "\r\n"); conf.Password == "" {
			return fmt.Errorf("notify.email.password_file %s is empty", e.PasswordFile)
		}
	}
	if e.CAFile != "" {
		pem, err := os.ReadFile(e.CAFile)
		if err != nil {
			return fmt.Errorf("notify.email.ca_file: %w", err)
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pem) {
			return fmt.Errorf("notify.email.ca_file %s holds no PEM certificate", e.CAFile)
		}
	}
	sink, err := events.NewEmailSink(conf)
	if err != nil {
		return fmt.Errorf("notify.email: %w", err)
	}
	met := events.NewEmailMetrics(reg)
	sub := bus.Subscribe("email", 4096)
	s.webhooks.Add(1)
	go func() {
		defer s.webhooks.Done()
		sink.Run(ctx, sub, met, log)
	}()
	log.Info("sending events by e-mail", "server", e.Server, "tls", conf.TLS, "recipients", len(e.To), "kinds", len(e.Kinds))
	return nil
}
