package fraud

import (
	"strings"
	"testing"
	"time"
)

// num is a destination in region with country code cc and E.164 digits d.
func num(region string, cc int, d uint64) Destination {
	n := uint8(0)
	for x := d; x > 0; x /= 10 {
		n++
	}
	return Destination{Class: ClassInternational, International: true, CountryCode: cc, Region: region,
		Number: d<<1 | 1, Digits: d, NDigits: n}
}

const perMin160 = Money(1_600_000) // 1.60 per minute

// learnCountry makes the trunk learn dest's country and range: an answered
// call that ends normally, a day ago.
func learnCountry(e *Engine, clk *fakeClock, id string, dest Destination) {
	e.CallStarted(id, "acme", dest, Rate{PerMinute: 10_000, Initial: 1, Subsequent: 1})
	e.CallAnswered(id)
	clk.Add(time.Minute)
	e.CallEnded(id)
	clk.Add(learnDelay)
	e.Tick()
}

func TestNewCountryScore(t *testing.T) {
	e, clk, sub := newTestEngine(t, Rule{Name: "new5", Metric: MetricNewCountryScore, Window: 5 * time.Minute,
		Limit: 5, Action: ActionBlock, Scope: ScopeNew, For: 10 * time.Minute})
	gb := num("GB", 44, 442079460000)
	learnCountry(e, clk, "home", gb)
	// Three distinct Somali numbers at 1.60: 4.80, not over 5.
	for i := range uint64(3) {
		if d := e.Check("acme", num("SO", 252, 252610000100+i*1000), perMin160); !d.Allowed() {
			t.Fatalf("attempt %d refused: %+v", i, d)
		}
	}
	// Redialling one of them is not another number.
	for range 5 {
		if d := e.Check("acme", num("SO", 252, 252610000100), perMin160); !d.Allowed() {
			t.Fatalf("redial refused: %+v", d)
		}
	}
	// Calls to a learned country are not counted (GB: 1.60 each, many numbers).
	for i := range uint64(10) {
		if d := e.Check("acme", num("GB", 44, 442079460100+i), perMin160); !d.Allowed() {
			t.Fatalf("learned country refused: %+v", d)
		}
	}
	if evs := drain(sub); len(evs) != 0 {
		t.Fatalf("tripped at the limit: %s", kinds(evs))
	}
	// A fourth distinct number (Cuba, also new): 6.40 > 5.
	if d := e.Check("acme", num("CU", 53, 5378000001), perMin160); d.Action != ActionBlock || d.Rule != "new5" {
		t.Fatalf("%+v", d)
	}
	evs := drain(sub)
	if kinds(evs) != "fraud_incident:new5" || !strings.Contains(evs[0].Detail, "scope=new") {
		t.Fatalf("events %s %v", kinds(evs), evs)
	}
	// Scope new: the trunk's learned countries and domestic calls keep flowing.
	if d := e.Check("acme", gb, 10_000); !d.Allowed() {
		t.Fatalf("learned country refused by a new-scope block: %+v", d)
	}
	if d := e.Check("acme", homeDest, 10_000); !d.Allowed() {
		t.Fatalf("domestic refused: %+v", d)
	}
	if d := e.Check("acme", num("SL", 232, 23225000001), 10_000); d.Action != ActionBlock {
		t.Fatalf("another new country allowed: %+v", d)
	}
	// The numbers leave the window after 5 minutes; the block lasts 10 minutes after the last breach.
	clk.Add(5*time.Minute + time.Second)
	e.Tick()
	if d := e.Check("acme", num("SO", 252, 252610000100), 10_000); d.Action != ActionBlock {
		t.Fatalf("released early: %+v", d)
	}
	clk.Add(10 * time.Minute)
	e.Tick()
	if d := e.Check("acme", num("SO", 252, 252610000100), 10_000); !d.Allowed() {
		t.Fatalf("still refused: %+v", d)
	}
}

func TestNewCountryLearning(t *testing.T) {
	rate := Rate{PerMinute: MoneyUnit, Initial: 1, Subsequent: 1}
	so := num("SO", 252, 252610000100)
	var hung []string
	clk := &fakeClock{t: t0}
	e := NewEngine(Options{Now: clk.Now, Hangup: func(id, _, _ string) { hung = append(hung, id) }})
	if err := e.SetRules("acme", []Rule{
		{Name: "new5", Metric: MetricNewCountryScore, Window: 5 * time.Minute, Limit: 1.5, Action: ActionBlock, Scope: ScopeNew, EndCalls: true},
		{Name: "cap", Metric: MetricCallCost, Limit: 3},
	}, nil); err != nil {
		t.Fatal(err)
	}
	e.Check("acme", homeDest, 0) // watched from now: the novelty rules wait a day
	clk.Add(learnDelay)
	known := func() bool {
		a := e.account("acme")
		a.mu.Lock()
		defer a.mu.Unlock()
		return !a.isNewKey(countryKey(&so), clk.Now().Unix())
	}
	// Unanswered: nothing learned.
	e.CallStarted("ring", "acme", so, rate)
	e.CallEnded("ring")
	// Ended by the engine (the per-call cap): not learned, it may be the attack.
	e.CallStarted("capped", "acme", so, rate)
	e.CallAnswered("capped")
	clk.Add(3 * time.Minute)
	e.Tick()
	if len(hung) != 1 || hung[0] != "capped" {
		t.Fatalf("hangups %v", hung)
	}
	e.CallEnded("capped")
	if known() {
		t.Fatal("learned from an unanswered call or one the engine ended")
	}
	// Ended while a block is in force: not learned either.
	e.CallStarted("during", "acme", so, rate)
	e.CallAnswered("during")
	e.Check("acme", num("CU", 53, 5378000001), MoneyUnit)
	if d := e.Check("acme", num("CU", 53, 5378000002), MoneyUnit); d.Action != ActionBlock {
		t.Fatalf("%+v", d)
	}
	clk.Add(time.Second)
	e.CallEnded("during")
	if known() {
		t.Fatal("learned during a block")
	}
	clk.Add(time.Hour)
	e.Tick()
	e.CallStarted("ok", "acme", so, rate)
	e.CallAnswered("ok")
	clk.Add(time.Minute)
	e.CallEnded("ok")
	clk.Add(learnDelay - time.Second)
	if known() {
		t.Fatal("learned before a day had passed")
	}
	clk.Add(time.Second)
	if !known() {
		t.Fatal("an answered call that ended normally was not learned")
	}
}

func TestNoveltyColdStart(t *testing.T) {
	e, clk, sub := newTestEngine(t,
		Rule{Name: "new5", Metric: MetricNewCountryScore, Window: 5 * time.Minute, Limit: 1, Action: ActionBlock, Scope: ScopeNew},
		Rule{Name: "newspend", Metric: MetricNewCountrySpend, Window: 5 * time.Minute, Limit: 1, Action: ActionBlock, Scope: ScopeNew},
		Rule{Name: "rng", Metric: MetricNewRange, Window: 5 * time.Minute, Limit: 1, Action: ActionBlock, Scope: ScopeNew})
	rate := Rate{PerMinute: MoneyUnit, Initial: 1, Subsequent: 1}
	// A trunk seen for the first time: every country is new to it, so for a
	// day the novelty rules stay quiet (the static rules watch it).
	for i := range uint64(5) {
		d := num("SO", 252, 252610000100+i)
		if v := e.Check("acme", d, perMin160); !v.Allowed() {
			t.Fatalf("cold start: %+v", v)
		}
		e.CallStarted("c"+string(rune('0'+i)), "acme", d, rate)
		e.CallAnswered("c" + string(rune('0'+i)))
	}
	clk.Add(time.Minute)
	for i := range uint64(5) {
		e.CallEnded("c" + string(rune('0'+i)))
	}
	clk.Add(learnDelay - time.Minute - time.Second)
	e.Tick()
	e.Check("acme", num("CU", 53, 5378000001), perMin160)
	if evs := drain(sub); len(evs) != 0 {
		t.Fatalf("cold start: %s", kinds(evs))
	}
	// A day after the first attempt the trunk is watched, and what it
	// learned in that first day counts: Somalia (its calls ended normally
	// less than a day ago) is learned; Cuba is new.
	clk.Add(time.Second)
	if v := e.Check("acme", num("SO", 252, 252610000900), perMin160); !v.Allowed() {
		t.Fatalf("learned country: %+v", v)
	}
	e.Check("acme", num("CU", 53, 5378000001), perMin160)
	if v := e.Check("acme", num("CU", 53, 5378000002), perMin160); v.Action != ActionBlock || v.Rule != "new5" {
		t.Fatalf("watched trunk: %+v", v)
	}
}

func TestNewCountrySpend(t *testing.T) {
	clk := &fakeClock{t: t0}
	var hung []string
	e := NewEngine(Options{Now: clk.Now, Hangup: func(id, _, _ string) { hung = append(hung, id) }})
	if err := e.SetRules("acme", []Rule{{Name: "newspend", Metric: MetricNewCountrySpend, Window: time.Hour, Limit: 10,
		Action: ActionBlock, Scope: ScopeNew, EndCalls: true}}, nil); err != nil {
		t.Fatal(err)
	}
	gb := num("GB", 44, 442079460000)
	learnCountry(e, clk, "home", gb)
	rate := Rate{PerMinute: MoneyUnit, Initial: 1, Subsequent: 1}
	// A learned country spends freely.
	e.CallStarted("gb", "acme", gb, rate)
	e.CallAnswered("gb")
	// A new one: 6 minutes ended (6.00), then 4 accrued by a call in progress:
	// 10.00, at the limit (the first call teaches the trunk Tunisia only a day later).
	e.CallStarted("tn-1", "acme", num("TN", 216, 21671000001), rate)
	e.CallAnswered("tn-1")
	clk.Add(6 * time.Minute)
	e.CallEnded("tn-1")
	e.CallStarted("tn-2", "acme", num("TN", 216, 21671000002), rate)
	e.CallAnswered("tn-2")
	clk.Add(4 * time.Minute)
	e.Tick()
	if len(e.Incidents()) != 0 {
		t.Fatalf("tripped at the limit: %+v", e.Incidents())
	}
	clk.Add(time.Second) // 10.016667 (per-second billing)
	e.Tick()
	in := e.Incidents()
	if len(in) != 1 || in[0].Rule != "newspend" || in[0].Peak != 10.016667 {
		t.Fatalf("incidents %+v", in)
	}
	e.Tick() // end_calls: the new country's call is ended, not the learned one's
	if len(hung) != 1 || hung[0] != "tn-2" {
		t.Fatalf("hangups %v", hung)
	}
	if d := e.Check("acme", gb, MoneyUnit); !d.Allowed() {
		t.Fatalf("learned country refused: %+v", d)
	}
	// The money leaves the 60-minute window: the figure falls under the limit.
	e.CallEnded("tn-2")
	clk.Add(61 * time.Minute)
	e.Tick()
	a := e.account("acme")
	if s := a.window(clk.Now(), 60).newSpent; s != 0 || a.newAccrued != 0 {
		t.Fatalf("new spend %v, accrued %v", s, a.newAccrued)
	}
}

func TestCountryScore(t *testing.T) {
	e, clk, sub := newTestEngine(t, Rule{Name: "cty", Metric: MetricCountryScore, Window: 5 * time.Minute, Limit: 4,
		Action: ActionAlert, For: time.Minute})
	// 2 to Somalia (3.20) and 2 to Cuba (3.20): 6.40 for the trunk, under 4 per country.
	for i := range uint64(2) {
		e.Check("acme", num("SO", 252, 252610000100+i), perMin160)
		e.Check("acme", num("CU", 53, 5378000001+i), perMin160)
	}
	if evs := drain(sub); len(evs) != 0 {
		t.Fatalf("tripped under the limit per country: %s", kinds(evs))
	}
	// Ordinary domestic calls are not a country's exposure.
	for range 10 {
		e.Check("acme", homeDest, 10_000)
	}
	clk.Add(4 * time.Minute)
	e.Check("acme", num("SO", 252, 252610000200), perMin160) // 4.80 in 5 minutes > 4
	evs := drain(sub)
	if kinds(evs) != "fraud_incident:cty" || !strings.Contains(evs[0].Detail, "key=SO") {
		t.Fatalf("events %s %v", kinds(evs), evs)
	}
	// Five minutes later the first two have left the window.
	clk.Add(time.Minute)
	e.Tick()
	clk.Add(time.Minute)
	e.Tick()
	drain(sub)
	e.Check("acme", num("SO", 252, 252610000300), perMin160) // 3.20
	if evs := drain(sub); len(evs) != 0 {
		t.Fatalf("the window did not slide: %s", kinds(evs))
	}
}

func TestSequential(t *testing.T) {
	e, clk, sub := newTestEngine(t, Rule{Name: "seq", Metric: MetricSequential, Window: 15 * time.Minute, Limit: 4,
		Action: ActionBlock, For: time.Minute})
	base := uint64(252610000100)
	for i := range uint64(4) { // 4 numbers of one block of a hundred: at the limit
		e.Check("acme", num("SO", 252, base+i), 0)
		clk.Add(time.Minute)
	}
	e.Check("acme", num("SO", 252, base), 0)        // a redial is the same number
	e.Check("acme", num("SO", 252, base+100), 0)    // the next block
	e.Check("acme", num("SO", 252, base-1), 0)      // the previous block (...099)
	e.Check("acme", num("SO", 2526, base/10+50), 0) // fewer digits: another range
	if evs := drain(sub); len(evs) != 0 {
		t.Fatalf("tripped at the limit: %s", kinds(evs))
	}
	if d := e.Check("acme", num("SO", 252, base+99), 0); d.Action != ActionBlock || d.Rule != "seq" {
		t.Fatalf("%+v", d)
	}
	// 15 minutes after the first attempts only the last ones remain.
	clk.Add(12 * time.Minute)
	e.Tick()
	clk.Add(2 * time.Minute)
	e.Tick()
	drain(sub)
	if d := e.Check("acme", num("SO", 252, base+50), 0); !d.Allowed() {
		t.Fatalf("window did not slide: %+v", d)
	}
}

func TestNewRange(t *testing.T) {
	e, clk, sub := newTestEngine(t, Rule{Name: "rng", Metric: MetricNewRange, Window: 15 * time.Minute, Limit: 3,
		Action: ActionAlert, For: time.Minute})
	learnCountry(e, clk, "home", num("GB", 44, 442079460000)) // learns +4420794 (the range 4420794xxxx)
	for i := range uint64(10) {                               // many numbers of a learned range
		e.Check("acme", num("GB", 44, 442079469000+i), 0)
	}
	for i := range uint64(3) { // 3 in a new range: at the limit
		e.Check("acme", num("GB", 44, 442079470000+i*10), 0)
	}
	if evs := drain(sub); len(evs) != 0 {
		t.Fatalf("tripped at the limit: %s", kinds(evs))
	}
	e.Check("acme", num("GB", 44, 442079479999), 0)
	if evs := drain(sub); kinds(evs) != "fraud_incident:rng" {
		t.Fatalf("events %s", kinds(evs))
	}
}

func TestLowASR(t *testing.T) {
	e, clk, sub := newTestEngine(t, Rule{Name: "asr", Metric: MetricLowASR, Window: 15 * time.Minute, Limit: 0.15,
		Floor: 20, Action: ActionAlert, For: time.Minute})
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
	start(19, 0, "x") // under the floor of 20 calls: no ratio yet
	for range 40 {    // domestic calls do not count
		e.CallStarted("d", "acme", homeDest, rate)
		e.CallEnded("d")
	}
	clk.Add(time.Minute) // the minute is complete
	e.Tick()
	if evs := drain(sub); len(evs) != 0 {
		t.Fatalf("tripped under the floor: %s", kinds(evs))
	}
	start(21, 3, "y") // 40 started, 3 answered: 0.075 < 0.15, but this minute is not complete
	e.Tick()
	if evs := drain(sub); len(evs) != 0 {
		t.Fatalf("counted the current minute: %s", kinds(evs))
	}
	clk.Add(time.Minute)
	e.Tick()
	if evs := drain(sub); kinds(evs) != "fraud_incident:asr" {
		t.Fatalf("events %s", kinds(evs))
	}
	if in := e.Incidents(); len(in) != 1 || in[0].Peak != 3.0/40 {
		t.Fatalf("incidents %+v", in)
	}
	// At the limit (0.15 exactly) it does not trip.
	e2, clk2, sub2 := newTestEngine(t, Rule{Name: "asr", Metric: MetricLowASR, Window: 15 * time.Minute, Limit: 0.15,
		Floor: 20, Action: ActionAlert})
	e, clk = e2, clk2
	start(20, 3, "z")
	clk.Add(time.Minute)
	e.Tick()
	if evs := drain(sub2); len(evs) != 0 {
		t.Fatalf("tripped at the limit: %s", kinds(evs))
	}
}

func TestShortCalls(t *testing.T) {
	e, clk, sub := newTestEngine(t, Rule{Name: "short", Metric: MetricShortCalls, Window: 5 * time.Minute, Limit: 3,
		Action: ActionAlert, For: time.Minute})
	rate := Rate{PerMinute: 10_000, Initial: 1, Subsequent: 1}
	call := func(id string, d time.Duration, dest Destination, answer bool) {
		e.CallStarted(id, "acme", dest, rate)
		if answer {
			e.CallAnswered(id)
		}
		clk.Add(d)
		e.CallEnded(id)
	}
	for _, id := range []string{"a", "b", "c"} {
		call(id, 9*time.Second, intlDest, true)
	}
	call("ten", 10*time.Second, intlDest, true) // 10 s is not short
	call("unanswered", time.Second, intlDest, false)
	call("home", time.Second, homeDest, true)
	e.Tick()
	if evs := drain(sub); len(evs) != 0 {
		t.Fatalf("tripped at the limit: %s", kinds(evs))
	}
	call("d", 9*time.Second, intlDest, true)
	e.Tick()
	if evs := drain(sub); kinds(evs) != "fraud_incident:short" {
		t.Fatalf("events %s", kinds(evs))
	}
}

func TestSpend24h(t *testing.T) {
	e, clk, sub := newTestEngine(t,
		Rule{Name: "day_soft", Metric: MetricSpend24h, Limit: 20, Action: ActionAlert, For: time.Minute},
		Rule{Name: "day_hard", Metric: MetricSpend24h, Limit: 30, Action: ActionBlock, For: time.Minute})
	rate := Rate{PerMinute: MoneyUnit, Initial: 1, Subsequent: 1}
	spend := func(id string, minutes int) {
		e.CallStarted(id, "acme", intlDest, rate)
		e.CallAnswered(id)
		clk.Add(time.Duration(minutes) * time.Minute)
		e.CallEnded(id)
	}
	spend("a", 10) // 10:00-10:10
	clk.Add(5 * time.Hour)
	spend("b", 10) // 15:10-15:20: 20.00 in the day, at the soft limit
	e.Tick()
	if evs := drain(sub); len(evs) != 0 {
		t.Fatalf("tripped at the limit: %s", kinds(evs))
	}
	e.CallStarted("c", "acme", intlDest, rate)
	e.CallAnswered("c")
	clk.Add(time.Minute + time.Second) // 1.01 accrued by a call in progress counts
	e.Tick()
	if evs := drain(sub); kinds(evs) != "fraud_incident:day_soft" {
		t.Fatalf("events %s", kinds(evs))
	}
	clk.Add(9*time.Minute - time.Second) // 30.00: the hard level is not passed
	e.Tick()
	if d := e.Check("acme", intlDest, 0); !d.Allowed() {
		t.Fatalf("%+v", d)
	}
	clk.Add(time.Second)
	e.Tick()
	if d := e.Check("acme", intlDest, 0); d.Action != ActionBlock || d.Rule != "day_hard" {
		t.Fatalf("%+v", d)
	}
	e.CallEnded("c")
	// A day later the first call's hour has left the 24 hours, the others not yet.
	clk.Add(24*time.Hour - 5*time.Hour - 30*time.Minute)
	if got := e.account("acme").spent24h(clk.Now()); got != 10*MoneyUnit+rate.Cost(10*time.Minute+time.Second) {
		t.Fatalf("spent in 24h %v", got)
	}
}

func TestRangeKeys(t *testing.T) {
	for _, tc := range []struct {
		num     string
		digits  uint64
		n       uint8
		country string
	}{
		{"+442079460000", 442079460000, 12, "GB"},
		{"+88161234567", 88161234567, 11, "881"},
		{"+1", 1, 1, ""},
		{"+", 0, 0, ""},
		{"+12a", 0, 0, ""},
		{"1234", 0, 0, ""},
	} {
		d, n := digitsOf([]byte(tc.num))
		if d != tc.digits || n != tc.n {
			t.Errorf("digitsOf(%s) = %d, %d", tc.num, d, n)
		}
	}
	if k := countryKey(&premDest); k != "881" {
		t.Errorf("countryKey(+881) = %q", k)
	}
	if k := countryKey(&Destination{Region: "001", CountryCode: 800}); k != "" {
		t.Errorf("countryKey(+800) = %q", k)
	}
	short := num("GB", 44, 4420)
	if rangeKey(&short) != 0 {
		t.Error("a four-digit number has a range")
	}
	a, b := num("GB", 44, 442079460000), num("GB", 44, 442079469999)
	if rangeKey(&a) != rangeKey(&b) || rangeKey(&a) == rangeKey(&Destination{Digits: 44207946, NDigits: 8}) {
		t.Error("range keys")
	}
}

func TestNewRuleValidation(t *testing.T) {
	for _, tc := range []struct {
		r   Rule
		err string
	}{
		{Rule{Name: "a", Metric: MetricLowASR, Limit: 1.5}, "answer ratio"},
		{Rule{Name: "a", Metric: MetricSequential, Limit: recentSize}, "below 128"},
		{Rule{Name: "a", Metric: MetricNewRange, Limit: 200}, "below 128"},
		{Rule{Name: "a", Metric: MetricCountryScore, Limit: 1, Window: 2 * time.Hour}, "whole minutes"},
		{Rule{Name: "a", Metric: MetricSpend24h, Limit: 0}, "above 0"},
		{Rule{Name: "a", Metric: MetricCalls, Limit: 1, Scope: 7}, "unknown scope"},
	} {
		r := tc.r
		if err := r.Validate(); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%+v: %v, want %q", tc.r, err, tc.err)
		}
	}
	r := Rule{Name: "a", Metric: MetricLowASR, Limit: 0.2}
	if err := r.Validate(); err != nil || r.Floor != 10 || r.Window != 5*time.Minute {
		t.Errorf("defaults %+v %v", r, err)
	}
	for _, s := range []string{"risky", "all", "new"} {
		if sc, err := ParseScope(s); err != nil || sc.String() != s {
			t.Errorf("scope %s: %v %v", s, sc, err)
		}
	}
	if _, err := ParseScope("world"); err == nil {
		t.Error("ParseScope(world)")
	}
}

// allRules are the built-in rules and one of each metric they leave out,
// none of which trips on the benchmark's traffic.
func allRules() []Rule {
	rs := DefaultRules()
	for i := range rs {
		rs[i].Limit, rs[i].Floor = 1e12, 1e12
		switch rs[i].Metric {
		case MetricSameNumber:
			rs[i].Limit = maxSameNumber - 1
		case MetricSequential, MetricNewRange:
			rs[i].Limit = recentSize - 1
		case MetricLowASR:
			rs[i].Limit = 0.01
		}
	}
	return append(rs, Rule{Name: "day", Metric: MetricSpend24h, Limit: 1e12})
}

// checkBench returns a watched engine with allRules and 64 destinations in
// new countries (distinct numbers), and a clock that advances a second a call.
func checkBench(tb testing.TB) (*Engine, []Destination) {
	vt := t0
	e := NewEngine(Options{Now: func() time.Time { vt = vt.Add(time.Second); return vt }})
	if err := e.SetRules("acme", allRules(), nil); err != nil {
		tb.Fatal(err)
	}
	dests := make([]Destination, 64)
	regions := []string{"SO", "CU", "SL", "LV", "GN", "TN", "GB", "FR"}
	for i := range dests {
		dests[i] = num(regions[i%len(regions)], 252, 252610000000+uint64(i)*37)
	}
	e.Check("acme", homeDest, 0)
	vt = vt.Add(learnDelay) // watched: the novelty rules run
	for i := range 256 {    // every country and ring entry seen
		e.Check("acme", dests[i%64], 10_000)
	}
	return e, dests
}

func BenchmarkCheckAllRules(b *testing.B) {
	e, dests := checkBench(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		e.Check("acme", dests[i&63], 10_000)
		i++
	}
}

// TestCheckNoAlloc keeps the rules off the heap: a checked attempt, with
// every metric evaluated, allocates nothing once its country has been seen.
func TestCheckNoAlloc(t *testing.T) {
	e, dests := checkBench(t)
	i := 0
	if n := testing.AllocsPerRun(1000, func() {
		if d := e.Check("acme", dests[i&63], 10_000); !d.Allowed() {
			t.Fatalf("refused: %+v", d)
		}
		i++
	}); n != 0 {
		t.Fatalf("%v allocations per Check", n)
	}
}

// TestNewCountrySpendMatures: money counts as new-country money only while
// the country is new. A call that starts in the trunk's first day, to a
// country learned that day, stops counting when the day ends.
func TestNewCountrySpendMatures(t *testing.T) {
	e, clk, sub := newTestEngine(t, Rule{Name: "newspend", Metric: MetricNewCountrySpend, Window: time.Hour, Limit: 1,
		Action: ActionBlock, Scope: ScopeNew})
	jm := num("JM", 1, 18765550100)
	learnRate := Rate{PerMinute: 10_000, Initial: 1, Subsequent: 1}
	e.CallStarted("first", "acme", jm, learnRate) // watched from now; Jamaica learned in the first day
	e.CallAnswered("first")
	clk.Add(time.Minute)
	e.CallEnded("first")
	clk.Add(learnDelay - 3*time.Minute)
	rate := Rate{PerMinute: MoneyUnit, Initial: 1, Subsequent: 1}
	e.CallStarted("long", "acme", jm, rate) // two minutes before the first day ends
	e.CallAnswered("long")
	clk.Add(30 * time.Minute)
	e.Tick()
	clk.Add(5 * time.Second)
	e.Tick()
	if evs := drain(sub); len(evs) != 0 {
		t.Fatalf("a learned country's call counted: %s", kinds(evs))
	}
	if a := e.account("acme"); a.newAccrued != 0 {
		t.Fatalf("new accrued %v", a.newAccrued)
	}
	e.CallEnded("long")
	if s := e.account("acme").window(clk.Now(), 60).newSpent; s != 0 {
		t.Fatalf("new spent %v", s)
	}
}

// TestRecentRing: the ring keeps the latest distinct numbers, a redial
// moves a number forward in time, and its count of new-country entries
// stays exact as entries are replaced.
func TestRecentRing(t *testing.T) {
	var r recentRing
	for i := range 3 * recentSize {
		d := num("SO", 252, 252610000000+uint64(i%(2*recentSize)))
		r.add(int64(i+1), &d, 0, MoneyUnit, i%3 == 0, false)
		n := 0
		for _, x := range r.e {
			if x.at != 0 && x.newCountry {
				n++
			}
		}
		if n != r.newN {
			t.Fatalf("after %d adds: newN %d, entries %d", i+1, r.newN, n)
		}
	}
	// The last recentSize distinct numbers are kept: attempts 257..384.
	if got := r.newCountryScore(0); got != Money(r.newN)*MoneyUnit {
		t.Fatalf("score %v with %d new entries", got, r.newN)
	}
	if got := r.newCountryScore(3 * recentSize); got != 0 {
		t.Fatalf("score after the last attempt %v", got)
	}
}

// TestFirstDayNotCarried: what a trunk spent and dialled in its first day,
// when every country is new, is not in the novelty windows when they start.
func TestFirstDayNotCarried(t *testing.T) {
	e, clk, sub := newTestEngine(t,
		Rule{Name: "newspend", Metric: MetricNewCountrySpend, Window: time.Hour, Limit: 10, Action: ActionBlock, Scope: ScopeNew},
		Rule{Name: "new5", Metric: MetricNewCountryScore, Window: 5 * time.Minute, Limit: 5, Action: ActionBlock, Scope: ScopeNew})
	e.Check("acme", homeDest, 0) // watched from t0
	clk.Add(learnDelay - 30*time.Minute)
	rate := Rate{PerMinute: MoneyUnit, Initial: 1, Subsequent: 1}
	for i := range uint64(4) { // 4 numbers in Somalia at 1.60, 20 spent, in the last half hour of the day
		d := num("SO", 252, 252610000100+i)
		e.Check("acme", d, perMin160)
		id := "so" + string(rune('0'+i))
		e.CallStarted(id, "acme", d, rate)
		e.CallAnswered(id)
		clk.Add(5 * time.Minute)
		e.CallEnded(id) // ended on the first day: Somalia is learned at its end
	}
	clk.Add(10*time.Minute + time.Second) // the trunk is watched now
	e.Tick()
	if d := e.Check("acme", num("CU", 53, 5378000001), perMin160); !d.Allowed() {
		t.Fatalf("first-day figures carried: %+v", d)
	}
	if evs := drain(sub); len(evs) != 0 {
		t.Fatalf("first-day figures carried: %s", kinds(evs))
	}
}

// TestRingScan: the one-pass figures equal the per-rule scans.
func TestRingScan(t *testing.T) {
	var r recentRing
	for i := range 300 {
		d := num("SO", 252, 252610000000+uint64(i*i%5000))
		r.add(int64(1000+i*7), &d, rangeKey(&d), Money(i)*1000, i%2 == 0, i%3 == 0)
	}
	cur := r.e[5]
	now := int64(1000 + 300*7)
	for _, win := range [][3]int{{5, 15, 15}, {1, 60, 3}, {0, 0, 0}, {60, 0, 30}} {
		f := r.scan(&cur, now, win)
		var want ringFigures
		if win[0] > 0 {
			want.newScore = r.newCountryScore(now - int64(win[0])*60)
		}
		if win[1] > 0 {
			want.seq = r.sequential(&cur, now-int64(win[1])*60)
		}
		if win[2] > 0 {
			want.rng = r.inRange(&cur, now-int64(win[2])*60)
		}
		if f.newScore != want.newScore || f.seq != want.seq || f.rng != want.rng {
			t.Errorf("windows %v: scan %+v, per rule %+v", win, f, want)
		}
	}
}

// TestNewCountrySpendFloor: new-country money spent on one or two numbers
// (a guest calling home) does not trip a rule with a Floor of 3 numbers; a
// third distinct number in a new country does.
func TestNewCountrySpendFloor(t *testing.T) {
	e, clk, sub := newTestEngine(t, Rule{Name: "newspend", Metric: MetricNewCountrySpend, Window: time.Hour, Limit: 10,
		Floor: 3, Action: ActionBlock, Scope: ScopeNew})
	learnCountry(e, clk, "home", num("GB", 44, 442079460000))
	rate := Rate{PerMinute: MoneyUnit, Initial: 1, Subsequent: 1}
	call := func(id string, d Destination) {
		t.Helper()
		if dec := e.Check("acme", d, rate.PerMinute); !dec.Allowed() {
			t.Fatalf("%s refused: %+v", id, dec)
		}
		e.CallStarted(id, "acme", d, rate)
		e.CallAnswered(id)
	}
	ph1, ph2 := num("PH", 63, 639171000001), num("PH", 63, 639171000002)
	call("ph-1", ph1)
	clk.Add(8 * time.Minute)
	e.CallEnded("ph-1")
	call("ph-2", ph2)
	clk.Add(8 * time.Minute)
	e.CallEnded("ph-2")
	call("ph-3", ph1) // the first number again: still two numbers
	clk.Add(8 * time.Minute)
	e.Tick() // 24.00 in the hour, two numbers
	if evs := drain(sub); len(evs) != 0 {
		t.Fatalf("two numbers tripped: %s", kinds(evs))
	}
	// A third number: a pump, not a person.
	if d := e.Check("acme", num("PH", 63, 639171000003), rate.PerMinute); d.Action != ActionBlock || d.Rule != "newspend" {
		t.Fatalf("third number: %+v", d)
	}
}

// TestCostlyDomestic: a domestic range priced at or above
// costlyDomesticRate is risky (a block of scope risky refuses it, not the
// trunk's ordinary domestic calls) and new to a trunk that never called
// one, however much it calls home.
func TestCostlyDomestic(t *testing.T) {
	e, clk, sub := newTestEngine(t,
		Rule{Name: "newspend", Metric: MetricNewCountrySpend, Window: time.Hour, Limit: 10, Action: ActionBlock, Scope: ScopeNew},
		Rule{Name: "score", Metric: MetricScore, Window: 5 * time.Minute, Limit: 5, Action: ActionBlock})
	rural := Destination{Class: ClassDomestic, CountryCode: 1, Region: "US", Number: 17125550001<<1 | 1, Digits: 17125550001, NDigits: 11}
	cheap, dear := Money(5_000), Money(90_000) // 0.005 and 0.09 per minute
	if riskyAt(&homeDest, cheap) || !riskyAt(&rural, dear) || noveltyKey(&rural, dear) != costlyDomesticKey ||
		noveltyKey(&homeDest, cheap) != "US" {
		t.Fatal("classification of domestic ranges")
	}
	learnCountry(e, clk, "home", homeDest)
	rate := Rate{PerMinute: dear, Initial: 1, Subsequent: 1}
	for i := range 12 { // 12 channels at 0.09: 1.08 per minute
		d := rural
		d.Digits += uint64(i)
		d.Number = d.Digits<<1 | 1
		id := "pump-" + string(rune('a'+i))
		if dec := e.Check("acme", d, dear); !dec.Allowed() {
			t.Fatalf("%s refused: %+v", id, dec)
		}
		e.CallStarted(id, "acme", d, rate)
		e.CallAnswered(id)
	}
	clk.Add(9 * time.Minute) // 9.72
	e.Tick()
	if evs := drain(sub); len(evs) != 0 {
		t.Fatalf("tripped early: %s", kinds(evs))
	}
	clk.Add(30 * time.Second) // 10.26
	e.Tick()
	in := e.Incidents()
	if len(in) != 1 || in[0].Rule != "newspend" {
		t.Fatalf("incidents %+v", in)
	}
	if d := e.Check("acme", rural, dear); d.Action != ActionBlock {
		t.Fatalf("costly domestic not refused: %+v", d)
	}
	if d := e.Check("acme", homeDest, cheap); !d.Allowed() {
		t.Fatalf("ordinary domestic refused: %+v", d)
	}
}

// TestHeldAttemptsNotCounted: attempts that a block of scope new refuses
// do not feed the trunk's whole score, so a rule of scope risky does not
// trip on them and the trunk's usual calls abroad keep flowing.
func TestHeldAttemptsNotCounted(t *testing.T) {
	e, clk, _ := newTestEngine(t,
		Rule{Name: "new5", Metric: MetricNewCountryScore, Window: 5 * time.Minute, Limit: 5, Action: ActionBlock, Scope: ScopeNew},
		Rule{Name: "score", Metric: MetricScore, Window: 5 * time.Minute, Limit: 20, Action: ActionBlock})
	gb := num("GB", 44, 442079460000)
	learnCountry(e, clk, "home", gb)
	sat := Money(7_500_000) // 7.50 per minute
	for i := range uint64(20) {
		d := num("001", 881, 881631000000+i)
		d.Class = ClassSatellite
		if dec := e.Check("acme", d, sat); dec.Action != ActionBlock || dec.Rule != "new5" {
			t.Fatalf("satellite attempt %d: %+v", i, dec)
		}
		clk.Add(2 * time.Second)
	}
	if d := e.Check("acme", gb, 10_000); !d.Allowed() {
		t.Fatalf("learned country refused: %+v", d)
	}
	if got := e.account("acme").window(clk.Now(), 5).score; got > sat+10_000 {
		t.Fatalf("score %v: refused attempts counted", got)
	}
}
