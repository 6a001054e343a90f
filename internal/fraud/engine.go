package fraud

import (
	"context"
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sipwarden/sipwarden/internal/chain"
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

type bucket struct {
	min          int64 // Unix minute; a stale bucket is reset on write
	calls, risky int32
	// started, answered: non-domestic calls started in this minute, and how
	// many of them were answered (low_asr); short: answered non-domestic
	// calls that ended in this minute within shortCall (short_calls).
	started, answered, short int32
	score, spent             Money
	// newSpent: spent by calls to countries that were new to the trunk (new_country_spend).
	newSpent Money
}

// shortCall is the longest answered call that short_calls counts: test
// calls of a range and pumping of numbers that pay per connection last seconds.
const shortCall = 10 * time.Second

// hourSpend is the money spent in one hour (spend_24h).
type hourSpend struct {
	hour  int64 // Unix hour; a stale entry is reset on write
	spent Money
}

type slot struct {
	calls, risky float32
	spend        float32 // currency units
	n            uint16
}

type account struct {
	name string
	mu   sync.Mutex

	rules []Rule
	loc   *time.Location
	// trackNumbers: a same_number rule needs attempts per number.
	trackNumbers bool
	hours        *[7][][2]int // business hours, minutes of the day by weekday; nil: none

	buckets [60]bucket

	live             map[*Call]struct{}
	liveN, liveRisky int
	burn             Money // Σ rate of answered calls in progress
	accrued          Money // Σ accrued cost of answered calls in progress, at the last tick
	newAccrued       Money // the part of accrued of calls to new countries

	hour                int64 // Unix hour of hourCalls
	hourCalls, hourRisk float32
	hourSpend           Money
	baseline            [168]slot

	// numbers holds recent attempt times per dialled number (same_number
	// rules), at most maxTrackedNumbers; entries idle for an hour are dropped on ticks.
	numbers map[uint64]*numberHits
	swept   time.Time // last sweep of idle numbers

	// hourly is the money spent by the hour over the last day (spend_24h).
	hourly [24]hourSpend
	// countryWin holds, per non-domestic country, the score of its attempts
	// by the minute (country_score rules; nil without one).
	countryWin map[string]*countryWindow
	// recent holds the last distinct non-domestic numbers dialled
	// (new_country_score, sequential, new_range; nil without such a rule).
	recent *recentRing
	// ringWin is the window (minutes) of the first rule of each ring-based
	// metric, whose figures one pass computes (ringIndex).
	ringWin [3]int
	// known are the countries and ranges the trunk has called (answered
	// calls that ended normally, or its CDR history), with the Unix second
	// of the first such call: what the novelty rules compare with.
	knownCountries map[string]int64
	knownRanges    map[uint64]int64
	// since is the Unix second from which the trunk has been watched (its
	// first attempt, its oldest CDR, or the baseline file's): the novelty
	// rules wait until it is learnDelay old, when every country is no
	// longer new.
	since int64

	incidents map[string]*incident
	// forgiven holds, per rule an operator released, what the rule had
	// counted then: it is subtracted until that traffic has left the window.
	forgiven map[string]forgiveness
	// repeats remembers, per rule, how many incidents followed each other
	// (each within escalationMemory of the previous one's end).
	repeats map[string]repeat
}

// numberHits are the times (Unix seconds) of the last attempts to one number, a ring.
type numberHits struct {
	at   [maxSameNumber]int64
	next int
}

// maxTrackedNumbers bounds the numbers tracked per trunk (attempts to more
// distinct numbers in an hour are for the calls and score rules).
const maxTrackedNumbers = 8192

// record adds an attempt at ts (Unix seconds).
func (h *numberHits) record(ts int64) {
	h.at[h.next] = ts
	h.next = (h.next + 1) % len(h.at)
}

// since counts the attempts after from.
func (h *numberHits) since(from int64) int {
	n := 0
	for _, t := range h.at {
		if t > from {
			n++
		}
	}
	return n
}

func (h *numberHits) last() int64 { return h.at[(h.next+len(h.at)-1)%len(h.at)] }

// hitsOf records an attempt to number and returns its ring (nil when not tracked).
func (a *account) hitsOf(number uint64, ts int64) *numberHits {
	if !a.trackNumbers || number == 0 {
		return nil
	}
	h := a.numbers[number]
	if h == nil {
		if len(a.numbers) >= maxTrackedNumbers {
			return nil
		}
		h = &numberHits{}
		a.numbers[number] = h
	}
	h.record(ts)
	return h
}

type repeat struct {
	n      int
	closed time.Time
}

// forgiveness is the value of a released rule's metric at the release,
// subtracted from the rule's value until the counted traffic has aged out.
type forgiveness struct {
	value float64
	until time.Time
}

// forgivenValue returns what the released rule name may not count again at
// now (0 when nothing is forgiven), forgetting expired forgiveness.
func (a *account) forgivenValue(name string, now time.Time) float64 {
	f, ok := a.forgiven[name]
	if !ok {
		return 0
	}
	if !now.Before(f.until) {
		delete(a.forgiven, name)
		return 0
	}
	return f.value
}

// countedSpan is how far back the metric of r counts traffic: what an
// operator's release forgives (0: the metric is a present state, concurrent
// calls or the burn rate, which a release cannot forgive: if it still holds,
// the rule trips again).
func (r *Rule) countedSpan() time.Duration {
	switch r.Metric {
	case MetricCalls, MetricIntlCalls, MetricScore, MetricSpend, MetricSameNumber,
		MetricNewCountryScore, MetricSequential, MetricNewRange, MetricShortCalls, MetricNewCountrySpend:
		return r.Window
	case MetricCallsSpike, MetricIntlSpike, MetricSpendSpike, MetricOffHours, MetricUnusualHour:
		return time.Hour
	case MetricSpend24h:
		return 24 * time.Hour
	}
	// country_score is kept per country and low_asr is a ratio: a release
	// forgives neither; if the traffic still breaches, the rule trips again.
	return 0
}

const (
	// escalationMemory: an incident that opens within this time of the end
	// of the previous one of the same rule lasts twice as long.
	escalationMemory = 24 * time.Hour
	// maxActionSpan caps an escalated action window.
	maxActionSpan = 24 * time.Hour
)

type incident struct {
	rule   Rule
	opened time.Time
	until  time.Time
	// span is how long the action lasts after a breach: the rule's For,
	// doubled for each repeat.
	span     time.Duration
	repeat   int
	breaches int
	peak     float64
	report   bool
	tokens   float64
	tokAt    time.Time
	// key is what the incident's figure is of when the rule is keyed (a country), or "".
	key string
}

// NewEngine returns an engine with no accounts; accounts are created with
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

// Run calls Tick every Options.Tick until ctx is done. With a baseline
// file (SetBaselineFile) it saves the baselines every hour (a failed save is
// published as an event); the owner calls SaveBaselineFile when it stops,
// after Run has returned or while nothing waits for it.
func (e *Engine) Run(ctx context.Context) {
	t := time.NewTicker(e.opt.Tick)
	defer t.Stop()
	save := time.NewTicker(time.Hour)
	defer save.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.Tick()
		case <-save.C:
			e.saveOrReport()
		}
	}
}

func (e *Engine) saveOrReport() {
	if err := e.saveBaselines(); err != nil {
		e.opt.Bus.Publish(events.Event{Kind: events.FraudError, Stage: "fraud", Reason: "baseline_save_failed", Detail: err.Error()})
	}
}

type hangup struct{ id, account, rule string }

// Tick recomputes the live exposure of every account, evaluates the rules,
// ends calls over a per-call cap and expires incidents.
func (e *Engine) Tick() {
	now := e.now()
	e.mu.RLock()
	accts := make([]*account, 0, len(e.accts))
	for _, a := range e.accts {
		accts = append(accts, a)
	}
	e.mu.RUnlock()
	var evs []events.Event
	var hangups []hangup
	for _, a := range accts {
		a.mu.Lock()
		a.advance(now)
		a.accrued, a.newAccrued = 0, 0
		for c := range a.live {
			if c.isNew && !a.isNewKey(c.country, now.Unix()) {
				c.isNew = false
			}
			if c.answered.IsZero() {
				continue
			}
			cost := c.rate.Cost(now.Sub(c.answered))
			c.tickCost = cost
			a.accrued += cost
			if c.isNew && a.watched(now) {
				a.newAccrued += cost
			}
			for i := range a.rules {
				r := &a.rules[i]
				if r.Metric != MetricCallCost || c.hungUp || cost.Float() < r.Limit {
					continue
				}
				evs = a.trip(e, now, r, cost.Float(), chain.CallIDOf(c.id), "", evs)
				if !r.reporting(now) && !e.reportOnly.Load() {
					c.hungUp = true
					hangups = append(hangups, hangup{c.id, a.name, r.Name})
				}
			}
		}
		evs = a.evaluate(e, now, nil, evs)
		if now.Sub(a.swept) >= 5*time.Minute { // thousands of numbers: not on every tick
			a.swept = now
			for n, h := range a.numbers {
				if h.last() <= now.Unix()-3600 {
					delete(a.numbers, n)
				}
			}
		}
		for i := range a.rules { // in the order of the rules: deterministic events
			in := a.incidents[a.rules[i].Name]
			if in == nil {
				continue
			}
			if !now.Before(in.until) {
				evs = a.expire(in, now, evs)
				continue
			}
			if in.rule.EndCalls && in.rule.Action == ActionBlock && !in.report {
				for c := range a.live {
					if !c.hungUp && in.rule.Scope.covers(c.risky, c.isNew) {
						c.hungUp = true
						hangups = append(hangups, hangup{c.id, a.name, in.rule.Name})
					}
				}
			}
		}
		if m := e.opt.Metrics; m != nil {
			m.exposure.WithLabelValues(a.name).Set((a.spent(now, 60) + a.accrued).Float())
			m.burn.WithLabelValues(a.name).Set(a.burn.Float())
		}
		a.mu.Unlock()
	}
	for _, ev := range evs {
		e.opt.Bus.Publish(ev)
	}
	// Calls in progress are a set: order the hangups so that runs repeat.
	slices.SortFunc(hangups, func(x, y hangup) int { return strings.Compare(x.id, y.id) })
	for _, h := range hangups {
		e.opt.Bus.Publish(events.Event{Time: now, Kind: events.FraudHangup, Stage: "fraud", Reason: h.rule,
			Trunk: h.account, CallID: chain.CallIDOf(h.id), Detail: "call ended by rule " + h.rule})
		if m := e.opt.Metrics; m != nil {
			m.hangups.WithLabelValues(h.account, h.rule).Inc()
		}
		if f := e.hangup.Load(); f != nil {
			(*f)(h.id, h.account, h.rule)
		}
	}
}

// Release closes account's incident of rule (an operator's decision). It
// reports whether there was one. It is ReleaseBy with no name.
func (e *Engine) Release(account, rule string) bool { return e.ReleaseBy(account, rule, "") }

// ReleaseBy closes account's incident of rule on the word of by (who or what
// released it, for the event; "" says nothing) and reports whether there was
// one. The operator vouched for the traffic the rule had counted: it is
// forgiven until it leaves the rule's window, so the next call goes through,
// while new traffic that alone passes the limit opens a new incident. A
// release is not an allow list. The escalation memory of the rule is cleared.
func (e *Engine) ReleaseBy(account, rule, by string) bool {
	e.mu.RLock()
	a := e.accts[account]
	e.mu.RUnlock()
	if a == nil {
		return false
	}
	now := e.now()
	a.mu.Lock()
	in := a.incidents[rule]
	delete(a.incidents, rule)
	delete(a.repeats, rule) // the operator vouched for the trunk: no escalation
	if in != nil {
		if span := in.rule.countedSpan(); span > 0 {
			a.forgiven[rule] = forgiveness{value: in.peak, until: now.Add(span)}
		}
	}
	a.mu.Unlock()
	if in == nil {
		return false
	}
	why := "released"
	if by != "" {
		why += " by " + by
	}
	e.opt.Bus.Publish(a.event(events.FraudRelease, in, now, why, ""))
	return true
}

// Incidents returns the open incidents, sorted by account and rule.
func (e *Engine) Incidents() []Incident {
	now := e.now()
	e.mu.RLock()
	accts := make([]*account, 0, len(e.accts))
	for _, a := range e.accts {
		accts = append(accts, a)
	}
	e.mu.RUnlock()
	var out []Incident
	for _, a := range accts {
		a.mu.Lock()
		for _, in := range a.incidents {
			if now.Before(in.until) {
				out = append(out, Incident{Account: a.name, Rule: in.rule.Name, Action: in.rule.Action,
					Scope: in.rule.Scope, ReportOnly: in.report, Opened: in.opened, Until: in.until,
					Breaches: in.breaches, Peak: in.peak, Escalation: in.repeat})
			}
		}
		a.mu.Unlock()
	}
	slices.SortFunc(out, func(x, y Incident) int {
		if x.Account != y.Account {
			if x.Account < y.Account {
				return -1
			}
			return 1
		}
		if x.Rule < y.Rule {
			return -1
		}
		if x.Rule > y.Rule {
			return 1
		}
		return 0
	})
	return out
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

// bucket returns the bucket of now's minute, reset if stale.
func (a *account) bucket(now time.Time) *bucket {
	m := now.Unix() / 60
	b := &a.buckets[m%60]
	if b.min != m {
		*b = bucket{min: m}
	}
	return b
}

// window sums the last w minutes (the current one included).
func (a *account) window(now time.Time, w int) winSum {
	s := winSum{w: w}
	m := now.Unix() / 60
	for i := int64(0); i < int64(w); i++ {
		b := &a.buckets[(m-i)%60]
		if b.min == m-i {
			s.calls += int(b.calls)
			s.riskyN += int(b.risky)
			s.score += b.score
			s.spent += b.spent
			s.newSpent += b.newSpent
		}
	}
	return s
}

func (a *account) spent(now time.Time, w int) Money { return a.window(now, w).spent }

// advance folds the hours that ended into the hour-of-week baseline.
func (a *account) advance(now time.Time) {
	h := now.Unix() / 3600
	if a.hour == 0 {
		a.hour = h
		return
	}
	if h <= a.hour {
		return
	}
	for hh, n := a.hour, 0; hh < h && n < 168; hh, n = hh+1, n+1 {
		s := &a.baseline[hourOfWeek(time.Unix(hh*3600, 0), a.loc)]
		if s.n == 0 {
			s.calls, s.risky, s.spend = a.hourCalls, a.hourRisk, float32(a.hourSpend.Float())
		} else {
			s.calls += baselineAlpha * (a.hourCalls - s.calls)
			s.risky += baselineAlpha * (a.hourRisk - s.risky)
			s.spend += baselineAlpha * (float32(a.hourSpend.Float()) - s.spend)
		}
		if s.n < math.MaxUint16 {
			s.n++
		}
		a.hourCalls, a.hourRisk, a.hourSpend = 0, 0, 0
	}
	a.hour = h
}

// inHours reports whether now falls in the account's business hours.
func (a *account) inHours(now time.Time) bool {
	t := now.In(a.loc)
	m := t.Hour()*60 + t.Minute()
	for _, span := range a.hours[t.Weekday()] {
		if m >= span[0] && m < span[1] {
			return true
		}
	}
	return false
}

func hourOfWeek(t time.Time, loc *time.Location) int {
	t = t.In(loc)
	return int(t.Weekday())*24 + t.Hour()
}

// attempt is the call attempt being checked, with what the account keeps of it.
type attempt struct {
	dest *Destination
	// risky: the attempt is in the scope of ScopeRisky (riskyAt).
	risky bool
	// hits are its number's recent attempts (same_number; nil when not tracked).
	hits *numberHits
	// country is its country's window (country_score; nil when not tracked).
	country *countryWindow
	// recent is its entry in the ring of recent numbers (nil when not tracked).
	recent *recentNum
}

// evaluate checks every rule of a; at is the attempt being checked (nil on a tick).
func (a *account) evaluate(e *Engine, now time.Time, at *attempt, evs []events.Event) []events.Event {
	var dest *Destination
	if at != nil {
		dest = at.dest
	}
	// The few distinct windows of the rules, each summed once.
	var cache [6]winSum
	n := 0
	win := func(w int) *winSum {
		for i := range n {
			if cache[i].w == w {
				return &cache[i]
			}
		}
		c := &cache[n%len(cache)]
		if n < len(cache) {
			n++
		}
		*c = a.window(now, w)
		return c
	}
	// The ring-based figures, in one pass when the first of their rules needs them.
	var figs ringFigures
	scanned := false
	ring := func() {
		if !scanned {
			scanned = true
			figs = a.recent.scan(at.recent, now.Unix(), a.ringWin)
		}
	}
	for i := range a.rules {
		r := &a.rules[i]
		var value, limit float64
		limit = r.Limit
		forgiven := 0.0
		if len(a.forgiven) > 0 {
			forgiven = a.forgivenValue(r.Name, now)
		}
		w := int(r.Window / time.Minute)
		switch r.Metric {
		case MetricCalls:
			value = float64(win(w).calls)
		case MetricIntlCalls:
			value = float64(win(w).riskyN)
		case MetricScore:
			value = win(w).score.Float()
		case MetricSpend:
			value = (win(w).spent + a.accrued).Float()
		case MetricBurn:
			value = a.burn.Float()
		case MetricConcurrent:
			value = float64(a.liveN)
			if dest != nil {
				value++
			}
		case MetricConcurrentIntl:
			value = float64(a.liveRisky)
			if at != nil && at.risky {
				value++
			}
		case MetricCallsSpike, MetricIntlSpike, MetricSpendSpike:
			s := a.baseline[hourOfWeek(now, a.loc)]
			base := s.calls
			value = float64(win(60).calls)
			switch r.Metric {
			case MetricIntlSpike:
				base, value = s.risky, float64(win(60).riskyN)
			case MetricSpendSpike:
				base, value = s.spend, (win(60).spent + a.accrued).Float()
			}
			// Until the slot has learned MinSamples weeks the static rules
			// (calls, score, spend) are the protection: a floor alone would
			// trip on every tenant busier than it (fraudsim: 85 false blocks
			// in 336 tenant-days with a cold-start floor on spend).
			if int(s.n) < r.MinSamples {
				continue
			}
			if limit = math.Max(r.Floor, r.Limit*float64(base)); limit <= 0 {
				continue
			}
		case MetricSameNumber:
			if at == nil || at.hits == nil {
				continue
			}
			value = float64(at.hits.since(now.Unix() - int64(w)*60))
		case MetricCountryScore:
			if at == nil || at.country == nil {
				continue
			}
			if value = at.country.sum(now, w).Float(); value > limit {
				evs = a.trip(e, now, r, value, "", at.country.key, evs)
			}
			continue
		case MetricNewCountryScore:
			if at == nil || at.recent == nil || !at.recent.newCountry || !a.watched(now) {
				continue
			}
			if ring(); figs.win[0] == w {
				value = figs.newScore.Float()
			} else {
				value = a.recent.newCountryScore(now.Unix() - int64(w)*60).Float()
			}
		case MetricSequential:
			if at == nil || at.recent == nil {
				continue
			}
			if ring(); figs.win[1] == w {
				value = float64(figs.seq)
			} else {
				value = float64(a.recent.sequential(at.recent, now.Unix()-int64(w)*60))
			}
		case MetricNewRange:
			if at == nil || at.recent == nil || !at.recent.newRange || !a.watched(now) {
				continue
			}
			if ring(); figs.win[2] == w {
				value = float64(figs.rng)
			} else {
				value = float64(a.recent.inRange(at.recent, now.Unix()-int64(w)*60))
			}
		case MetricLowASR:
			started, answered := a.asr(now, w)
			if started == 0 || float64(started) < r.Floor {
				continue
			}
			// Below the limit trips (the other metrics trip above it).
			if value = float64(answered) / float64(started); value < limit {
				evs = a.trip(e, now, r, value, "", "", evs)
			}
			continue
		case MetricShortCalls:
			value = float64(a.shortCalls(now, w))
		case MetricNewCountrySpend:
			if !a.watched(now) {
				continue
			}
			value = (win(w).newSpent + a.newAccrued).Float()
			// Floor: the distinct numbers in new countries dialled in the
			// window it takes. A person calling home from a new country
			// (a hotel guest, a travelling employee) calls one or two
			// numbers, at length; a pump spreads its channels over the
			// many numbers of the ranges that pay it, and redials new ones.
			if r.Floor > 0 && value-forgiven > limit && a.recent != nil &&
				float64(a.recent.newNumbers(now.Unix()-int64(w)*60)) < r.Floor {
				continue
			}
		case MetricSpend24h:
			value = (a.spent24h(now) + a.accrued).Float()
		case MetricOffHours:
			if at == nil || !at.risky || a.hours == nil || a.inHours(now) {
				continue
			}
			if value = float64(win(60).riskyN) - forgiven; value <= r.Floor {
				continue
			}
			evs = a.trip(e, now, r, value, "", "", evs)
			continue
		case MetricUnusualHour:
			if at == nil || !at.risky {
				continue
			}
			// Quiet: this hour of the week and both its neighbours learned, each below Limit.
			how := hourOfWeek(now, a.loc)
			quiet := true
			for _, h := range [3]int{(how + 167) % 168, how, (how + 1) % 168} {
				s := a.baseline[h]
				if int(s.n) < r.MinSamples || float64(s.risky) >= r.Limit {
					quiet = false
				}
			}
			// Floor: the risky attempts of the last hour (this one included) it takes.
			if value = float64(win(60).riskyN) - forgiven; !quiet || value <= r.Floor {
				continue
			}
			evs = a.trip(e, now, r, value, "", "", evs)
			continue
		default:
			continue // call_cost: per call, on ticks
		}
		if value -= forgiven; value > limit {
			evs = a.trip(e, now, r, value, "", "", evs)
		}
	}
	return evs
}

type winSum struct {
	w                      int
	calls, riskyN          int
	score, spent, newSpent Money
}

// trip records a breach of r: it opens an incident (one event) or extends
// the open one (no event, so an attack is one incident and not one alert
// per call). key names what the figure is of (the country of a country_score), or "".
func (a *account) trip(e *Engine, now time.Time, r *Rule, value float64, callID, key string, evs []events.Event) []events.Event {
	in := a.incidents[r.Name]
	if in != nil && now.Before(in.until) {
		in.breaches++
		if r.Metric == MetricLowASR { // the worst answer ratio is the lowest
			in.peak = math.Min(in.peak, value)
		} else {
			in.peak = math.Max(in.peak, value)
		}
		in.until = now.Add(in.span)
		return evs
	}
	if in != nil { // expired, not yet collected by a tick
		evs = a.expire(in, now, evs)
	}
	in = &incident{rule: *r, opened: now, breaches: 1, peak: value, span: r.For, key: key,
		report: r.reporting(now) || e.reportOnly.Load(), tokAt: now}
	if rp, ok := a.repeats[r.Name]; ok && now.Sub(rp.closed) < escalationMemory {
		in.repeat = rp.n
		for range rp.n {
			if in.span >= maxActionSpan/2 {
				in.span = maxActionSpan
				break
			}
			in.span *= 2
		}
	}
	in.until = now.Add(in.span)
	a.incidents[r.Name] = in
	if m := e.opt.Metrics; m != nil {
		m.incidents.WithLabelValues(a.name, r.Name, r.Action.String()).Inc()
	}
	return append(evs, a.event(events.FraudIncident, in, now, "", callID))
}

// expire closes an incident whose window has passed and remembers it for escalation.
func (a *account) expire(in *incident, now time.Time, evs []events.Event) []events.Event {
	delete(a.incidents, in.rule.Name)
	a.repeats[in.rule.Name] = repeat{n: in.repeat + 1, closed: now}
	return append(evs, a.event(events.FraudRelease, in, now, "expired", ""))
}

func (a *account) event(kind events.Kind, in *incident, now time.Time, why, callID string) events.Event {
	r := &in.rule
	unit := ""
	if r.Metric.money() {
		unit = " (money)"
	}
	detail := "rule=" + r.Name + " metric=" + r.Metric.String() + " action=" + r.Action.String() +
		" scope=" + r.Scope.String() + " value=" + strconv.FormatFloat(in.peak, 'f', -1, 64) +
		" limit=" + strconv.FormatFloat(r.Limit, 'f', -1, 64) + unit
	if r.Window > 0 {
		detail += " window=" + r.Window.String()
	}
	if in.key != "" {
		detail += " key=" + in.key
	}
	if in.report {
		detail += " report_only=true"
	}
	if in.repeat > 0 {
		detail += " repeat=" + strconv.Itoa(in.repeat) + " for=" + in.span.String()
	}
	if kind == events.FraudRelease {
		detail = fmt.Sprintf("rule=%s %s after %s, %d breaches", r.Name, why, now.Sub(in.opened).Round(time.Second), in.breaches)
	} else {
		detail += " until=" + in.until.UTC().Format(time.RFC3339)
	}
	return events.Event{Time: now, Kind: kind, Stage: "fraud", Reason: r.Name, Trunk: a.name, CallID: callID, Detail: detail}
}

// Now is the engine's clock.
func (e *Engine) Now() time.Time { return e.now() }

// SetClock replaces the engine's clock (the simulator's virtual time). It
// must be called before the engine is used.
func (e *Engine) SetClock(now func() time.Time) { e.now = now }
