package auth

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipwarden/sipwarden/internal/banlist"
	"github.com/sipwarden/sipwarden/internal/bruteforce"
	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/events"
	"github.com/sipwarden/sipwarden/internal/sip"
)

// State is what the auth stage keeps across reloads: the nonce secret (so
// nonces issued before a reload stay valid), the replay guard, the
// brute-force counters and the addresses that authenticated recently.
type State struct {
	Nonces   *Nonces
	Replay   *ReplayGuard
	Guard    *bruteforce.Guard
	presence *presence
	met      *metrics

	mu   sync.Mutex
	weak map[string]string // "user\x00realm\x00ha1" -> broken rule ("" ok): WeakHA1 results
}

type metrics struct {
	results *prometheus.CounterVec
}

// NewState creates the process-wide state, sized from cfg (the sizes of
// tables apply at start; a reload keeps them), and registers the metrics on
// reg (nil: not registered). bans may be nil (no bans, e.g. check-config).
func NewState(cfg *config.Config, bans *banlist.List, reg prometheus.Registerer) *State {
	m := &metrics{results: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sipwarden_auth_requests_total",
		Help: "Requests of digest trunks by outcome (challenge, success, failure, unknown_account, stale, replay, bad_credentials, tls_required, locked, register_source).",
	}, []string{"trunk", "result"})}
	if reg != nil {
		reg.MustRegister(m.results)
	}
	return &State{
		Nonces:   NewNonces(nil),
		Replay:   NewReplayGuard(cfg.Auth.NonceTableSize),
		Guard:    bruteforce.New(cfg.Auth.BruteForce.TableSize, bans, reg),
		presence: newPresence(cfg.Auth.BruteForce.TableSize),
		met:      m,
		weak:     map[string]string{},
	}
}

// Stage is the chain stage "auth".
type Stage struct {
	st       *State
	bus      *events.Bus
	trunks   map[*config.Trunk]*trunkAuth
	byName   map[string]*config.Trunk
	domains  map[string]*config.Trunk // domains of digest trunks without allow prefixes
	bf       bruteforce.Config
	remember time.Duration
	now      func() time.Time
}

type trunkAuth struct {
	v          *Verifier
	requireTLS bool
	// counters by result, resolved once so that counting allocates nothing
	results map[string]prometheus.Counter
}

// resultLabels are the values of the result label.
var resultLabels = []string{"challenge", "success", "failure", "unknown_account", "stale", "replay",
	"bad_credentials", "tls_required", "locked", "register_source"}

// credPool holds Credentials (their scratch space makes them large, and
// they point into themselves, so they would escape to the heap anyway).
var credPool = sync.Pool{New: func() any { return new(Credentials) }}

// NewStage builds the auth stage of cfg. It refuses accounts whose stored
// HA1 is that of a common password or of the username (when the policy
// rejects common passwords).
func NewStage(cfg *config.Config, st *State, bus *events.Bus) (*Stage, error) {
	s := &Stage{st: st, bus: bus, trunks: map[*config.Trunk]*trunkAuth{}, byName: map[string]*config.Trunk{},
		domains: map[string]*config.Trunk{}, remember: cfg.Auth.RememberSources, now: time.Now}
	b := cfg.Auth.BruteForce
	s.bf = bruteforce.Config{Window: b.Window, SourceAccount: b.SourceAccount, Source: b.Source, Unknown: b.Unknown,
		Account: b.Account, Lockout: b.Lockout, Mode: b.LockoutMode, BanDuration: b.BanDuration, KnownFor: bruteforce.Defaults.KnownFor}
	var extra map[string]bool
	if f := cfg.Auth.Policy.ExtraFile; f != "" && cfg.Auth.Policy.RejectCommon {
		fh, err := os.Open(f)
		if err != nil {
			return nil, config.At("auth.policy.extra_file", err)
		}
		extra, err = ParseList(fh)
		_ = fh.Close()
		if err != nil {
			return nil, config.At("auth.policy.extra_file", fmt.Errorf("%s: %w", f, err))
		}
	}
	var errs config.Errors
	for i := range cfg.Trunks {
		t := &cfg.Trunks[i]
		if t.Auth != config.AuthDigest {
			continue
		}
		s.byName[t.Name] = t
		if len(t.Allow) == 0 {
			for _, d := range t.Digest.Domains {
				s.domains[d] = t
			}
		}
		accts := make([]Account, len(t.Digest.Accounts))
		for j, ca := range t.Digest.Accounts {
			a := Account{Username: ca.Username, SHAOnly: ca.SHAOnly, RegisterFrom: ca.RegisterFrom}
			for _, name := range ca.Algorithms {
				a.Offer = append(a.Offer, ParseAlgorithm([]byte(name)))
			}
			for _, alg := range Algorithms {
				a.HA1[alg] = ca.HA1[alg.Key()]
			}
			accts[j] = a
			if cfg.Auth.Policy.RejectCommon {
				if rule := st.weakHA1(&accts[j], t.Digest.Realm, extra); rule != "" {
					errs = append(errs, &config.Error{File: cfg.File, Line: ca.Line, Key: config.AccountKey(i, j),
						Msg: fmt.Sprintf("account %q: its HA1 is that of a weak password (%s); set a new one with `sipwarden passwd`", ca.Username, rule)})
				}
			}
		}
		offer := make([]Algorithm, 0, len(t.Digest.Algorithms))
		for _, name := range t.Digest.Algorithms {
			offer = append(offer, ParseAlgorithm([]byte(name)))
		}
		v, err := NewVerifier(t.Digest.Realm, offer, accts, st.Nonces, st.Replay, cfg.Auth.NonceLifetime)
		if err != nil {
			errs = append(errs, &config.Error{File: cfg.File, Key: fmt.Sprintf("trunks[%d]", i), Msg: err.Error()})
			continue
		}
		ta := &trunkAuth{v: v, requireTLS: t.Digest.RequireTLS, results: map[string]prometheus.Counter{}}
		for _, r := range resultLabels {
			ta.results[r] = st.met.results.WithLabelValues(t.Name, r)
		}
		s.trunks[t] = ta
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return s, nil
}

// weakHA1 caches WeakHA1, so that a reload does not hash the lists again.
func (st *State) weakHA1(a *Account, realm string, extra map[string]bool) string {
	var k strings.Builder
	k.WriteString(a.Username + "\x00" + realm)
	for _, h := range a.HA1 {
		k.WriteString("\x00" + h)
	}
	key := k.String()
	st.mu.Lock()
	rule, ok := st.weak[key]
	st.mu.Unlock()
	if ok && extra == nil {
		return rule
	}
	rule, _ = WeakHA1(a, realm, extra)
	st.mu.Lock()
	st.weak[key] = rule
	st.mu.Unlock()
	return rule
}

// Enabled reports whether the configuration has digest trunks (without
// them the stage has nothing to do and is left out of the chain).
func (s *Stage) Enabled() bool { return len(s.trunks) > 0 }

// Name implements chain.Stage.
func (*Stage) Name() string { return "auth" }

// Resolve identifies the digest trunk of a request from an address that
// matches no allow prefix: an address that authenticated to a digest trunk
// within auth.remember_sources, or an out-of-dialog request whose
// Request-URI host is a domain of a digest trunk without allow prefixes.
// It returns nil otherwise (the acl stage then treats the source as unknown).
// The acl stage calls it; it allocates nothing.
func (s *Stage) Resolve(req *chain.Request) *config.Trunk {
	if name := s.st.presence.lookup(req.Src.Addr(), s.now()); name != "" {
		if t := s.byName[name]; t != nil {
			return t
		}
	}
	if len(s.domains) == 0 || req.ParseErr != nil || req.Msg == nil || !req.Msg.IsRequest() || len(req.Msg.ToTag()) > 0 {
		return nil
	}
	u, err := sip.ParseURI(req.Msg.RequestURI())
	if err != nil || len(u.Host) == 0 || len(u.Host) > 253 {
		return nil
	}
	var buf [253]byte
	h := buf[:len(u.Host)]
	for i, c := range u.Host {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		h[i] = c
	}
	return s.domains[string(h)]
}

// Handle challenges initial requests of digest trunks and verifies their credentials.
func (s *Stage) Handle(req *chain.Request) chain.Verdict {
	if req.PeerKind != chain.PeerTrunk || req.Trunk == nil || req.Trunk.Auth != config.AuthDigest || !req.Initial() {
		return chain.Next()
	}
	ta := s.trunks[req.Trunk]
	if ta == nil {
		return chain.Next()
	}
	trunk := req.Trunk.Name
	if ta.requireTLS && req.Transport != sip.TLS {
		s.count(ta, "tls_required")
		s.publish(req, events.AuthFailure, "tls_required", 403, "")
		return chain.Verdict{Action: chain.Reply, Code: 403, Reason: "tls_required",
			Warning: "this trunk requires TLS: register and call over TLS (sips)"}
	}
	m := req.Msg
	register := m.Method() == sip.REGISTER
	hdr := sip.HdrProxyAuthorization
	if register {
		hdr = sip.HdrAuthorization
	}
	now := s.now()
	src := req.Src.Addr()
	c := credPool.Get().(*Credentials)
	defer credPool.Put(c)
	at, perr := FindCredentials(m, hdr, ta.v.realm, c)
	if at < 0 {
		if perr != nil {
			s.count(ta, "bad_credentials")
			s.publish(req, events.AuthFailure, "bad_credentials", 400, "")
			return chain.Verdict{Action: chain.Reply, Code: 400, Reason: "bad_credentials", Warning: "malformed digest credentials"}
		}
		s.count(ta, "challenge")
		return s.challenge(req, ta, register, challengeUser(m, register), false, "challenge")
	}
	// The order is what keeps the answer from telling anything: first
	// what does not depend on the password (syntax, then the nonce: ours,
	// fresh, bound to this source; then the algorithm), then the account's
	// lockout and register_from, and only then the response. A right
	// password with an invented nonce is answered like a wrong one, and a
	// locked account or a REGISTER from outside register_from is refused
	// before the response is looked at.
	p, o, ok := ta.v.Check(c, m.RequestURI(), src, now)
	if ok {
		if acct := p.Account; acct != nil {
			result, why := "", ""
			switch {
			case s.st.Guard.Refused(&s.bf, src, trunk, acct.Username):
				result, why = "locked", "account_locked"
			case register && !acct.MayRegisterFrom(src):
				result, why = "register_source", "register_source_refused"
			}
			if why != "" {
				ta.v.Spend(c) // as long as a verification: the timing tells nothing either
				s.count(ta, result)
				return s.fail(req, ta, register, c, bruteforce.Attempt{Src: src, Trunk: trunk, Account: acct.Username}, why, acct)
			}
		}
		o = ta.v.Finish(c, m.MethodName(), &p, now)
	}
	switch o.Result {
	case Malformed:
		s.count(ta, "bad_credentials")
		s.publish(req, events.AuthFailure, o.Why, 400, "")
		return chain.Verdict{Action: chain.Reply, Code: 400, Reason: "bad_credentials", Warning: malformedText(o.Why)}
	case Stale:
		s.count(ta, "stale")
		return s.challenge(req, ta, register, c.Username, true, "stale_nonce")
	case Replay:
		s.count(ta, "replay")
		s.publish(req, events.AuthFailure, "replay", 0, accountDetail(o.Account))
		return s.challenge(req, ta, register, c.Username, true, "replay")
	case UnknownAccount:
		s.count(ta, "unknown_account")
		return s.fail(req, ta, register, c, bruteforce.Attempt{Src: src, Trunk: trunk, Account: "", Unknown: true}, "unknown_account", nil)
	case Failure:
		s.count(ta, "failure")
		return s.fail(req, ta, register, c, bruteforce.Attempt{Src: src, Trunk: trunk, Account: o.Account.Username}, o.Why, o.Account)
	case Success:
	}
	acct := o.Account
	s.st.Guard.Success(&s.bf, src, trunk, acct.Username)
	s.st.presence.mark(src, trunk, now, s.remember)
	req.Account = acct.Username
	// Credentials for our own realm end here (RFC 3261 section 22.3 leaves
	// others for the next hop): the protected side never sees a digest
	// response it could replay.
	req.DeleteHeader(at)
	s.count(ta, "success")
	s.publish(req, events.AuthSuccess, "success", 0, accountDetail(acct))
	return chain.Next()
}

// fail counts a failed authentication, publishes it, and answers it as a
// wrong password is answered: a new challenge (or silence once the source is banned).
func (s *Stage) fail(req *chain.Request, ta *trunkAuth, register bool, c *Credentials, a bruteforce.Attempt, why string, acct *Account) chain.Verdict {
	d := s.st.Guard.Failure(&s.bf, a)
	s.publish(req, events.AuthFailure, why, 0, accountDetail(acct))
	if d.Locked {
		s.publish(req, events.AccountLocked, "account_locked", 0, accountDetail(acct)+"; mode "+s.bf.Mode+" for "+s.bf.Lockout.String())
	}
	if d.Ban {
		return chain.DropFor(d.Reason)
	}
	return s.challenge(req, ta, register, c.Username, false, "auth_failed")
}

// challenge answers 401 (REGISTER) or 407 with one challenge per algorithm.
func (s *Stage) challenge(req *chain.Request, ta *trunkAuth, register bool, user []byte, stale bool, reason string) chain.Verdict {
	name, code := "Proxy-Authenticate", 407
	if register {
		name, code = "WWW-Authenticate", 401
	}
	var buf [1024]byte
	h := ta.v.AppendChallenge(buf[:0], name, ta.v.Offer(user), req.Src.Addr(), stale, s.now())
	return chain.Verdict{Action: chain.Reply, Code: uint16(code), Reason: reason, Header: string(h[:len(h)-2])}
}

// challengeUser is the user part of To (REGISTER: the address of record)
// or From, whose account decides the algorithms offered.
func challengeUser(m *sip.Msg, register bool) []byte {
	h := m.Get(sip.HdrFrom)
	if register {
		h = m.Get(sip.HdrTo)
	}
	na, _, err := sip.ParseNameAddr(h)
	if err != nil {
		return nil
	}
	u, err := sip.ParseURI(na.URI)
	if err != nil {
		return nil
	}
	return u.User
}

func (s *Stage) count(ta *trunkAuth, result string) { ta.results[result].Inc() }

func (s *Stage) publish(req *chain.Request, kind events.Kind, reason string, code int, detail string) {
	if s.bus == nil {
		return
	}
	s.bus.Publish(events.Event{Kind: kind, Stage: "auth", Reason: reason, Src: req.Src, Transport: req.Transport.String(),
		Trunk: req.Trunk.Name, Method: req.Msg.Method().String(), CallID: string(req.Msg.CallID()), Code: code, Detail: detail})
}

// accountDetail names a configured account in an event (never a username
// taken from the message: unknown names are attacker input).
func accountDetail(a *Account) string {
	if a == nil {
		return ""
	}
	return a.detail
}

func malformedText(why string) string {
	switch why {
	case "qop_required":
		return "digest credentials must use qop=auth"
	case "uri_mismatch":
		return "the digest uri is not the Request-URI"
	case "userhash_unsupported":
		return "userhash is not supported"
	}
	return "malformed digest credentials"
}

// FindCredentials finds, among the fields id (Authorization or
// Proxy-Authorization) of m, the Digest credentials for realm and parses
// them into c. Credentials for other realms are left for the next hop
// (RFC 3261 section 22.3). It returns the index of the header field that
// holds them, or -1 when there are none; err is set when a field could not
// be parsed (and none for realm was found).
func FindCredentials(m *sip.Msg, id sip.HeaderID, realm string, c *Credentials) (at int, err error) {
	for i := m.Find(id, 0); i >= 0; i = m.Find(id, i+1) {
		perr := ParseCredentials(c, m.Header(i).Value)
		switch {
		case errors.Is(perr, ErrNotDigest):
			continue
		case perr != nil:
			err = perr
			continue
		case string(c.Realm) == realm:
			return i, nil
		}
	}
	return -1, err
}
