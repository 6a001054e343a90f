package events

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestBusFanOutAndLoss(t *testing.T) {
	b := NewBus()
	a := b.Subscribe("a", 10)
	small := b.Subscribe("small", 1)
	for range 3 {
		b.Publish(Event{Kind: UnknownSource})
	}
	if len(a.C) != 3 || len(small.C) != 1 || small.Lost() != 2 || a.Lost() != 0 {
		t.Fatalf("a: %d queued, %d lost; small: %d queued, %d lost", len(a.C), a.Lost(), len(small.C), small.Lost())
	}
	b.Unsubscribe(small)
	b.Publish(Event{Kind: LimitHit})
	if len(a.C) != 4 {
		t.Fatalf("a: %d queued", len(a.C))
	}
	b.Close()
	var nilBus *Bus
	nilBus.Publish(Event{}) // a nil bus discards
}

// TestLogSinkRateLimit: a flood of events becomes a bounded number of log
// lines plus one summary of what was left out.
func TestLogSinkRateLimit(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&out, nil))
	b := NewBus()
	sub := b.Subscribe("log", 10000)
	now := time.Now()
	for i := range 5000 {
		b.Publish(Event{Time: now.Add(time.Duration(i) * time.Microsecond), Kind: UnknownSource, Reason: "unknown_source",
			Src: netip.MustParseAddrPort("192.0.2.1:5060")})
	}
	b.Close()
	LogSink(context.Background(), log, sub)
	lines := strings.Count(out.String(), "\n")
	if lines > logBurst+5 || lines < logBurst {
		t.Fatalf("%d log lines for 5000 events in 5 ms", lines)
	}
	if !strings.Contains(out.String(), `"msg":"events not logged (rate limit)","kind":"unknown_source","count":4900`) {
		t.Fatalf("no summary of the suppressed events:\n%s", out.String()[len(out.String())-300:])
	}
}

// TestLostMetric: the events a subscriber's full queue refused are exported
// by subscriber name, summed over subscribers of one name, and kept after a
// subscriber is removed.
func TestLostMetric(t *testing.T) {
	b := NewBus()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(b.Collector())
	b.Subscribe("log", 10)
	hook1 := b.Subscribe("webhook", 1)
	b.Subscribe("webhook", 2)
	for range 4 {
		b.Publish(Event{Kind: Ban})
	}
	want := func(text string) {
		t.Helper()
		if err := testutil.GatherAndCompare(reg, strings.NewReader(`# HELP sipwarden_events_lost_total Events that did not fit in a subscriber's queue and never reached it, by subscriber (log, webhook, email, ...).
# TYPE sipwarden_events_lost_total counter
`+text), "sipwarden_events_lost_total"); err != nil {
			t.Error(err)
		}
	}
	// webhook: 3 lost in the queue of 1, 2 in the queue of 2; log: none.
	want("sipwarden_events_lost_total{subscriber=\"log\"} 0\nsipwarden_events_lost_total{subscriber=\"webhook\"} 5\n")
	b.Unsubscribe(hook1)
	b.Publish(Event{Kind: Ban}) // hook2 is still full
	want("sipwarden_events_lost_total{subscriber=\"log\"} 0\nsipwarden_events_lost_total{subscriber=\"webhook\"} 6\n")
	b.Close()
	want("sipwarden_events_lost_total{subscriber=\"log\"} 0\nsipwarden_events_lost_total{subscriber=\"webhook\"} 6\n")
}

// TestKindLevel: events of normal operation (every successful login) are
// logged at INFO, security events at WARN.
func TestKindLevel(t *testing.T) {
	for _, tc := range []struct {
		k    Kind
		want slog.Level
	}{
		{AuthSuccess, slog.LevelInfo},
		{ConfigReloaded, slog.LevelInfo},
		{AuthFailure, slog.LevelWarn},
		{Ban, slog.LevelWarn},
		{BindingReplaced, slog.LevelWarn},
	} {
		if got := tc.k.Level(); got != tc.want {
			t.Errorf("%v: %v, want %v", tc.k, got, tc.want)
		}
	}
}
