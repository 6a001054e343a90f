package banlist_test

import (
	"database/sql"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/banlist"
	"github.com/sipwarden/sipwarden/internal/banlist/sqlite"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestBlockedPrefixesAndExpiry(t *testing.T) {
	c := &clock{time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}
	l := banlist.New(nil, banlist.Options{Now: c.now})
	mustAdd := func(p string, d time.Duration) banlist.Ban {
		b, err := l.Add(netip.MustParsePrefix(p), "test", "unit", d)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	mustAdd("192.0.2.0/24", time.Minute)
	mustAdd("2001:db8:1::/64", time.Hour)
	mustAdd("198.51.100.7/32", -1) // permanent
	for addr, want := range map[string]bool{
		"192.0.2.1": true, "192.0.2.255": true, "192.0.3.1": false,
		"2001:db8:1::9": true, "2001:db8:1:0:ffff::1": true, "2001:db8:2::1": false,
		"198.51.100.7": true, "198.51.100.8": false, "::ffff:192.0.2.9": true,
	} {
		if got := l.Blocked(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Blocked(%s) = %v, want %v", addr, got, want)
		}
	}
	c.t = c.t.Add(61 * time.Second) // the /24 expires at its boundary
	if l.Blocked(netip.MustParseAddr("192.0.2.1")) {
		t.Error("ban still in force after its expiry")
	}
	if !l.Blocked(netip.MustParseAddr("2001:db8:1::9")) || !l.Blocked(netip.MustParseAddr("198.51.100.7")) {
		t.Error("other bans lifted")
	}
	if n := l.Sweep(); n != 1 || l.Len() != 2 {
		t.Errorf("sweep removed %d, %d left", n, l.Len())
	}
	if !l.Remove(netip.MustParsePrefix("198.51.100.7/32")) || l.Blocked(netip.MustParseAddr("198.51.100.7")) {
		t.Error("remove")
	}
}

// TestEscalation: each repeat offense multiplies the duration by 4, up to 7 days;
// an offense is forgotten 7 days after its ban ended.
func TestEscalation(t *testing.T) {
	c := &clock{time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}
	l := banlist.New(nil, banlist.Options{Now: c.now, Base: time.Hour})
	p := netip.MustParsePrefix("203.0.113.5/32")
	want := []time.Duration{time.Hour, 4 * time.Hour, 16 * time.Hour, 64 * time.Hour, 7 * 24 * time.Hour, 7 * 24 * time.Hour}
	for i, d := range want {
		b, _ := l.Add(p, "flood", "unit", 0)
		if got := b.Expires.Sub(c.t); got != d || b.Offense != i+1 {
			t.Fatalf("offense %d: %v (offense %d), want %v", i+1, got, b.Offense, d)
		}
		c.t = b.Expires.Add(time.Minute) // serve the ban
	}
	c.t = c.t.Add(8 * 24 * time.Hour)
	l.Sweep()
	if b, _ := l.Add(p, "flood", "unit", 0); b.Offense != 1 || b.Expires.Sub(c.t) != time.Hour {
		t.Fatalf("after a quiet week: offense %d, %v", b.Offense, b.Expires.Sub(c.t))
	}
}

func TestFeedsNeverBlockPeers(t *testing.T) {
	l := banlist.New(nil, banlist.Options{})
	l.SetPeerCheck(func(a netip.Addr) bool { return a == netip.MustParseAddr("192.0.2.10") })
	l.AddFeed("apiban", []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")})
	if !l.Blocked(netip.MustParseAddr("192.0.2.11")) || l.Blocked(netip.MustParseAddr("192.0.2.10")) {
		t.Fatal("a feed must block strangers and never a configured peer")
	}
	l.AddFeed("apiban", nil) // the refreshed feed no longer lists it
	if l.Blocked(netip.MustParseAddr("192.0.2.11")) {
		t.Fatal("feed refresh did not replace the old entries")
	}
}

func TestBlockedNoAlloc(t *testing.T) {
	l := banlist.New(nil, banlist.Options{})
	for i := range 1000 {
		_, _ = l.Add(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24), "t", "t", time.Hour)
	}
	a := netip.MustParseAddr("203.0.113.9")
	if n := testing.AllocsPerRun(1000, func() { l.Blocked(a) }); n != 0 {
		t.Fatalf("%v allocations per lookup", n)
	}
}

// TestPersistence: bans survive a restart, and a ban written by another
// process (the CLI) is picked up by Sync.
func TestPersistence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bans.db")
	st, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{time.Now()}
	l := banlist.New(st, banlist.Options{Now: c.now})
	_, _ = l.Add(netip.MustParsePrefix("192.0.2.0/24"), "scanner", "scanner", time.Hour)
	c.t = c.t.Add(2 * time.Hour)
	_, _ = l.Add(netip.MustParsePrefix("192.0.2.0/24"), "scanner", "scanner", time.Hour) // second offense: 4h
	st.Close()

	st2, _ := sqlite.Open(path)
	defer st2.Close()
	l2 := banlist.New(st2, banlist.Options{Now: c.now})
	if err := l2.Load(); err != nil {
		t.Fatal(err)
	}
	b, ok := l2.Lookup(netip.MustParseAddr("192.0.2.77"))
	if !ok || b.Offense != 2 || b.Reason != "scanner" || b.Expires.Sub(b.Created) < 4*time.Hour-time.Second {
		t.Fatalf("after restart: %+v %v", b, ok)
	}
	// another process bans an address
	other, _ := sqlite.Open(path)
	l3 := banlist.New(other, banlist.Options{Now: c.now})
	_ = l3.Load()
	_, _ = l3.Add(netip.MustParsePrefix("198.51.100.1/32"), "operator", "operator", -1)
	other.Close()
	if changed, err := l2.Sync(); err != nil || !changed {
		t.Fatalf("Sync: %v %v", changed, err)
	}
	if !l2.Blocked(netip.MustParseAddr("198.51.100.1")) {
		t.Fatal("ban from another process not picked up")
	}
}

func BenchmarkBlocked(b *testing.B) {
	l := banlist.New(nil, banlist.Options{})
	for i := range 10000 {
		_, _ = l.Add(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1}), 32), "t", "t", time.Hour)
	}
	banned, clean := netip.MustParseAddr("10.0.5.1"), netip.MustParseAddr("203.0.113.9")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i&1 == 0 {
			l.Blocked(banned)
		} else {
			l.Blocked(clean)
		}
		i++
	}
}

func TestAddWhileBannedDoesNotEscalate(t *testing.T) {
	l := banlist.New(nil, banlist.Options{Base: time.Hour})
	p := netip.MustParsePrefix("203.0.113.5/32")
	first, _ := l.Add(p, "flood", "unit", 0)
	again, _ := l.Add(p, "flood", "unit", 0)
	if again.Offense != 1 || !again.Expires.Equal(first.Expires) {
		t.Fatalf("re-adding an active ban changed it: %+v -> %+v", first, again)
	}
}

// A stranger's prefix ban spares the peers inside it, also after a restart;
// an ordinary ban does not.
func TestSparingPeers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bans.db")
	st, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	peer := netip.MustParseAddr("192.0.2.10")
	isPeer := func(a netip.Addr) bool { return a == peer }
	l := banlist.New(st, banlist.Options{})
	l.SetPeerCheck(isPeer)
	if _, err := l.AddSparingPeers(netip.MustParsePrefix("192.0.2.0/24"), "unknown_prefix_probe", "acl", time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Add(netip.MustParsePrefix("198.51.100.0/24"), "flood_prefix_invite", "flood", time.Hour); err != nil {
		t.Fatal(err)
	}
	check := func(l *banlist.List, when string) {
		t.Helper()
		if !l.Blocked(netip.MustParseAddr("192.0.2.11")) || l.Blocked(peer) {
			t.Errorf("%s: the stranger prefix ban must block strangers and spare the peer", when)
		}
		if !l.Blocked(netip.MustParseAddr("198.51.100.7")) {
			t.Errorf("%s: an ordinary prefix ban stopped blocking", when)
		}
	}
	check(l, "before restart")
	st.Close()
	st2, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	l2 := banlist.New(st2, banlist.Options{})
	l2.SetPeerCheck(isPeer)
	if err := l2.Load(); err != nil {
		t.Fatal(err)
	}
	check(l2, "after restart")
}

// A ban file written before spares_peers existed is upgraded in place.
func TestStoreUpgradesOldSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bans.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE bans (prefix TEXT PRIMARY KEY, reason TEXT NOT NULL, source TEXT NOT NULL,
		created_ns INTEGER NOT NULL, expires_ns INTEGER NOT NULL, offense INTEGER NOT NULL);
		INSERT INTO bans VALUES ('203.0.113.0/24', 'scanner', 'scanner', 1, 0, 1)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	st, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	bans, err := st.LoadBans()
	if err != nil || len(bans) != 1 || bans[0].Reason != "scanner" || bans[0].SparesPeers {
		t.Fatalf("old row after the upgrade: %+v, %v", bans, err)
	}
}

// Rules never ban a configured peer: AddSparingPeers refuses a peer's
// address (ErrPeer, nothing stored, no event), and its bans of strangers
// let in an address that a later reload makes a peer. Only an operator's
// Add cuts off a peer.
func TestAutomaticBansNeverCoverPeers(t *testing.T) {
	peer, stranger := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.20")
	peers := map[netip.Addr]bool{peer: true}
	l := banlist.New(nil, banlist.Options{})
	var events []string
	l.OnChange(func(ev string, b banlist.Ban) { events = append(events, ev+" "+b.Prefix.String()) })
	l.SetPeerCheck(func(a netip.Addr) bool { return peers[a] })
	for _, tc := range []struct {
		prefix string
		err    error
	}{
		{"192.0.2.10/32", banlist.ErrPeer},
		{"::ffff:192.0.2.10/128", banlist.ErrPeer},
		{"192.0.2.20/32", nil},
		{"192.0.2.0/24", nil},
	} {
		if _, err := l.AddSparingPeers(netip.MustParsePrefix(tc.prefix), "flood_invite", "flood", 0); err != tc.err {
			t.Errorf("AddSparingPeers(%s) = %v, want %v", tc.prefix, err, tc.err)
		}
	}
	if l.Blocked(peer) || !l.Blocked(stranger) || !l.Blocked(netip.MustParseAddr("192.0.2.30")) {
		t.Errorf("blocked: peer %v stranger %v", l.Blocked(peer), l.Blocked(stranger))
	}
	if len(events) != 2 {
		t.Errorf("events %q, want the two bans of strangers only", events)
	}
	if !l.IsPeer(peer) || l.IsPeer(stranger) {
		t.Error("IsPeer does not follow the peer check")
	}
	// A reload makes the stranger a trunk: the rule's ban no longer applies.
	peers[stranger] = true
	l.SetPeerCheck(func(a netip.Addr) bool { return peers[a] })
	if l.Blocked(stranger) {
		t.Error("a rule's ban still blocks an address that became a peer")
	}
	// The operator's ban applies to a peer.
	if _, err := l.Add(netip.PrefixFrom(peer, 32), "operator", "operator", 0); err != nil || !l.Blocked(peer) {
		t.Errorf("operator ban of a peer: err %v, blocked %v", err, l.Blocked(peer))
	}
}

// BenchmarkBlockedRuleBans is BenchmarkBlocked with the bans a rule makes
// (they spare configured peers, so a hit asks the peer check).
func BenchmarkBlockedRuleBans(b *testing.B) {
	l := banlist.New(nil, banlist.Options{})
	peers := map[netip.Addr]bool{netip.MustParseAddr("192.0.2.1"): true}
	l.SetPeerCheck(func(a netip.Addr) bool { return peers[a] })
	for i := range 10000 {
		_, _ = l.AddSparingPeers(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1}), 32), "t", "t", time.Hour)
	}
	banned, clean := netip.MustParseAddr("10.0.5.1"), netip.MustParseAddr("203.0.113.9")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i&1 == 0 {
			l.Blocked(banned)
		} else {
			l.Blocked(clean)
		}
		i++
	}
}

// Bans a rule stored before rule bans spared peers (SparesPeers false, a
// rule's Source) spare them once loaded; an operator's ban does not.
func TestLoadUpgradesOldRuleBans(t *testing.T) {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "bans.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	for _, b := range []banlist.Ban{
		{Prefix: netip.MustParsePrefix("192.0.2.10/32"), Reason: "scanner", Source: "scanner", Created: now, Expires: now.Add(time.Hour), Offense: 1},
		{Prefix: netip.MustParsePrefix("192.0.2.11/32"), Reason: "flood_invite", Source: "flood", Created: now, Expires: now.Add(time.Hour), Offense: 1},
		{Prefix: netip.MustParsePrefix("192.0.2.12/32"), Reason: "operator", Source: "operator", Created: now, Offense: 1},
		{Prefix: netip.MustParsePrefix("192.0.2.13/32"), Reason: "abuse", Source: "operator:noc", Created: now, Offense: 1},
	} {
		if err := st.SaveBan(b); err != nil {
			t.Fatal(err)
		}
	}
	l := banlist.New(st, banlist.Options{})
	l.SetPeerCheck(func(netip.Addr) bool { return true }) // all four are peers now
	if err := l.Load(); err != nil {
		t.Fatal(err)
	}
	for a, want := range map[string]bool{"192.0.2.10": false, "192.0.2.11": false, "192.0.2.12": true, "192.0.2.13": true} {
		if got := l.Blocked(netip.MustParseAddr(a)); got != want {
			t.Errorf("%s blocked %v, want %v", a, got, want)
		}
	}
}
