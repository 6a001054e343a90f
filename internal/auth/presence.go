package auth

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
)

// presence remembers, for a while, which digest trunk an address last
// authenticated to, so that the acl stage can identify that address's
// later requests that name no domain of the trunk (in-dialog requests of a
// roaming phone). Fixed size: a newcomer replaces the slot's occupant.
type presence struct {
	seed  maphash.Seed
	mu    sync.RWMutex
	slots []presenceSlot
}

type presenceSlot struct {
	addr  netip.Addr
	trunk string // a trunk name (from the configuration, never from a message)
	until int64
}

func newPresence(n int) *presence {
	if n <= 0 {
		n = 65536
	}
	return &presence{seed: maphash.MakeSeed(), slots: make([]presenceSlot, n)}
}

func (p *presence) slot(a netip.Addr) *presenceSlot {
	b := a.As16()
	return &p.slots[maphash.Bytes(p.seed, b[:])%uint64(len(p.slots))]
}

// mark records that a authenticated to trunk, valid for ttl.
func (p *presence) mark(a netip.Addr, trunk string, now time.Time, ttl time.Duration) {
	a = a.Unmap()
	p.mu.Lock()
	*p.slot(a) = presenceSlot{addr: a, trunk: trunk, until: now.Add(ttl).UnixNano()}
	p.mu.Unlock()
}

// lookup returns the trunk a authenticated to recently, or "".
func (p *presence) lookup(a netip.Addr, now time.Time) string {
	a = a.Unmap()
	p.mu.RLock()
	defer p.mu.RUnlock()
	s := p.slot(a)
	if s.addr == a && s.until >= now.UnixNano() {
		return s.trunk
	}
	return ""
}
