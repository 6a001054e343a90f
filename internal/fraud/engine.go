package fraud

import (
	"hash/maphash"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sipwarden/sipwarden/internal/events"
)

// Engine keeps, per account (a trunk), sliding windows of calls, risky calls
// and money, the calls in progress and their live cost, hour-of-week
// baselines, and the incidents that rules open. It is safe for concurrent
// use; its state survives configuration reloads (SetRules swaps the rules).
//
// The proxy's side of the contract:
//
//	d := e.Check(trunk, dest, rate.PerMinute)      // a new INVITE: refuse when !d.Allowed()
//	call := e.CallStarted(key, trunk, dest, rate) // the INVITE is forwarded
//	call.Answered(at) or e.CallAnswered(key)      // a 2xx to the INVITE
//	call.Release() or e.CallEnded(key)            // BYE, failure, CANCEL, timeout
//
// key is the call's identity (chain.CallKey: Call-ID and From tag); the
// engine's hangup function is given that key back.
//
// and Run (or Tick) on a ticker, which updates the live exposure, ends
// calls over a per-call cap through Options.Hangup, and expires incidents.
type Engine struct {
	opt Options
	now func() time.Time

	reportOnly atomic.Bool
	hangup     atomic.Pointer[func(key, account, rule string)]
	// baselinePath is where Run saves the baselines (nil: nowhere).
	baselinePath atomic.Pointer[string]

	mu    sync.RWMutex
	accts map[string]*account

	seed  maphash.Seed
	calls [callShards]callShard
}

// Options configure an Engine.
type Options struct {
	// Now is the clock (default time.Now). The simulator drives virtual time with it.
	Now func() time.Time
	// Tick is the period of Run (default 5s): how often live exposure is
	// recomputed and per-call caps are checked.
	Tick time.Duration
	// Bus receives incidents, releases and hangups (nil: none).
	Bus *events.Bus
	// Hangup, when set, is called (outside any lock) to end a call in
	// progress that a call_cost rule tripped on, with the key the call was
	// started under (chain.CallKey). The proxy sends BYE both ways.
	Hangup func(key, account, rule string)
	// ReportOnly makes every rule report-only: incidents are published,
	// no call is refused or ended.
	ReportOnly bool
	// Metrics, when set, are updated.
	Metrics *Metrics
}

// Decision is the engine's answer to a new call.
type Decision struct {
	// Action is ActionNone (go ahead), ActionThrottle or ActionBlock.
	Action Action
	// Rule is the name of the rule whose incident refuses the call.
	Rule string
	// RetryAfter is the seconds until a throttle lets the next call through.
	RetryAfter uint32
	// Shadow is the action report-only incidents would have taken.
	Shadow     Action
	ShadowRule string
}

// Allowed reports whether the call may proceed.
func (d Decision) Allowed() bool { return d.Action < ActionThrottle }

// Incident is an open incident, as Incidents reports it.
type Incident struct {
	Account, Rule string
	Action        Action
	Scope         Scope
	ReportOnly    bool
	Opened, Until time.Time
	// Breaches counts the checks that found the rule over its limit.
	Breaches int
	// Peak is the highest value seen (amounts in currency units).
	Peak float64
	// Escalation counts the incidents of the same rule that came before this
	// one, each within a day of the previous one's end; each doubles the
	// action window (0: a first incident).
	Escalation int
}

const (
	callShards = 16
	// baselineAlpha weighs the newest week of an hour-of-week slot.
	baselineAlpha = 0.3
)

type callShard struct {
	mu    sync.Mutex
	calls map[string]*Call
}

// Call is a call in progress. Release (the chain.Releaser the fraud stage
// holds on the request) ends it exactly once.
type Call struct {
	id       string // the call key (chain.CallKey)
	e        *Engine
	acct     *account
	risky    bool
	rate     Rate
	started  time.Time
	answered time.Time // zero until answered
	tickCost Money     // accrued cost counted in account.accrued at the last tick
	hungUp   bool
	ended    atomic.Bool
	// country and rng are learned by the trunk when the call, answered,
	// ends normally (new_country_score, new_range).
	country string
	rng     uint64
	// isNew: the trunk has not learned the call's country (set when the
	// call starts, cleared on a tick or at its end once the country counts
	// as learned: its money is new-country money only while it is new).
	isNew bool
}

// Release ends the call (chain.Releaser): the same as CallEnded.
func (c *Call) Release() { c.e.endCall(c) }

// Answered marks the call answered (chain.Answerer: the proxy calls it on the
// first 2xx): the same as CallAnswered.
func (c *Call) Answered(time.Time) { c.e.answer(c) }

// DefaultRules on first use and take their own rules with SetRules.
func NewEngine(o Options) *Engine {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Tick <= 0 {
		o.Tick = 5 * time.Second
	}
	e := &Engine{opt: o, now: o.Now, accts: map[string]*account{}, seed: maphash.MakeSeed()}
	e.reportOnly.Store(o.ReportOnly)
	if o.Hangup != nil {
		e.SetHangup(o.Hangup)
	}
	for i := range e.calls {
		e.calls[i].calls = map[string]*Call{}
	}
	return e
}

// SetHangup sets the function that ends calls over a per-call cap (the
// proxy's, once it exists). nil: calls are reported, not ended.
func (e *Engine) SetHangup(f func(key, account, rule string)) {
	if f == nil {
		e.hangup.Store(nil)
		return
	}
	e.hangup.Store(&f)
}

// SetReportOnly switches the engine-wide report-only mode (a reload).
func (e *Engine) SetReportOnly(on bool) { e.reportOnly.Store(on) }

// SetRules gives account its rules (validated copies) and the time zone of
// its hour-of-week baseline (nil: UTC). Windows, calls in progress, baselines
// and open incidents are kept; an incident whose rule is gone is closed.
func (e *Engine) SetRules(account string, rules []Rule, loc *time.Location) error {
	rs := slices.Clone(rules)
	for i := range rs {
		if err := rs[i].Validate(); err != nil {
			return err
		}
	}
	if loc == nil {
		loc = time.UTC
	}
	a := e.account(account)
	a.mu.Lock()
	a.rules, a.loc = rs, loc
	a.trackNumbers = slices.ContainsFunc(rs, func(r Rule) bool { return r.Metric == MetricSameNumber })
	if !a.trackNumbers {
		clear(a.numbers)
	}
	a.track(rs)
	for name := range a.incidents {
		if !slices.ContainsFunc(rs, func(r Rule) bool { return r.Name == name }) {
			delete(a.incidents, name)
			delete(a.repeats, name)
		}
	}
	for name := range a.forgiven {
		if !slices.ContainsFunc(rs, func(r Rule) bool { return r.Name == name }) {
			delete(a.forgiven, name)
		}
	}
	a.mu.Unlock()
	return nil
}

// SetBusinessHours gives account its business hours in the time zone of
// SetRules: [from, to) minutes of the day for each weekday (Sunday = 0);
// nil removes them. off_hours rules watch the rest of the week.
func (e *Engine) SetBusinessHours(account string, hours *[7][][2]int) {
	a := e.account(account)
	a.mu.Lock()
	a.hours = hours
	a.mu.Unlock()
}

func (e *Engine) account(name string) *account {
	e.mu.RLock()
	a := e.accts[name]
	e.mu.RUnlock()
	if a != nil {
		return a
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if a = e.accts[name]; a == nil {
		a = &account{name: name, rules: DefaultRules(), loc: time.UTC,
			live: map[*Call]struct{}{}, incidents: map[string]*incident{}, repeats: map[string]repeat{},
			forgiven: map[string]forgiveness{}, numbers: map[uint64]*numberHits{},
			knownCountries: map[string]int64{}, knownRanges: map[uint64]int64{}}
		a.trackNumbers = slices.ContainsFunc(a.rules, func(r Rule) bool { return r.Metric == MetricSameNumber })
		a.track(a.rules)
		e.accts[name] = a
	}
	return a
}

// risky reports whether a destination's class is in the scope of
// ScopeRisky (a costly domestic range is too: riskyAt).
func risky(d Destination) bool { return d.Class != ClassDomestic }

// costlyDomesticRate is the price per minute (in the deck's currency) from
// which a domestic range counts as costly: ordinary domestic termination
// costs a fraction of a cent to a cent a minute (US and Canada, Western
// Europe), while the ranges that traffic pumping (access stimulation)
// targets — rural high-cost exchanges, domestic ranges priced like
// premium — cost ten times that and more. A domestic call at or above it is
// risky (ScopeRisky covers it, so the block rules stop a domestic pump)
// and its novelty is judged on its own (costlyDomesticKey), not on the
// trunk's own country, which every trunk has learned.
const costlyDomesticRate = 5 * MoneyUnit / 100

// costlyDomesticKey is the "country" of costly domestic ranges in what a
// trunk learns: a hotel that never called a high-cost exchange has not
// learned it, however much it calls home.
const costlyDomesticKey = "domestic-costly"

// costlyDomestic reports whether d is a domestic number in a range priced
// at or above costlyDomesticRate.
func costlyDomestic(d *Destination, ratePerMin Money) bool {
	return d.Class == ClassDomestic && ratePerMin >= costlyDomesticRate
}

// riskyAt reports whether a call to d at ratePerMin is in the scope of
// ScopeRisky: not domestic, or domestic and costly.
func riskyAt(d *Destination, ratePerMin Money) bool {
	return d.Class != ClassDomestic || ratePerMin >= costlyDomesticRate
}

// noveltyKey is the key under which the trunk learns d: its country, or
// costlyDomesticKey for a costly domestic range.
func noveltyKey(d *Destination, ratePerMin Money) string {
	if costlyDomestic(d, ratePerMin) {
		return costlyDomesticKey
	}
	return countryKey(d)
}

// Check counts a new call attempt of account to dest (whose range costs
// ratePerMin), evaluates the rules and returns what to do with the call.
// Attempts are counted even when refused, so an attack that keeps trying
// keeps its incident open.
func (e *Engine) Check(account string, dest Destination, ratePerMin Money) Decision {
	now := e.now()
	a := e.account(account)
	var evs []events.Event
	a.mu.Lock()
	a.advance(now)
	if a.since == 0 {
		a.since = now.Unix()
	}
	isRisky := riskyAt(&dest, ratePerMin)
	key := noveltyKey(&dest, ratePerMin)
	isNew := isRisky && a.isNewKey(key, now.Unix())
	// An attempt that a block of scope new refuses anyway (an attack on
	// countries the trunk never called, still dialling) is not counted in the
	// trunk's whole windows (calls, score, spend baselines): counted, it
	// would trip the rules of scope risky too (score_5m, intl_calls_5m) and
	// refuse the trunk's usual calls abroad for as long as the attack dials
	// (fraudsim: a reseller lost 78-109 of its calls per satellite attack).
	// It still feeds the novelty figures, which keep the block open.
	if !isNew || !a.heldNew(now) {
		b := a.bucket(now)
		b.calls++
		a.hourCalls++
		if isRisky {
			b.risky++
			a.hourRisk++
		}
		b.score += ratePerMin
	}
	at := attempt{dest: &dest, risky: isRisky, hits: a.hitsOf(dest.Number, now.Unix())}
	if isRisky {
		a.observe(now, &dest, key, ratePerMin, isNew, &at)
	}
	evs = a.evaluate(e, now, &at, evs)
	d := a.decide(now, isRisky, isNew)
	a.mu.Unlock()
	for _, ev := range evs {
		e.opt.Bus.Publish(ev)
	}
	return d
}

// decide returns the action of the most severe incident that covers the
// call (the first in the order of the rules among equals).
func (a *account) decide(now time.Time, isRisky, isNew bool) Decision {
	var d Decision
	if len(a.incidents) == 0 {
		return d
	}
	var throttle *incident
	for i := range a.rules {
		in := a.incidents[a.rules[i].Name]
		if in == nil || !now.Before(in.until) || in.rule.Action < ActionThrottle || !in.rule.Scope.covers(isRisky, isNew) {
			continue
		}
		if in.report {
			if in.rule.Action > d.Shadow {
				d.Shadow, d.ShadowRule = in.rule.Action, in.rule.Name
			}
			continue
		}
		if in.rule.Action == ActionBlock {
			d.Action, d.Rule = ActionBlock, in.rule.Name
			return d
		}
		if throttle == nil || in.rule.ThrottlePerMinute < throttle.rule.ThrottlePerMinute {
			throttle = in
		}
	}
	if throttle == nil {
		return d
	}
	per := throttle.rule.ThrottlePerMinute / 60 // per second
	throttle.tokens = math.Min(1, throttle.tokens+now.Sub(throttle.tokAt).Seconds()*per)
	throttle.tokAt = now
	if throttle.tokens >= 1 {
		throttle.tokens--
		return d
	}
	d.Action, d.Rule = ActionThrottle, throttle.rule.Name
	d.RetryAfter = uint32(max(1, math.Ceil((1-throttle.tokens)/per)))
	return d
}

// CallStarted registers a call in progress (the INVITE was forwarded) under
// key, its identity (chain.CallKey). A call still registered under the same
// key keeps its place and its meter: a second INVITE that reuses a live
// call's identity must not end the first call's metering (the first call
// goes on at the far end). The second call is metered on its own, through
// the *Call returned, and is not found by key.
func (e *Engine) CallStarted(key, account string, dest Destination, rate Rate) *Call {
	now := e.now()
	sh := e.shard(key)
	sh.mu.Lock()
	a := e.account(account)
	c := &Call{id: key, e: e, acct: a, risky: riskyAt(&dest, rate.PerMinute), rate: rate, started: now,
		country: noveltyKey(&dest, rate.PerMinute), rng: rangeKey(&dest)}
	if sh.calls[key] == nil {
		sh.calls[key] = c
	}
	sh.mu.Unlock()
	a.mu.Lock()
	if a.since == 0 {
		a.since = now.Unix()
	}
	a.live[c] = struct{}{}
	a.liveN++
	if c.risky {
		a.liveRisky++
		a.bucket(now).started++
		c.isNew = a.isNewKey(c.country, now.Unix())
	}
	a.mu.Unlock()
	return c
}

// CallAnswered marks the call registered under key answered (a 2xx to its
// INVITE): it starts costing money. Unknown or already answered calls are
// ignored.
func (e *Engine) CallAnswered(key string) {
	if c := e.lookup(key); c != nil {
		e.answer(c)
	}
}

func (e *Engine) answer(c *Call) {
	now := e.now()
	a := c.acct
	a.mu.Lock()
	if c.answered.IsZero() && !c.ended.Load() {
		c.answered = now
		a.burn += c.rate.PerMinute
		if c.risky { // counted in the minute the call started: the answer ratio of those calls
			if m := c.started.Unix() / 60; a.buckets[m%60].min == m {
				a.buckets[m%60].answered++
			}
		}
	}
	a.mu.Unlock()
}

// CallEnded ends the call registered under key: its cost (if answered) is
// counted as spent now.
func (e *Engine) CallEnded(key string) {
	if c := e.lookup(key); c != nil {
		e.endCall(c)
	}
}

func (e *Engine) endCall(c *Call) {
	if c.ended.Swap(true) {
		return
	}
	sh := e.shard(c.id)
	sh.mu.Lock()
	if sh.calls[c.id] == c {
		delete(sh.calls, c.id)
	}
	sh.mu.Unlock()
	now := e.now()
	a := c.acct
	a.mu.Lock()
	a.advance(now)
	delete(a.live, c)
	a.liveN--
	if c.risky {
		a.liveRisky--
	}
	if !c.answered.IsZero() {
		a.burn -= c.rate.PerMinute
		d := now.Sub(c.answered)
		cost := c.rate.Cost(d)
		b := a.bucket(now)
		b.spent += cost
		a.hourSpend += cost
		a.addHourly(now, cost)
		a.accrued -= c.tickCost // now counted as spent
		if c.isNew {
			a.newAccrued -= c.tickCost // as the last tick counted it
			// Money spent in the trunk's first day is not new-country money:
			// every country is new then, and the novelty rules wait.
			if a.watched(now) && a.isNewKey(c.country, now.Unix()) {
				b.newSpent += cost
			}
		}
		if c.risky {
			if d < shortCall {
				b.short++
			}
			// A call the engine ended, or that ended under a block, is not
			// history to learn from: it may be the attack.
			if !c.hungUp && !a.blocked(now) {
				a.learn(c.country, c.rng, now.Unix())
			}
		}
	}
	a.mu.Unlock()
}

func (e *Engine) shard(id string) *callShard {
	return &e.calls[maphash.String(e.seed, id)%callShards]
}

func (e *Engine) lookup(id string) *Call {
	sh := e.shard(id)
	sh.mu.Lock()
	c := sh.calls[id]
	sh.mu.Unlock()
	return c
}

// Stats are an account's current figures (for the admin API and tests).
type Stats struct {
	Calls, Risky    [3]int   // attempts in the last 5, 15 and 60 minutes
	Score           [3]Money // Σ $/min of attempts in the last 5, 15 and 60 minutes
	Spent60         Money    // spent by ended calls in the last 60 minutes
	Accrued         Money    // accrued by answered calls in progress (at the last tick)
	Burn            Money    // per minute, now
	Live, LiveRisky int
}

// Stats returns account's figures now.
func (e *Engine) Stats(account string) Stats {
	now := e.now()
	a := e.account(account)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.advance(now)
	var s Stats
	for i, w := range [3]int{5, 15, 60} {
		ws := a.window(now, w)
		s.Calls[i], s.Risky[i], s.Score[i] = ws.calls, ws.riskyN, ws.score
	}
	s.Spent60, s.Accrued, s.Burn, s.Live, s.LiveRisky = a.spent(now, 60), a.accrued, a.burn, a.liveN, a.liveRisky
	return s
}

// Now is the engine's clock.
func (e *Engine) Now() time.Time { return e.now() }

// SetClock replaces the engine's clock (the simulator's virtual time). It
// must be called before the engine is used.
func (e *Engine) SetClock(now func() time.Time) { e.now = now }
