package fraud

import (
	"fmt"
	"iter"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/sipwarden/sipwarden/internal/cdr"
)

// Baselines from CDR history. The engine's own baselines learn from live
// traffic, an EWMA per hour of the week that needs three weeks before the
// spike rules use it. A trunk that already has months of CDRs need not wait:
// LearnFromCDRs computes, per trunk and hour of the week, a high quantile
// (p95 by default) of the calls, the non-domestic calls and the money spent
// in that hour over the weeks of its history, and the countries and ranges
// its answered calls reached. The spike rules then compare with
// max(floor, limit × that profile) from the first hour; live traffic keeps
// updating it afterwards.

// LearnOptions tune LearnFromCDRs.
type LearnOptions struct {
	// Quantile of the weekly values of an hour of the week that becomes its
	// baseline (default 0.95: a busy week is normal, one outlier week is not).
	Quantile float64
}

// TrunkHistory is what LearnFromCDRs learned of one trunk.
type TrunkHistory struct {
	Trunk string
	// Calls are the originating calls read; From and To the span of their starts.
	Calls    int
	From, To time.Time
	// Weeks is the span in weeks (the samples of most hours of the week).
	Weeks float64
	// Countries and Ranges are how many the trunk's answered calls reached.
	Countries, Ranges int
	// PeakCalls is the highest hour-of-week baseline of calls; PeakSpend of money.
	PeakCalls, PeakSpend float64
}

// LearnReport is the outcome of LearnFromCDRs.
type LearnReport struct {
	// Records were read; Skipped were not originating calls of a trunk of
	// the stage, or were refused by a stage (an attack refused is not the
	// trunk's traffic).
	Records, Skipped int
	Trunks           []TrunkHistory
}

type hourTotals struct{ calls, risky, spend float64 }

type trunkAcc struct {
	p          *policy
	hours      map[int64]*hourTotals // by Unix hour
	first      int64
	last       int64
	n          int
	countries  map[string]int64
	ranges     map[uint64]int64
	loc        *time.Location
	dialBuffer [24]byte
}

// LearnFromCDRs replaces the hour-of-week baselines of the stage's trunks
// that have records in recs, and adds to the countries and ranges they learned
// (originating calls: Direction "originating", Trunk a trunk of the
// stage). Calls are classified and priced as the stage does now (its
// dialling contexts and rate deck); spend is counted in the hour a call
// ended. Records refused by a stage are skipped. Trunks without records
// keep what they had.
func (s *Stage) LearnFromCDRs(recs iter.Seq[cdr.Record], o LearnOptions) (LearnReport, error) {
	if o.Quantile == 0 {
		o.Quantile = 0.95
	}
	if o.Quantile <= 0 || o.Quantile > 1 || math.IsNaN(o.Quantile) {
		return LearnReport{}, fmt.Errorf("quantile %v: want more than 0 and at most 1", o.Quantile)
	}
	byName := map[string]*policy{}
	for _, p := range s.policies {
		byName[p.name] = p
	}
	accs := map[string]*trunkAcc{}
	var rep LearnReport
	for r := range recs {
		rep.Records++
		p := byName[r.Trunk]
		if p == nil || r.Direction != "originating" || r.Disposition == cdr.Blocked || r.Start.IsZero() {
			rep.Skipped++
			continue
		}
		acc := accs[r.Trunk]
		if acc == nil {
			acc = &trunkAcc{p: p, hours: map[int64]*hourTotals{}, first: math.MaxInt64, last: math.MinInt64,
				countries: map[string]int64{}, ranges: map[uint64]int64{}, loc: s.st.Engine.location(r.Trunk)}
			accs[r.Trunk] = acc
		}
		acc.add(s, &r)
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range accs {
			if !yield(n) {
				return
			}
		}
	})
	for _, name := range names {
		acc := accs[name]
		slots, th := acc.profile(o.Quantile)
		th.Trunk = name
		s.st.Engine.seedHistory(name, &slots, acc.countries, acc.ranges, acc.first*3600)
		rep.Trunks = append(rep.Trunks, th)
	}
	return rep, nil
}

func (acc *trunkAcc) hour(h int64) *hourTotals {
	t := acc.hours[h]
	if t == nil {
		t = &hourTotals{}
		acc.hours[h] = t
	}
	return t
}

func (acc *trunkAcc) add(s *Stage, r *cdr.Record) {
	num, dest := s.st.Classifier.Classify(&acc.p.dial, []byte(strings.TrimSpace(r.To)), acc.dialBuffer[:0])
	h := r.Start.Unix() / 3600
	acc.first, acc.last = min(acc.first, h), max(acc.last, h)
	acc.n++
	t := acc.hour(h)
	t.calls++
	isRisky := risky(dest)
	if isRisky {
		t.risky++
	}
	if r.Answer.IsZero() || r.Duration <= 0 {
		return
	}
	if len(num) > 0 && s.deck != nil {
		if rate, ok := s.deck.Lookup(num, r.Start); ok {
			end := r.End
			if end.IsZero() {
				end = r.Answer.Add(r.Duration)
			}
			acc.hour(end.Unix() / 3600).spend += rate.Cost(r.Duration).Float()
		}
	}
	// A call the fraud engine ended is not history to learn destinations from.
	if isRisky && !strings.HasPrefix(r.Reason, ReasonHangup) {
		ts := r.Answer.Unix()
		if c := countryKey(&dest); c != "" {
			if first, ok := acc.countries[c]; !ok || ts < first {
				acc.countries[c] = ts
			}
		}
		if rk := rangeKey(&dest); rk != 0 && len(acc.ranges) < maxKnownRanges {
			if first, ok := acc.ranges[rk]; !ok || ts < first {
				acc.ranges[rk] = ts
			}
		}
	}
}

// profile computes the quantile q of each hour of the week over the weeks
// of the history (an hour without calls in a week counts as zero).
func (acc *trunkAcc) profile(q float64) ([168]slot, TrunkHistory) {
	var samples [168][3][]float64
	for h := acc.first; h <= acc.last; h++ {
		how := hourOfWeek(time.Unix(h*3600, 0), acc.loc)
		var v hourTotals
		if t := acc.hours[h]; t != nil {
			v = *t
		}
		samples[how][0] = append(samples[how][0], v.calls)
		samples[how][1] = append(samples[how][1], v.risky)
		samples[how][2] = append(samples[how][2], v.spend)
	}
	var out [168]slot
	th := TrunkHistory{Calls: acc.n, From: time.Unix(acc.first*3600, 0).UTC(), To: time.Unix(acc.last*3600, 0).UTC(),
		Weeks: float64(acc.last-acc.first+1) / 168, Countries: len(acc.countries), Ranges: len(acc.ranges)}
	for i := range out {
		n := len(samples[i][0])
		if n == 0 {
			continue
		}
		out[i] = slot{calls: float32(quantile(samples[i][0], q)), risky: float32(quantile(samples[i][1], q)),
			spend: float32(quantile(samples[i][2], q)), n: uint16(min(n, math.MaxUint16))}
		th.PeakCalls = math.Max(th.PeakCalls, float64(out[i].calls))
		th.PeakSpend = math.Max(th.PeakSpend, float64(out[i].spend))
	}
	return out, th
}

// quantile returns the nearest-rank q quantile of v (sorted in place).
func quantile(v []float64, q float64) float64 {
	slices.Sort(v)
	i := int(math.Ceil(q*float64(len(v)))) - 1
	return v[max(0, min(i, len(v)-1))]
}

// location returns the time zone of account's hour-of-week baseline.
func (e *Engine) location(account string) *time.Location {
	a := e.account(account)
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.loc
}

// seedHistory replaces account's baseline, adds to its learned destinations
// (the earliest time of each is kept), and makes it watched since (Unix
// seconds) unless it was earlier.
func (e *Engine) seedHistory(account string, slots *[168]slot, countries map[string]int64, ranges map[uint64]int64, since int64) {
	a := e.account(account)
	a.mu.Lock()
	a.baseline = *slots
	for c, ts := range countries {
		a.learn(c, 0, ts)
	}
	for r, ts := range ranges {
		a.learn("", r, ts)
	}
	if a.since == 0 || since < a.since {
		a.since = since
	}
	a.mu.Unlock()
}
