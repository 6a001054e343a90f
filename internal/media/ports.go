package media

import (
	crand "crypto/rand"
	"fmt"
	"math/rand/v2"
	"sync"
)

// Ports hands out RTP/RTCP port pairs from a configured range: the RTP port
// is even and RTCP uses the next odd one (RFC 3550 section 11).
//
// A pair is drawn uniformly at random from the free pairs, with a generator
// (ChaCha8) seeded from crypto/rand, so that the ports of the next call
// cannot be guessed from those of the last one (a predictable order makes
// RTP bleed a matter of aiming). A pair is never handed out twice while it
// is held; a pair given back first waits in a queue of recently freed pairs
// (up to half the range, at most 1024) so that late packets of an ended call
// do not reach the next one, unless nothing else is free. The state is a few
// bytes per pair, bounded by the range.
type Ports struct {
	mu   sync.Mutex
	base int // first even port
	rng  *rand.Rand
	st   []uint8 // state of pair i (ports base+2i, base+2i+1)
	free []int32 // free pairs, in no order
	// cool holds recently freed pairs, oldest first, as a ring.
	cool            []int32
	coolHead, coolN int
	inUse           int
}

// Pair states.
const (
	pairFree uint8 = iota
	pairOut
	pairCooling
)

// NewPorts covers the even ports of [min, max] whose odd neighbour is also in range.
func NewPorts(lo, hi int) (*Ports, error) {
	if lo < 1024 || hi > 65535 || lo > hi {
		return nil, fmt.Errorf("media port range %d-%d: want 1024 <= min <= max <= 65535", lo, hi)
	}
	base := lo + lo%2
	n := (hi - base + 1) / 2
	if n < 1 {
		return nil, fmt.Errorf("media port range %d-%d holds no even/odd pair", lo, hi)
	}
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("media ports: seed: %w", err)
	}
	p := &Ports{base: base, rng: rand.New(rand.NewChaCha8(seed)), st: make([]uint8, n),
		free: make([]int32, n), cool: make([]int32, min(n/2, 1024))}
	for i := range p.free {
		p.free[i] = int32(i)
	}
	return p, nil
}

// Get returns a free even RTP port (its RTCP port is the next one), chosen
// at random.
func (p *Ports) Get() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.free) == 0 {
		if p.coolN == 0 {
			return 0, ErrNoPorts
		}
		p.unCool()
	}
	i := p.rng.IntN(len(p.free))
	j := p.free[i]
	p.free[i] = p.free[len(p.free)-1]
	p.free = p.free[:len(p.free)-1]
	p.st[j] = pairOut
	p.inUse++
	return p.base + 2*int(j), nil
}

// unCool moves the oldest recently freed pair to the free pairs.
func (p *Ports) unCool() {
	j := p.cool[p.coolHead]
	p.coolHead = (p.coolHead + 1) % len(p.cool)
	p.coolN--
	p.st[j] = pairFree
	p.free = append(p.free, j)
}

// Put gives back a port from Get. It reports false (and changes nothing)
// for a port that is not out, so a double release cannot corrupt the count.
func (p *Ports) Put(port int) bool {
	j := (port - p.base) / 2
	if port < p.base || port%2 != p.base%2 || j >= len(p.st) {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.st[j] != pairOut {
		return false
	}
	p.inUse--
	if len(p.cool) == 0 {
		p.st[j] = pairFree
		p.free = append(p.free, int32(j))
		return true
	}
	if p.coolN == len(p.cool) {
		p.unCool()
	}
	p.st[j] = pairCooling
	p.cool[(p.coolHead+p.coolN)%len(p.cool)] = int32(j)
	p.coolN++
	return true
}

// InUse returns the number of pairs out.
func (p *Ports) InUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inUse
}

// Cap returns the number of pairs in the range.
func (p *Ports) Cap() int { return len(p.st) }
