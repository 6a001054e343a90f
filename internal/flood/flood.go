// Package flood detects request floods from configured peers, per source
// address and per prefix (IPv4 /24, IPv6 /64), with separate budgets per
// method class (INVITE, REGISTER, OPTIONS, other) and for malformed
// messages.
//
// Peers are never exempted blindly: each trunk has a profile of budgets (its
// own or the default, with floors from its own limits: INVITE at least
// limits.cps, other requests at least three a call), so an operator's PBX
// that sends OPTIONS for 2,000 extensions can be given room while a spoofed
// carrier address still cannot send without limit. Nor are they punished: a
// configured trunk or upstream over a budget is never banned (its address
// can be spoofed, and a customer can go over by accident); its excess is
// shed — 503 with Retry-After for INVITE and REGISTER, silence for the
// rest — counted (sipwarden_flood_shed_total) and reported (a
// peer_over_budget event, at most one a minute per peer and class). Only a
// source that no configuration names (a digest trunk's phone) is banned,
// with its /24 or /64 when the prefix went over; such a prefix ban never
// applies to the configured peers inside it. Addresses that are no peer at
// all never reach this stage: the acl stage drops them and bans those that
// keep probing.
//
// Memory is fixed: a table of slots chosen by hashing the address (two
// candidate slots, the least recently used one is taken by a newcomer), so
// a spoofed-source flood of millions of addresses cannot grow it.
package flood

import (
	"net/netip"
	"sync"
	"time"
)

// Class is a budget class of requests.
type Class uint8

// The classes.
const (
	Invite Class = iota
	Register
	Options
	Other
	Malformed
	numClasses
)

var classNames = [numClasses]string{"invite", "register", "options", "other", "malformed"}

// String names the class (metric label, ban reason suffix).
func (c Class) String() string { return classNames[c] }

// Budget is a token bucket: Burst requests at once, refilled at Rate per second.
type Budget struct {
	Rate  float64
	Burst float64
}

// Unlimited reports whether the budget does not limit.
func (b Budget) Unlimited() bool { return b.Rate <= 0 }

// Profile holds the budgets of one kind of peer.
type Profile [numClasses]Budget

// Table tracks token buckets per key (an address or a masked prefix).
type Table struct {
	mu    sync.Mutex
	slots []slot
	epoch time.Time
}

// slot is one tracked key: about 100 bytes.
type slot struct {
	key     netip.Prefix
	touched int64 // ns since epoch, for the choice of a slot to reuse
	last    [numClasses]int64
	tokens  [numClasses]float32
}

// NewTable returns a table of n slots (rounded up to a power of two).
func NewTable(n int) *Table {
	size := 1
	for size < n {
		size <<= 1
	}
	return &Table{slots: make([]slot, size), epoch: time.Now()}
}

// Size returns the number of slots (the bound on tracked keys).
func (t *Table) Size() int { return len(t.slots) }

func hash(p netip.Prefix) (uint64, uint64) {
	b := p.Addr().As16()
	h := uint64(14695981039346656037)
	for _, c := range b {
		h = (h ^ uint64(c)) * 1099511628211
	}
	h = (h ^ uint64(p.Bits())) * 1099511628211
	return h, h>>32 | h<<32
}

// Take takes one token of class c from key's bucket at now, and reports
// whether the budget was exceeded (no token left).
func (t *Table) Take(key netip.Prefix, c Class, b Budget, now time.Time) bool {
	if b.Unlimited() {
		return false
	}
	h1, h2 := hash(key)
	mask := uint64(len(t.slots) - 1)
	ns := int64(now.Sub(t.epoch))
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &t.slots[h1&mask]
	if s.key != key {
		alt := &t.slots[h2&mask]
		switch {
		case alt.key == key:
			s = alt
		default:
			if alt.touched < s.touched {
				s = alt
			}
			*s = slot{key: key}
		}
	}
	s.touched = ns
	if s.last[c] == 0 {
		s.tokens[c] = float32(b.Burst)
	} else {
		s.tokens[c] = float32(min(b.Burst, float64(s.tokens[c])+float64(ns-s.last[c])/1e9*b.Rate))
	}
	s.last[c] = ns
	if s.last[c] == 0 {
		s.last[c] = 1
	}
	if s.tokens[c] >= 1 {
		s.tokens[c]--
		return false
	}
	return true
}
