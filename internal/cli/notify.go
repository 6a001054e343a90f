package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/events"
)

// startWebhooks subscribes one sink per configured webhook (notify.webhooks);
// they live until ctx ends. Webhooks change at a restart.
func (s *server) startWebhooks(ctx context.Context, cfg *config.Config, bus *events.Bus, reg prometheus.Registerer, log *slog.Logger) error {
	if len(cfg.Notify.Webhooks) == 0 {
		return nil
	}
	met := events.NewWebhookMetrics(reg)
	for i, w := range cfg.Notify.Webhooks {
		hook := events.Webhook{URL: w.URL, Kinds: w.Kinds}
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
		log.Info("sending events to a webhook", "host", events.WebhookHost(w.URL), "kinds", len(w.Kinds))
	}
	return nil
}
