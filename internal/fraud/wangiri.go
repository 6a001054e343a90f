package fraud

import (
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
// Numbers are kept as their hashes (Destination.Number) in a fixed table
// (a collision starts the newcomer afresh): a spoofed flood of caller IDs
// cannot grow it.
type Wangiri struct {
	ShortRings int           // 0: off
	Ring       time.Duration // a ring shorter than this is "one ring" (default 10s)
	Window     time.Duration // short rings count this long (default 24h)

	mu    sync.Mutex
	slots []wangiriSlot
}

type wangiriSlot struct {
	num   uint64
	first time.Time // of the current count
	short int
}

// NewWangiri returns a detector with a table of n numbers (default 65536).
func NewWangiri(n int) *Wangiri {
	if n <= 0 {
		n = 65536
	}
	return &Wangiri{slots: make([]wangiriSlot, n)}
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

func (w *Wangiri) slot(num uint64) *wangiriSlot { return &w.slots[num%uint64(len(w.slots))] }

// noteShortRing counts one short ring of num at now.
func (w *Wangiri) noteShortRing(num uint64, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.slot(num)
	if s.num != num || now.Sub(s.first) > w.Window {
		*s = wangiriSlot{num: num, first: now}
	}
	s.short++
}

// Flagged reports whether calls to num are call-backs to a Wangiri number.
func (w *Wangiri) Flagged(num uint64, now time.Time) bool {
	if num == 0 {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ShortRings <= 0 {
		return false
	}
	s := w.slot(num)
	return s.num == num && s.short >= w.ShortRings && now.Sub(s.first) <= w.Window
}

// ring watches one call from abroad to a customer (a chain.Answerer).
type ring struct {
	w        *Wangiri
	num      uint64
	start    time.Time
	now      func() time.Time
	answered bool
}

// Answered implements chain.Answerer: an answered call is no one-ring call.
func (r *ring) Answered(time.Time) { r.answered = true }

// Release implements chain.Releaser: the call ended.
func (r *ring) Release() {
	if !r.answered && r.now().Sub(r.start) < r.w.ringLimit() {
		r.w.noteShortRing(r.num, r.now())
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
