package cidr

import (
	"net/netip"
	"testing"
)

func TestLongestMatch(t *testing.T) {
	tab := New[string]()
	for p, v := range map[string]string{"10.0.0.0/8": "wide", "10.1.0.0/16": "mid", "10.1.2.3/32": "host", "2001:db8::/32": "v6", "2001:db8:1::/48": "v6mid"} {
		tab.Set(netip.MustParsePrefix(p), v, true)
	}
	for addr, want := range map[string]string{
		"10.9.9.9": "wide", "10.1.9.9": "mid", "10.1.2.3": "host", "::ffff:10.1.2.3": "host",
		"2001:db8:2::1": "v6", "2001:db8:1::1": "v6mid", "11.0.0.1": "", "::1": "",
	} {
		got, _ := tab.Lookup(netip.MustParseAddr(addr), nil)
		if got != want {
			t.Errorf("Lookup(%s) = %q, want %q", addr, got, want)
		}
	}
	// accept skips a match for a shorter one
	if got, _ := tab.Lookup(netip.MustParseAddr("10.1.2.3"), func(v string) bool { return v != "host" }); got != "mid" {
		t.Errorf("with accept: %q", got)
	}
	if tab.Set(netip.MustParsePrefix("10.0.0.0/8"), "other", false) {
		t.Error("Set without replace overwrote")
	}
	if !tab.Delete(netip.MustParsePrefix("10.1.2.3/32")) || tab.Len() != 4 {
		t.Errorf("delete: len %d", tab.Len())
	}
	if got, _ := tab.Lookup(netip.MustParseAddr("10.1.2.3"), nil); got != "mid" {
		t.Errorf("after delete: %q", got)
	}
	if p := Canonical(netip.MustParsePrefix("::ffff:192.0.2.1/120")); p.String() != "192.0.2.0/24" {
		t.Errorf("Canonical: %s", p)
	}
	a := netip.MustParseAddr("10.1.9.9")
	if n := testing.AllocsPerRun(1000, func() { tab.Lookup(a, nil) }); n != 0 {
		t.Errorf("%v allocations per lookup", n)
	}
}
