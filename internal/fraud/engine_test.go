package fraud

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sipwarden/sipwarden/internal/events"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Monday 2026-11-30 10:00:00 UTC
var t0 = time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)

var (
	intlDest = Destination{Class: ClassInternational, International: true, CountryCode: 44, Region: "GB"}
	homeDest = Destination{Class: ClassDomestic, CountryCode: 1, Region: "US"}
	premDest = Destination{Class: ClassSatellite, International: true, CountryCode: 881, Region: "001"}
)

func newTestEngine(t *testing.T, rules ...Rule) (*Engine, *fakeClock, *events.Subscription) {
	t.Helper()
	clk := &fakeClock{t: t0}
	bus := events.NewBus()
	sub := bus.Subscribe("test", 1000)
	e := NewEngine(Options{Now: clk.Now, Bus: bus, Metrics: NewMetrics(nil)})
	if err := e.SetRules("acme", rules, nil); err != nil {
		t.Fatal(err)
	}
	return e, clk, sub
}

func drain(sub *events.Subscription) []events.Event {
	var out []events.Event
	for {
		select {
		case ev := <-sub.C:
			out = append(out, ev)
		default:
			return out
		}
	}
}

func kinds(evs []events.Event) string {
	var s []string
	for _, e := range evs {
		s = append(s, e.Kind.String()+":"+e.Reason)
	}
	return strings.Join(s, ",")
}

func TestScoreWindowBlocksRiskyOnly(t *testing.T) {
	e, clk, sub := newTestEngine(t, Rule{Name: "score_5m", Metric: MetricScore, Window: 5 * time.Minute,
		Limit: 10, Action: ActionBlock, For: 10 * time.Minute})
	rate := 2_500_000         // 2.50 per minute
	for i := 1; i <= 4; i++ { // score 2.5 .. 10: at the limit, not over
		if d := e.Check("acme", premDest, Money(rate)); !d.Allowed() {
			t.Fatalf("attempt %d refused: %+v", i, d)
		}
	}
	d := e.Check("acme", premDest, Money(rate)) // 12.5 > 10
	if d.Action != ActionBlock || d.Rule != "score_5m" {
		t.Fatalf("5th attempt: %+v", d)
	}
	if d := e.Check("acme", homeDest, 10_000); !d.Allowed() {
		t.Fatalf("domestic call refused by a risky-scope block: %+v", d)
	}
	for range 10 { // the attack goes on: one incident, no event per call
		e.Check("acme", premDest, Money(rate))
	}
	evs := drain(sub)
	if kinds(evs) != "fraud_incident:score_5m" {
		t.Fatalf("events %s", kinds(evs))
	}
	if !strings.Contains(evs[0].Detail, "action=block") || evs[0].Trunk != "acme" {
		t.Errorf("event %+v", evs[0])
	}
	inc := e.Incidents()
	if len(inc) != 1 || inc[0].Breaches != 12 || inc[0].Peak != 37.51 { // the domestic attempt counts in the score too
		t.Fatalf("incidents %+v", inc)
	}
	// The attacker stops; the window slides out, then the action expires by itself.
	clk.Add(10*time.Minute - time.Second)
	e.Tick()
	if d := e.Check("acme", premDest, 1); d.Action != ActionBlock {
		t.Fatalf("released early: %+v", d)
	}
	clk.Add(10 * time.Minute) // that check was below the limit: the window ends 10 min after the last breach
	e.Tick()
	if evs := drain(sub); kinds(evs) != "fraud_release:score_5m" {
		t.Fatalf("events %s", kinds(evs))
	}
	if d := e.Check("acme", premDest, 1); !d.Allowed() {
		t.Fatalf("still refused: %+v", d)
	}
}

func TestWindowBoundaries(t *testing.T) {
	e, clk, _ := newTestEngine(t, Rule{Name: "calls_5m", Metric: MetricCalls, Window: 5 * time.Minute, Limit: 3, Action: ActionBlock, Scope: ScopeAll, For: time.Minute})
	for range 3 {
		e.Check("acme", homeDest, 0)
		clk.Add(time.Minute)
	}
	s := e.Stats("acme")
	if s.Calls != [3]int{3, 3, 3} {
		t.Fatalf("stats %+v", s)
	}
	clk.Add(2 * time.Minute) // the first call is now 5 minutes old: out of the 5-minute window
	if s := e.Stats("acme"); s.Calls[0] != 2 || s.Calls[2] != 3 {
		t.Fatalf("after 5 min: %+v", s.Calls)
	}
	if d := e.Check("acme", homeDest, 0); !d.Allowed() { // 3 in 5 min: at the limit
		t.Fatalf("%+v", d)
	}
	if d := e.Check("acme", homeDest, 0); d.Action != ActionBlock { // 4
		t.Fatalf("%+v", d)
	}
	clk.Add(time.Hour)
	if s := e.Stats("acme"); s.Calls != [3]int{} {
		t.Fatalf("an hour later: %+v", s.Calls)
	}
}

func TestThrottle(t *testing.T) {
	e, clk, _ := newTestEngine(t, Rule{Name: "intl_2", Metric: MetricIntlCalls, Window: time.Minute, Limit: 2,
		Action: ActionThrottle, ThrottlePerMinute: 2, For: 5 * time.Minute})
	e.Check("acme", intlDest, 0)
	e.Check("acme", intlDest, 0)
	d := e.Check("acme", intlDest, 0)
	if d.Action != ActionThrottle || d.RetryAfter != 30 {
		t.Fatalf("%+v", d)
	}
	if d := e.Check("acme", homeDest, 0); !d.Allowed() {
		t.Fatalf("domestic throttled: %+v", d)
	}
	clk.Add(29 * time.Second)
	if d := e.Check("acme", intlDest, 0); d.Action != ActionThrottle || d.RetryAfter != 1 {
		t.Fatalf("%+v", d)
	}
	clk.Add(time.Second)
	if d := e.Check("acme", intlDest, 0); !d.Allowed() {
		t.Fatalf("token not granted after 30 s: %+v", d)
	}
	if d := e.Check("acme", intlDest, 0); d.Action != ActionThrottle {
		t.Fatalf("%+v", d)
	}
}

func TestReportOnly(t *testing.T) {
	for _, global := range []bool{false, true} {
		r := Rule{Name: "calls", Metric: MetricCalls, Window: time.Minute, Limit: 1, Action: ActionBlock, Scope: ScopeAll, ReportOnly: !global}
		e, _, sub := newTestEngine(t, r)
		e.SetReportOnly(global)
		e.Check("acme", homeDest, 0)
		d := e.Check("acme", homeDest, 0)
		if !d.Allowed() || d.Shadow != ActionBlock || d.ShadowRule != "calls" {
			t.Fatalf("global=%v: %+v", global, d)
		}
		evs := drain(sub)
		if len(evs) != 1 || !strings.Contains(evs[0].Detail, "report_only=true") {
			t.Fatalf("global=%v: events %+v", global, evs)
		}
	}
}

func TestLiveExposureOnTicks(t *testing.T) {
	e, clk, sub := newTestEngine(t, Rule{Name: "spend_60m", Metric: MetricSpend, Window: time.Hour, Limit: 5,
		Action: ActionBlock, For: 30 * time.Minute}, Rule{Name: "burn", Metric: MetricBurn, Limit: 1.5, Action: ActionAlert})
	rate := Rate{PerMinute: MoneyUnit, Initial: 1, Subsequent: 1} // 1.00/min
	if d := e.Check("acme", intlDest, rate.PerMinute); !d.Allowed() {
		t.Fatal(d)
	}
	c := e.CallStarted("call-1", "acme", intlDest, rate)
	clk.Add(10 * time.Second)
	e.CallAnswered("call-1")
	e.CallAnswered("call-1") // a retransmitted 200 is counted once
	clk.Add(4 * time.Minute)
	e.Tick()
	if s := e.Stats("acme"); s.Accrued != 4*MoneyUnit || s.Burn != MoneyUnit || s.Live != 1 || s.LiveRisky != 1 {
		t.Fatalf("stats %+v", s)
	}
	if len(e.Incidents()) != 0 {
		t.Fatal("incident before the limit")
	}
	clk.Add(2 * time.Minute) // 6.00 accrued, the call is still up: the tick sees it, not the BYE
	e.Tick()
	if d := e.Check("acme", intlDest, rate.PerMinute); d.Action != ActionBlock || d.Rule != "spend_60m" {
		t.Fatalf("%+v", d)
	}
	if kinds(drain(sub)) != "fraud_incident:spend_60m" {
		t.Fatal("no incident event")
	}
	c.Release()
	c.Release() // exactly once
	e.CallEnded("call-1")
	s := e.Stats("acme")
	if s.Spent60 != 6*MoneyUnit || s.Accrued != 0 || s.Burn != 0 || s.Live != 0 {
		t.Fatalf("after the end: %+v", s)
	}
	// A second answered call pushes the burn over 1.5/min.
	e.CallStarted("call-2", "acme", intlDest, rate)
	e.CallStarted("call-3", "acme", intlDest, rate)
	e.CallAnswered("call-2")
	e.CallAnswered("call-3")
	e.Tick()
	if kinds(drain(sub)) != "fraud_incident:burn" {
		t.Fatal("no burn incident")
	}
	e.CallEnded("call-2")
	e.CallEnded("call-3")
	e.CallEnded("unknown")
	e.CallAnswered("unknown")
}

func TestCallCostHangup(t *testing.T) {
	clk := &fakeClock{t: t0}
	var mu sync.Mutex
	var hung []string
	e := NewEngine(Options{Now: clk.Now, Hangup: func(id, acct, rule string) {
		mu.Lock()
		hung = append(hung, id+"/"+acct+"/"+rule)
		mu.Unlock()
	}})
	if err := e.SetRules("acme", []Rule{{Name: "cap", Metric: MetricCallCost, Limit: 2}}, nil); err != nil {
		t.Fatal(err)
	}
	rate := Rate{PerMinute: MoneyUnit, Initial: 1, Subsequent: 1}
	e.CallStarted("long", "acme", premDest, rate)
	e.CallStarted("short", "acme", premDest, rate)
	e.CallAnswered("long")
	clk.Add(119 * time.Second)
	e.CallAnswered("short")
	e.Tick()
	if len(hung) != 0 {
		t.Fatalf("hung up below the cap: %v", hung)
	}
	clk.Add(time.Second) // long: 120 s = 2.00
	e.Tick()
	e.Tick()
	if len(hung) != 1 || hung[0] != "long/acme/cap" {
		t.Fatalf("hangups %v", hung)
	}
}

func TestReleaseByOperator(t *testing.T) {
	e, _, sub := newTestEngine(t, Rule{Name: "calls", Metric: MetricCalls, Window: time.Minute, Limit: 1, Action: ActionBlock, Scope: ScopeAll, For: time.Hour})
	e.Check("acme", homeDest, 0)
	if d := e.Check("acme", homeDest, 0); d.Allowed() {
		t.Fatal("not blocked")
	}
	if !e.Release("acme", "calls") || e.Release("acme", "calls") || e.Release("nobody", "calls") {
		t.Fatal("Release results")
	}
	if got := kinds(drain(sub)); got != "fraud_incident:calls,fraud_release:calls" {
		t.Fatalf("events %s", got)
	}
	// The traffic the rule had counted is forgiven: the next call goes
	// through. A release is not an allow list: new traffic that alone passes
	// the limit opens a new incident.
	if d := e.Check("acme", homeDest, 0); !d.Allowed() {
		t.Fatalf("the first call after the release: %+v, want it through", d)
	}
	if d := e.Check("acme", homeDest, 0); d.Allowed() {
		t.Fatal("new traffic over the limit after the release: not blocked")
	}
	if got := kinds(drain(sub)); got != "fraud_incident:calls" {
		t.Fatalf("events after the release %s", got)
	}
}

// TestReleaseByNamesWhoAndForgivesTheWindow: the release event says who
// released the incident, its escalation is reported while it is open and
// forgotten with the release, and the forgiveness ends with the window.
func TestReleaseByNamesWhoAndForgivesTheWindow(t *testing.T) {
	e, clk, sub := newTestEngine(t, Rule{Name: "score", Metric: MetricScore, Window: 5 * time.Minute, Limit: 10, Action: ActionBlock, Scope: ScopeAll, For: time.Minute})
	costly := 6 * MoneyUnit
	trip := func() {
		t.Helper()
		e.Check("acme", homeDest, costly)
		if d := e.Check("acme", homeDest, costly); d.Allowed() {
			t.Fatal("12 over a limit of 10: not blocked")
		}
	}
	trip()
	clk.Add(6 * time.Minute) // the action window (1m) expired, the score left its window
	e.Tick()
	trip() // a second incident within a day: escalated
	inc := e.Incidents()
	if len(inc) != 1 || inc[0].Escalation != 1 || inc[0].Until.Sub(clk.Now()) != 2*time.Minute {
		t.Fatalf("incidents %+v, want one at escalation 1 lasting 2m", inc)
	}
	drain(sub)
	if e.ReleaseBy("acme", "nothing", "alice") {
		t.Fatal("released an incident that does not exist")
	}
	if !e.ReleaseBy("acme", "score", "alice via admin API") {
		t.Fatal("no incident to release")
	}
	evs := drain(sub)
	if len(evs) != 1 || evs[0].Kind != events.FraudRelease || !strings.Contains(evs[0].Detail, "released by alice via admin API") {
		t.Fatalf("release events %+v", evs)
	}
	if len(e.Incidents()) != 0 {
		t.Fatal("incident still open after the release")
	}
	if d := e.Check("acme", homeDest, costly); !d.Allowed() { // 18 - 12 forgiven
		t.Fatalf("a call after the release: %+v", d)
	}
	clk.Add(6 * time.Minute) // counted and forgiven traffic have left the window
	e.Tick()
	trip()
	if inc := e.Incidents(); len(inc) != 1 || inc[0].Escalation != 0 {
		t.Fatalf("incident after the release: %+v, want a first one (the release cleared the escalation)", inc)
	}
}

// weeks of history: n calls (all international when intl) in the same hour of each week.
func feedWeeks(e *Engine, clk *fakeClock, weeks, calls int, dest Destination) {
	for range weeks {
		for range calls {
			e.Check("acme", dest, 0)
		}
		clk.Add(7 * 24 * time.Hour)
		e.Tick()
	}
}

func TestBaselineSpike(t *testing.T) {
	rule := Rule{Name: "spike", Metric: MetricCallsSpike, Limit: 3, Floor: 20, MinSamples: 3, Action: ActionAlert, For: time.Minute}
	// Cold start: nothing (the static rules protect a new trunk).
	e, _, sub := newTestEngine(t, rule)
	for range 100 {
		e.Check("acme", homeDest, 0)
	}
	if len(drain(sub)) != 0 {
		t.Fatal("tripped before the baseline was learned")
	}
	// Learned, but small: the floor.
	e, clk, sub := newTestEngine(t, rule)
	feedWeeks(e, clk, 3, 2, homeDest)
	drain(sub)
	for range 20 {
		e.Check("acme", homeDest, 0)
	}
	if len(drain(sub)) != 0 {
		t.Fatal("tripped at the floor")
	}
	e.Check("acme", homeDest, 0)
	if kinds(drain(sub)) != "fraud_incident:spike" {
		t.Fatal("did not trip over the floor")
	}
	// Learned: 15 calls in this hour of the week for 3 weeks: threshold max(20, 3×15) = 45.
	e, clk, sub = newTestEngine(t, rule)
	feedWeeks(e, clk, 3, 15, homeDest)
	drain(sub)
	for range 45 {
		e.Check("acme", homeDest, 0)
	}
	if evs := drain(sub); len(evs) != 0 {
		t.Fatalf("tripped below 3× the baseline: %s", kinds(evs))
	}
	e.Check("acme", homeDest, 0)
	if kinds(drain(sub)) != "fraud_incident:spike" {
		t.Fatal("no spike at 46 calls")
	}
}

func TestUnusualHour(t *testing.T) {
	rule := Rule{Name: "odd", Metric: MetricUnusualHour, Limit: 0.5, MinSamples: 3, Action: ActionAlert}
	e, clk, sub := newTestEngine(t, rule)
	// A trunk that calls abroad on Monday at 10:00 but never on Monday at 03:00.
	feedWeeks(e, clk, 3, 4, intlDest)
	e.Check("acme", intlDest, 0)
	e.Check("acme", homeDest, 0)
	if evs := drain(sub); len(evs) != 0 {
		t.Fatalf("usual hour tripped: %s", kinds(evs))
	}
	clk.Add(17 * time.Hour) // Tuesday 03:00: three weeks of hours without international calls
	e.Check("acme", homeDest, 0)
	if evs := drain(sub); len(evs) != 0 {
		t.Fatal("domestic call tripped")
	}
	e.Check("acme", intlDest, 0)
	if kinds(drain(sub)) != "fraud_incident:odd" {
		t.Fatal("international call at an unusual hour not reported")
	}
	// Not learned yet (a new trunk): no report.
	e2, clk2, sub2 := newTestEngine(t, rule)
	clk2.Add(17 * time.Hour)
	e2.Check("acme", intlDest, 0)
	if len(drain(sub2)) != 0 {
		t.Fatal("tripped without history")
	}
}

func TestConcurrent(t *testing.T) {
	e, _, _ := newTestEngine(t, Rule{Name: "conc_intl", Metric: MetricConcurrentIntl, Limit: 2, Action: ActionBlock, For: time.Minute})
	for i := range 2 {
		if d := e.Check("acme", intlDest, 0); !d.Allowed() {
			t.Fatalf("call %d: %+v", i, d)
		}
		e.CallStarted(fmt.Sprint(i), "acme", intlDest, Rate{})
	}
	if d := e.Check("acme", homeDest, 0); !d.Allowed() {
		t.Fatal("domestic refused")
	}
	if d := e.Check("acme", intlDest, 0); d.Action != ActionBlock {
		t.Fatalf("third concurrent international call: %+v", d)
	}
}

func TestRuleValidate(t *testing.T) {
	bad := []Rule{
		{},
		{Name: "x", Metric: MetricCalls, Limit: 1, Window: 30 * time.Second},
		{Name: "x", Metric: MetricCalls, Limit: 1, Window: 61 * time.Minute},
		{Name: "x", Metric: MetricCalls, Limit: 1, Window: 90 * time.Second},
		{Name: "x", Metric: MetricCalls},
		{Name: "x", Metric: MetricCallsSpike},
		{Name: "x", Metric: numMetrics, Limit: 1},
		{Name: "x", Metric: MetricBurn, Limit: 1, Action: 9},
		{Name: "x", Metric: MetricBurn, Limit: 1, For: -time.Second},
	}
	for _, r := range bad {
		if err := r.Validate(); err == nil {
			t.Errorf("%+v accepted", r)
		}
	}
	r := Rule{Name: "x", Metric: MetricCalls, Limit: 1}
	if err := r.Validate(); err != nil || r.Window != 5*time.Minute || r.Action != ActionAlert || r.For != 15*time.Minute || r.ThrottlePerMinute != 2 {
		t.Fatalf("%+v %v", r, err)
	}
	for m := Metric(0); m < numMetrics; m++ {
		if got, err := ParseMetric(m.String()); got != m || err != nil {
			t.Errorf("ParseMetric(%s)", m)
		}
	}
	for a := ActionAlert; a <= ActionBlock; a++ {
		if got, err := ParseAction(a.String()); got != a || err != nil {
			t.Errorf("ParseAction(%s)", a)
		}
	}
	if _, err := ParseAction("none"); err == nil {
		t.Error("ParseAction(none)")
	}
	e := NewEngine(Options{})
	if err := e.SetRules("x", bad[:1], nil); err == nil {
		t.Error("SetRules accepted a bad rule")
	}
}

func TestSetRulesClosesOrphanIncidents(t *testing.T) {
	e, _, _ := newTestEngine(t, Rule{Name: "calls", Metric: MetricCalls, Window: time.Minute, Limit: 1, Action: ActionBlock, Scope: ScopeAll})
	e.Check("acme", homeDest, 0)
	e.Check("acme", homeDest, 0)
	if err := e.SetRules("acme", []Rule{{Name: "other", Metric: MetricBurn, Limit: 100}}, nil); err != nil {
		t.Fatal(err)
	}
	if d := e.Check("acme", homeDest, 0); !d.Allowed() || len(e.Incidents()) != 0 {
		t.Fatalf("%+v %v", d, e.Incidents())
	}
}

// TestRunTicks drives Run's ticker in a synctest bubble: virtual time, no sleeping on the wall clock.
func TestRunTicks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hung := make(chan string, 1)
		e := NewEngine(Options{Tick: time.Second, Hangup: func(id, _, _ string) { hung <- id }})
		if err := e.SetRules("acme", []Rule{{Name: "cap", Metric: MetricCallCost, Limit: 1}}, nil); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { e.Run(ctx); close(done) }()
		e.CallStarted("c", "acme", premDest, Rate{PerMinute: 6 * MoneyUnit, Initial: 1, Subsequent: 1}) // 0.10/s
		e.CallAnswered("c")
		start := time.Now()
		id := <-hung
		if id != "c" || time.Since(start) != 10*time.Second {
			t.Fatalf("hangup of %q after %v", id, time.Since(start))
		}
		cancel()
		<-done
	})
}

func TestEngineConcurrentUse(t *testing.T) {
	e := NewEngine(Options{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				id := fmt.Sprint(g, "-", i)
				acct := fmt.Sprint("t", i%3)
				if e.Check(acct, intlDest, 10_000).Allowed() {
					e.CallStarted(id, acct, intlDest, Rate{PerMinute: 10_000, Initial: 1, Subsequent: 1})
					e.CallAnswered(id)
				}
				if i%50 == 0 {
					e.Tick()
					e.Incidents()
				}
				e.CallEnded(id)
			}
		}()
	}
	wg.Wait()
	for i := range 3 {
		if s := e.Stats(fmt.Sprint("t", i)); s.Live != 0 || s.Burn != 0 {
			t.Fatalf("leak: %+v", s)
		}
	}
}

func BenchmarkCheck(b *testing.B) {
	e := NewEngine(Options{})
	b.ReportAllocs()
	for b.Loop() {
		e.Check("acme", intlDest, 10_000)
	}
}

func TestBlockEndsCallsInProgress(t *testing.T) {
	clk := &fakeClock{t: t0}
	var hung []string
	e := NewEngine(Options{Now: clk.Now, Hangup: func(id, _, _ string) { hung = append(hung, id) }})
	if err := e.SetRules("acme", []Rule{{Name: "burn", Metric: MetricBurn, Limit: 1.5, Action: ActionBlock, EndCalls: true}}, nil); err != nil {
		t.Fatal(err)
	}
	rate := Rate{PerMinute: MoneyUnit, Initial: 1, Subsequent: 1}
	e.CallStarted("home", "acme", homeDest, Rate{PerMinute: 10_000})
	e.CallAnswered("home")
	e.CallStarted("a", "acme", intlDest, rate)
	e.CallStarted("b", "acme", intlDest, rate)
	e.CallAnswered("a")
	e.Tick()
	if len(hung) != 0 {
		t.Fatalf("hung up under the limit: %v", hung)
	}
	e.CallAnswered("b") // 2.01/min burning
	e.Tick()
	e.Tick()
	slices.Sort(hung)
	if strings.Join(hung, ",") != "a,b" {
		t.Fatalf("hangups %v (the domestic call stays: risky scope)", hung)
	}
}

func TestRepeatIncidentsEscalate(t *testing.T) {
	e, clk, sub := newTestEngine(t, Rule{Name: "calls", Metric: MetricCalls, Window: time.Minute, Limit: 1,
		Action: ActionBlock, Scope: ScopeAll, For: 10 * time.Minute})
	trip := func() {
		t.Helper()
		e.Check("acme", homeDest, 0)
		if d := e.Check("acme", homeDest, 0); d.Action != ActionBlock {
			t.Fatalf("not blocked: %+v", d)
		}
	}
	// Each incident that follows the previous one within 24 h lasts twice as long: 10, 20, 40 min.
	for i, span := range []time.Duration{10 * time.Minute, 20 * time.Minute, 40 * time.Minute} {
		clk.Add(time.Minute)
		trip()
		clk.Add(span - time.Second)
		if d := e.Check("acme", homeDest, 0); d.Action != ActionBlock {
			t.Fatalf("incident %d released before %v: %+v", i, span, d)
		}
		clk.Add(span) // the check above was no breach: the window ends span after the breach
		e.Tick()
		if d := e.Check("acme", homeDest, 0); !d.Allowed() {
			t.Fatalf("incident %d not released after %v: %+v", i, span, d)
		}
	}
	evs := drain(sub)
	if !strings.Contains(evs[len(evs)-2].Detail, "repeat=2 for=40m0s") {
		t.Fatalf("events %+v", evs)
	}
	// A day later the memory is gone; an operator's release also resets it.
	clk.Add(25 * time.Hour)
	trip()
	inc := e.Incidents()
	if len(inc) != 1 || inc[0].Until.Sub(clk.Now()) != 10*time.Minute {
		t.Fatalf("after a day: %+v", inc)
	}
	e.Release("acme", "calls")
	clk.Add(time.Minute)
	trip()
	if inc := e.Incidents(); inc[0].Until.Sub(clk.Now()) != 10*time.Minute {
		t.Fatalf("after a release: %+v", inc)
	}
}

// A second INVITE that reuses a live call's key (Call-ID and From tag) must
// not end the first call's meter: the first call goes on at the far end.
func TestCallKeyReusedKeepsFirstMeter(t *testing.T) {
	e, _, _ := newTestEngine(t)
	rate := Rate{PerMinute: 6 * MoneyUnit, Initial: 1, Subsequent: 1}
	first := e.CallStarted("same\x00tag", "acme", intlDest, rate)
	first.Answered(time.Time{})
	second := e.CallStarted("same\x00tag", "acme", intlDest, rate) // the replayed INVITE
	if first == second || first.ended.Load() || e.Stats("acme").Live != 2 {
		t.Fatalf("the second call displaced the first: live %d, first ended %v", e.Stats("acme").Live, first.ended.Load())
	}
	second.Release() // the proxy refuses the replay and releases what it held
	if first.ended.Load() || e.Stats("acme").Live != 1 {
		t.Fatalf("the release of the replay ended the first call (live %d)", e.Stats("acme").Live)
	}
	e.CallEnded("same\x00tag")
	if !first.ended.Load() || e.Stats("acme").Live != 0 {
		t.Fatal("the key no longer finds the first call")
	}
	// Once the first call is over its key is free again (an INVITE re-sent
	// after the far end's 407 keeps Call-ID and From tag).
	third := e.CallStarted("same\x00tag", "acme", intlDest, rate)
	e.CallAnswered("same\x00tag")
	if third.answered.IsZero() {
		t.Fatal("the answer did not go to the new call")
	}
	third.Release()
	if e.Stats("acme").Live != 0 {
		t.Fatal("not ended")
	}
}

func TestUnusualHourFloorAndNeighbours(t *testing.T) {
	rule := Rule{Name: "odd", Metric: MetricUnusualHour, Limit: 0.5, Floor: 2, MinSamples: 3, Action: ActionAlert}
	e, clk, sub := newTestEngine(t, rule)
	feedWeeks(e, clk, 3, 4, intlDest) // Monday 10:00 has international calls
	// Monday 11:00 is quiet itself, but its neighbour 10:00 is not.
	clk.Add(time.Hour)
	for range 4 {
		e.Check("acme", intlDest, 0)
	}
	if evs := drain(sub); len(evs) != 0 {
		t.Fatalf("tripped next to a busy hour: %s", kinds(evs))
	}
	// Tuesday 03:00: quiet on all sides; the floor tolerates two calls.
	clk.Add(16 * time.Hour)
	e.Check("acme", intlDest, 0)
	e.Check("acme", intlDest, 0)
	if evs := drain(sub); len(evs) != 0 {
		t.Fatalf("tripped at the floor: %s", kinds(evs))
	}
	e.Check("acme", intlDest, 0)
	if kinds(drain(sub)) != "fraud_incident:odd" {
		t.Fatal("third call in a quiet hour not reported")
	}
}

func TestSpendSpike(t *testing.T) {
	rule := Rule{Name: "spend_spike", Metric: MetricSpendSpike, Limit: 4, Floor: 5, MinSamples: 3, Action: ActionBlock, For: time.Minute}
	e, clk, sub := newTestEngine(t, rule)
	rate := Rate{PerMinute: MoneyUnit / 10, Initial: 1, Subsequent: 1} // 0.10/min
	// Three weeks: in this hour of the week the trunk spends 2.00 (two 10-minute calls).
	for w := range 3 {
		for i := range 2 {
			id := fmt.Sprint("w", w, "-", i)
			e.CallStarted(id, "acme", intlDest, rate)
			e.CallAnswered(id)
			clk.Add(10 * time.Minute)
			e.CallEnded(id)
		}
		clk.Add(7*24*time.Hour - 20*time.Minute)
		e.Tick()
	}
	drain(sub)
	// Learned: threshold max(5, 4 × 2.00) = 8.00. Two hours' worth of calls: 7.80, then 8.10.
	long := Rate{PerMinute: 3 * MoneyUnit / 10, Initial: 1, Subsequent: 1} // 0.30/min
	e.CallStarted("big", "acme", intlDest, long)
	e.CallAnswered("big")
	clk.Add(26 * time.Minute) // 7.80
	e.Tick()
	if evs := drain(sub); len(evs) != 0 {
		t.Fatalf("tripped under 4× the baseline: %s", kinds(evs))
	}
	clk.Add(time.Minute) // 8.10
	e.Tick()
	if kinds(drain(sub)) != "fraud_incident:spend_spike" {
		t.Fatal("no spend spike")
	}
	if d := e.Check("acme", intlDest, 0); d.Action != ActionBlock {
		t.Fatalf("%+v", d)
	}
}

func TestOffHours(t *testing.T) {
	e, clk, sub := newTestEngine(t, Rule{Name: "off", Metric: MetricOffHours, Floor: 1, Action: ActionAlert})
	ny, _ := time.LoadLocation("America/New_York")
	if err := e.SetRules("acme", []Rule{{Name: "off", Metric: MetricOffHours, Floor: 1, Action: ActionAlert}}, ny); err != nil {
		t.Fatal(err)
	}
	var week [7][][2]int
	for d := time.Monday; d <= time.Friday; d++ {
		week[d] = [][2]int{{8 * 60, 18 * 60}}
	}
	e.SetBusinessHours("acme", &week)
	// t0 is Monday 10:00 UTC = 05:00 in New York: off hours. Domestic calls and the first international one pass.
	e.Check("acme", homeDest, 0)
	e.Check("acme", intlDest, 0)
	if evs := drain(sub); len(evs) != 0 {
		t.Fatalf("tripped at the floor: %s", kinds(evs))
	}
	e.Check("acme", intlDest, 0)
	if kinds(drain(sub)) != "fraud_incident:off" {
		t.Fatal("second international call off hours not reported")
	}
	// 13:00 UTC = 08:00 in New York: business hours.
	clk.Add(3 * time.Hour)
	e.Release("acme", "off")
	drain(sub)
	for range 5 {
		e.Check("acme", intlDest, 0)
	}
	if evs := drain(sub); len(evs) != 0 {
		t.Fatalf("tripped in business hours: %s", kinds(evs))
	}
	// No hours configured: the rule does nothing.
	e.SetBusinessHours("acme", nil)
	clk.Add(12 * time.Hour)
	for range 5 {
		e.Check("acme", intlDest, 0)
	}
	if evs := drain(sub); len(evs) != 0 {
		t.Fatalf("tripped without business hours: %s", kinds(evs))
	}
}

func TestSameNumber(t *testing.T) {
	e, clk, sub := newTestEngine(t, Rule{Name: "same", Metric: MetricSameNumber, Window: 15 * time.Minute, Limit: 3,
		Action: ActionBlock, For: time.Minute})
	pumped, other := intlDest, intlDest
	pumped.Number, other.Number = 0xabc1, 0xdef1
	for range 3 {
		if d := e.Check("acme", pumped, 0); !d.Allowed() {
			t.Fatalf("%+v", d)
		}
		clk.Add(4 * time.Minute)
	}
	for range 10 { // other numbers are not counted with it
		e.Check("acme", other, 0)
		other.Number += 2
	}
	if evs := drain(sub); len(evs) != 0 {
		t.Fatalf("tripped at the limit: %s", kinds(evs))
	}
	// The first attempt is now 12 min old: a fourth within 15 min trips.
	if d := e.Check("acme", pumped, 0); d.Action != ActionBlock || d.Rule != "same" {
		t.Fatalf("%+v", d)
	}
	// 16 minutes later the window holds only that last attempt.
	clk.Add(16 * time.Minute)
	e.Tick()
	if d := e.Check("acme", pumped, 0); !d.Allowed() {
		t.Fatalf("window did not slide: %+v", d)
	}
	// Numbers idle for an hour are forgotten on a tick (a sweep every 5 minutes).
	clk.Add(61 * time.Minute)
	e.Tick()
	if n := len(e.account("acme").numbers); n != 0 {
		t.Fatalf("%d numbers still tracked", n)
	}
	// Without a same_number rule nothing is tracked.
	if err := e.SetRules("acme", []Rule{{Name: "b", Metric: MetricBurn, Limit: 1}}, nil); err != nil {
		t.Fatal(err)
	}
	e.Check("acme", pumped, 0)
	if n := len(e.account("acme").numbers); n != 0 {
		t.Fatalf("%d numbers tracked without a rule", n)
	}
}

// A new rule's trial: before ReportOnlyUntil it only reports, after it acts.
func TestReportOnlyUntil(t *testing.T) {
	r := Rule{Name: "calls", Metric: MetricCalls, Window: time.Minute, Limit: 1, Action: ActionBlock, Scope: ScopeAll,
		For: time.Minute, ReportOnlyUntil: t0.Add(10 * time.Minute)}
	e, clk, _ := newTestEngine(t, r)
	e.Check("acme", homeDest, 0)
	if d := e.Check("acme", homeDest, 0); !d.Allowed() || d.Shadow != ActionBlock {
		t.Fatalf("in the trial: %+v", d)
	}
	clk.Add(15 * time.Minute) // the trial's incident has expired, and the trial with it
	e.Tick()
	e.Check("acme", homeDest, 0)
	if d := e.Check("acme", homeDest, 0); d.Allowed() || d.Action != ActionBlock {
		t.Fatalf("after the trial: %+v", d)
	}
}
