// Package bruteforce detects password guessing and account enumeration
// against digest authentication, and acts on it.
//
// The auth stage reports every real failure (a wrong response, an unknown
// username, a REGISTER from outside an account's allowed prefixes) and every
// success; the normal first challenge of a request without credentials is
// never reported, so a phone that registers every minute never counts.
// Three counters per source address (and per IPv6 /64) and one per account,
// each over a window that starts with the first failure:
//
//   - failures of one account from one source (password guessing): ban the source;
//   - failures from one source over all accounts (password spraying): ban the source;
//   - unknown usernames from one source (enumeration): ban the source;
//   - failures of one account from all sources (distributed guessing):
//     restrict the account for a while to the sources it authenticated from
//     before ("restrict"), or refuse it everywhere ("lock").
//
// Bans go to the shared ban list (package banlist), so the source is dropped
// before parsing from then on; the list refuses to ban a configured trunk or
// upstream (Decision.PeerSpared). Memory is bounded: the per-source counters
// live in fixed-size set-associative tables indexed by a keyed hash (an
// attacker cannot aim at a slot, and millions of spoofed sources only evict
// one another), and per-account state exists only for configured accounts.
package bruteforce

import (
	"errors"
	"hash/maphash"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipwarden/sipwarden/internal/banlist"
)

// Lock modes of an account under distributed attack.
const (
	// ModeRestrict lets the account authenticate only from its known sources.
	ModeRestrict = "restrict"
	// ModeLock refuses the account from every source.
	ModeLock = "lock"
)

// Config holds the thresholds. A zero threshold disables its rule.
type Config struct {
	// Window is the counting window of every counter (default 10m).
	Window time.Duration
	// SourceAccount failures of one account from one source ban the source (default 5).
	SourceAccount int
	// Source failures from one source over all accounts ban the source (default 20).
	Source int
	// Unknown unknown-username attempts from one source ban it (default 10).
	Unknown int
	// Account failures of one account from all sources lock it (default 50).
	Account int
	// Lockout is how long an account stays restricted or locked (default 15m).
	Lockout time.Duration
	// Mode is ModeRestrict (default) or ModeLock.
	Mode string
	// BanDuration is the base duration of the bans (0: the ban list's default).
	BanDuration time.Duration
	// KnownFor is how long a successful authentication keeps a source known
	// to its account (default 30 days).
	KnownFor time.Duration
}

// Defaults are the thresholds used when a configuration gives none.
var Defaults = Config{Window: 10 * time.Minute, SourceAccount: 5, Source: 20, Unknown: 10, Account: 50,
	Lockout: 15 * time.Minute, Mode: ModeRestrict, KnownFor: 30 * 24 * time.Hour}

// knownPerAccount is how many distinct sources an account remembers.
const knownPerAccount = 8

// Guard is the process-wide state: it lives across reloads, so counts and
// lockouts survive a configuration change. It is safe for concurrent use.
type Guard struct {
	seed  maphash.Seed
	pairs *table // (source, account)
	srcs  *table // source: failures and unknown usernames
	bans  *banlist.List

	mu       sync.Mutex
	accounts map[accountKey]*accountState
	met      *metrics
	now      func() time.Time
}

type accountKey struct{ trunk, account string }

type accountState struct {
	start       int64 // window start, ns
	fails       int
	lockedUntil int64
	known       [knownPerAccount]knownSource
}

type knownSource struct {
	addr netip.Addr
	last int64
}

type metrics struct {
	bans    *prometheus.CounterVec
	lockout prometheus.Counter
}

// New returns a guard with tables of about size slots each (default 65536)
// that bans through bans (nil: decisions are reported, nothing is banned).
func New(size int, bans *banlist.List, reg prometheus.Registerer) *Guard {
	if size <= 0 {
		size = 65536
	}
	m := &metrics{
		bans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sipwarden_bruteforce_bans_total",
			Help: "Sources banned for authentication failures, by rule (auth_bruteforce, auth_spraying, auth_enumeration).",
		}, []string{"reason"}),
		lockout: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sipwarden_bruteforce_lockouts_total",
			Help: "Accounts locked or restricted to their known sources after distributed failures.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.bans, m.lockout)
	}
	return &Guard{seed: maphash.MakeSeed(), pairs: newTable(size), srcs: newTable(size), bans: bans,
		accounts: map[accountKey]*accountState{}, met: m, now: time.Now}
}

// Attempt is one failed authentication.
type Attempt struct {
	Src netip.Addr
	// Trunk and Account name the account tried ("" Account: no username at all).
	Trunk, Account string
	// Unknown is true when no such account exists.
	Unknown bool
}

// Decision is what a failure led to.
type Decision struct {
	// Ban is set when the source was banned; Reason is the rule's token.
	Ban    bool
	Reason string
	// Locked is set when this failure locked (or restricted) the account.
	Locked bool
	// Banned is what was banned: the source address, or its IPv6 /64.
	Banned netip.Prefix
	// PeerSpared is set when a rule would have banned the source but the
	// source is a configured trunk or upstream (Reason still names the rule).
	PeerSpared bool
}

// Ban reasons.
const (
	ReasonBruteForce  = "auth_bruteforce"
	ReasonSpraying    = "auth_spraying"
	ReasonEnumeration = "auth_enumeration"
)

// Failure counts one failed authentication and applies the thresholds of c.
//
// The source counters count the address and, for IPv6, its /64 as well,
// with the same thresholds: a site gets a /64, so a guesser that rotates
// addresses inside it meets one set of counters, as a NAT address does in
// IPv4. When the address itself crosses a threshold, the address is banned;
// when only its /64 does (the failures came from several addresses), the /64.
func (g *Guard) Failure(c *Config, a Attempt) Decision {
	now := g.now().UnixNano()
	src := a.Src.Unmap()
	win := int64(c.Window)
	var d Decision
	if !a.Unknown && c.Account > 0 && g.accountFailure(c, a.Trunk, a.Account, now) {
		d.Locked = true
		g.met.lockout.Inc()
	}
	scopes, n := [2]netip.Prefix{netip.PrefixFrom(src, src.BitLen())}, 1
	if src.Is6() {
		scopes[1], _ = src.Prefix(64)
		n = 2
	}
	ban := scopes[0]
	for _, p := range scopes[:n] {
		reason := ""
		sk := g.key(p, "", "")
		if a.Unknown {
			if k := g.srcs.add(sk, 1, now, win); c.Unknown > 0 && k >= c.Unknown {
				reason = ReasonEnumeration
			}
		} else if k := g.pairs.add(g.key(p, a.Trunk, a.Account), 0, now, win); c.SourceAccount > 0 && k >= c.SourceAccount {
			reason = ReasonBruteForce
		}
		if k := g.srcs.add(sk, 0, now, win); reason == "" && c.Source > 0 && k >= c.Source {
			reason = ReasonSpraying
		}
		if reason != "" && !d.Ban {
			d.Ban, d.Reason, ban = true, reason, p
		}
	}
	if d.Ban && g.bans != nil {
		// A configured peer's address is never banned for failures anyone
		// can send from it with spoofed UDP (nor is its /64 for them): the
		// failure is answered as any other one. The list refuses a peer's
		// address itself (ErrPeer), and a /64 ban spares the peers in it.
		if g.bans.IsPeer(src) {
			d.Ban, d.PeerSpared = false, true
		} else if _, err := g.bans.AddSparingPeers(ban, d.Reason, "auth", c.BanDuration); errors.Is(err, banlist.ErrPeer) {
			d.Ban, d.PeerSpared = false, true
		}
	}
	if d.Ban {
		d.Banned = ban
		g.met.bans.WithLabelValues(d.Reason).Inc()
	}
	return d
}

// accountFailure counts a failure of a known account and reports whether it
// started a lockout.
func (g *Guard) accountFailure(c *Config, trunk, account string, now int64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.account(trunk, account)
	if now-st.start > int64(c.Window) {
		st.start, st.fails = now, 0
	}
	st.fails++
	if st.fails >= c.Account && st.lockedUntil < now {
		st.lockedUntil = now + int64(c.Lockout)
		st.fails = 0
		st.start = now
		return true
	}
	return false
}

func (g *Guard) account(trunk, account string) *accountState {
	k := accountKey{trunk, account}
	st := g.accounts[k]
	if st == nil {
		st = &accountState{}
		g.accounts[k] = st
	}
	return st
}

// Success records a successful authentication of a known account from src:
// the (source, account) failures are forgotten and src becomes a known source.
func (g *Guard) Success(c *Config, src netip.Addr, trunk, account string) {
	now := g.now().UnixNano()
	src = src.Unmap()
	g.pairs.reset(g.key(netip.PrefixFrom(src, src.BitLen()), trunk, account))
	if src.Is6() {
		// The /64's failures of this account go too, or a user's typos
		// before a success would add up to a ban of the whole site.
		p, _ := src.Prefix(64)
		g.pairs.reset(g.key(p, trunk, account))
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.account(trunk, account)
	oldest := 0
	for i := range st.known {
		k := &st.known[i]
		if k.addr == src {
			k.last = now
			return
		}
		if k.last < st.known[oldest].last {
			oldest = i
		}
	}
	st.known[oldest] = knownSource{addr: src, last: now}
}

// Refused reports whether account may not authenticate from src now: it is
// locked (ModeLock), or restricted and src is not one of its known sources.
func (g *Guard) Refused(c *Config, src netip.Addr, trunk, account string) bool {
	now := g.now().UnixNano()
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.accounts[accountKey{trunk, account}]
	if st == nil || st.lockedUntil < now {
		return false
	}
	if c.Mode == ModeLock {
		return true
	}
	src = src.Unmap()
	for _, k := range st.known {
		if k.addr == src && now-k.last <= int64(c.KnownFor) {
			return false
		}
	}
	return true
}

// Locked reports whether account is locked or restricted now.
func (g *Guard) Locked(trunk, account string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.accounts[accountKey{trunk, account}]
	return st != nil && st.lockedUntil >= g.now().UnixNano()
}

// Unlock lifts an account's lockout (an operator's decision).
func (g *Guard) Unlock(trunk, account string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if st := g.accounts[accountKey{trunk, account}]; st != nil {
		st.lockedUntil, st.fails = 0, 0
	}
}

// key hashes a source (an address or an IPv6 /64) with an account (or
// alone) with the guard's secret seed.
func (g *Guard) key(src netip.Prefix, trunk, account string) uint64 {
	var h maphash.Hash
	h.SetSeed(g.seed)
	b := src.Addr().As16()
	_, _ = h.Write(b[:])
	_ = h.WriteByte(byte(src.Bits()))
	if account != "" || trunk != "" {
		_, _ = h.WriteString(trunk)
		_ = h.WriteByte(0)
		_, _ = h.WriteString(account)
	}
	k := h.Sum64()
	if k == 0 {
		k = 1 // 0 marks a free slot
	}
	return k
}

// table is a fixed-size set-associative table of windowed counters. A key
// that is not present takes the least recently touched slot of its set.
type table struct {
	mu   sync.Mutex
	sets [][ways]counter
}

const ways = 4

type counter struct {
	key     uint64
	start   int64 // window start, ns
	touched int64
	n       [2]uint32 // two independent counts (failures, unknown usernames)
}

func newTable(size int) *table {
	n := 1
	for n*ways < size {
		n <<= 1
	}
	return &table{sets: make([][ways]counter, n)}
}

// add counts one event of kind i (0 or 1) for key and returns the count in the window.
func (t *table) add(key uint64, i int, now, window int64) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &t.sets[key&uint64(len(t.sets)-1)]
	c := &s[0]
	found := false
	for j := range s {
		if s[j].key == key {
			c, found = &s[j], true
			break
		}
		if s[j].touched < c.touched {
			c = &s[j]
		}
	}
	if !found || now-c.start > window {
		*c = counter{key: key, start: now}
	}
	c.touched = now
	c.n[i]++
	return int(c.n[i])
}

// reset forgets key's counts.
func (t *table) reset(key uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &t.sets[key&uint64(len(t.sets)-1)]
	for j := range s {
		if s[j].key == key {
			s[j] = counter{}
		}
	}
}

// Size returns the number of counter slots of each table (the memory bound).
func (g *Guard) Size() int { return len(g.pairs.sets) * ways }
