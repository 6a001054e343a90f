package firewall

import (
	"fmt"
	"net/netip"
	"testing"
)

func TestRanges(t *testing.T) {
	pp := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	str := func(rs []Range) string {
		s := ""
		for _, r := range rs {
			s += fmt.Sprintf("[%s-%s]", r.From, r.To)
		}
		return s
	}
	cases := []struct {
		name   string
		in     []netip.Prefix
		v4, v6 string
	}{
		{"empty", nil, "", ""},
		{"one address", pp("192.0.2.7/32"), "[192.0.2.7-192.0.2.7]", ""},
		{"address inside a banned /24 disappears", pp("192.0.2.7/32", "192.0.2.0/24"), "[192.0.2.0-192.0.2.255]", ""},
		{"adjacent addresses merge", pp("192.0.2.7/32", "192.0.2.8/32", "192.0.2.10/32"), "[192.0.2.7-192.0.2.8][192.0.2.10-192.0.2.10]", ""},
		{"adjacent /25s merge into the /24", pp("192.0.2.128/25", "192.0.2.0/25"), "[192.0.2.0-192.0.2.255]", ""},
		{"unmasked prefix is masked", pp("198.51.100.77/24"), "[198.51.100.0-198.51.100.255]", ""},
		{"top of the space", pp("255.255.255.0/24", "255.255.255.255/32"), "[255.255.255.0-255.255.255.255]", ""},
		{"mapped IPv4 is IPv4", pp("::ffff:192.0.2.1/128"), "[192.0.2.1-192.0.2.1]", ""},
		{"IPv6 /64 and an address in it", pp("2001:db8:1:2::/64", "2001:db8:1:2::99/128"), "", "[2001:db8:1:2::-2001:db8:1:2:ffff:ffff:ffff:ffff]"},
		{"families apart", pp("2001:db8::1/128", "10.0.0.0/8"), "[10.0.0.0-10.255.255.255]", "[2001:db8::1-2001:db8::1]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v4, v6 := Ranges(c.in)
			if got := str(v4); got != c.v4 {
				t.Errorf("v4 = %s, want %s", got, c.v4)
			}
			if got := str(v6); got != c.v6 {
				t.Errorf("v6 = %s, want %s", got, c.v6)
			}
		})
	}
}
