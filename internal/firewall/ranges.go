package firewall

import (
	"net/netip"
	"slices"
)

// Range is an inclusive range of addresses of one family.
type Range struct {
	From, To netip.Addr
}

// Ranges turns prefixes into the smallest sorted list of disjoint ranges that
// covers them: contained, overlapping and adjacent prefixes merge. IPv4 and
// IPv4-mapped IPv6 prefixes come back as IPv4; the two families are returned
// apart.
func Ranges(prefixes []netip.Prefix) (v4, v6 []Range) {
	var rs []Range
	for _, p := range prefixes {
		if !p.IsValid() {
			continue
		}
		p = p.Masked()
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		rs = append(rs, Range{From: p.Addr(), To: lastAddr(p)})
	}
	slices.SortFunc(rs, func(a, b Range) int {
		if c := a.From.Compare(b.From); c != 0 {
			return c
		}
		return b.To.Compare(a.To)
	})
	var out []Range
	for _, r := range rs {
		if n := len(out); n > 0 && out[n-1].To.BitLen() == r.From.BitLen() {
			last := &out[n-1]
			next := last.To.Next()
			if r.From.Compare(last.To) <= 0 || (next.IsValid() && next == r.From) {
				if r.To.Compare(last.To) > 0 {
					last.To = r.To
				}
				continue
			}
		}
		out = append(out, r)
	}
	for _, r := range out {
		if r.From.Is4() {
			v4 = append(v4, r)
		} else {
			v6 = append(v6, r)
		}
	}
	return v4, v6
}

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		switch {
		case bits >= 8:
			bits -= 8
		case bits > 0:
			b[i] |= 0xff >> bits
			bits = 0
		default:
			b[i] = 0xff
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
