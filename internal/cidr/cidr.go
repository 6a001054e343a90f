// Package cidr maps IP prefixes to values and finds the longest prefix that
// contains an address, for IPv4 and IPv6 (IPv4-mapped IPv6 addresses are
// unmapped first). It is the lookup shared by the acl stage (who is this
// peer?) and the ban list (is this source banned?).
//
// A Table keeps one hash map per prefix length in use; a lookup masks the
// address to each length in use, longest first, and allocates nothing.
// Configurations hold a few distinct lengths (/32, /29, /24, /64...), so a
// lookup is a handful of map probes whatever the number of prefixes.
package cidr

import (
	"net/netip"
	"sort"
)

// Table maps prefixes to values. The zero value is not ready: use New. A
// Table is not safe for concurrent writes; readers need the writer's lock.
type Table[V any] struct {
	byLen   map[int]map[netip.Prefix]V
	lengths []int // keys of byLen in use, longest first (IPv6 lengths + 1000)
	n       int
}

// New returns an empty table.
func New[V any]() *Table[V] { return &Table[V]{byLen: map[int]map[netip.Prefix]V{}} }

// Canonical returns p unmapped (4-in-6 becomes IPv4) and masked.
func Canonical(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
	}
	return p.Masked()
}

// BlockOf returns the block that groups a with its neighbours, which one
// operator or one customer usually holds: the /24 of an IPv4 address, the
// /64 of an IPv6 address. Flood and probe detection count per block too, so
// that a botnet spread over a /24 or an attacker rotating through a /64 is
// caught.
func BlockOf(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 24
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

func lenKey(p netip.Prefix) int {
	if p.Addr().Is6() {
		return p.Bits() + 1000
	}
	return p.Bits()
}

// Set stores v for p (in canonical form). With replace false an existing
// entry is kept. It reports whether v was stored.
func (t *Table[V]) Set(p netip.Prefix, v V, replace bool) bool {
	p = Canonical(p)
	k := lenKey(p)
	m := t.byLen[k]
	if m == nil {
		m = map[netip.Prefix]V{}
		t.byLen[k] = m
	}
	if _, ok := m[p]; ok {
		if !replace {
			return false
		}
	} else {
		t.n++
	}
	m[p] = v
	if len(m) == 1 {
		t.reindex()
	}
	return true
}

// Get returns the value stored for exactly p.
func (t *Table[V]) Get(p netip.Prefix) (V, bool) {
	p = Canonical(p)
	v, ok := t.byLen[lenKey(p)][p]
	return v, ok
}

// Delete removes p. It reports whether it was there.
func (t *Table[V]) Delete(p netip.Prefix) bool {
	p = Canonical(p)
	k := lenKey(p)
	m := t.byLen[k]
	if _, ok := m[p]; !ok {
		return false
	}
	delete(m, p)
	t.n--
	if len(m) == 0 {
		delete(t.byLen, k)
		t.reindex()
	}
	return true
}

// DeleteFunc removes every entry for which del returns true.
func (t *Table[V]) DeleteFunc(del func(netip.Prefix, V) bool) {
	for k, m := range t.byLen {
		for p, v := range m {
			if del(p, v) {
				delete(m, p)
				t.n--
			}
		}
		if len(m) == 0 {
			delete(t.byLen, k)
		}
	}
	t.reindex()
}

// Range calls f for every entry until f returns false.
func (t *Table[V]) Range(f func(netip.Prefix, V) bool) {
	for _, m := range t.byLen {
		for p, v := range m {
			if !f(p, v) {
				return
			}
		}
	}
}

// Len returns the number of entries.
func (t *Table[V]) Len() int { return t.n }

func (t *Table[V]) reindex() {
	t.lengths = t.lengths[:0]
	for k := range t.byLen {
		t.lengths = append(t.lengths, k)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(t.lengths)))
}

// Lookup returns the value of the longest prefix containing a for which
// accept returns true (nil accept: any). It allocates nothing.
func (t *Table[V]) Lookup(a netip.Addr, accept func(V) bool) (V, bool) {
	a = a.Unmap()
	is6 := a.Is6()
	for _, k := range t.lengths {
		bits := k
		if k >= 1000 {
			if !is6 {
				continue
			}
			bits -= 1000
		} else if is6 {
			continue
		}
		p, err := a.Prefix(bits)
		if err != nil {
			continue
		}
		if v, ok := t.byLen[k][p]; ok && (accept == nil || accept(v)) {
			return v, true
		}
	}
	var zero V
	return zero, false
}
