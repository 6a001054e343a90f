package bruteforce

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/banlist"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newGuard(size int) (*Guard, *banlist.List, *clock) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	bans := banlist.New(nil, banlist.Options{Now: clk.now})
	g := New(size, bans, nil)
	g.now = clk.now
	return g, bans, clk
}

func TestSourceAccountThreshold(t *testing.T) {
	c := Defaults
	c.SourceAccount = 3
	g, bans, clk := newGuard(1024)
	src := netip.MustParseAddr("203.0.113.5")
	for i := 1; i <= 2; i++ {
		if d := g.Failure(&c, Attempt{Src: src, Trunk: "t", Account: "1001"}); d.Ban {
			t.Fatalf("failure %d banned (threshold 3)", i)
		}
	}
	// a success in between forgives the (source, account) failures
	g.Success(&c, src, "t", "1001")
	for i := 1; i <= 2; i++ {
		if d := g.Failure(&c, Attempt{Src: src, Trunk: "t", Account: "1001"}); d.Ban {
			t.Fatalf("failure %d after a success banned", i)
		}
	}
	d := g.Failure(&c, Attempt{Src: src, Trunk: "t", Account: "1001"})
	if !d.Ban || d.Reason != ReasonBruteForce || !bans.Blocked(src) {
		t.Fatalf("3rd failure: %+v, banned %v", d, bans.Blocked(src))
	}
	// the window: failures spread wider than it never add up
	other := netip.MustParseAddr("203.0.113.6")
	for range 10 {
		clk.t = clk.t.Add(c.Window + time.Second)
		if d := g.Failure(&c, Attempt{Src: other, Trunk: "t", Account: "1001"}); d.Ban {
			t.Fatalf("failures a window apart banned: %+v", d)
		}
	}
}

func TestEnumerationAndSpraying(t *testing.T) {
	c := Defaults
	c.Unknown, c.Source, c.SourceAccount = 4, 6, 100
	g, bans, _ := newGuard(1024)
	enum := netip.MustParseAddr("198.51.100.1")
	var d Decision
	for i := range 4 {
		d = g.Failure(&c, Attempt{Src: enum, Trunk: "t", Account: fmt.Sprintf("u%d", i), Unknown: true})
	}
	if !d.Ban || d.Reason != ReasonEnumeration || !bans.Blocked(enum) {
		t.Fatalf("4 unknown usernames: %+v", d)
	}
	spray := netip.MustParseAddr("198.51.100.2")
	for i := range 6 {
		d = g.Failure(&c, Attempt{Src: spray, Trunk: "t", Account: fmt.Sprintf("%d", 1000+i)})
		if d.Ban != (i == 5) {
			t.Fatalf("spraying failure %d: %+v", i+1, d)
		}
	}
	if d.Reason != ReasonSpraying {
		t.Fatalf("spraying: %+v", d)
	}
	// unknown names count towards the per-account state of nobody
	if len(g.accounts) != 6 {
		t.Fatalf("%d account states, want 6 (the sprayed known accounts only)", len(g.accounts))
	}
}

func TestDistributedLockout(t *testing.T) {
	c := Defaults
	c.Account, c.SourceAccount, c.Source = 5, 100, 100
	for _, mode := range []string{ModeRestrict, ModeLock} {
		c.Mode = mode
		g, bans, clk := newGuard(1024)
		home := netip.MustParseAddr("192.0.2.50")
		g.Success(&c, home, "t", "1001")
		var d Decision
		for i := range 5 {
			d = g.Failure(&c, Attempt{Src: netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), Trunk: "t", Account: "1001"})
		}
		if !d.Locked || !g.Locked("t", "1001") || d.Ban || len(bans.List(false)) != 0 {
			t.Fatalf("%s: 5 failures from 5 sources: %+v", mode, d)
		}
		if !g.Refused(&c, netip.MustParseAddr("10.9.9.9"), "t", "1001") {
			t.Fatalf("%s: a new source may use a locked account", mode)
		}
		if got := g.Refused(&c, home, "t", "1001"); got != (mode == ModeLock) {
			t.Fatalf("%s: known source refused=%v", mode, got)
		}
		if g.Refused(&c, netip.MustParseAddr("10.9.9.9"), "t", "1002") {
			t.Fatalf("%s: another account is locked too", mode)
		}
		clk.t = clk.t.Add(c.Lockout + time.Second)
		if g.Refused(&c, netip.MustParseAddr("10.9.9.9"), "t", "1001") {
			t.Fatalf("%s: the lockout did not end", mode)
		}
	}
}

// TestIPv6SlashSixtyFour: a guesser that takes a new address of its /64 for
// every attempt meets the /64's counters and gets the /64 banned; a single
// address that crosses a threshold is banned alone; IPv4 neighbours and
// other /64s never add up.
func TestIPv6SlashSixtyFour(t *testing.T) {
	c := Defaults
	c.SourceAccount, c.Unknown, c.Source, c.Account = 3, 4, 6, 0
	// addr numbers the attempts in the address ("%x"), or not (no verb: one address).
	addr := func(s string, i int) netip.Addr {
		if !strings.Contains(s, "%") {
			return netip.MustParseAddr(s)
		}
		return netip.MustParseAddr(fmt.Sprintf(s, i))
	}
	tests := []struct {
		name    string
		src     string // with %x (%d): the attempt number
		unknown bool
		account func(i int) string
		n       int // the attempt that bans
		reason  string
		banned  string
	}{
		{"one account, rotating addresses", "2001:db8:1:2::%x", false, func(int) string { return "1001" }, 3, ReasonBruteForce, "2001:db8:1:2::/64"},
		{"unknown names, rotating addresses", "2001:db8:1:3:%x::1", true, func(i int) string { return fmt.Sprint("u", i) }, 4, ReasonEnumeration, "2001:db8:1:3::/64"},
		{"spraying, rotating addresses", "2001:db8:1:4::%x:1", false, func(i int) string { return fmt.Sprint(1000 + i) }, 6, ReasonSpraying, "2001:db8:1:4::/64"},
		{"one address", "2001:db8:1:5::7", false, func(int) string { return "1001" }, 3, ReasonBruteForce, "2001:db8:1:5::7/128"},
		{"IPv4 neighbours", "192.0.2.%d", false, func(int) string { return "1001" }, 0, "", ""},
		{"other /64s", "2001:db8:2:%x::1", false, func(int) string { return "1001" }, 0, "", ""},
	}
	for _, tc := range tests {
		g, bans, _ := newGuard(1024)
		for i := 1; i <= 8; i++ {
			src := addr(tc.src, i)
			d := g.Failure(&c, Attempt{Src: src, Trunk: "t", Account: tc.account(i), Unknown: tc.unknown})
			if d.Ban != (i == tc.n) {
				t.Fatalf("%s: attempt %d: %+v", tc.name, i, d)
			}
			if !d.Ban {
				continue
			}
			if d.Reason != tc.reason || d.Banned.String() != tc.banned {
				t.Fatalf("%s: ban %+v, want %s of %s", tc.name, d, tc.reason, tc.banned)
			}
			if b, ok := bans.Lookup(src); !ok || b.Reason != tc.reason {
				t.Fatalf("%s: the source is not banned: %+v", tc.name, b)
			}
			break
		}
		if tc.n == 0 && len(bans.List(false)) != 0 {
			t.Fatalf("%s: bans %v", tc.name, bans.List(false))
		}
	}
	// A success forgets the /64's failures of the account as well as the
	// address's: a user's typos before it never add up to a ban of its site.
	g, bans, _ := newGuard(1024)
	home := netip.MustParseAddr("2001:db8:9::1")
	for range 2 {
		g.Failure(&c, Attempt{Src: home, Trunk: "t", Account: "1001"})
	}
	g.Success(&c, home, "t", "1001")
	if d := g.Failure(&c, Attempt{Src: netip.MustParseAddr("2001:db8:9::2"), Trunk: "t", Account: "1001"}); d.Ban || len(bans.List(false)) != 0 {
		t.Fatalf("failures forgiven by a success banned the /64: %+v", d)
	}
}

// TestBoundedMemory: a million spoofed sources do not grow the tables.
func TestBoundedMemory(t *testing.T) {
	c := Defaults
	g := New(4096, nil, nil)
	for i := range 1_000_000 {
		g.Failure(&c, Attempt{Src: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), Trunk: "t", Account: "x", Unknown: true})
	}
	if g.Size() != 4096 || len(g.accounts) != 0 {
		t.Fatalf("size %d, %d account states", g.Size(), len(g.accounts))
	}
}

func BenchmarkFailure(b *testing.B) {
	c := Defaults
	c.SourceAccount, c.Source, c.Unknown = 0, 0, 0
	g := New(65536, nil, nil)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		g.Failure(&c, Attempt{Src: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), Trunk: "t", Account: "1001"})
	}
}

// BenchmarkFailureIPv6 counts the address and its /64.
func BenchmarkFailureIPv6(b *testing.B) {
	c := Defaults
	c.SourceAccount, c.Source, c.Unknown = 0, 0, 0
	g := New(65536, nil, nil)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		g.Failure(&c, Attempt{Src: netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 7: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)}), Trunk: "t", Account: "1001"})
	}
}

// Wrong digests from a configured peer's address (anyone can spoof them
// over UDP) never ban it: every rule reports PeerSpared instead, nothing is
// banned or counted as a ban, and a stranger is still banned.
func TestPeerIsNeverBanned(t *testing.T) {
	peer, peer6 := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8:1::10")
	for _, tc := range []struct {
		name   string
		a      Attempt
		reason string
	}{
		{"bruteforce", Attempt{Src: peer, Trunk: "t", Account: "1001"}, ReasonBruteForce},
		{"enumeration", Attempt{Src: peer, Trunk: "t", Unknown: true}, ReasonEnumeration},
		// nor is the /64 of a peer's IPv6 address banned on its evidence
		{"bruteforce-ipv6", Attempt{Src: peer6, Trunk: "t", Account: "1001"}, ReasonBruteForce},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Defaults
			g, bans, _ := newGuard(1024)
			bans.SetPeerCheck(func(a netip.Addr) bool { return a == peer || a == peer6 })
			var last Decision
			for range 30 {
				last = g.Failure(&c, tc.a)
				if last.Ban {
					t.Fatalf("decision %+v: a peer banned", last)
				}
			}
			if !last.PeerSpared || last.Reason != tc.reason {
				t.Errorf("last decision %+v, want PeerSpared with reason %s", last, tc.reason)
			}
			if bans.Blocked(tc.a.Src) || len(bans.List(false)) != 0 {
				t.Errorf("bans %v", bans.List(false))
			}
			stranger := tc.a
			stranger.Src = netip.MustParseAddr("203.0.113.9")
			for range 30 {
				if d := g.Failure(&c, stranger); d.Ban {
					return
				}
			}
			t.Error("a stranger is no longer banned")
		})
	}
}
