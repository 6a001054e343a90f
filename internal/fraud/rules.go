package fraud

import (
	"fmt"
	"strings"
	"time"
)

// Action is what a rule does when it trips.
type Action uint8

// Actions, in increasing severity.
const (
	// ActionNone: no action (a zero Decision).
	ActionNone Action = iota
	// ActionAlert publishes an incident and lets calls through.
	ActionAlert
	// ActionThrottle lets through a few calls per minute of the rule's scope
	// (503 with Retry-After for the others) while its window lasts.
	ActionThrottle
	// ActionBlock refuses every call of the rule's scope (403) while its window lasts.
	ActionBlock
)

var actionNames = [...]string{"none", "alert", "throttle", "block"}

func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "unknown"
}

// ParseAction returns the action named s (alert, throttle, block).
func ParseAction(s string) (Action, error) {
	for i, n := range actionNames[1:] {
		if n == s {
			return Action(i + 1), nil
		}
	}
	return 0, fmt.Errorf("unknown action %q (valid: alert, throttle, block)", s)
}

// Scope is the traffic an action applies to.
type Scope uint8

// Scopes.
const (
	// ScopeRisky: every call that is not domestic (international, premium,
	// satellite, NANP-foreign), and domestic calls to costly ranges
	// (costlyDomesticRate: traffic pumping): ordinary domestic calls keep flowing.
	ScopeRisky Scope = iota
	// ScopeAll: every call of the trunk.
	ScopeAll
	// ScopeNew: risky calls to countries the trunk has not learned (or to
	// costly domestic ranges when it never called one; new_country rules):
	// the attack's destinations are refused for hours if need be while the
	// trunk's usual calls abroad keep flowing.
	ScopeNew
)

var scopeNames = [...]string{"risky", "all", "new"}

func (s Scope) String() string {
	if int(s) < len(scopeNames) {
		return scopeNames[s]
	}
	return "unknown"
}

// ParseScope returns the scope named s (risky, all, new).
func ParseScope(s string) (Scope, error) {
	for i, n := range scopeNames {
		if n == s {
			return Scope(i), nil
		}
	}
	return 0, fmt.Errorf("unknown scope %q (valid: %s)", s, strings.Join(scopeNames[:], ", "))
}

// Metric is what a rule measures.
type Metric uint8

// Metrics. Windowed metrics (calls, intl_calls, score, spend) are sums over
// the rule's Window (1 to 60 minutes, by the minute).
const (
	// MetricCalls: call attempts in the window.
	MetricCalls Metric = iota
	// MetricIntlCalls: attempts to numbers that are not domestic.
	MetricIntlCalls
	// MetricScore: the sum of the $/min rates of the ranges dialled in the
	// window (the ClearIP fraud score): it grows with calls and with their price,
	// before any of them is answered.
	MetricScore
	// MetricSpend: money spent in the window by calls that ended, plus what
	// the calls in progress have accrued (the live exposure).
	MetricSpend
	// MetricBurn: the $/min burning now: the sum of the rates of answered calls in progress.
	MetricBurn
	// MetricConcurrent and MetricConcurrentIntl: calls in progress.
	MetricConcurrent
	MetricConcurrentIntl
	// MetricCallsSpike and MetricIntlSpike: attempts in the last 60 minutes
	// above max(Floor, Limit × the hour-of-week baseline), once the
	// baseline has MinSamples weeks of history (before that the static
	// rules are the protection).
	MetricCallsSpike
	MetricIntlSpike
	// MetricUnusualHour trips on a non-domestic attempt in an hour of the
	// week that is quiet — it and the hours either side have a learned rate
	// of such calls below Limit per hour, each over at least MinSamples
	// weeks — once the last 60 minutes hold more than Floor such attempts.
	MetricUnusualHour
	// MetricCallCost ends a call in progress whose accrued cost reaches
	// Limit (a hard cap per call, checked on every tick): the engine asks
	// for a BYE through its Hangup callback.
	MetricCallCost
	// MetricSpendSpike: the spend of the last 60 minutes (with what calls in
	// progress have accrued) above max(Floor, Limit × the hour-of-week
	// baseline of money spent per hour), once learned (as the other spikes).
	MetricSpendSpike
	// MetricOffHours trips on a non-domestic attempt outside the trunk's
	// configured business hours, once the last 60 minutes hold more than
	// Floor such attempts (nothing when the trunk has no business hours).
	// Unlike unusual_hour it needs no history: it covers a new trunk.
	MetricOffHours
	// MetricSameNumber: attempts to one number within the rule's Window
	// (targeted pumping: the fraudster's revenue-share numbers dialled again
	// and again). Limit is below maxSameNumber.
	MetricSameNumber
	// MetricCountryScore: the exposure per trunk×country: Σ of the $/min
	// rates of the attempts to the attempted call's country within the
	// Window. A burst to one expensive country shows here before the
	// trunk's score, which sums every country. The incident names the country.
	MetricCountryScore
	// MetricNewCountryScore: Σ of the $/min rates of the distinct numbers
	// dialled within the Window in countries the trunk has not learned
	// (learnt from its answered calls that ended normally, or from its CDR
	// history). IRSF pumps money into ranges the victim never calls, several
	// numbers at once; a person calling abroad dials one number at a time.
	MetricNewCountryScore
	// MetricSequential: distinct non-domestic numbers dialled within the
	// Window that differ from the attempted number only in their last two
	// digits (near-consecutive numbers: a range being walked).
	MetricSequential
	// MetricNewRange: distinct non-domestic numbers dialled within the
	// Window in the attempted number's range (the number without its last
	// four digits) when the trunk has not learned that range.
	MetricNewRange
	// MetricLowASR: the answer-seizure ratio of the non-domestic calls the
	// trunk started in the complete minutes of the Window, below Limit (a
	// ratio, 0 to 1) once they are at least Floor (default 10): a collapse
	// of answers is a scan of ranges or calls to numbers that do not exist.
	MetricLowASR
	// MetricShortCalls: answered non-domestic calls that ended within
	// shortCall (10 s) in the Window: test calls and pumping of numbers that
	// pay per connection.
	MetricShortCalls
	// MetricNewCountrySpend: money spent in the Window by calls to countries
	// the trunk had not learned when they started, plus what such calls in
	// progress have accrued: slow pumping to a new country, caught for a
	// fraction of what the trunk's whole spend rule lets go.
	MetricNewCountrySpend
	// MetricSpend24h: money spent in the last 24 hours (by the hour: the
	// current hour and the 23 before it) plus what calls in progress have
	// accrued: a daily budget (two rules make a soft and a hard level; the
	// spend metric with a 60m window is the hourly budget).
	MetricSpend24h
	numMetrics
)

// maxSameNumber bounds the Limit of same_number rules (the attempts kept per number).
const maxSameNumber = 30

var metricNames = [...]string{"calls", "intl_calls", "score", "spend", "burn", "concurrent",
	"concurrent_intl", "calls_spike", "intl_spike", "unusual_hour", "call_cost", "spend_spike", "off_hours", "same_number",
	"country_score", "new_country_score", "sequential", "new_range", "low_asr", "short_calls", "new_country_spend", "spend_24h"}

func (m Metric) String() string {
	if m < numMetrics {
		return metricNames[m]
	}
	return "unknown"
}

// ParseMetric returns the metric named s.
func ParseMetric(s string) (Metric, error) {
	for i, n := range metricNames {
		if n == s {
			return Metric(i), nil
		}
	}
	return 0, fmt.Errorf("unknown metric %q (valid: %s)", s, strings.Join(metricNames[:], ", "))
}

// money reports whether the metric's Limit is an amount (in currency units).
func (m Metric) money() bool {
	switch m {
	case MetricScore, MetricSpend, MetricBurn, MetricCallCost, MetricSpendSpike, MetricCountryScore,
		MetricNewCountryScore, MetricNewCountrySpend, MetricSpend24h:
		return true
	}
	return false
}

// windowed reports whether the metric sums a Window.
func (m Metric) windowed() bool {
	switch m {
	case MetricCalls, MetricIntlCalls, MetricScore, MetricSpend, MetricSameNumber, MetricCountryScore,
		MetricNewCountryScore, MetricSequential, MetricNewRange, MetricLowASR, MetricShortCalls, MetricNewCountrySpend:
		return true
	}
	return false
}

// recent reports whether the metric reads the ring of recent distinct numbers.
func (m Metric) recent() bool {
	return m == MetricNewCountryScore || m == MetricSequential || m == MetricNewRange
}

// spike reports whether the metric compares with a baseline (Limit is a multiplier, Floor a minimum).
func (m Metric) spike() bool {
	return m == MetricCallsSpike || m == MetricIntlSpike || m == MetricSpendSpike
}

// Rule is one threshold on one metric of a trunk, with what to do when it trips.
type Rule struct {
	// Name identifies the rule in events, metrics and CDRs ("intl_score_5m").
	Name   string
	Metric Metric
	// Window is the span of windowed metrics (1m to 60m, whole minutes).
	Window time.Duration
	// Limit trips the rule when the metric exceeds it (reaches it for
	// call_cost). Amounts are in currency units; spikes take a multiplier.
	Limit float64
	// Floor is the minimum threshold of spike rules, the non-domestic
	// attempts in an hour that unusual_hour tolerates, the calls a
	// low_asr window needs before its ratio counts (default 10), and the
	// distinct numbers in new countries dialled in the window that a
	// new_country_spend rule needs before it trips (0: any).
	Floor float64
	// MinSamples is how many weeks of an hour-of-week slot a baseline needs (default 3).
	MinSamples int
	Action     Action
	Scope      Scope
	// For is how long the action lasts after the last breach (default 15m).
	For time.Duration
	// ThrottlePerMinute is how many calls of the scope a throttle lets
	// through per minute (default 2).
	ThrottlePerMinute float64
	// ReportOnly publishes incidents without refusing any call.
	ReportOnly bool
	// ReportOnlyUntil: a new rule's trial period. Before this time the rule
	// only reports (as ReportOnly), after it the rule acts; zero: no trial.
	ReportOnlyUntil time.Time
	// EndCalls, for a block, also ends the trunk's calls in progress of the
	// scope (at the next tick): in an IRSF attack the calls already up are
	// where the money goes.
	EndCalls bool
}

// Validate checks a rule and fills its defaults.
func (r *Rule) Validate() error {
	if r.Name == "" {
		return fmt.Errorf("rule without a name")
	}
	if r.Metric >= numMetrics {
		return fmt.Errorf("rule %s: unknown metric", r.Name)
	}
	if r.Metric.windowed() {
		if r.Window == 0 {
			r.Window = 5 * time.Minute
		}
		if r.Window < time.Minute || r.Window > time.Hour || r.Window%time.Minute != 0 {
			return fmt.Errorf("rule %s: window %v: whole minutes from 1m to 60m", r.Name, r.Window)
		}
	}
	if r.Limit <= 0 && !r.Metric.spike() && r.Metric != MetricOffHours {
		return fmt.Errorf("rule %s: limit must be above 0", r.Name)
	}
	if r.Metric.spike() && r.Limit <= 0 && r.Floor <= 0 {
		return fmt.Errorf("rule %s: a spike rule needs a limit (multiplier of the baseline) or a floor", r.Name)
	}
	if r.Metric == MetricSameNumber && r.Limit >= maxSameNumber {
		return fmt.Errorf("rule %s: a same_number limit is below %d", r.Name, maxSameNumber)
	}
	if (r.Metric == MetricSequential || r.Metric == MetricNewRange) && r.Limit >= recentSize {
		return fmt.Errorf("rule %s: a %s limit is below %d (the distinct numbers kept)", r.Name, r.Metric, recentSize)
	}
	if r.Metric == MetricLowASR {
		if r.Limit > 1 {
			return fmt.Errorf("rule %s: a low_asr limit is an answer ratio from 0 to 1, got %v", r.Name, r.Limit)
		}
		if r.Floor == 0 {
			r.Floor = 10
		}
	}
	if r.MinSamples == 0 {
		r.MinSamples = 3
	}
	if r.Action == ActionNone {
		r.Action = ActionAlert
	}
	if r.Action > ActionBlock {
		return fmt.Errorf("rule %s: unknown action", r.Name)
	}
	if r.Scope > ScopeNew {
		return fmt.Errorf("rule %s: unknown scope", r.Name)
	}
	if r.For == 0 {
		r.For = 15 * time.Minute
	}
	if r.For < 0 {
		return fmt.Errorf("rule %s: negative duration", r.Name)
	}
	if r.ThrottlePerMinute == 0 {
		r.ThrottlePerMinute = 2
	}
	return nil
}

// DefaultRules are the rules of a trunk that configures none: ClearIP-like
// score windows and live spend, loud enough for an IRSF burst and quiet for
// an office. Amounts are in the deck's currency. The block rules end the
// risky calls in progress too (fraudsim: the loss of a 30-channel IRSF burst
// falls from 497 to 0 USD with it).
func DefaultRules() []Rule {
	rs := []Rule{
		{Name: "score_5m", Metric: MetricScore, Window: 5 * time.Minute, Limit: 20, Action: ActionBlock, EndCalls: true},
		{Name: "score_15m", Metric: MetricScore, Window: 15 * time.Minute, Limit: 40, Action: ActionThrottle},
		{Name: "score_60m", Metric: MetricScore, Window: 60 * time.Minute, Limit: 100, Action: ActionAlert},
		// The hourly budget is a soft one: a trunk's spend in an hour is a
		// matter of its size and its day (fraudsim: a reseller at twice its
		// volume at month end was blocked 11 times in 20 weeks, 493 of its
		// calls refused). Blocks are for what the trunk does not usually do:
		// new destinations (new_country_5m, new_country_spend_60m catch slow
		// pumping in minutes) and costly ones (score_5m, burn).
		{Name: "spend_60m", Metric: MetricSpend, Window: 60 * time.Minute, Limit: 50, Action: ActionAlert},
		{Name: "burn", Metric: MetricBurn, Limit: 10, Action: ActionBlock, EndCalls: true},
		{Name: "intl_calls_5m", Metric: MetricIntlCalls, Window: 5 * time.Minute, Limit: 30, Action: ActionThrottle},
		{Name: "intl_spike", Metric: MetricIntlSpike, Limit: 5, Floor: 30, Action: ActionAlert},
		// An alert for the reason spend_60m is: a trunk-wide spend above its
		// learned hour is a busy day as often as an attack (fraudsim, four
		// weeks: it blocked a reseller at month end, 90 calls refused), and
		// the block rules see what is new or costly in the spend.
		{Name: "spend_spike", Metric: MetricSpendSpike, Limit: 4, Floor: 20, Action: ActionAlert},
		{Name: "unusual_hour", Metric: MetricUnusualHour, Limit: 0.1, Floor: 2, Action: ActionAlert},
		{Name: "off_hours", Metric: MetricOffHours, Floor: 1, Action: ActionAlert},
		{Name: "same_number_15m", Metric: MetricSameNumber, Window: 15 * time.Minute, Limit: 10, Action: ActionThrottle, ThrottlePerMinute: 2},
		{Name: "call_cost", Metric: MetricCallCost, Limit: 25, Action: ActionAlert},
		// Several numbers at once in countries the trunk never called: the
		// signature of an IRSF burst (see novelty.go). 5 per minute is three
		// numbers in 1.60 ranges, or a dozen in 0.40 ones, within 5 minutes:
		// more than people calling abroad, one number each.
		{Name: "new_country_5m", Metric: MetricNewCountryScore, Window: 5 * time.Minute, Limit: 5, Action: ActionBlock,
			Scope: ScopeNew, EndCalls: true},
		// Money spent on new countries (and on costly domestic ranges the
		// trunk never called: a domestic pump): 10 in an hour is more than a
		// long call home at an ordinary rate (30 minutes at 0.30 is 9), once
		// it went to 3 numbers or more. A guest calling two numbers at home
		// for hours is a person (fraudsim: 14 false blocks of a hotel in 20
		// weeks without the floor); a pump spreads over the numbers that pay
		// it. A pump that keeps to two numbers is left to call_cost,
		// spend_60m (alerts) and score_5m and burn when it is dear.
		{Name: "new_country_spend_60m", Metric: MetricNewCountrySpend, Window: 60 * time.Minute, Limit: 10, Floor: 3,
			Action: ActionBlock, Scope: ScopeNew, EndCalls: true},
		// Alerts that stayed silent on 1,680 simulated tenant-days of benign
		// traffic (fraudsim, 20 seeds): exposure to one country, a range
		// walked or never called, answers collapsing, many short calls. A
		// collapse is fewer than one answer in ten over 30 calls or more
		// (benign ratios are 45-70 %; < 0.15 over 20 alerted once in the
		// four-week run's 336 tenant-days).
		{Name: "country_5m", Metric: MetricCountryScore, Window: 5 * time.Minute, Limit: 5, Action: ActionAlert},
		{Name: "country_60m", Metric: MetricCountryScore, Window: 60 * time.Minute, Limit: 20, Action: ActionAlert},
		{Name: "sequential_15m", Metric: MetricSequential, Window: 15 * time.Minute, Limit: 5, Action: ActionAlert},
		{Name: "new_range_15m", Metric: MetricNewRange, Window: 15 * time.Minute, Limit: 5, Action: ActionAlert},
		{Name: "low_asr_15m", Metric: MetricLowASR, Window: 15 * time.Minute, Limit: 0.1, Floor: 30, Action: ActionAlert},
		{Name: "short_calls_15m", Metric: MetricShortCalls, Window: 15 * time.Minute, Limit: 10, Action: ActionAlert},
	}
	for i := range rs {
		_ = rs[i].Validate()
	}
	return rs
}

// reporting reports whether r only reports at now: report-only, or still in
// its trial period.
func (r *Rule) reporting(now time.Time) bool {
	return r.ReportOnly || now.Before(r.ReportOnlyUntil)
}
