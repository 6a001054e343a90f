package fraud

import (
	"math/rand/v2"
	"sync"
	"time"
)

// Wangiri ("one ring and cut") is the call-back scam: a number abroad rings
// many customers once and hangs up, hoping to be called back at a premium
// rate. The stage watches calls from upstreams (calls to customers) whose
// caller is abroad or high-risk: one that ends unanswered after ringing
// less than Ring counts as a short ring of the calling number. A number with
// ShortRings short rings within Window is a Wangiri number, and calls from
// trunks to it are refused, so that no customer's call-back gets through.
//
// A campaign that rotates its caller IDs rings each customer from a fresh
// number of the same range, a few times per number: no number reaches
// ShortRings. So short rings are also counted per range (see wangiriRange),
// from distinct numbers: a range with RangeShortRings distinct numbers that
// short-rang within an hour (rangeBurst) is a Wangiri range for Window, and calls to any number of it
// are refused the same way. Counting distinct numbers, not rings, keeps one
// number's repeated rings (already the per-number rule's job) from tagging
// the whole range.
//
// Numbers are kept as their hashes (Destination.Number), ranges as their
// leading digits, in fixed tables (a collision of numbers starts the
// newcomer afresh; ranges share 4-slot buckets): a spoofed flood of caller
// IDs cannot grow them. The range table's index is keyed with a
// per-process seed, so a caller cannot pick ranges that all fall in the
// bucket of the range it is rotating in.
type Wangiri struct {
	ShortRings int           // 0: off
	Ring       time.Duration // a ring shorter than this is "one ring" (default 10s)
	Window     time.Duration // short rings count this long (default 24h)
	// RangeShortRings is how many distinct numbers of one range must
	// short-ring within Window to tag the range (0: ranges are not
	// watched; at most MaxRangeShortRings).
	RangeShortRings int

	mu     sync.Mutex
	slots  []wangiriSlot
	ranges []wangiriRangeSlot
	seed   uint64 // of the range table's index
}

type wangiriSlot struct {
	num   uint64
	first time.Time // of the current count
	short int
}

// MaxRangeShortRings bounds RangeShortRings: each range slot keeps the
// hashes of the distinct numbers it counted, so that a number ringing again
// is not counted twice, in a fixed array of this size.
const MaxRangeShortRings = 32

// wangiriRangeSlot counts the distinct numbers of one range that
// short-rang since first.
type wangiriRangeSlot struct {
	key   uint64 // wangiriRange; 0: empty
	first time.Time
	n     int // distinct numbers in nums[:n]
	nums  [MaxRangeShortRings]uint64
}

// wangiriRangeDigits is how many trailing digits a range leaves out: a
// range is a block of up to a million numbers. Rotating campaigns draw
// their caller IDs from the numbers an operator holds (or a transit carrier
// short-stops), spread over such a block rather than packed in a 10,000
// block: the simulator's wangiri_rotating campaign, 150 numbers of +222 4
// (11 digits), puts about one number in each 10,000 block (the 4 digits of
// novelty's rangeKey, never tagged) and about 15 in each million block.
const wangiriRangeDigits = 6

// rangeBurst is how close together the short rings of a range's distinct
// numbers must come to tag it: a campaign rings its customers within minutes,
// while a block of a million numbers abroad may well hold a few genuine
// callers a day who hang up within seconds. A count that has not tagged its
// range within rangeBurst starts again; a tag lasts Window.
const rangeBurst = time.Hour

// wangiriRangeKeep is the fewest leading digits a range keeps, so that a
// short number's range is never wider than a country code and two digits.
const wangiriRangeKeep = 5

// wangiriRange is the key of d's range: its digits without the last
// wangiriRangeDigits (fewer for numbers shorter than 11 digits, keeping
// wangiriRangeKeep), shifted left 4 with the number's digit count, so that
// ranges of numbers of different lengths stay apart; 0 when d has no more
// than wangiriRangeKeep digits.
func wangiriRange(d *Destination) uint64 {
	n := int(d.NDigits)
	if n <= wangiriRangeKeep || n > 15 {
		return 0
	}
	drop := min(wangiriRangeDigits, n-wangiriRangeKeep)
	p := uint64(1)
	for range drop {
		p *= 10
	}
	return (d.Digits/p)<<4 | uint64(n)
}

// NewWangiri returns a detector with a table of n numbers (default 65536)
// and of n/16 ranges (at least wangiriWays).
func NewWangiri(n int) *Wangiri {
	if n <= 0 {
		n = 65536
	}
	return &Wangiri{slots: make([]wangiriSlot, n), ranges: make([]wangiriRangeSlot, max(n/16/wangiriWays, 1)*wangiriWays), seed: rand.Uint64()}
}

// Configure sets the thresholds (a reload); 0 values take the defaults,
// shortRings 0 turns detection off.
func (w *Wangiri) Configure(shortRings int, ring, window time.Duration) {
	if ring <= 0 {
		ring = 10 * time.Second
	}
	if window <= 0 {
		window = 24 * time.Hour
	}
	w.mu.Lock()
	w.ShortRings, w.Ring, w.Window = shortRings, ring, window
	w.mu.Unlock()
}

// ConfigureRanges sets how many distinct numbers of a range must short-ring
// within the window to tag it (a reload; 0 turns range tagging off, values
// above MaxRangeShortRings are taken as MaxRangeShortRings). Range tagging
// also needs detection on (Configure's shortRings above 0).
func (w *Wangiri) ConfigureRanges(distinct int) {
	distinct = min(max(distinct, 0), MaxRangeShortRings)
	w.mu.Lock()
	w.RangeShortRings = distinct
	w.mu.Unlock()
}

func (w *Wangiri) slot(num uint64) *wangiriSlot { return &w.slots[num%uint64(len(w.slots))] }

// wangiriWays is how many slots of the range table a range may use: a
// range takes an empty or expired slot of its bucket, else the one with the
// fewest numbers counted, so that two ranges ringing at once in the same
// bucket (as the ten million-blocks of a campaign over +222 4 may) do not
// evict each other on every ring and never reach RangeShortRings.
const wangiriWays = 4

// rangeBucket is the bucket of range key k: k mixed with the seed (the
// splitmix64 finaliser), so that neighbouring ranges spread over the table.
func (w *Wangiri) rangeBucket(k uint64) []wangiriRangeSlot {
	h := k ^ w.seed
	h = (h ^ h>>30) * 0xbf58476d1ce4e5b9
	h = (h ^ h>>27) * 0x94d049bb133111eb
	h ^= h >> 31
	b := int(h%uint64(len(w.ranges)/wangiriWays)) * wangiriWays
	return w.ranges[b : b+wangiriWays]
}

// findRange returns the slot of range k, nil when it has none.
func (w *Wangiri) findRange(k uint64) *wangiriRangeSlot {
	b := w.rangeBucket(k)
	for i := range b {
		if b[i].key == k {
			return &b[i]
		}
	}
	return nil
}

// rangeFor returns the slot that counts range k at now: its own (restarted
// when its window ended), or a new one in place of an empty or expired
// slot, else of the slot with the fewest numbers (the oldest of those).
func (w *Wangiri) rangeFor(k uint64, now time.Time) *wangiriRangeSlot {
	b := w.rangeBucket(k)
	var victim *wangiriRangeSlot
	for i := range b {
		r := &b[i]
		if r.key == k {
			if now.Sub(r.first) > w.Window || (r.n < w.RangeShortRings && now.Sub(r.first) > rangeBurst) {
				r.first, r.n = now, 0
			}
			return r
		}
		switch {
		case victim != nil && (victim.key == 0 || now.Sub(victim.first) > w.Window):
		case r.key == 0 || now.Sub(r.first) > w.Window:
			victim = r
		case victim == nil || r.n < victim.n || (r.n == victim.n && r.first.Before(victim.first)):
			victim = r
		}
	}
	victim.key, victim.first, victim.n = k, now, 0
	return victim
}

// noteShortRing counts one short ring of num, of range rng (0: none), at now.
func (w *Wangiri) noteShortRing(num, rng uint64, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.slot(num)
	if s.num != num || now.Sub(s.first) > w.Window {
		*s = wangiriSlot{num: num, first: now}
	}
	s.short++
	if rng == 0 || w.RangeShortRings <= 0 {
		return
	}
	r := w.rangeFor(rng, now)
	if r.n >= w.RangeShortRings || r.n >= len(r.nums) {
		return // tagged: more numbers would not change it
	}
	for _, h := range r.nums[:r.n] {
		if h == num {
			return
		}
	}
	r.nums[r.n] = num
	r.n++
}

// Flagged reports whether calls to num are call-backs to a Wangiri number.
func (w *Wangiri) Flagged(num uint64, now time.Time) bool {
	if num == 0 {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.numberTagged(num, now)
}

func (w *Wangiri) numberTagged(num uint64, now time.Time) bool {
	if w.ShortRings <= 0 {
		return false
	}
	s := w.slot(num)
	return s.num == num && s.short >= w.ShortRings && now.Sub(s.first) <= w.Window
}

// rangeTagged reports whether range rng is a Wangiri range at now.
func (w *Wangiri) rangeTagged(rng uint64, now time.Time) bool {
	if rng == 0 || w.ShortRings <= 0 || w.RangeShortRings <= 0 {
		return false
	}
	r := w.findRange(rng)
	return r != nil && r.n >= w.RangeShortRings && now.Sub(r.first) <= w.Window
}

// Tagged reports whether calls to d are call-backs to a Wangiri number or
// to a number of a Wangiri range.
func (w *Wangiri) Tagged(d *Destination, now time.Time) bool {
	if d.Number == 0 {
		return false
	}
	rng := wangiriRange(d)
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.numberTagged(d.Number, now) || w.rangeTagged(rng, now)
}

// ring watches one call from abroad to a customer (a chain.Answerer).
type ring struct {
	w        *Wangiri
	num      uint64
	rng      uint64 // wangiriRange of the caller
	start    time.Time
	now      func() time.Time
	answered bool
}

// newRing watches a call from caller (abroad or high-risk) that starts now.
func (w *Wangiri) newRing(caller *Destination, now func() time.Time) *ring {
	return &ring{w: w, num: caller.Number, rng: wangiriRange(caller), start: now(), now: now}
}

// Answered implements chain.Answerer: an answered call is no one-ring call.
func (r *ring) Answered(time.Time) { r.answered = true }

// Release implements chain.Releaser: the call ended.
func (r *ring) Release() {
	if !r.answered && r.now().Sub(r.start) < r.w.ringLimit() {
		r.w.noteShortRing(r.num, r.rng, r.now())
	}
}

// Enabled reports whether detection is on.
func (w *Wangiri) Enabled() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ShortRings > 0
}

func (w *Wangiri) ringLimit() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.Ring
}
