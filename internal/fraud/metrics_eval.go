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
