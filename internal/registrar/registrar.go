// Package registrar keeps the contact bindings of digest accounts (RFC 3261
// section 10.3): REGISTER adds, refreshes and removes bindings, with the
// expiry of each contact taken from its expires parameter, the Expires
// header or a default, bounded by Min-Expires (423 Interval Too Brief, RFC
// 3261 section 21.4.17) and a maximum; a wildcard "*" with Expires: 0 removes
// every binding; a REGISTER without Contact queries them. Each binding keeps
// where it came from (source address, transport, listener), the User-Agent
// and the +sip.instance of RFC 5626 (a new contact with the same instance
// replaces the old one).
//
// It also watches for registration hijacking: a registration from an address
// (or IPv4 /24, IPv6 /64) that the account never registered from before, and
// a binding taken over from another source address, are reported as changes
// for the stage to publish.
//
// Memory is bounded: bindings exist only for configured accounts (the auth
// stage authenticated them), at most MaxContacts each. With a Store (Load,
// Persist) the bindings are written back once a second and survive a restart.
package registrar

import (
	"errors"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sipwarden/sipwarden/internal/cidr"
	"github.com/sipwarden/sipwarden/internal/sip"
)

// Options bound the expiries and the number of contacts.
type Options struct {
	MinExpires     time.Duration // shorter non-zero expiries get 423 (default 60s)
	MaxExpires     time.Duration // longer ones are shortened to it (default 1h)
	DefaultExpires time.Duration // when neither the contact nor the request says (default 1h)
	MaxContacts    int           // bindings per account (default 5)
	// Country, when set, names the country of an address (ISO 3166-1
	// alpha-2, "" when unknown: a GeoIP database); an account registering
	// from a country it never registered from is reported (NewCountry).
	Country func(netip.Addr) string
}

func (o *Options) fill() {
	if o.MinExpires <= 0 {
		o.MinExpires = 60 * time.Second
	}
	if o.MaxExpires <= 0 {
		o.MaxExpires = time.Hour
	}
	if o.DefaultExpires <= 0 {
		o.DefaultExpires = min(time.Hour, o.MaxExpires)
	}
	if o.MaxContacts <= 0 {
		o.MaxContacts = 5
	}
}

// Binding is one registered contact.
type Binding struct {
	Contact   string // the contact URI (without angle brackets)
	Instance  string // +sip.instance, "" when absent
	Expires   time.Time
	Source    netip.AddrPort
	Transport sip.Transport
	Local     netip.AddrPort // the listener it came in on
	UserAgent string
	CallID    string
	CSeq      uint32
	Updated   time.Time
}

// Contact is one Contact entry of a REGISTER.
type Contact struct {
	URI      string
	Instance string
	// Expires is the contact's expires parameter in seconds, -1 when absent.
	Expires int64
}

// Request is a REGISTER as the registrar needs it.
type Request struct {
	Contacts []Contact
	// Wildcard is a "Contact: *".
	Wildcard bool
	// Expires is the Expires header in seconds, -1 when absent.
	Expires   int64
	CallID    string
	CSeq      uint32
	Source    netip.AddrPort
	Transport sip.Transport
	Local     netip.AddrPort
	UserAgent string
}

// Errors of Apply; Apply's Result carries the SIP code to send.
var (
	ErrTooBrief    = errors.New("registrar: interval too brief")
	ErrTooMany     = errors.New("registrar: too many contacts")
	ErrOutOfOrder  = errors.New("registrar: CSeq not higher than the binding's")
	ErrBadWildcard = errors.New("registrar: Contact * needs Expires: 0 and no other contact")
)

// ChangeKind names what a registration changed that an operator may want to know.
type ChangeKind uint8

// Kinds of changes.
const (
	// NewAddress: the account registered from an address it never used (in the same /24 or /64).
	NewAddress ChangeKind = iota + 1
	// NewPrefix: the account registered from a /24 (IPv4) or /64 (IPv6) it never used.
	NewPrefix
	// Replaced: a binding (same contact or instance) now belongs to another source address.
	Replaced
	// NewCountry: the account registered from a country it never registered from (GeoIP).
	NewCountry
)

// String names the kind (event reason).
func (k ChangeKind) String() string {
	switch k {
	case NewAddress:
		return "new_address"
	case NewPrefix:
		return "new_prefix"
	case Replaced:
		return "binding_replaced"
	case NewCountry:
		return "new_country"
	}
	return "unknown"
}

// Change is one noteworthy change; Previous is the former source for Replaced
// and the last known source otherwise.
type Change struct {
	Kind     ChangeKind
	Contact  string
	Previous netip.AddrPort
	// Country is the new country for NewCountry; Countries those known before.
	Country   string
	Countries []string
}

// Result is the outcome of Apply: the code to answer and the bindings in force.
type Result struct {
	Code       int // 200, 400, 423, 403 or 500
	Err        error
	MinExpires time.Duration // for 423
	Bindings   []Binding
	Changes    []Change
}

// knownSources is how many source addresses an account remembers.
const knownSources = 16

type aor struct {
	bindings []Binding
	known    []netip.Addr // sources it registered from, most recent last
	// countries it registered from (GeoIP; at most knownSources), rebuilt
	// from known when empty (after a restart).
	countries []string
}

// Registrar is the set of bindings. It is safe for concurrent use and lives
// for the process (reloads keep the bindings).
type Registrar struct {
	mu    sync.Mutex
	aors  map[string]*aor
	store Store               // nil: memory only
	dirty map[string]struct{} // accounts changed since the last Flush

	flushMu sync.Mutex // one Flush at a time
}

// New returns an empty registrar.
func New() *Registrar { return &Registrar{aors: map[string]*aor{}} }

// Apply processes a REGISTER of the account key (a configured account,
// authenticated) with the options o, at now.
func (r *Registrar) Apply(key string, o Options, req *Request, now time.Time) Result {
	o.fill()
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.aors[key]
	if a == nil {
		a = &aor{}
		r.aors[key] = a
	}
	a.expire(now)
	if req.Wildcard {
		if req.Expires != 0 || len(req.Contacts) > 0 {
			return Result{Code: 400, Err: ErrBadWildcard}
		}
		for _, b := range a.bindings {
			if b.CallID == req.CallID && req.CSeq <= b.CSeq {
				return Result{Code: 500, Err: ErrOutOfOrder}
			}
		}
		a.bindings = a.bindings[:0]
		r.markDirty(key)
		return Result{Code: 200, Changes: a.noteSource(req.Source.Addr(), o.Country)}
	}
	// Check the whole request before changing anything (10.3 step 6 and 7).
	type op struct {
		c   Contact
		exp time.Duration
		idx int // existing binding, -1 for a new one
	}
	ops := make([]op, 0, len(req.Contacts))
	added := 0
	for _, c := range req.Contacts {
		secs := c.Expires
		if secs < 0 {
			secs = req.Expires
		}
		exp := o.DefaultExpires
		if secs >= 0 {
			exp = time.Duration(min(secs, int64(o.MaxExpires/time.Second)+1)) * time.Second
		}
		if exp != 0 && exp < o.MinExpires {
			return Result{Code: 423, Err: ErrTooBrief, MinExpires: o.MinExpires}
		}
		exp = min(exp, o.MaxExpires)
		idx := a.find(c)
		if idx >= 0 && a.bindings[idx].CallID == req.CallID && req.CSeq <= a.bindings[idx].CSeq {
			return Result{Code: 500, Err: ErrOutOfOrder}
		}
		if idx < 0 && exp > 0 {
			added++
		}
		ops = append(ops, op{c, exp, idx})
	}
	removed := 0
	for _, op := range ops {
		if op.idx >= 0 && op.exp == 0 {
			removed++
		}
	}
	if len(a.bindings)+added-removed > o.MaxContacts {
		return Result{Code: 403, Err: ErrTooMany}
	}
	var res Result
	if len(req.Contacts) > 0 {
		res.Changes = a.noteSource(req.Source.Addr(), o.Country)
	}
	for _, op := range ops {
		if op.exp == 0 {
			if op.idx >= 0 {
				a.bindings[op.idx].Expires = time.Time{} // removed below
			}
			continue
		}
		b := Binding{Contact: op.c.URI, Instance: op.c.Instance, Expires: now.Add(op.exp), Source: req.Source,
			Transport: req.Transport, Local: req.Local, UserAgent: req.UserAgent, CallID: req.CallID, CSeq: req.CSeq, Updated: now}
		if op.idx >= 0 {
			if old := a.bindings[op.idx]; old.Source.Addr() != req.Source.Addr() {
				res.Changes = append(res.Changes, Change{Kind: Replaced, Contact: op.c.URI, Previous: old.Source})
			}
			a.bindings[op.idx] = b
		} else {
			a.bindings = append(a.bindings, b)
		}
	}
	a.expire(now)
	if len(req.Contacts) > 0 {
		r.markDirty(key)
	}
	res.Code = 200
	res.Bindings = append([]Binding(nil), a.bindings...)
	return res
}

// noteSource remembers src (and its country) and reports what is new to the account.
func (a *aor) noteSource(src netip.Addr, country func(netip.Addr) string) []Change {
	src = src.Unmap()
	changes := a.noteCountry(src, country)
	return append(a.noteAddress(src), changes...)
}

// noteCountry remembers the country of src; a country the account never
// registered from (with some country known already) is a NewCountry.
func (a *aor) noteCountry(src netip.Addr, country func(netip.Addr) string) []Change {
	if country == nil {
		return nil
	}
	if len(a.countries) == 0 {
		for _, k := range a.known {
			if c := country(k); c != "" && !slices.Contains(a.countries, c) {
				a.countries = append(a.countries, c)
			}
		}
	}
	c := country(src)
	if c == "" || slices.Contains(a.countries, c) {
		return nil
	}
	before := slices.Clone(a.countries)
	if len(a.countries) == knownSources {
		a.countries = a.countries[1:]
	}
	a.countries = append(a.countries, c)
	if len(before) == 0 {
		return nil // a first registration has nothing to compare with
	}
	var last netip.AddrPort
	if len(a.known) > 0 {
		last = netip.AddrPortFrom(a.known[len(a.known)-1], 0)
	}
	return []Change{{Kind: NewCountry, Country: c, Countries: before, Previous: last}}
}

// noteAddress remembers src and reports whether it is new to the account.
func (a *aor) noteAddress(src netip.Addr) []Change {
	if len(a.known) == 0 {
		a.known = append(a.known, src)
		return nil // a first registration has nothing to compare with
	}
	last := a.known[len(a.known)-1]
	for i, k := range a.known {
		if k == src {
			a.known = append(append(a.known[:i:i], a.known[i+1:]...), src)
			return nil
		}
	}
	kind := NewPrefix
	p := cidr.BlockOf(src)
	for _, k := range a.known {
		if p.Contains(k) {
			kind = NewAddress
			break
		}
	}
	if len(a.known) == knownSources {
		a.known = append(a.known[:0], a.known[1:]...)
	}
	a.known = append(a.known, src)
	return []Change{{Kind: kind, Previous: netip.AddrPortFrom(last, 0)}}
}

// find returns the binding c refreshes: the same instance, else the same URI.
func (a *aor) find(c Contact) int {
	if c.Instance != "" {
		for i, b := range a.bindings {
			if b.Instance == c.Instance {
				return i
			}
		}
	}
	for i, b := range a.bindings {
		if b.Contact == c.URI {
			return i
		}
	}
	return -1
}

func (a *aor) expire(now time.Time) {
	n := 0
	for _, b := range a.bindings {
		if b.Expires.After(now) {
			a.bindings[n] = b
			n++
		}
	}
	clear(a.bindings[n:])
	a.bindings = a.bindings[:n]
}

// Bindings returns the bindings of key in force at now, most recently updated first.
func (r *Registrar) Bindings(key string, now time.Time) []Binding {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.aors[key]
	if a == nil {
		return nil
	}
	a.expire(now)
	out := append([]Binding(nil), a.bindings...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Updated.After(out[j].Updated) })
	return out
}

// Len returns the number of bindings held (expired ones not yet swept included).
func (r *Registrar) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, a := range r.aors {
		n += len(a.bindings)
	}
	return n
}

// Registration is one binding in force with the account it belongs to.
type Registration struct {
	Trunk, Account string
	Binding
}

// List returns every binding in force at now, by trunk and account, the
// most recently updated first within an account (what
// `sipwarden registrations list` and GET /api/v1/registrations show).
func (r *Registrar) List(now time.Time) []Registration {
	r.mu.Lock()
	var out []Registration
	for key, a := range r.aors {
		a.expire(now)
		trunk, account, _ := strings.Cut(key, "\x00")
		for _, b := range a.bindings {
			out = append(out, Registration{Trunk: trunk, Account: account, Binding: b})
		}
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		x, y := &out[i], &out[j]
		if x.Trunk != y.Trunk {
			return x.Trunk < y.Trunk
		}
		if x.Account != y.Account {
			return x.Account < y.Account
		}
		return x.Updated.After(y.Updated)
	})
	return out
}
