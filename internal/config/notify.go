package config

import (
	"net/url"

	"github.com/sipwarden/sipwarden/internal/events"
)

// Notify configures where security events go besides the log and metrics.
type Notify struct {
	Webhooks []Webhook
}

// Webhook is one endpoint that receives events as JSON POSTs (package events).
type Webhook struct {
	URL string
	// Kinds are the event kinds sent (empty: events.DefaultWebhookKinds).
	Kinds []events.Kind
	// SecretFile holds the HMAC-SHA256 key that signs each body (header
	// X-Sipwarden-Signature); empty: unsigned.
	SecretFile string
}

type rawNotify struct {
	Webhooks []rawWebhook `yaml:"webhooks"`
}

type rawWebhook struct {
	URL        string   `yaml:"url"`
	Kinds      []string `yaml:"kinds"`
	SecretFile string   `yaml:"secret_file"`
}

func init() {
	knownKeys["rawNotify"] = []string{"webhooks"}
	knownKeys["rawWebhook"] = []string{"url", "kinds", "secret_file"}
	knownKeys["rawConfig"] = append(knownKeys["rawConfig"], "notify")
}

func (v *validator) notify(r rawNotify) Notify {
	var n Notify
	for i, w := range r.Webhooks {
		base := p("notify", "webhooks", i)
		u, err := url.Parse(w.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.fail(append(base, "url"), "must be an http:// or https:// URL, got %q", w.URL)
		}
		hook := Webhook{URL: w.URL, SecretFile: w.SecretFile}
		for j, name := range w.Kinds {
			k, ok := events.KindByName(name)
			if !ok {
				v.fail(append(base, "kinds", j), "unknown event kind %q (ban, fraud_incident, account_locked, ...: see docs/config.md)", name)
				continue
			}
			hook.Kinds = append(hook.Kinds, k)
		}
		n.Webhooks = append(n.Webhooks, hook)
	}
	return n
}
