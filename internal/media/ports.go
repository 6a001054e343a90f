package media

import (
	"fmt"
	"sync"
)

// Ports hands out RTP/RTCP port pairs from a configured range: the RTP port
// is even and RTCP uses the next odd one (RFC 3550 section 11). Its state is
// one bit per pair, so it is bounded by the range, and it goes round the
// range rather than reusing the pair just freed, so that late packets of an
// ended call do not reach the next one.
type Ports struct {
	mu    sync.Mutex
	base  int    // first even port
	used  []bool // pair i is ports base+2i, base+2i+1
	next  int    // where the next search starts
	inUse int
}

// NewPorts covers the even ports of [min, max] whose odd neighbour is also in range.
func NewPorts(min, max int) (*Ports, error) {
	if min < 1024 || max > 65535 || min > max {
		return nil, fmt.Errorf("media port range %d-%d: want 1024 <= min <= max <= 65535", min, max)
	}
	base := min + min%2
	n := (max - base + 1) / 2
	if n < 1 {
		return nil, fmt.Errorf("media port range %d-%d holds no even/odd pair", min, max)
	}
	return &Ports{base: base, used: make([]bool, n)}, nil
}

// Get returns a free even RTP port (its RTCP port is the next one).
func (p *Ports) Get() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.used)
	for i := 0; i < n; i++ {
		j := (p.next + i) % n
		if !p.used[j] {
			p.used[j] = true
			p.inUse++
			p.next = (j + 1) % n
			return p.base + 2*j, nil
		}
	}
	return 0, ErrNoPorts
}

// Put gives back a port from Get. It reports false (and changes nothing)
// for a port that is not out, so a double release cannot corrupt the count.
func (p *Ports) Put(port int) bool {
	j := (port - p.base) / 2
	if port < p.base || port%2 != p.base%2 || j >= len(p.used) {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.used[j] {
		return false
	}
	p.used[j] = false
	p.inUse--
	return true
}

// InUse returns the number of pairs out.
func (p *Ports) InUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inUse
}

// Cap returns the number of pairs in the range.
func (p *Ports) Cap() int { return len(p.used) }
