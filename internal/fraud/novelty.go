package fraud

import (
	"math"
	"time"
)

// What a trunk has called before, and the figures that compare an attempt
// with it: the exposure per country (country_score), money dialled towards
// countries the trunk never called (new_country_score), near-consecutive
// numbers (sequential) and many numbers in a range it never called
// (new_range); and the per-call figures of the last day (low_asr,
// short_calls, spend_24h).
//
// Why novelty: an IRSF attacker is paid by the terminating carrier of
// ranges that the victim's users do not call, so the burst goes to
// countries and ranges with no history on the trunk, several numbers at
// once. A person calling abroad, even to a new country, dials one number at
// a time (and redials the same one). So Σ $/min of the distinct numbers
// dialled in new countries separates the two within seconds, before any
// call is answered, where the trunk's whole score would need a limit a busy
// hotel or reseller reaches in a normal evening.

// recentSize is how many distinct non-domestic numbers a trunk keeps (the
// figures of the ring-based rules saturate at it).
const recentSize = 128

// maxKnownRanges bounds the ranges learned per trunk. Past it a range the
// trunk has not learned counts as known (the rule goes quiet rather than
// alarm on a trunk that calls everywhere).
const maxKnownRanges = 4096

// learnDelay is how long after the first answered call to a country (or
// range) that ended normally the trunk counts it as learned: a slow pump
// cannot teach the trunk its destination with its own first call.
const learnDelay = 24 * time.Hour

// rangeDigits: a range is the number without its last four digits (ten
// thousand numbers: a NANP exchange, an operator's block abroad).
const rangeDigits = 4

// seqDigits: near-consecutive numbers differ only in their last two digits.
const seqDigits = 2

var pow10 = [...]uint64{1, 10, 100, 1000, 10000}

// countryKey is the key of a destination's country: its ISO region, or the
// country code of a global service ("881"), or "" when unknown.
func countryKey(d *Destination) string {
	if d.Region != "" && d.Region != "001" {
		return d.Region
	}
	for _, p := range satellitePrefixes {
		if d.CountryCode == int(p[0]-'0')*100+int(p[1]-'0')*10+int(p[2]-'0') {
			return p
		}
	}
	return ""
}

// rangeKey is the key of a destination's range (its digits without the
// last rangeDigits, and their count), 0 when the number is too short.
func rangeKey(d *Destination) uint64 { return blockKey(d, rangeDigits) }

// countryWindow is the score of one country's attempts by the minute.
type countryWindow struct {
	key     string
	buckets [60]struct {
		min   int64
		score Money
	}
}

func (w *countryWindow) add(now time.Time, rate Money) {
	m := now.Unix() / 60
	b := &w.buckets[m%60]
	if b.min != m {
		b.min, b.score = m, 0
	}
	b.score += rate
}

// sum is the score of the last n minutes (the current one included).
func (w *countryWindow) sum(now time.Time, n int) Money {
	m := now.Unix() / 60
	var s Money
	for i := int64(0); i < int64(n); i++ {
		if b := &w.buckets[(m-i)%60]; b.min == m-i {
			s += b.score
		}
	}
	return s
}

// recentNum is a distinct number of the ring: when it was last dialled,
// and whether its country and range were new to the trunk when it was.
type recentNum struct {
	at     int64  // Unix second of the last attempt; 0: empty
	number uint64 // hash (Destination.Number)
	// block and rng are the number without its last seqDigits and
	// rangeDigits digits, shifted left 4 with the digit count (0 when too
	// short): computed once, compared on every attempt.
	block, rng uint64
	newCountry bool
	newRange   bool
	rate       Money
}

// blockKey is the number of d without its last n digits, with its digit
// count (0 when d has no more than n digits).
func blockKey(d *Destination, n int) uint64 {
	if int(d.NDigits) <= n {
		return 0
	}
	return (d.Digits/pow10[n])<<4 | uint64(d.NDigits)
}

// recentRing holds the last recentSize distinct non-domestic numbers a
// trunk dialled; a number dialled again is moved forward in time, so the
// entries dialled since t are the distinct numbers dialled since t.
type recentRing struct {
	e [recentSize]recentNum
	// newN counts the entries dialled while their country was new: a trunk
	// that calls only countries it knows skips the scan of newCountryScore.
	newN int
}

// set replaces entry x with v, keeping newN.
func (r *recentRing) set(x *recentNum, v recentNum) {
	if x.at != 0 && x.newCountry {
		r.newN--
	}
	if v.newCountry {
		r.newN++
	}
	*x = v
}

// add records an attempt at ts and returns its entry: the same number's, or
// the oldest entry's, replaced.
func (r *recentRing) add(ts int64, d *Destination, rng uint64, rate Money, newCountry, newRange bool) *recentNum {
	oldest := 0
	for i := range r.e {
		x := &r.e[i]
		if x.at != 0 && x.number == d.Number {
			v := *x
			v.at, v.rate, v.newCountry, v.newRange = ts, rate, newCountry, newRange
			r.set(x, v)
			return x
		}
		if x.at < r.e[oldest].at {
			oldest = i
		}
	}
	x := &r.e[oldest]
	r.set(x, recentNum{at: ts, number: d.Number, block: blockKey(d, seqDigits), rng: rng, newCountry: newCountry, newRange: newRange, rate: rate})
	return x
}

// ringIndex is the index of a ring-based metric in ringFigures, or -1.
func ringIndex(m Metric) int {
	switch m {
	case MetricNewCountryScore:
		return 0
	case MetricSequential:
		return 1
	case MetricNewRange:
		return 2
	}
	return -1
}

// ringFigures are the three ring-based figures of an attempt, for the
// window (minutes) of the first rule of each metric: one pass over the
// ring instead of one per rule.
type ringFigures struct {
	win      [3]int
	newScore Money
	seq, rng int
}

// scan computes the figures of cur, each over its window (0: not computed).
func (r *recentRing) scan(cur *recentNum, now int64, win [3]int) ringFigures {
	f := ringFigures{win: win}
	var from [3]int64
	for k, w := range win {
		from[k] = math.MaxInt64
		if w > 0 {
			from[k] = now - int64(w)*60
		}
	}
	if r.newN == 0 {
		from[0] = math.MaxInt64
	}
	if cur.block == 0 {
		from[1] = math.MaxInt64
	}
	if cur.rng == 0 {
		from[2] = math.MaxInt64
	}
	for i := range r.e {
		x := &r.e[i]
		if x.at > from[0] && x.newCountry {
			f.newScore += x.rate
		}
		if x.at > from[1] && x.block == cur.block {
			f.seq++
		}
		if x.at > from[2] && x.newRange && x.rng == cur.rng {
			f.rng++
		}
	}
	return f
}

// newCountryScore is Σ rate of the numbers in new countries dialled after from.
func (r *recentRing) newCountryScore(from int64) Money {
	var s Money
	if r.newN == 0 {
		return 0
	}
	for i := range r.e {
		if x := &r.e[i]; x.at > from && x.newCountry {
			s += x.rate
		}
	}
	return s
}

// newNumbers counts the distinct numbers dialled after from while their
// country was new to the trunk.
func (r *recentRing) newNumbers(from int64) int {
	n := 0
	if r.newN == 0 {
		return 0
	}
	for i := range r.e {
		if x := &r.e[i]; x.at > from && x.newCountry {
			n++
		}
	}
	return n
}

// heldNew reports whether a block of scope new is in force (not report-only).
func (a *account) heldNew(now time.Time) bool {
	for _, in := range a.incidents {
		if in.rule.Action == ActionBlock && in.rule.Scope == ScopeNew && !in.report && now.Before(in.until) {
			return true
		}
	}
	return false
}

// sequential counts the numbers dialled after from that differ from cur
// only in their last seqDigits digits (cur included).
func (r *recentRing) sequential(cur *recentNum, from int64) int {
	if cur.block == 0 {
		return 0
	}
	n := 0
	for i := range r.e {
		if x := &r.e[i]; x.at > from && x.block == cur.block {
			n++
		}
	}
	return n
}

// inRange counts the numbers dialled after from in cur's range while it was new (cur included).
func (r *recentRing) inRange(cur *recentNum, from int64) int {
	if cur.rng == 0 {
		return 0
	}
	n := 0
	for i := range r.e {
		if x := &r.e[i]; x.at > from && x.newRange && x.rng == cur.rng {
			n++
		}
	}
	return n
}

// track sets up what the account's rules need (SetRules; under a.mu).
func (a *account) track(rs []Rule) {
	var country, recent bool
	a.ringWin = [3]int{}
	for i := range rs {
		country = country || rs[i].Metric == MetricCountryScore
		// A new_country_spend rule with a Floor counts the ring's numbers.
		recent = recent || rs[i].Metric.recent() || rs[i].Metric == MetricNewCountrySpend && rs[i].Floor > 0
		if k := ringIndex(rs[i].Metric); k >= 0 && a.ringWin[k] == 0 {
			a.ringWin[k] = int(rs[i].Window / time.Minute)
		}
	}
	switch {
	case country && a.countryWin == nil:
		a.countryWin = map[string]*countryWindow{}
	case !country:
		a.countryWin = nil
	}
	switch {
	case recent && a.recent == nil:
		a.recent = &recentRing{}
	case !recent:
		a.recent = nil
	}
}

// observe records a non-domestic attempt in the structures of the account's
// rules, and points at to its entries. Attempts in the trunk's first day
// are not flagged new (every country is new then): when the novelty rules
// start, their windows hold no first-day figures.
func (a *account) observe(now time.Time, d *Destination, key string, rate Money, newCountry bool, at *attempt) {
	if a.countryWin != nil && key != "" {
		w := a.countryWin[key]
		if w == nil { // once per country and trunk: fewer than 300 keys exist
			w = &countryWindow{key: key}
			a.countryWin[key] = w
		}
		w.add(now, rate)
		at.country = w
	}
	if a.recent != nil && d.Number != 0 {
		ts := now.Unix()
		rk := rangeKey(d)
		watched := a.watched(now)
		at.recent = a.recent.add(ts, d, rk, rate, watched && newCountry, watched && a.rangeNew(rk, ts))
	}
}

// watched reports whether the trunk has been watched for learnDelay: before
// that every country is new to it, and the novelty rules (like the spike
// rules before their baseline) leave the trunk to the static ones.
func (a *account) watched(now time.Time) bool {
	return a.since != 0 && now.Unix()-a.since >= int64(learnDelay/time.Second)
}

// isNewKey reports whether the trunk has not learned the country key at ts.
func (a *account) isNewKey(key string, ts int64) bool {
	if key == "" {
		return true
	}
	first, ok := a.knownCountries[key]
	return !ok || !a.matured(first, ts)
}

// matured reports whether a country or range first learned at first counts
// as learned at ts: learnDelay after first, or, when it was learned during
// the trunk's first day of watching (when everything is new), at the end of that day.
func (a *account) matured(first, ts int64) bool {
	day := int64(learnDelay / time.Second)
	if a.since != 0 && first-a.since < day {
		return ts-a.since >= day
	}
	return ts-first >= day
}

// rangeNew reports whether the trunk has not learned range rk at ts. Past
// maxKnownRanges an unknown range counts as learned.
func (a *account) rangeNew(rk uint64, ts int64) bool {
	if rk == 0 {
		return false
	}
	first, ok := a.knownRanges[rk]
	if !ok {
		return len(a.knownRanges) < maxKnownRanges
	}
	return !a.matured(first, ts)
}

// covers reports whether the scope covers a call (risky: not domestic;
// isNew: to a country the trunk has not learned).
func (s Scope) covers(isRisky, isNew bool) bool {
	switch s {
	case ScopeAll:
		return true
	case ScopeNew:
		return isRisky && isNew
	}
	return isRisky
}

// learn records that the trunk called country and range at ts (the first
// time is kept: they count as learned learnDelay after it).
func (a *account) learn(country string, rng uint64, ts int64) {
	if first, ok := a.knownCountries[country]; country != "" && (!ok || ts < first) {
		a.knownCountries[country] = ts
	}
	if first, ok := a.knownRanges[rng]; rng != 0 && (ok && ts < first || !ok && len(a.knownRanges) < maxKnownRanges) {
		a.knownRanges[rng] = ts
	}
}

// blocked reports whether an incident blocks the trunk's risky calls now.
func (a *account) blocked(now time.Time) bool {
	for _, in := range a.incidents {
		if in.rule.Action == ActionBlock && !in.report && now.Before(in.until) {
			return true
		}
	}
	return false
}

func (a *account) addHourly(now time.Time, cost Money) {
	h := now.Unix() / 3600
	x := &a.hourly[h%24]
	if x.hour != h {
		x.hour, x.spent = h, 0
	}
	x.spent += cost
}

// spent24h is the money spent in the current hour and the 23 before it.
func (a *account) spent24h(now time.Time) Money {
	h := now.Unix() / 3600
	var s Money
	for i := int64(0); i < 24; i++ {
		if x := &a.hourly[(h-i)%24]; x.hour == h-i {
			s += x.spent
		}
	}
	return s
}

// asr returns the non-domestic calls started in the n complete minutes
// before now's, and how many of them were answered. The current minute is
// left out: its calls are still ringing.
func (a *account) asr(now time.Time, n int) (started, answered int) {
	m := now.Unix() / 60
	for i := int64(1); i <= int64(n) && i < 60; i++ {
		if b := &a.buckets[(m-i)%60]; b.min == m-i {
			started += int(b.started)
			answered += int(b.answered)
		}
	}
	return started, answered
}

// shortCalls counts the short answered non-domestic calls that ended in the last n minutes.
func (a *account) shortCalls(now time.Time, n int) int {
	m := now.Unix() / 60
	s := 0
	for i := int64(0); i < int64(n); i++ {
		if b := &a.buckets[(m-i)%60]; b.min == m-i {
			s += int(b.short)
		}
	}
	return s
}
