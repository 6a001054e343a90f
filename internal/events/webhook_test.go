package events

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

type hook struct {
	mu      sync.Mutex
	bodies  [][]byte
	sigs    []string
	failing int // answer 500 to this many requests first
}

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failing > 0 {
		h.failing--
		http.Error(w, "busy", http.StatusInternalServerError)
		return
	}
	h.bodies = append(h.bodies, b)
	h.sigs = append(h.sigs, r.Header.Get("X-Sipwarden-Signature"))
}

func (h *hook) events(t *testing.T) []webhookEvent {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	var all []webhookEvent
	for _, b := range h.bodies {
		var p struct{ Events []webhookEvent }
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatalf("body %s: %v", b, err)
		}
		all = append(all, p.Events...)
	}
	return all
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Only the chosen kinds are posted, gathered into one signed batch; a
// failing endpoint is retried.
func TestWebhookSink(t *testing.T) {
	h := &hook{failing: 1}
	srv := httptest.NewServer(h)
	defer srv.Close()
	bus := NewBus()
	sub := bus.Subscribe("webhook", 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		WebhookSink(ctx, Webhook{URL: srv.URL, Secret: []byte("s3cret"), Flush: 50 * time.Millisecond}, sub, nil, nil)
	}()
	src := netip.MustParseAddrPort("192.0.2.7:5060")
	bus.Publish(Event{Kind: UnknownSource, Src: src})                                          // not a default kind
	bus.Publish(Event{Kind: FraudIncident, Stage: "fraud", Reason: "score_5m", Trunk: "acme"}) // sent
	bus.Publish(Event{Kind: Ban, Stage: "banlist", Reason: "flood_invite", Src: src})          // sent
	waitFor(t, "a delivered batch", func() bool { return len(h.events(t)) == 2 })
	got := h.events(t)
	if got[0].Kind != "fraud_incident" || got[0].Reason != "score_5m" || got[0].Trunk != "acme" ||
		got[1].Kind != "ban" || got[1].Src != "192.0.2.7:5060" {
		t.Fatalf("events: %+v", got)
	}
	mac := hmac.New(sha256.New, []byte("s3cret"))
	h.mu.Lock()
	mac.Write(h.bodies[0])
	sig := h.sigs[0]
	h.mu.Unlock()
	if want := "sha256=" + hex.EncodeToString(mac.Sum(nil)); sig != want {
		t.Errorf("signature %q, want %q", sig, want)
	}
	cancel()
	<-done
}

// A dead endpoint costs a bounded number of tries, then the batch is dropped.
func TestWebhookGivesUp(t *testing.T) {
	h := &hook{failing: 100}
	srv := httptest.NewServer(h)
	defer srv.Close()
	bus := NewBus()
	sub := bus.Subscribe("webhook", 16)
	met := NewWebhookMetrics(nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go WebhookSink(ctx, Webhook{URL: srv.URL, MaxTries: 2, Flush: 10 * time.Millisecond}, sub, met, nil)
	bus.Publish(Event{Kind: AccountLocked, Trunk: "phones"})
	waitFor(t, "the batch dropped", func() bool { return counter(t, met.events, "dropped") == 1 })
	// The endpoint comes back; a later event goes through, and it alone:
	// the dropped batch is not tried a third time.
	h.mu.Lock()
	tries := 100 - h.failing
	h.failing = 0
	h.mu.Unlock()
	if tries != 2 {
		t.Fatalf("%d tries before the batch was dropped, want 2", tries)
	}
	bus.Publish(Event{Kind: AccountLocked, Trunk: "sentinel"})
	waitFor(t, "the next event delivered", func() bool { return len(h.events(t)) > 0 })
	if got := h.events(t); len(got) != 1 || got[0].Trunk != "sentinel" {
		t.Fatalf("delivered after the drop: %+v, want the later event only", got)
	}
}

func TestKindByName(t *testing.T) {
	if k, ok := KindByName("fraud_incident"); !ok || k != FraudIncident {
		t.Fatal("fraud_incident")
	}
	if _, ok := KindByName("unknown"); ok {
		t.Fatal("unknown is no kind to ask for")
	}
	if _, ok := KindByName("nonsense"); ok {
		t.Fatal("nonsense")
	}
}

// A webhook that gives up publishes a NotifyFailed event naming the host
// only (the path holds a token); two failing sinks do not keep each other
// busy with news of their failures.
func TestWebhookFailureEvents(t *testing.T) {
	a, b := &hook{failing: 1000}, &hook{failing: 1000}
	srvA, srvB := httptest.NewServer(a), httptest.NewServer(b)
	defer srvA.Close()
	defer srvB.Close()
	bus := NewBus()
	watch := bus.Subscribe("watch", 64)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mets []*WebhookMetrics
	for _, srv := range []*httptest.Server{srvA, srvB} {
		sub := bus.Subscribe("webhook", 64)
		met := NewWebhookMetrics(nil)
		mets = append(mets, met)
		w := Webhook{URL: srv.URL + "/services/T0KEN/s3cret", MaxTries: 2, Flush: 10 * time.Millisecond, Bus: bus, retryWait: 10 * time.Millisecond}
		wg.Go(func() { WebhookSink(ctx, w, sub, met, nil) })
	}
	bus.Publish(Event{Kind: Ban, Reason: "scanner", Detail: "ban 203.0.113.9/32"})
	// Each sink drops the ban, then the other's news of its failure. Once
	// both have, the sinks are stopped: every event they would publish is
	// then on the bus, and a ping-pong would show as more failure events.
	waitFor(t, "both sinks dropped two batches", func() bool {
		return counter(t, mets[0].events, "dropped") >= 2 && counter(t, mets[1].events, "dropped") >= 2
	})
	cancel()
	wg.Wait()
	var failures []Event
	for len(watch.C) > 0 {
		if e := <-watch.C; e.Kind == NotifyFailed {
			failures = append(failures, e)
		}
	}
	if len(failures) != 2 {
		t.Fatalf("%d failure events, want 2 (one per sink for the ban): %+v", len(failures), failures)
	}
	for _, f := range failures {
		if f.Reason != "webhook" || !strings.Contains(f.Detail, "1 events not delivered after 2 tries: webhook answered 500") ||
			strings.Contains(f.Detail, "T0KEN") || strings.Contains(f.Detail, "s3cret") {
			t.Errorf("failure event %+v", f)
		}
	}
	// each sink tried the ban twice and news of the other's failure twice
	// (at most), never its own
	for _, h := range []*hook{a, b} {
		h.mu.Lock()
		if tries := 1000 - h.failing; tries < 2 || tries > 4 {
			t.Errorf("%d posts", tries)
		}
		h.mu.Unlock()
	}
}

// The same event twice within the window is posted once.
func TestWebhookDedup(t *testing.T) {
	h := &hook{}
	srv := httptest.NewServer(h)
	defer srv.Close()
	bus := NewBus()
	sub := bus.Subscribe("webhook", 16)
	met := NewWebhookMetrics(nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		WebhookSink(ctx, Webhook{URL: srv.URL, Flush: 30 * time.Millisecond}, sub, met, nil)
	}()
	t0 := time.Now()
	for i := range 3 {
		bus.Publish(Event{Time: t0.Add(time.Duration(i) * time.Second), Kind: ConfigRejected, Stage: "config", Reason: "invalid", Detail: "/etc/sipwarden.yaml"})
	}
	bus.Publish(Event{Time: t0, Kind: ConfigRejected, Stage: "config", Reason: "invalid", Detail: "/etc/other.yaml"})
	waitFor(t, "a post", func() bool { return len(h.events(t)) > 0 })
	// A later event of its own: once it is posted, the copies held back
	// would have been posted before it.
	bus.Publish(Event{Time: t0, Kind: ConfigRejected, Stage: "config", Reason: "invalid", Detail: "/etc/sentinel.yaml"})
	waitFor(t, "the later event posted", func() bool {
		got := h.events(t)
		return len(got) > 0 && got[len(got)-1].Detail == "/etc/sentinel.yaml"
	})
	cancel()
	<-done
	if got := h.events(t); len(got) != 3 || got[0].Detail != "/etc/sipwarden.yaml" || got[1].Detail != "/etc/other.yaml" {
		t.Fatalf("events %+v, want sipwarden.yaml, other.yaml, sentinel.yaml", got)
	}
	if n := counter(t, met.events, "duplicate"); n != 2 {
		t.Errorf("duplicates %v", n)
	}
}

// At shutdown, what is already queued is posted in one last try; what does
// not fit in it is counted.
func TestWebhookShutdownDrains(t *testing.T) {
	h := &hook{}
	srv := httptest.NewServer(h)
	defer srv.Close()
	bus := NewBus()
	sub := bus.Subscribe("webhook", 256)
	for i := range 150 {
		bus.Publish(Event{Kind: Ban, Reason: "scanner", Detail: strconv.Itoa(i)})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	WebhookSink(ctx, Webhook{URL: srv.URL}, sub, nil, nil)
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.bodies) != 1 {
		t.Fatalf("%d posts, want 1", len(h.bodies))
	}
	var body struct {
		Events []webhookEvent
		More   int
	}
	if err := json.Unmarshal(h.bodies[0], &body); err != nil || len(body.Events) != 100 || body.More != 50 {
		t.Fatalf("%d events, more %d (%v)", len(body.Events), body.More, err)
	}
}
