package fraud

import (
	"testing"
	"time"
)

// TestReleaseForgivesEveryCountedMetric: an operator's release forgives what
// the rule had counted, so the traffic that opened the incident does not
// reopen it at once, while new traffic that alone breaches the rule does.
// country_score and low_asr used to ignore the release: the first call (or
// tick) after it opened the incident again.
func TestReleaseForgivesEveryCountedMetric(t *testing.T) {
	t.Run("country_score", func(t *testing.T) {
		e, _, sub := newTestEngine(t, Rule{Name: "country", Metric: MetricCountryScore, Window: 5 * time.Minute,
			Limit: 10, Action: ActionBlock, Scope: ScopeAll, For: time.Hour})
		costly := 6 * MoneyUnit
		e.Check("acme", intlDest, costly)
		if d := e.Check("acme", intlDest, costly); d.Allowed() {
			t.Fatal("12 to one country over a limit of 10: not blocked")
		}
		if !e.Release("acme", "country") {
			t.Fatal("no incident to release")
		}
		drain(sub)
		if d := e.Check("acme", intlDest, costly); !d.Allowed() { // 18 - 12 forgiven
			t.Fatalf("the first call after the release: %+v, want it through", d)
		}
		if evs := drain(sub); len(evs) != 0 {
			t.Fatalf("the release did not forgive the counted score: %s", kinds(evs))
		}
		if d := e.Check("acme", intlDest, costly); d.Allowed() { // 24 - 12: new traffic alone over 10
			t.Fatal("new traffic over the limit after the release: not blocked")
		}
		if got := kinds(drain(sub)); got != "fraud_incident:country" {
			t.Fatalf("events after the release %s", got)
		}
	})
	t.Run("low_asr", func(t *testing.T) {
		e, clk, sub := newTestEngine(t, Rule{Name: "asr", Metric: MetricLowASR, Window: 15 * time.Minute, Limit: 0.15,
			Floor: 20, Action: ActionBlock, For: time.Hour})
		rate := Rate{PerMinute: 10_000, Initial: 1, Subsequent: 1}
		start := func(n, answered int, prefix string) {
			for i := range n {
				id := prefix + string(rune('a'+i%26)) + string(rune('a'+i/26))
				e.CallStarted(id, "acme", intlDest, rate)
				if i < answered {
					e.CallAnswered(id)
				}
				e.CallEnded(id)
			}
		}
		start(40, 3, "x")
		clk.Add(time.Minute)
		e.Tick()
		if got := kinds(drain(sub)); got != "fraud_incident:asr" {
			t.Fatalf("events %s", got)
		}
		if !e.Release("acme", "asr") {
			t.Fatal("no incident to release")
		}
		drain(sub)
		e.Tick()
		if d := e.Check("acme", intlDest, 0); !d.Allowed() {
			t.Fatalf("the first call after the release: %+v, want it through", d)
		}
		if evs := drain(sub); len(evs) != 0 {
			t.Fatalf("the release did not forgive the counted calls: %s", kinds(evs))
		}
		clk.Add(time.Minute)
		start(20, 2, "y") // new traffic alone: 0.10 < 0.15 over the floor
		clk.Add(time.Minute)
		e.Tick()
		if got := kinds(drain(sub)); got != "fraud_incident:asr" {
			t.Fatalf("events after new traffic %s, want an incident", got)
		}
	})
}
