package acl

import (
	"net/netip"
	"sync"
	"time"
)

// ProbeTracker counts requests from addresses that are no peer, so that a
// source that keeps probing gets banned and from then on is dropped before
// parsing. Memory is fixed (a table of slots indexed by a hash of the
// address; a collision starts the newcomer afresh), so a spoofed-source flood
// cannot grow it. It lives for the process: reloads keep the counts.
type ProbeTracker struct {
	mu    sync.Mutex
	slots []probeSlot
}

type probeSlot struct {
	addr   netip.Addr
	tokens float64
	last   time.Time
}

// NewProbeTracker returns a tracker with n slots (default 65536).
func NewProbeTracker(n int) *ProbeTracker {
	if n <= 0 {
		n = 65536
	}
	return &ProbeTracker{slots: make([]probeSlot, n)}
}

// Exceeded takes one token from a's bucket (rate per second, burst) and
// reports whether the bucket was empty.
func (t *ProbeTracker) Exceeded(a netip.Addr, now time.Time, rate float64, burst int) bool {
	if rate <= 0 {
		return false
	}
	b := a.As16()
	var h uint64 = 14695981039346656037
	for _, c := range b {
		h = (h ^ uint64(c)) * 1099511628211
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &t.slots[h%uint64(len(t.slots))]
	if s.addr != a {
		*s = probeSlot{addr: a, tokens: float64(burst), last: now}
	}
	s.tokens = min(float64(burst), s.tokens+now.Sub(s.last).Seconds()*rate)
	s.last = now
	if s.tokens >= 1 {
		s.tokens--
		return false
	}
	return true
}
