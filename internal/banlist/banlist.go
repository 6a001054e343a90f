// Package banlist keeps the addresses and prefixes sipwarden refuses to hear
// from: each ban has a reason, a source (the rule, an operator, a feed), a
// creation time and an expiry, and repeat offenders get longer bans (the
// duration is multiplied by Factor for each earlier ban still remembered,
// up to Max).
//
// Blocked is the pre-parse gate of the transport: it runs for every datagram
// and every new connection, allocates nothing, and takes only a read lock.
// Bans are persisted (Store) so they survive a restart; Sync picks up bans
// that another process (the `sipwarden ban` command) wrote to the store.
//
// A configured trunk or upstream is never banned automatically (see
// SetPeerCheck): every ban that a rule decides (flood, scanner, brute force,
// probes) goes through AddSparingPeers, which refuses a ban of a peer's
// address (ErrPeer: the caller sheds the peer's excess instead) and marks a
// prefix ban so that it never applies to the peers inside it. Entries of a
// reputation feed (Ban.Feed) spare peers in the same way. Only an operator's
// ban (Add: the CLI, the admin API; see IsOperator) can cut off a configured
// peer; a rule's ban stored by an older version spares peers once loaded.
package banlist

import (
	"errors"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sipwarden/sipwarden/internal/cidr"
)

// Ban is one banned address or prefix.
type Ban struct {
	Prefix  netip.Prefix
	Reason  string // stable token: "scanner", "unknown_source_probe", "operator", ...
	Source  string // who decided: a rule name, "operator", "feed:<name>"
	Created time.Time
	Expires time.Time // zero: never
	// Offense counts the bans of this prefix remembered so far (1 for the first).
	Offense int
	// Feed marks an entry of a reputation feed.
	Feed bool
	// SparesPeers marks a ban that does not apply to configured trunks and
	// upstreams: feed entries, and the prefix of strangers that probed
	// together (a peer may share their /24).
	SparesPeers bool
}

// Active reports whether the ban is in force at now.
func (b *Ban) Active(now time.Time) bool { return b.Expires.IsZero() || now.Before(b.Expires) }

// Store persists bans.
type Store interface {
	// LoadBans returns every stored ban (expired ones included; the list drops them).
	LoadBans() ([]Ban, error)
	// SaveBan inserts or replaces the ban of b.Prefix.
	SaveBan(b Ban) error
	// DeleteBan removes the ban of p.
	DeleteBan(p netip.Prefix) error
	// Version changes whenever another writer changed the stored bans.
	Version() (int64, error)
}

// Options configure a List. Zero values take the defaults.
type Options struct {
	// Base is the first ban's duration when the caller gives none (default 1h).
	Base time.Duration
	// Factor multiplies the duration for each earlier offense (default 4).
	Factor int
	// Max caps an escalated duration (default 7 days).
	Max time.Duration
	// Memory is how long an offense counts for escalation after its ban ended (default 7 days).
	Memory time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// List is the set of bans.
type List struct {
	opt   Options
	store Store

	mu       sync.RWMutex
	bans     *cidr.Table[*Ban]
	history  map[netip.Prefix]offense // past offenses, for escalation
	isPeer   func(netip.Addr) bool
	version  int64
	onChange func(event string, b Ban)
	// gen counts the changes to the bans (Generation).
	gen atomic.Uint64
}

type offense struct {
	count int
	until time.Time
}

// New returns an empty list persisted in store (nil: in memory only).
func New(store Store, opt Options) *List {
	if opt.Base <= 0 {
		opt.Base = time.Hour
	}
	if opt.Factor <= 1 {
		opt.Factor = 4
	}
	if opt.Max <= 0 {
		opt.Max = 7 * 24 * time.Hour
	}
	if opt.Memory <= 0 {
		opt.Memory = 7 * 24 * time.Hour
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	return &List{opt: opt, store: store, bans: cidr.New[*Ban](), history: map[netip.Prefix]offense{}}
}

// SetPeerCheck tells the list which addresses belong to configured peers:
// automatic bans and feed entries never block them. A reload that changes
// the peers calls it again (the generation changes, so that the kernel
// mirror looks again at which bans it may hold).
func (l *List) SetPeerCheck(isPeer func(netip.Addr) bool) {
	l.mu.Lock()
	l.isPeer = isPeer
	l.gen.Add(1)
	l.mu.Unlock()
}

// IsPeer reports whether a belongs to a configured trunk or upstream (false
// before SetPeerCheck).
func (l *List) IsPeer(a netip.Addr) bool {
	a = a.Unmap()
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.isPeer != nil && l.isPeer(a)
}

// OnChange registers a function called (outside the lock) for every ban
// added ("ban") or removed ("unban"): the events and metrics hook.
func (l *List) OnChange(f func(event string, b Ban)) { l.onChange = f }

// normalize turns an address or prefix into its canonical prefix.
func normalize(p netip.Prefix) netip.Prefix { return cidr.Canonical(p) }

// Blocked reports whether traffic from a is banned now. It allocates nothing.
func (l *List) Blocked(a netip.Addr) bool {
	_, ok := l.lookup(a, l.opt.Now())
	return ok
}

// Lookup returns the ban in force for a, if any.
func (l *List) Lookup(a netip.Addr) (Ban, bool) {
	b, ok := l.lookup(a, l.opt.Now())
	if !ok {
		return Ban{}, false
	}
	return *b, true
}

func (l *List) lookup(a netip.Addr, now time.Time) (*Ban, bool) {
	a = a.Unmap()
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.bans.Lookup(a, func(b *Ban) bool {
		return b.Active(now) && !((b.Feed || b.SparesPeers) && l.isPeer != nil && l.isPeer(a))
	})
}

// ErrInvalidPrefix is returned for a prefix that is not valid.
var ErrInvalidPrefix = errors.New("banlist: invalid prefix")

// IsOperator reports whether a ban's Source is an operator ("operator", or
// "operator:<name>" through the admin API): the only bans that may cut off
// a configured peer.
func IsOperator(source string) bool {
	return source == "operator" || strings.HasPrefix(source, "operator:")
}

// ErrPeer is returned by AddSparingPeers for the address of a configured
// peer: a rule never bans a trunk or an upstream (its traffic can be forged
// by anyone who spoofs UDP, or triggered by a customer by accident); the
// caller sheds the excess instead.
var ErrPeer = errors.New("banlist: a configured peer is never banned automatically")

// Add bans p for reason: an operator's decision (the CLI, the admin API),
// which applies to configured peers too. d is the base duration (0:
// Options.Base; negative: permanent); it is escalated for repeat offenders.
// A prefix that is already banned keeps its ban (no escalation: it has not
// been let back in yet). It returns the ban in force. Rules use
// AddSparingPeers.
func (l *List) Add(p netip.Prefix, reason, source string, d time.Duration) (Ban, error) {
	return l.add(p, reason, source, d, false)
}

// AddSparingPeers is the path of every automatic ban (a rule's decision:
// flood, scanner, brute force, probes). It refuses to ban the address of a
// configured peer (ErrPeer), and the ban it installs never applies to
// configured peers (Ban.SparesPeers): a prefix ban leaves the trunks and
// upstreams inside the prefix alone, and an address that becomes a peer by
// a later reload is let in.
func (l *List) AddSparingPeers(p netip.Prefix, reason, source string, d time.Duration) (Ban, error) {
	return l.add(p, reason, source, d, true)
}

func (l *List) add(p netip.Prefix, reason, source string, d time.Duration, sparesPeers bool) (Ban, error) {
	if !p.IsValid() {
		return Ban{}, ErrInvalidPrefix
	}
	p = normalize(p)
	now := l.opt.Now()
	l.mu.Lock()
	if sparesPeers && p.IsSingleIP() && l.isPeer != nil && l.isPeer(p.Addr()) {
		l.mu.Unlock()
		return Ban{}, ErrPeer
	}
	if old, ok := l.bans.Get(p); ok && old.Active(now) && !old.Feed {
		// Already banned: packets that passed the gate before the ban (a
		// batch read at once) must not escalate it again.
		b := *old
		l.mu.Unlock()
		return b, nil
	}
	off := l.history[p]
	if off.until.Before(now) && !off.until.IsZero() {
		off = offense{}
	}
	off.count++
	b := &Ban{Prefix: p, Reason: reason, Source: source, Created: now, Offense: off.count, SparesPeers: sparesPeers}
	if d >= 0 {
		if d == 0 {
			d = l.opt.Base
		}
		for i := 1; i < off.count && d < l.opt.Max; i++ {
			d *= time.Duration(l.opt.Factor)
		}
		d = min(d, l.opt.Max)
		b.Expires = now.Add(d)
		off.until = b.Expires.Add(l.opt.Memory)
	} else {
		off.until = now.Add(100 * 365 * 24 * time.Hour)
	}
	l.history[p] = off
	l.bans.Set(p, b, true)
	l.gen.Add(1)
	l.mu.Unlock()
	l.persist(*b, false)
	if l.onChange != nil {
		l.onChange("ban", *b)
	}
	return *b, nil
}

// AddFeed installs the entries of feed name (replacing its previous entries).
// Feed entries never expire on their own; the next refresh replaces them.
func (l *List) AddFeed(name string, prefixes []netip.Prefix) {
	now := l.opt.Now()
	source := "feed:" + name
	l.mu.Lock()
	l.bans.DeleteFunc(func(_ netip.Prefix, b *Ban) bool { return b.Feed && b.Source == source })
	for _, p := range prefixes {
		if old, ok := l.bans.Get(p); ok && !old.Feed {
			continue // an operator or rule ban wins
		}
		l.bans.Set(p, &Ban{Prefix: normalize(p), Reason: "reputation_feed", Source: source, Created: now, Feed: true, SparesPeers: true}, true)
	}
	l.gen.Add(1)
	l.mu.Unlock()
}

// Remove lifts the ban of p (exactly that prefix). It reports whether there was one.
func (l *List) Remove(p netip.Prefix) bool {
	p = normalize(p)
	l.mu.Lock()
	b, ok := l.bans.Get(p)
	if ok {
		l.bans.Delete(p)
		delete(l.history, p) // an operator's unban forgives
		l.gen.Add(1)
	}
	l.mu.Unlock()
	if ok {
		l.persist(*b, true)
		if l.onChange != nil {
			l.onChange("unban", *b)
		}
	}
	return ok
}

// List returns the bans in force, most recent first (feed entries excluded unless withFeeds).
func (l *List) List(withFeeds bool) []Ban {
	now := l.opt.Now()
	l.mu.RLock()
	var out []Ban
	l.bans.Range(func(_ netip.Prefix, b *Ban) bool {
		if b.Active(now) && (withFeeds || !b.Feed) {
			out = append(out, *b)
		}
		return true
	})
	l.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out
}

// Generation is a number that changes whenever bans are added, removed,
// swept or reloaded: a cheap way for a mirror (the kernel firewall) to know
// that it must look again. Bans that merely expire do not change it until
// Sweep removes them; see NextExpiry.
func (l *List) Generation() uint64 { return l.gen.Load() }

// NextExpiry returns the earliest expiry after now among the bans in force
// that are not feed entries (zero when none expires).
func (l *List) NextExpiry() time.Time {
	now := l.opt.Now()
	var next time.Time
	l.mu.RLock()
	l.bans.Range(func(_ netip.Prefix, b *Ban) bool {
		if !b.Feed && !b.Expires.IsZero() && b.Expires.After(now) && (next.IsZero() || b.Expires.Before(next)) {
			next = b.Expires
		}
		return true
	})
	l.mu.RUnlock()
	return next
}

// Len returns the number of entries held (expired ones not yet swept included).
func (l *List) Len() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.bans.Len()
}

// Sweep forgets expired bans and old offenses. It returns how many bans expired.
func (l *List) Sweep() int {
	now := l.opt.Now()
	var expired []Ban
	l.mu.Lock()
	l.bans.DeleteFunc(func(_ netip.Prefix, b *Ban) bool {
		if b.Active(now) {
			return false
		}
		expired = append(expired, *b)
		return true
	})
	for p, o := range l.history {
		if o.until.Before(now) {
			delete(l.history, p)
		}
	}
	if len(expired) > 0 {
		l.gen.Add(1)
	}
	l.mu.Unlock()
	for _, b := range expired {
		l.persist(b, true)
		if l.onChange != nil {
			l.onChange("expire", b)
		}
	}
	return len(expired)
}

func (l *List) persist(b Ban, remove bool) {
	if l.store == nil || b.Feed {
		return
	}
	if remove {
		_ = l.store.DeleteBan(b.Prefix)
	} else {
		_ = l.store.SaveBan(b)
	}
	if v, err := l.store.Version(); err == nil {
		l.mu.Lock()
		l.version = v
		l.mu.Unlock()
	}
}

// Load replaces the list's persisted bans with the store's (at start, and by
// Sync when another process changed them). Feed entries stay.
func (l *List) Load() error {
	if l.store == nil {
		return nil
	}
	bans, err := l.store.LoadBans()
	if err != nil {
		return err
	}
	v, _ := l.store.Version()
	now := l.opt.Now()
	l.mu.Lock()
	l.bans.DeleteFunc(func(_ netip.Prefix, b *Ban) bool { return !b.Feed })
	for i := range bans {
		b := bans[i]
		if !b.Active(now) {
			continue
		}
		b.Prefix = normalize(b.Prefix)
		if !IsOperator(b.Source) {
			// a rule's ban stored before rule bans spared peers
			b.SparesPeers = true
		}
		l.bans.Set(b.Prefix, &b, true)
		if o := l.history[b.Prefix]; o.count < b.Offense {
			until := b.Expires.Add(l.opt.Memory)
			if b.Expires.IsZero() {
				until = now.Add(100 * 365 * 24 * time.Hour)
			}
			l.history[b.Prefix] = offense{count: b.Offense, until: until}
		}
	}
	l.version = v
	l.gen.Add(1)
	l.mu.Unlock()
	return nil
}

// Sync reloads the bans when the store's version changed (another process
// added or removed one). It reports whether it reloaded.
func (l *List) Sync() (bool, error) {
	if l.store == nil {
		return false, nil
	}
	v, err := l.store.Version()
	if err != nil {
		return false, err
	}
	l.mu.RLock()
	same := v == l.version
	l.mu.RUnlock()
	if same {
		return false, nil
	}
	return true, l.Load()
}
