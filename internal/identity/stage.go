// Package identity is the chain stage "identity": the RFC 3325 trust
// boundary and the caller ID of digest accounts.
//
// A network asserts identities (P-Asserted-Identity, RFC 3325) only inside
// a Trust Domain; the asserted identity of a peer outside it is removed at
// the boundary (RFC 3325 section 9.1), and so are the other headers a PBX
// reads as the caller or the forwarding party: P-Preferred-Identity,
// Diversion (RFC 5806) and Remote-Party-ID (draft-ietf-sip-privacy-04).
// A trunk is outside sipwarden's trust domain unless its configuration
// says trust_identity: true; from it these headers are removed before the
// request goes on. They are removed, not replaced by one of the trunk's
// numbers: a trunk owns ranges, not one number, and asserting one for it
// would be sipwarden vouching for a caller it did not check; the From (the
// caller's own claim) and the STIR/SHAKEN attestation say the rest.
//
// A digest account calls only with its own numbers (accounts[].numbers,
// else the trunk's numbers): an INVITE whose From (and, from a trusted
// trunk, asserted identity) is another number is refused with 403, or with
// caller_id: rewrite its From is replaced by the account's own number.
//
// The stage asks the proxy for header edits (chain.Request.DeleteHeader,
// SetHeader); later stages that read the caller (shaken) read the
// forwarded values (chain.Request.ForwardedValue).
package identity

import (
	"bytes"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/e164"
	"github.com/sipwarden/sipwarden/internal/events"
	"github.com/sipwarden/sipwarden/internal/sip"
)

// MaxRemoved is how many identity header fields one request may carry from
// an untrusted trunk; a request with more is refused (403) rather than
// forwarded with some of them.
const MaxRemoved = 8

// Verdict reasons.
const (
	ReasonTooMany  = "too_many_identity_headers"
	ReasonNotOwned = "caller_id_not_owned"
)

// Metrics are the stage's collectors; they live for the process.
type Metrics struct {
	removed  *prometheus.CounterVec
	callerID *prometheus.CounterVec
}

// NewMetrics creates and registers the collectors (reg may be nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		removed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sipwarden_identity_headers_removed_total",
			Help: "P-Asserted-Identity, P-Preferred-Identity, Diversion and Remote-Party-ID fields removed from requests of trunks without trust_identity, by trunk.",
		}, []string{"trunk"}),
		callerID: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sipwarden_identity_caller_id_total",
			Help: "Calls of digest accounts whose caller ID was none of the account's numbers, by trunk and action (refused, rewritten).",
		}, []string{"trunk", "action"}),
	}
	if reg != nil {
		reg.MustRegister(m.removed, m.callerID)
	}
	return m
}

// Stage is the chain stage "identity".
type Stage struct {
	bus *events.Bus
	met *Metrics
	// cc is put before national numbers (shaken.country_code); "" for none.
	cc       string
	trunks   map[*config.Trunk]*trunkPolicy
	accounts map[*config.Trunk]map[string]*account
}

type trunkPolicy struct {
	removed prometheus.Counter
	trust   bool
}

type account struct {
	numbers []config.NumberRange
	// rewrite is the number put in From for caller_id: rewrite ("" refuses).
	rewrite string
}

// NewStage builds the stage for cfg's trunks; met may be nil.
func NewStage(cfg *config.Config, met *Metrics, bus *events.Bus) *Stage {
	if met == nil {
		met = NewMetrics(nil)
	}
	s := &Stage{bus: bus, met: met, cc: cfg.Shaken.CountryCode,
		trunks: map[*config.Trunk]*trunkPolicy{}, accounts: map[*config.Trunk]map[string]*account{}}
	for i := range cfg.Trunks {
		tr := &cfg.Trunks[i]
		s.trunks[tr] = &trunkPolicy{trust: tr.TrustIdentity, removed: met.removed.WithLabelValues(tr.Name)}
		if tr.Auth != config.AuthDigest {
			continue
		}
		accts := map[string]*account{}
		for _, a := range tr.Digest.Accounts {
			nums := a.Numbers
			if len(nums) == 0 {
				nums = tr.Numbers
			}
			if len(nums) == 0 {
				continue // nothing to check against: any caller ID (docs/config.md)
			}
			ac := &account{numbers: nums}
			if tr.CallerID == config.CallerIDRewrite {
				ac.rewrite = config.RewriteNumber(nums)
			}
			accts[a.Username] = ac
		}
		s.accounts[tr] = accts
	}
	return s
}

// Name is the stage's name.
func (s *Stage) Name() string { return "identity" }

// Handle removes the identity headers of an untrusted trunk and checks the
// caller ID of a digest account's call.
func (s *Stage) Handle(req *chain.Request) chain.Verdict {
	if req.ParseErr != nil || req.PeerKind != chain.PeerTrunk || req.Msg == nil {
		return chain.Next()
	}
	// in-dialog requests too (a re-INVITE or UPDATE can carry a new
	// asserted identity); not ACK and CANCEL, which the proxy builds or
	// relays hop by hop without edits
	if meth := req.Msg.Method(); meth == sip.ACK || meth == sip.CANCEL {
		return chain.Next()
	}
	tp := s.trunks[req.Trunk]
	if tp == nil {
		return chain.Next()
	}
	if !tp.trust {
		if v := s.strip(req, tp); v.Action != chain.Continue {
			return v
		}
	}
	if req.Account != "" && req.Initial() && req.Msg.Method() == sip.INVITE {
		if a := s.accounts[req.Trunk][req.Account]; a != nil {
			return s.checkCaller(req, a)
		}
	}
	return chain.Next()
}

// IsIdentityHeader reports whether h is one of the headers a trunk outside
// the trust domain may not bring in.
func IsIdentityHeader(h sip.Header) bool {
	switch h.ID {
	case sip.HdrPAssertedIdentity, sip.HdrPPreferredIdentity, sip.HdrDiversion:
		return true
	case sip.HdrOther:
		return bytes.EqualFold(h.Name, remotePartyID)
	}
	return false
}

var remotePartyID = []byte("Remote-Party-ID")

func (s *Stage) strip(req *chain.Request, tp *trunkPolicy) chain.Verdict {
	m := req.Msg
	n := 0
	for i := 0; i < m.NumHeaders(); i++ {
		if !IsIdentityHeader(m.Header(i)) {
			continue
		}
		n++
		if n > MaxRemoved || !req.DeleteHeader(i) {
			v := chain.ReplyWith(403, ReasonTooMany)
			v.Warning = "too many identity headers"
			return v
		}
	}
	if n > 0 {
		tp.removed.Add(float64(n))
	}
	return chain.Next()
}

// checkCaller lets the call through when its From (and every asserted
// identity that will be forwarded) is one of a's numbers; otherwise it
// refuses it or rewrites From.
func (s *Stage) checkCaller(req *chain.Request, a *account) chain.Verdict {
	m := req.Msg
	from := m.Find(sip.HdrFrom, 0)
	if from < 0 {
		return s.refuse(req)
	}
	ok := s.owned(a, req.ForwardedValue(from))
	for i := 0; i < m.NumHeaders(); i++ {
		h := m.Header(i)
		if !IsIdentityHeader(h) || h.ID == sip.HdrDiversion || req.Deleted(i) {
			continue
		}
		if s.owned(a, h.Value) {
			continue
		}
		if a.rewrite == "" {
			return s.refuse(req)
		}
		if !req.DeleteHeader(i) {
			return s.refuse(req)
		}
	}
	if ok {
		return chain.Next()
	}
	if a.rewrite == "" {
		return s.refuse(req)
	}
	v, err := rewriteFrom(m.Header(from).Value, a.rewrite)
	if err != nil || !req.SetHeader(from, v) {
		return s.refuse(req)
	}
	s.met.callerID.WithLabelValues(req.Trunk.Name, "rewritten").Inc()
	s.publish(req, 0, "caller ID rewritten to the account's number "+a.rewrite)
	return chain.Next()
}

func (s *Stage) refuse(req *chain.Request) chain.Verdict {
	s.met.callerID.WithLabelValues(req.Trunk.Name, "refused").Inc()
	s.publish(req, 403, "the caller ID is none of the account's numbers")
	v := chain.ReplyWith(403, ReasonNotOwned)
	v.Warning = "caller ID is not a number of this account"
	return v
}

func (s *Stage) publish(req *chain.Request, code int, detail string) {
	if s.bus == nil {
		return
	}
	s.bus.Publish(events.Event{Kind: events.CallerID, Stage: "identity", Reason: ReasonNotOwned, Src: req.Src,
		Transport: req.Transport.String(), Trunk: req.Trunk.Name, Method: req.Msg.Method().String(),
		CallID: string(req.Msg.CallID()), Code: code, Detail: "account " + req.Account + ": " + detail})
}

// owned reports whether every name-addr of the header value v names a
// number of a (a value with none, or that does not parse, is not owned).
func (s *Stage) owned(a *account, v []byte) bool {
	seen := false
	for rest := v; len(rest) > 0; {
		na, r, err := sip.ParseNameAddr(rest)
		if err != nil {
			return false
		}
		rest = r
		var buf [24]byte
		tn, ok := s.number(na.URI, buf[:0])
		if !ok || !inRanges(a.numbers, tn) {
			return false
		}
		seen = true
	}
	return seen
}

// number is the E.164 number ("+15551230001") in uri's user part; a
// national number gets the country code when one is configured.
func (s *Stage) number(uri []byte, dst []byte) ([]byte, bool) {
	u, err := sip.ParseURI(uri)
	if err != nil || len(u.User) == 0 {
		return nil, false
	}
	var tmp [24]byte
	n, intl := e164.Normalize(u.User, tmp[:0])
	if intl {
		return append(dst, n...), true
	}
	if s.cc == "" || len(n) == 0 || n[0] == '+' || len(s.cc)+len(n) > 15 {
		return nil, false
	}
	dst = append(dst, '+')
	dst = append(dst, s.cc...)
	return append(dst, n...), true
}

func inRanges(nums []config.NumberRange, tn []byte) bool {
	for _, n := range nums {
		if n.Contains(string(tn)) { // no allocation: the conversion does not escape
			return true
		}
	}
	return false
}

// rewriteError is returned by rewriteFrom for a From without a user part.
type rewriteError string

func (e rewriteError) Error() string { return string(e) }

// rewriteFrom returns a From value with number as the URI's user part,
// without the display name (which may claim the old number), keeping the
// URI's host and parameters and the header parameters (the tag).
func rewriteFrom(v []byte, number string) ([]byte, error) {
	na, _, err := sip.ParseNameAddr(v)
	if err != nil {
		return nil, err
	}
	u, err := sip.ParseURI(na.URI)
	if err != nil {
		return nil, err
	}
	// u.User is a part of na.URI: find where
	off := cap(na.URI) - cap(u.User)
	if len(u.User) == 0 || off < 0 || off+len(u.User) > len(na.URI) || !bytes.Equal(na.URI[off:off+len(u.User)], u.User) {
		return nil, rewriteError("identity: From has no user part to rewrite")
	}
	out := make([]byte, 0, len(na.URI)+len(number)+len(na.Params)+2)
	out = append(out, '<')
	out = append(out, na.URI[:off]...)
	out = append(out, number...)
	out = append(out, na.URI[off+len(u.User):]...)
	out = append(out, '>')
	out = append(out, na.Params...)
	// what a peer sent may not survive the brackets (an addr-spec whose
	// URI holds '>'): only a From that reads back as the number goes on
	na2, _, err := sip.ParseNameAddr(out)
	if err != nil {
		return nil, err
	}
	if u2, err := sip.ParseURI(na2.URI); err != nil || string(u2.User) != number {
		return nil, rewriteError("identity: the rewritten From does not read back")
	}
	return out, nil
}
