package fraud

import (
	"math"
	"time"

	"github.com/sipwarden/sipwarden/internal/events"
)

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

// evaluate checks every rule of a; at is the attempt being checked (nil on a
// tick). Each metric has its own function (measure); what they share is here:
// the forgiveness of an operator's release, the comparison with the limit
// and the incident.
func (a *account) evaluate(e *Engine, now time.Time, at *attempt, evs []events.Event) []events.Event {
	x := evalCtx{a: a, now: now}
	anyForgiven := len(a.forgiven) > 0 // most of the time none: x.forgiven stays zero
	for i := range a.rules {
		r := &a.rules[i]
		if anyForgiven {
			x.forgiven = a.forgivenOf(r.Name, now)
		}
		value, limit, ok := x.measure(r, at)
		if !ok {
			continue
		}
		if r.Metric.below() {
			if value < limit {
				evs = a.trip(e, now, r, value, "", "", evs)
			}
			continue
		}
		if value -= x.forgiven.value; value > limit {
			key := "" // what the figure is of: a country_score incident names its country
			if r.Metric == MetricCountryScore {
				key = at.country.key
			}
			evs = a.trip(e, now, r, value, "", key, evs)
		}
	}
	return evs
}

// below reports whether the metric trips below its limit (the others trip above it).
func (m Metric) below() bool { return m == MetricLowASR }

// evalCtx is one evaluation of an account's rules: the figures that several
// rules share, each computed once. The attempt being checked is not in it but
// passed along: with it here, escape analysis would move it to the heap.
type evalCtx struct {
	a   *account
	now time.Time
	// forgiven is what a release forgave of the current rule's figure: the
	// caller subtracts its value (lowASR counts from its time instead).
	forgiven forgiveness
	// The few distinct windows of the rules, each summed once.
	cache [6]winSum
	n     int
	// The ring-based figures, in one pass when the first of their rules needs them.
	figs    ringFigures
	scanned bool
}

// win returns the sums of the last w minutes.
func (x *evalCtx) win(w int) *winSum {
	for i := range x.n {
		if x.cache[i].w == w {
			return &x.cache[i]
		}
	}
	c := &x.cache[x.n%len(x.cache)]
	if x.n < len(x.cache) {
		x.n++
	}
	*c = x.a.window(x.now, w)
	return c
}

// ring computes the ring-based figures of the attempt (once).
func (x *evalCtx) ring(at *attempt) *ringFigures {
	if !x.scanned {
		x.scanned = true
		x.figs = x.a.recent.scan(at.recent, x.now.Unix(), x.a.ringWin)
	}
	return &x.figs
}

// minutes is the window of r in minutes.
func minutes(r *Rule) int { return int(r.Window / time.Minute) }

// measure returns the figure of r's metric and the limit it is compared
// with; !ok: the metric does not apply now (not learned, not this attempt's,
// or call_cost, which is per call, on ticks).
func (x *evalCtx) measure(r *Rule, at *attempt) (value, limit float64, ok bool) {
	switch r.Metric {
	case MetricCalls:
		return x.calls(r, at)
	case MetricIntlCalls:
		return x.intlCalls(r, at)
	case MetricScore:
		return x.score(r, at)
	case MetricSpend:
		return x.spend(r, at)
	case MetricBurn:
		return x.burn(r, at)
	case MetricConcurrent:
		return x.concurrent(r, at)
	case MetricConcurrentIntl:
		return x.concurrentIntl(r, at)
	case MetricCallsSpike, MetricIntlSpike, MetricSpendSpike:
		return x.spike(r, at)
	case MetricSameNumber:
		return x.sameNumber(r, at)
	case MetricCountryScore:
		return x.countryScore(r, at)
	case MetricNewCountryScore:
		return x.newCountryScore(r, at)
	case MetricSequential:
		return x.sequential(r, at)
	case MetricNewRange:
		return x.newRange(r, at)
	case MetricLowASR:
		return x.lowASR(r, at)
	case MetricShortCalls:
		return x.shortCalls(r, at)
	case MetricNewCountrySpend:
		return x.newCountrySpend(r, at)
	case MetricSpend24h:
		return x.spend24h(r, at)
	case MetricOffHours:
		return x.offHours(r, at)
	case MetricUnusualHour:
		return x.unusualHour(r, at)
	}
	return 0, 0, false
}

func (x *evalCtx) calls(r *Rule, at *attempt) (float64, float64, bool) {
	return float64(x.win(minutes(r)).calls), r.Limit, true
}

func (x *evalCtx) intlCalls(r *Rule, at *attempt) (float64, float64, bool) {
	return float64(x.win(minutes(r)).riskyN), r.Limit, true
}

func (x *evalCtx) score(r *Rule, at *attempt) (float64, float64, bool) {
	return x.win(minutes(r)).score.Float(), r.Limit, true
}

func (x *evalCtx) spend(r *Rule, at *attempt) (float64, float64, bool) {
	return (x.win(minutes(r)).spent + x.a.accrued).Float(), r.Limit, true
}

func (x *evalCtx) burn(r *Rule, at *attempt) (float64, float64, bool) {
	return x.a.burn.Float(), r.Limit, true
}

// concurrent counts the attempt being checked as one more call in progress.
func (x *evalCtx) concurrent(r *Rule, at *attempt) (float64, float64, bool) {
	value := float64(x.a.liveN)
	if at != nil && at.dest != nil {
		value++
	}
	return value, r.Limit, true
}

func (x *evalCtx) concurrentIntl(r *Rule, at *attempt) (float64, float64, bool) {
	value := float64(x.a.liveRisky)
	if at != nil && at.risky {
		value++
	}
	return value, r.Limit, true
}

// spike compares the last 60 minutes with the hour-of-week baseline
// (calls_spike, intl_spike, spend_spike).
func (x *evalCtx) spike(r *Rule, at *attempt) (float64, float64, bool) {
	s := x.a.baseline[hourOfWeek(x.now, x.a.loc)]
	base := s.calls
	value := float64(x.win(60).calls)
	switch r.Metric {
	case MetricIntlSpike:
		base, value = s.risky, float64(x.win(60).riskyN)
	case MetricSpendSpike:
		base, value = s.spend, (x.win(60).spent + x.a.accrued).Float()
	}
	// Until the slot has learned MinSamples weeks the static rules
	// (calls, score, spend) are the protection: a floor alone would
	// trip on every tenant busier than it (fraudsim: 85 false blocks
	// in 336 tenant-days with a cold-start floor on spend).
	if int(s.n) < r.MinSamples {
		return 0, 0, false
	}
	limit := math.Max(r.Floor, r.Limit*float64(base))
	return value, limit, limit > 0
}

func (x *evalCtx) sameNumber(r *Rule, at *attempt) (float64, float64, bool) {
	if at == nil || at.hits == nil {
		return 0, 0, false
	}
	return float64(at.hits.since(x.now.Unix() - int64(minutes(r))*60)), r.Limit, true
}

// countryScore is the score of the attempt's country (evaluate names it in the incident).
func (x *evalCtx) countryScore(r *Rule, at *attempt) (float64, float64, bool) {
	if at == nil || at.country == nil {
		return 0, 0, false
	}
	return at.country.sum(x.now, minutes(r)).Float(), r.Limit, true
}

func (x *evalCtx) newCountryScore(r *Rule, at *attempt) (float64, float64, bool) {
	if at == nil || at.recent == nil || !at.recent.newCountry || !x.a.watched(x.now) {
		return 0, 0, false
	}
	w := minutes(r)
	if f := x.ring(at); f.win[0] == w {
		return f.newScore.Float(), r.Limit, true
	}
	return x.a.recent.newCountryScore(x.now.Unix() - int64(w)*60).Float(), r.Limit, true
}

func (x *evalCtx) sequential(r *Rule, at *attempt) (float64, float64, bool) {
	if at == nil || at.recent == nil {
		return 0, 0, false
	}
	w := minutes(r)
	if f := x.ring(at); f.win[1] == w {
		return float64(f.seq), r.Limit, true
	}
	return float64(x.a.recent.sequential(at.recent, x.now.Unix()-int64(w)*60)), r.Limit, true
}

func (x *evalCtx) newRange(r *Rule, at *attempt) (float64, float64, bool) {
	if at == nil || at.recent == nil || !at.recent.newRange || !x.a.watched(x.now) {
		return 0, 0, false
	}
	w := minutes(r)
	if f := x.ring(at); f.win[2] == w {
		return float64(f.rng), r.Limit, true
	}
	return float64(x.a.recent.inRange(at.recent, x.now.Unix()-int64(w)*60)), r.Limit, true
}

// lowASR is the answer ratio of the non-domestic calls started in the
// window's complete minutes, once they are at least Floor (Metric.below).
// After a release it counts the complete minutes that followed it: the calls
// the incident was about are forgiven, the ratio of new ones is not.
func (x *evalCtx) lowASR(r *Rule, at *attempt) (float64, float64, bool) {
	w := minutes(r)
	if rel := x.forgiven.at; !rel.IsZero() {
		w = min(w, int(x.now.Unix()/60-rel.Unix()/60-1))
	}
	started, answered := x.a.asr(x.now, w)
	if started == 0 || float64(started) < r.Floor {
		return 0, 0, false
	}
	return float64(answered) / float64(started), r.Limit, true
}

func (x *evalCtx) shortCalls(r *Rule, at *attempt) (float64, float64, bool) {
	return float64(x.a.shortCalls(x.now, minutes(r))), r.Limit, true
}

func (x *evalCtx) newCountrySpend(r *Rule, at *attempt) (float64, float64, bool) {
	a := x.a
	if !a.watched(x.now) {
		return 0, 0, false
	}
	w := minutes(r)
	value := (x.win(w).newSpent + a.newAccrued).Float()
	// Floor: the distinct numbers in new countries dialled in the
	// window it takes. A person calling home from a new country
	// (a hotel guest, a travelling employee) calls one or two
	// numbers, at length; a pump spreads its channels over the
	// many numbers of the ranges that pay it, and redials new ones.
	if r.Floor > 0 && value-x.forgiven.value > r.Limit && a.recent != nil &&
		float64(a.recent.newNumbers(x.now.Unix()-int64(w)*60)) < r.Floor {
		return 0, 0, false
	}
	return value, r.Limit, true
}

func (x *evalCtx) spend24h(r *Rule, at *attempt) (float64, float64, bool) {
	return (x.a.spent24h(x.now) + x.a.accrued).Float(), r.Limit, true
}

// offHours: the risky attempts of the last hour, outside business hours,
// over Floor (Limit is not used).
func (x *evalCtx) offHours(r *Rule, at *attempt) (float64, float64, bool) {
	a := x.a
	if at == nil || !at.risky || a.hours == nil || a.inHours(x.now) {
		return 0, 0, false
	}
	return float64(x.win(60).riskyN), r.Floor, true
}

// unusualHour: the risky attempts of the last hour (this one included),
// over Floor, in a quiet hour of the week: it and both its neighbours
// learned, each below Limit.
func (x *evalCtx) unusualHour(r *Rule, at *attempt) (float64, float64, bool) {
	if at == nil || !at.risky {
		return 0, 0, false
	}
	how := hourOfWeek(x.now, x.a.loc)
	for _, h := range [3]int{(how + 167) % 168, how, (how + 1) % 168} {
		s := x.a.baseline[h]
		if int(s.n) < r.MinSamples || float64(s.risky) >= r.Limit {
			return 0, 0, false
		}
	}
	return float64(x.win(60).riskyN), r.Floor, true
}
