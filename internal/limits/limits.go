// Package limits enforces call and registration limits per trunk and per
// digest account: new calls per second (a token bucket with a burst),
// concurrent calls, and REGISTER requests per window. A call over a limit is
// answered 503 with Retry-After and a registration over its budget 429 with
// Retry-After (RFC 6585), so a well-behaved peer backs off.
//
// The counters live in a Registry that outlives configuration reloads: a
// reload that changes a limit applies it to the same counters, and calls in
// progress keep their concurrent-call slots.
package limits

import (
	"math"
	"sync"
	"time"
)

// Registry holds the per-trunk and per-account state for the life of the process.
type Registry struct {
	mu       sync.RWMutex
	counters map[string]*Counter
	now      func() time.Time
	met      *metrics
}

// Counter is the state of one trunk or account: a bucket of new calls, a
// bucket of registrations and the calls in progress. A *Counter is the
// chain.Releaser of a concurrent-call slot.
type Counter struct {
	trunk string // metric label; "" for accounts (their numbers are not labels)
	mu    sync.Mutex
	calls bucket
	regs  bucket
	// active is the number of calls in progress.
	active int
	met    *metrics
}

// bucket is a token bucket; tokens < 0 means "not used yet" (starts full).
type bucket struct {
	tokens float64
	last   time.Time
}

// take takes a token at now from a bucket refilled at rate per second up to
// burst. rate <= 0 means unlimited. When refused it returns the seconds to
// wait for the next token (at least 1).
func (b *bucket) take(now time.Time, rate float64, burst float64) (ok bool, retryAfter uint32) {
	if rate <= 0 {
		return true, 0
	}
	burst = math.Max(1, burst)
	if b.tokens < 0 {
		b.tokens, b.last = burst, now
	}
	b.tokens = math.Min(burst, b.tokens+now.Sub(b.last).Seconds()*rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := math.Ceil((1 - b.tokens) / rate)
	return false, uint32(math.Max(1, math.Min(wait, math.MaxUint32)))
}

// trunk returns the counter of trunk name, creating it.
func (r *Registry) trunk(name string) *Counter { return r.counter("t\x00"+name, name) }

// account returns the counter of account user of trunk, creating it.
func (r *Registry) account(trunk, user string) *Counter {
	return r.counter("a\x00"+trunk+"\x00"+user, "")
}

func (r *Registry) counter(key, label string) *Counter {
	r.mu.RLock()
	c := r.counters[key]
	r.mu.RUnlock()
	if c != nil {
		return c
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if c = r.counters[key]; c == nil {
		c = &Counter{trunk: label, calls: bucket{tokens: -1}, regs: bucket{tokens: -1}, met: r.met}
		r.counters[key] = c
	}
	return c
}

// allowCall takes a token for one new call at now (cps <= 0: no rate limit).
func (c *Counter) allowCall(now time.Time, cps float64, burst int) (bool, uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls.take(now, cps, float64(burst))
}

// allowRegister takes a token for one REGISTER at now.
func (c *Counter) allowRegister(now time.Time, rate, burst float64) (bool, uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.regs.take(now, rate, burst)
}

// acquire takes a concurrent-call slot when fewer than max are in use (max <= 0: unlimited).
func (c *Counter) acquire(max int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if max > 0 && c.active >= max {
		return false
	}
	c.active++
	c.gauge()
	return true
}

// Release gives back one concurrent-call slot (chain.Releaser).
func (c *Counter) Release() {
	c.mu.Lock()
	if c.active > 0 {
		c.active--
	}
	c.gauge()
	c.mu.Unlock()
}

func (c *Counter) gauge() {
	if c.trunk != "" {
		c.met.setActive(c.trunk, c.active)
	}
}

// Active returns the calls in progress.
func (c *Counter) Active() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.active
}
