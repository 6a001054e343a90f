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
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultWebhookKinds are the events a webhook (or the e-mail sink)
// receives when its configuration names none: decisions an operator acts on,
// each rare by construction (a ban, an incident, a lockout, a notification
// that could not be delivered, a peer over its flood budget at most once a
// minute), never one per packet or per call of a flood.
var DefaultWebhookKinds = []Kind{Ban, AccountLocked, RegistrationNewSource, BindingReplaced,
	FraudIncident, FraudRelease, FraudHangup, FraudError, ConfigRejected, NotifyFailed, CDRStore, PeerOverBudget}

// Webhook body formats.
const (
	// FormatJSON posts {"events": [...]}, one object per event.
	FormatJSON = "json"
	// FormatSlack posts {"text": "..."}, one summary line per event: what a
	// Slack (or Mattermost, Rocket.Chat) incoming webhook shows.
	FormatSlack = "slack"
)

// Webhook configures one notification endpoint.
type Webhook struct {
	// URL receives a POST for each batch.
	URL string
	// Format is FormatJSON (default) or FormatSlack.
	Format string
	// Kinds are the event kinds sent (empty: DefaultWebhookKinds).
	Kinds []Kind
	// Secret, when set, signs each body: header X-Sipwarden-Signature is
	// "sha256=" and the hex HMAC-SHA256 of the body with Secret.
	Secret []byte
	// Timeout bounds one POST (default 5s); a failed POST is retried with
	// backoff (1s, 2s, 4s ... 30s) MaxTries times in all (default 5), then
	// the batch is dropped, counted, and a NotifyFailed event published on Bus.
	Timeout  time.Duration
	MaxTries int
	// Flush is how long events gather into one POST (default 1s, at most 100 events).
	Flush time.Duration
	// DedupWindow: the same event within this time is posted once (0:
	// DefaultDedupWindow, negative: every event is posted).
	DedupWindow time.Duration
	// Bus receives the NotifyFailed events (nil: none published).
	Bus *Bus
	// Client is the HTTP client (default: one with Timeout).
	Client *http.Client

	retryWait time.Duration // first backoff (tests shorten it)
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
			Help: "Events handed to webhooks, by result (delivered, dropped after every try, duplicate: not sent again within the dedup window).",
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
	// Repeats: copies of this event not posted in the dedup window before it.
	Repeats int `json:"repeats,omitempty"`
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
	if w.DedupWindow == 0 {
		w.DedupWindow = DefaultDedupWindow
	}
	if w.retryWait <= 0 {
		w.retryWait = backoff
	}
	if w.Client == nil {
		w.Client = &http.Client{Timeout: w.Timeout}
	}
	if met == nil {
		met = NewWebhookMetrics(nil)
	}
	host := WebhookHost(w.URL)
	policy := batchPolicy{
		kinds:     newKindSet(w.Kinds),
		dedup:     newDedup(w.DedupWindow),
		flush:     w.Flush,
		max:       100,
		ignore:    func(e Event) bool { return ownFailure(e, "webhook", host) },
		duplicate: func() { met.events.WithLabelValues("duplicate").Inc() },
	}
	gather(ctx, sub, policy, func(ctx context.Context, batch []notice, more int, final bool) {
		tries := w.MaxTries
		if final {
			tries = 1
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, w.Timeout)
			defer cancel()
		}
		n, err := deliver(ctx, w, tries, batch, more, met)
		if err == nil {
			met.events.WithLabelValues("delivered").Add(float64(len(batch) + more))
			return
		}
		met.events.WithLabelValues("dropped").Add(float64(len(batch) + more))
		// the host only: a webhook URL often carries a token in its path
		msg := redact(err, w.URL)
		// the failure is an event (which the log sink writes), or, when it
		// cannot be one, a log line
		if w.Bus != nil && !onlyFailures(batch) {
			w.Bus.Publish(failureEvent("webhook", host, len(batch)+more, n, msg))
		} else if log != nil {
			log.Warn("webhook: events dropped after every try", "host", host, "events", len(batch)+more, "tries", n, "err", msg)
		}
	})
}

// deliver posts one batch, retrying with backoff; it returns the tries made
// and the last error.
func deliver(ctx context.Context, w Webhook, tries int, batch []notice, more int, met *WebhookMetrics) (int, error) {
	var body []byte
	var err error
	if w.Format == FormatSlack {
		body, err = slackBody(batch, more, w.DedupWindow)
	} else {
		body, err = jsonBody(batch, more)
	}
	if err != nil {
		return 0, err
	}
	var sig string
	if len(w.Secret) > 0 {
		mac := hmac.New(sha256.New, w.Secret)
		mac.Write(body)
		sig = "sha256=" + hex.EncodeToString(mac.Sum(nil))
	}
	return retry(ctx, tries, w.retryWait, func(ctx context.Context) error {
		err := post(ctx, w, body, sig)
		if err != nil {
			met.posts.WithLabelValues("error").Inc()
			return err
		}
		met.posts.WithLabelValues("ok").Inc()
		return nil
	})
}

// jsonBody is {"events": [...], "more": N}; more (events that did not fit,
// only at shutdown) is left out when 0.
func jsonBody(batch []notice, more int) ([]byte, error) {
	events := make([]webhookEvent, len(batch))
	for i, e := range batch {
		events[i] = webhookEvent{Time: e.Time.UTC(), Kind: e.Kind.String(), Stage: e.Stage, Reason: e.Reason, Transport: e.Transport,
			Trunk: e.Trunk, Method: e.Method, CallID: e.CallID, Code: e.Code, Detail: e.Detail, Repeats: e.repeats}
		if e.Src.IsValid() {
			events[i].Src = e.Src.String()
		}
	}
	return json.Marshal(struct {
		Events []webhookEvent `json:"events"`
		More   int            `json:"more,omitempty"`
	}{events, more})
}

// slackEscape escapes what Slack's mrkdwn reads as markup: &, < and > (a
// detail must not become a link or an @channel).
var slackEscape = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// slackBody is {"text": ...}: a header line, then one summary line per event.
func slackBody(batch []notice, more int, window time.Duration) ([]byte, error) {
	var b strings.Builder
	b.WriteString("sipwarden: ")
	b.WriteString(strconv.Itoa(len(batch)))
	if len(batch) == 1 {
		b.WriteString(" event")
	} else {
		b.WriteString(" events")
	}
	for _, n := range batch {
		b.WriteString("\n• ")
		b.WriteString(slackEscape.Replace(summary(n, window)))
	}
	if more > 0 {
		b.WriteString("\n… and " + strconv.Itoa(more) + " more (see the log)")
	}
	return json.Marshal(struct {
		Text string `json:"text"`
	}{b.String()})
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
