package events

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultWebhookKinds are the events a webhook receives when its
// configuration names none: decisions an operator acts on, each rare by
// construction (a ban, an incident, a lockout), never one per packet or per
// call of a flood.
var DefaultWebhookKinds = []Kind{Ban, AccountLocked, RegistrationNewSource, BindingReplaced,
	FraudIncident, FraudRelease, FraudHangup, FraudError, ConfigRejected}

// Webhook configures one notification endpoint.
type Webhook struct {
	// URL receives a POST with a JSON body {"events": [...]}.
	URL string
	// Kinds are the event kinds sent (empty: DefaultWebhookKinds).
	Kinds []Kind
	// Secret, when set, signs each body: header X-Sipwarden-Signature is
	// "sha256=" and the hex HMAC-SHA256 of the body with Secret.
	Secret []byte
	// Timeout bounds one POST (default 5s); a failed POST is retried with
	// backoff (1s, 2s, 4s ... 30s) MaxTries times in all (default 5), then
	// the batch is dropped and counted.
	Timeout  time.Duration
	MaxTries int
	// Flush is how long events gather into one POST (default 1s, at most 100 events).
	Flush time.Duration
	// Client is the HTTP client (default: one with Timeout).
	Client *http.Client
}

// WebhookMetrics count the deliveries of every webhook; create once per process.
type WebhookMetrics struct {
	posts  *prometheus.CounterVec
	events *prometheus.CounterVec
}

// NewWebhookMetrics registers the collectors on reg (nil: not registered).
func NewWebhookMetrics(reg prometheus.Registerer) *WebhookMetrics {
	m := &WebhookMetrics{
		posts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sipwarden_events_webhook_posts_total",
			Help: "Webhook POSTs, by result (ok, error: retried or dropped).",
		}, []string{"result"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sipwarden_events_webhook_events_total",
			Help: "Events handed to webhooks, by result (delivered, dropped after every try).",
		}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.posts, m.events)
	}
	return m
}

// webhookEvent is an event as a webhook receives it.
type webhookEvent struct {
	Time      time.Time `json:"time"`
	Kind      string    `json:"kind"`
	Stage     string    `json:"stage,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	Src       string    `json:"src,omitempty"`
	Transport string    `json:"transport,omitempty"`
	Trunk     string    `json:"trunk,omitempty"`
	Method    string    `json:"method,omitempty"`
	CallID    string    `json:"call_id,omitempty"`
	Code      int       `json:"code,omitempty"`
	Detail    string    `json:"detail,omitempty"`
}

// WebhookSink posts the events of sub that w wants, in batches, until ctx
// ends or the subscription closes (then what is gathered is posted once more).
func WebhookSink(ctx context.Context, w Webhook, sub *Subscription, met *WebhookMetrics, log *slog.Logger) {
	if w.Timeout <= 0 {
		w.Timeout = 5 * time.Second
	}
	if w.MaxTries <= 0 {
		w.MaxTries = 5
	}
	if w.Flush <= 0 {
		w.Flush = time.Second
	}
	if w.Client == nil {
		w.Client = &http.Client{Timeout: w.Timeout}
	}
	if met == nil {
		met = NewWebhookMetrics(nil)
	}
	kinds := w.Kinds
	if len(kinds) == 0 {
		kinds = DefaultWebhookKinds
	}
	var want [len(kindNames)]bool
	for _, k := range kinds {
		if int(k) < len(want) {
			want[k] = true
		}
	}
	var batch []webhookEvent
	flush := time.NewTimer(time.Hour)
	flush.Stop()
	send := func(ctx context.Context) {
		if len(batch) == 0 {
			return
		}
		if deliver(ctx, w, batch, met, log) {
			met.events.WithLabelValues("delivered").Add(float64(len(batch)))
		} else {
			met.events.WithLabelValues("dropped").Add(float64(len(batch)))
		}
		batch = batch[:0]
	}
	for {
		select {
		case <-ctx.Done():
			// a last try, bounded, for what was gathered
			c, cancel := context.WithTimeout(context.Background(), w.Timeout)
			w.MaxTries = 1
			send(c)
			cancel()
			return
		case <-flush.C:
			send(ctx)
		case e, ok := <-sub.C:
			if !ok {
				send(ctx)
				return
			}
			if int(e.Kind) >= len(want) || !want[e.Kind] {
				continue
			}
			we := webhookEvent{Time: e.Time.UTC(), Kind: e.Kind.String(), Stage: e.Stage, Reason: e.Reason, Transport: e.Transport,
				Trunk: e.Trunk, Method: e.Method, CallID: e.CallID, Code: e.Code, Detail: e.Detail}
			if e.Src.IsValid() {
				we.Src = e.Src.String()
			}
			if len(batch) == 0 {
				flush.Reset(w.Flush)
			}
			batch = append(batch, we)
			if len(batch) >= 100 {
				flush.Stop()
				send(ctx)
			}
		}
	}
}

// deliver posts one batch, retrying with backoff; it reports success.
func deliver(ctx context.Context, w Webhook, batch []webhookEvent, met *WebhookMetrics, log *slog.Logger) bool {
	body, err := json.Marshal(struct {
		Events []webhookEvent `json:"events"`
	}{batch})
	if err != nil {
		return false
	}
	var sig string
	if len(w.Secret) > 0 {
		mac := hmac.New(sha256.New, w.Secret)
		mac.Write(body)
		sig = "sha256=" + hex.EncodeToString(mac.Sum(nil))
	}
	wait := time.Second
	for try := 1; ; try++ {
		err := post(ctx, w, body, sig)
		if err == nil {
			met.posts.WithLabelValues("ok").Inc()
			return true
		}
		met.posts.WithLabelValues("error").Inc()
		if try >= w.MaxTries {
			if log != nil {
				// the host only: a webhook URL often carries a token in its path
				log.Warn("webhook: events dropped after every try", "host", WebhookHost(w.URL), "events", len(batch), "err", redact(err, w.URL))
			}
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

func post(ctx context.Context, w Webhook, body []byte, sig string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sipwarden")
	if sig != "" {
		req.Header.Set("X-Sipwarden-Signature", sig)
	}
	resp, err := w.Client.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}

// WebhookHost is the host of a webhook URL: all of it that may be logged (the
// path and query often carry a token).
func WebhookHost(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Host
	}
	return ""
}

// redact removes the URL (and its token) from an error of the HTTP client.
func redact(err error, raw string) string {
	return strings.ReplaceAll(err.Error(), raw, WebhookHost(raw))
}

// KindByName returns the kind named s (as Kind.String writes it).
func KindByName(s string) (Kind, bool) {
	for k, n := range kindNames {
		if n == s && k != int(KindUnknown) {
			return Kind(k), true
		}
	}
	return KindUnknown, false
}
