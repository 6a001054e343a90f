package fraud

import (
	"math"
	"sync"
	"time"
)

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

type winSum struct {
	w                      int
	calls, riskyN          int
	score, spent, newSpent Money
}
