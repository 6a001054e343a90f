package auth

import (
	"encoding/binary"
	"sync"
	"time"
)

// ReplayGuard remembers, for each nonce in use, the nonce-counts already
// accepted (RFC 7616 section 3.4: the nonce-count lets the server detect
// replays). It holds at most its capacity of nonces, in shards; when a shard
// is full the nonce used first is forgotten. A forgotten nonce can no longer
// be checked, so Use reports it as NCForgotten and the caller answers
// stale=true: the client takes a fresh nonce, and a captured request is
// never accepted twice.
type ReplayGuard struct {
	shards [replayShards]replayShard
}

const (
	replayShards = 16
	// ncWindow is how far below the highest count a late count is still accepted once.
	ncWindow = 64
)

type replayShard struct {
	mu      sync.Mutex
	entries map[NonceKey]ncEntry
	fifo    []NonceKey // insertion order, a ring of cap entries
	head    int
	cap     int
	// forgotten is the latest issue time of a nonce dropped while still
	// within its lifetime: an unknown nonce issued at or before it may have
	// been used already.
	forgotten int64
}

type ncEntry struct {
	issued int64
	max    uint32
	window uint64 // bit i: count max-i was accepted
}

// NewReplayGuard returns a guard for up to capacity nonces (at least 16).
func NewReplayGuard(capacity int) *ReplayGuard {
	per := max(1, (capacity+replayShards-1)/replayShards)
	g := &ReplayGuard{}
	for i := range g.shards {
		g.shards[i] = replayShard{entries: make(map[NonceKey]ncEntry, per), fifo: make([]NonceKey, per), cap: per}
	}
	return g
}

// NCResult is the outcome of ReplayGuard.Use.
type NCResult uint8

// Results of Use.
const (
	// NCFresh: the count was not used before with this nonce; it is now recorded.
	NCFresh NCResult = iota
	// NCReplay: the count was already used (or is zero, or too far behind).
	NCReplay
	// NCForgotten: the nonce may have been used but is no longer tracked.
	NCForgotten
)

// Use records nonce-count nc of the nonce key (issued at issued). Call it
// only for requests whose response verified.
func (g *ReplayGuard) Use(key NonceKey, issued time.Time, nc uint32, now time.Time) NCResult {
	if nc == 0 {
		return NCReplay
	}
	s := &g.shards[binary.LittleEndian.Uint32(key[:4])%replayShards]
	iss := issued.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[key]
	if !ok {
		if iss <= s.forgotten {
			return NCForgotten
		}
		s.insert(key, ncEntry{issued: iss, max: nc, window: 1}, now.UnixNano())
		return NCFresh
	}
	switch {
	case nc > e.max:
		shift := nc - e.max
		if shift >= ncWindow {
			e.window = 0
		} else {
			e.window <<= shift
		}
		e.window |= 1
		e.max = nc
	case e.max-nc >= ncWindow:
		return NCReplay
	default:
		bit := uint64(1) << (e.max - nc)
		if e.window&bit != 0 {
			return NCReplay
		}
		e.window |= bit
	}
	s.entries[key] = e
	return NCFresh
}

// insert adds e, evicting the oldest entry when the shard is full.
func (s *replayShard) insert(key NonceKey, e ncEntry, now int64) {
	if len(s.entries) >= s.cap {
		old := s.fifo[s.head]
		if oe, ok := s.entries[old]; ok {
			// A nonce older than a day is past any configured lifetime:
			// forgetting it does not make newer nonces suspect.
			if now-oe.issued <= int64(24*time.Hour) && oe.issued > s.forgotten {
				s.forgotten = oe.issued
			}
			delete(s.entries, old)
		}
	}
	s.fifo[s.head] = key
	s.head = (s.head + 1) % s.cap
	s.entries[key] = e
}

// Len returns the number of nonces tracked.
func (g *ReplayGuard) Len() int {
	n := 0
	for i := range g.shards {
		s := &g.shards[i]
		s.mu.Lock()
		n += len(s.entries)
		s.mu.Unlock()
	}
	return n
}
