// Package limits enforces per-trunk call limits: new calls per second (a
// token bucket with a burst) and concurrent calls. A call over a limit is
// answered 503 with Retry-After, so a well-behaved peer backs off.
//
// The counters live in a Registry that outlives configuration reloads: a
// reload that changes a trunk's limits applies them to the same counters,
// and calls in progress keep their concurrent-call slots.
package limits

import (
	"math"
	"sync"
	"time"
)

// Registry holds the per-trunk state for the life of the process.
type Registry struct {
	mu     sync.RWMutex
	trunks map[string]*Trunk
	now    func() time.Time
	met    *metrics
}

// Trunk is one trunk's counters. A *Trunk is the chain.Releaser of a
// concurrent-call slot.
type Trunk struct {
	name   string
	mu     sync.Mutex
	tokens float64
	last   time.Time
	active int
	met    *metrics
}

// trunk returns the state of name, creating it.
func (r *Registry) trunk(name string) *Trunk {
	r.mu.RLock()
	t := r.trunks[name]
	r.mu.RUnlock()
	if t != nil {
		return t
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if t = r.trunks[name]; t == nil {
		t = &Trunk{name: name, tokens: -1, met: r.met}
		r.trunks[name] = t
	}
	return t
}

// allowCall takes a token for one new call at now. cps <= 0 means no rate
// limit. It returns the seconds to wait for the next token when refused.
func (t *Trunk) allowCall(now time.Time, cps float64, burst int) (ok bool, retryAfter uint32) {
	if cps <= 0 {
		return true, 0
	}
	if burst < 1 {
		burst = 1
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tokens < 0 { // first call: a full bucket
		t.tokens = float64(burst)
		t.last = now
	}
	t.tokens = math.Min(float64(burst), t.tokens+now.Sub(t.last).Seconds()*cps)
	t.last = now
	if t.tokens >= 1 {
		t.tokens--
		return true, 0
	}
	wait := math.Ceil((1 - t.tokens) / cps)
	return false, uint32(math.Max(1, wait))
}

// acquire takes a concurrent-call slot when fewer than max are in use (max <= 0: unlimited).
func (t *Trunk) acquire(max int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if max > 0 && t.active >= max {
		return false
	}
	t.active++
	t.met.setActive(t.name, t.active)
	return true
}

// Release gives back one concurrent-call slot (chain.Releaser).
func (t *Trunk) Release() {
	t.mu.Lock()
	if t.active > 0 {
		t.active--
	}
	t.met.setActive(t.name, t.active)
	t.mu.Unlock()
}

// Active returns the calls in progress.
func (t *Trunk) Active() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.active
}
