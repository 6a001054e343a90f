package acl

import (
	"net/netip"
	"sync"
	"time"

	"github.com/sipwarden/sipwarden/internal/cidr"
)

// ProbeTracker counts requests from addresses that are no peer, per address
// and per block (the /24 or /64 of the address), so that a source that keeps
// probing gets banned, and so does a botnet spread over a /24 or an attacker
// rotating through a /64 whose addresses each stay under the budget. Banned
// sources are dropped before parsing from then on. Memory is fixed (tables of
// slots indexed by a hash of the key; a collision starts the newcomer
// afresh), so a spoofed-source flood cannot grow it. It lives for the
// process: reloads keep the counts.
type ProbeTracker struct {
	mu     sync.Mutex
	addrs  []probeSlot
	blocks []probeSlot
}

type probeSlot struct {
	key    netip.Prefix
	tokens float64
	last   time.Time
}

// ProbeScope says which budget a request exceeded.
type ProbeScope uint8

// Scopes of Exceeded.
const (
	WithinBudget  ProbeScope = iota
	AddressBudget            // the address sent too much: ban the address
	BlockBudget              // its /24 or /64 sent too much together: ban the block
)

// NewProbeTracker returns a tracker with n address slots (default 65536)
// and n/4 block slots.
func NewProbeTracker(n int) *ProbeTracker {
	if n <= 0 {
		n = 65536
	}
	return &ProbeTracker{addrs: make([]probeSlot, n), blocks: make([]probeSlot, max(1, n/4))}
}

// Exceeded counts one request from a against its address's budget (rate per
// second, burst) and, while that holds, against its block's budget (both
// multiplied by blockFactor; 0 disables the block budget). It reports which
// budget, if any, was already empty.
func (t *ProbeTracker) Exceeded(a netip.Addr, now time.Time, rate float64, burst int, blockFactor float64) ProbeScope {
	if rate <= 0 {
		return WithinBudget
	}
	a = a.Unmap()
	t.mu.Lock()
	defer t.mu.Unlock()
	if !take(t.addrs, netip.PrefixFrom(a, a.BitLen()), now, rate, float64(burst)) {
		return AddressBudget
	}
	if blockFactor > 0 && !take(t.blocks, cidr.BlockOf(a), now, rate*blockFactor, float64(burst)*blockFactor) {
		return BlockBudget
	}
	return WithinBudget
}

// take takes a token from key's bucket in slots; false when it was empty.
func take(slots []probeSlot, key netip.Prefix, now time.Time, rate, burst float64) bool {
	b := key.Addr().As16()
	var h uint64 = 14695981039346656037
	for _, c := range b {
		h = (h ^ uint64(c)) * 1099511628211
	}
	h = (h ^ uint64(key.Bits())) * 1099511628211
	s := &slots[h%uint64(len(slots))]
	if s.key != key {
		*s = probeSlot{key: key, tokens: burst, last: now}
	}
	s.tokens = min(burst, s.tokens+now.Sub(s.last).Seconds()*rate)
	s.last = now
	if s.tokens >= 1 {
		s.tokens--
		return true
	}
	return false
}
