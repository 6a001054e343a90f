package events

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func counter(t *testing.T, v *prometheus.CounterVec, label string) float64 {
	t.Helper()
	return testutil.ToFloat64(v.WithLabelValues(label))
}

func TestDedup(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC)
	base := Event{Time: t0, Kind: AccountLocked, Stage: "auth", Reason: "guessing", Trunk: "phones",
		Src: netip.MustParseAddrPort("198.51.100.4:5060"), CallID: "a@x", Detail: "locked"}
	tests := []struct {
		name    string
		edit    func(*Event)
		send    bool
		repeats int
	}{
		{"the same event", func(*Event) {}, false, 0},
		{"later within the window", func(e *Event) { e.Time = t0.Add(9 * time.Minute) }, false, 0},
		{"another source port", func(e *Event) { e.Src = netip.MustParseAddrPort("198.51.100.4:40000") }, false, 0},
		{"another Call-ID", func(e *Event) { e.CallID = "b@x" }, false, 0},
		{"another transport", func(e *Event) { e.Transport = "TLS" }, false, 0},
		{"a clock gone back", func(e *Event) { e.Time = t0.Add(-time.Hour) }, false, 0},
		{"another source address", func(e *Event) { e.Src = netip.MustParseAddrPort("198.51.100.5:5060") }, true, 0},
		{"another trunk", func(e *Event) { e.Trunk = "lobby" }, true, 0},
		{"another detail", func(e *Event) { e.Detail = "locked again" }, true, 0},
		{"another kind", func(e *Event) { e.Kind = Ban }, true, 0},
		{"another code", func(e *Event) { e.Code = 403 }, true, 0},
		{"after the window", func(e *Event) { e.Time = t0.Add(10 * time.Minute) }, true, 6},
	}
	d := newDedup(10 * time.Minute)
	if ok, _ := d.check(base); !ok {
		t.Fatal("the first event was suppressed")
	}
	for _, tc := range tests {
		e := base
		tc.edit(&e)
		if ok, n := d.check(e); ok != tc.send || n != tc.repeats {
			t.Errorf("%s: send %v repeats %d, want %v %d", tc.name, ok, n, tc.send, tc.repeats)
		}
	}
	// a zero window (dedup off) and a nil dedup send everything
	for _, d := range []*dedup{newDedup(-1), nil} {
		for range 3 {
			if ok, _ := d.check(base); !ok {
				t.Fatal("dedup off suppressed an event")
			}
		}
	}
}

// The memory of a dedup is bounded; when full of live keys it forgets the
// oldest (which is then sent again), never refuses a new one.
func TestDedupBounded(t *testing.T) {
	d := newDedup(time.Hour)
	t0 := time.Now()
	for i := range maxDedupKeys + 10 {
		e := Event{Time: t0.Add(time.Duration(i) * time.Millisecond), Kind: Ban, Detail: fmt.Sprint(i)}
		if ok, _ := d.check(e); !ok {
			t.Fatalf("event %d suppressed", i)
		}
	}
	if len(d.seen) > maxDedupKeys {
		t.Fatalf("%d keys kept", len(d.seen))
	}
	if ok, _ := d.check(Event{Time: t0.Add(time.Hour - time.Second), Kind: Ban, Detail: "0"}); !ok {
		t.Error("the oldest key was not the one forgotten")
	}
	if ok, _ := d.check(Event{Time: t0.Add(time.Hour - time.Second), Kind: Ban, Detail: fmt.Sprint(maxDedupKeys + 9)}); ok {
		t.Error("the newest key was forgotten")
	}
	// expired keys make room first
	later := t0.Add(3 * time.Hour)
	if ok, _ := d.check(Event{Time: later, Kind: Unban}); !ok || len(d.seen) != 1 {
		t.Errorf("after the window: %d keys kept", len(d.seen))
	}
}

func TestClean(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain text", "plain text"},
		{"line\r\nBcc: x", "line  Bcc: x"},
		{"tab\there", "tab here"},
		{"nul\x00", "nul "},
		{"bad \xff utf8", "bad   utf8"},
		{"sep\u2028x", "sep x"},
		{"überlang", "überl…"},
	}
	for _, tc := range tests {
		limit := 64
		if strings.HasPrefix(tc.in, "über") {
			limit = 5
		}
		if got := clean(tc.in, limit); got != tc.want {
			t.Errorf("clean(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// A Slack-format webhook posts {"text": ...}: a header and one escaped
// summary line per event of the batch.
func TestWebhookSlackFormat(t *testing.T) {
	h := &hook{}
	srv := httptest.NewServer(h)
	defer srv.Close()
	bus := NewBus()
	sub := bus.Subscribe("webhook", 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		WebhookSink(ctx, Webhook{URL: srv.URL, Format: FormatSlack, Flush: 50 * time.Millisecond}, sub, nil, nil)
	}()
	t0 := time.Date(2026, 11, 30, 3, 4, 5, 0, time.UTC)
	bus.Publish(Event{Time: t0, Kind: FraudIncident, Stage: "fraud", Reason: "irsf", Trunk: "acme", Detail: "rule=irsf value=25 limit=20"})
	bus.Publish(Event{Time: t0, Kind: AccountLocked, Stage: "auth", Reason: "guessing", Trunk: "phones",
		Src: netip.MustParseAddrPort("192.0.2.7:5060"), Detail: "user <!channel> & co"})
	waitFor(t, "a post", func() bool { h.mu.Lock(); defer h.mu.Unlock(); return len(h.bodies) == 1 })
	cancel()
	<-done
	h.mu.Lock()
	defer h.mu.Unlock()
	var body map[string]any
	if err := json.Unmarshal(h.bodies[0], &body); err != nil || len(body) != 1 {
		t.Fatalf("body %s: %v", h.bodies[0], err)
	}
	want := "sipwarden: 2 events\n" +
		"• 2026-11-30 03:04:05Z fraud_incident trunk=acme reason=irsf: rule=irsf value=25 limit=20\n" +
		"• 2026-11-30 03:04:05Z account_locked trunk=phones src=192.0.2.7 reason=guessing: user &lt;!channel&gt; &amp; co"
	if body["text"] != want {
		t.Errorf("text:\n%v\nwant:\n%s", body["text"], want)
	}
}
