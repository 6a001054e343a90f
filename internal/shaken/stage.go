package shaken

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"

	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/events"
	"github.com/sipwarden/sipwarden/internal/sip"
)

// Stage is the chain stage "shaken": it signs initial INVITEs from trunks
// configured with a signer (authentication service) and verifies those from
// trunks configured to verify (verification service), and it removes any
// verstat an untrusted peer put in. It asks the proxy for its header edits
// (Identity, Date, verstat, Reason); it never edits the message itself.
type Stage struct {
	verifier *Verifier
	trunks   map[*config.Trunk]*trunkPolicy
	bus      *events.Bus
	met      *Metrics
	enabled  bool
	// countryCode is put before numbers written without one.
	countryCode string
	// reasonProto is the protocol of the Reason header of marked failures: SIP or STIR.
	reasonProto string
}

type trunkPolicy struct {
	cfg    config.ShakenTrunk
	signer *Signer
}

// NewStage builds the stage for cfg's trunks and sh (the shaken section of
// the same configuration), over the process-wide st (nil: a throw-away
// state, for check-config). Signing keys and trust anchors are read here: a
// key that others can read, or a missing file, is an error.
func NewStage(cfg *config.Config, sh *config.Shaken, st *State, bus *events.Bus) (*Stage, error) {
	if st == nil {
		st = &State{}
	}
	s := &Stage{trunks: map[*config.Trunk]*trunkPolicy{}, bus: bus, met: st.Metrics, enabled: sh.Enabled(), countryCode: sh.CountryCode, reasonProto: sh.ReasonHeader}
	if s.reasonProto == "" {
		s.reasonProto = "SIP"
	}
	if !s.enabled {
		return s, nil
	}
	signers := map[string]*Signer{}
	for j, sc := range sh.Signers {
		key, err := LoadSigningKey(sc.Key)
		if err != nil {
			return nil, config.At(fmt.Sprintf("shaken.signers[%d].key", j), err)
		}
		sg, err := NewSigner(key, sc.X5U, sh.RelaxX5U)
		if err != nil {
			return nil, config.At(fmt.Sprintf("shaken.signers[%d]", j), err)
		}
		sg.MaxDateSkew = sh.MaxAge
		signers[sc.Name] = sg
	}
	verify := false
	for i := range sh.Trunks {
		tc := sh.Trunks[i]
		tr := cfg.Trunk(tc.Trunk)
		if tr == nil {
			return nil, config.Atf(fmt.Sprintf("shaken.trunks[%d].trunk", i), "no trunk is named %q", tc.Trunk)
		}
		p := &trunkPolicy{cfg: tc}
		if tc.Signer != "" {
			if p.signer = signers[tc.Signer]; p.signer == nil {
				return nil, config.Atf(fmt.Sprintf("shaken.trunks[%d].sign", i), "no signer is named %q", tc.Signer)
			}
		} else {
			verify = true
		}
		s.trunks[tr] = p
	}
	if verify {
		roots, err := LoadTrustAnchors(sh.TrustAnchors)
		if err != nil {
			return nil, config.At("shaken.trust_anchors", err)
		}
		cache := st.cacheFor(CacheConfig{
			DefaultTTL: sh.Cache.DefaultTTL, MinTTL: sh.Cache.MinTTL, MaxTTL: sh.Cache.MaxTTL,
			StaleWhileRevalidate: sh.Cache.StaleWhileRevalidate, NegativeTTL: sh.Cache.NegativeTTL,
			MaxEntries: sh.Cache.MaxEntries, MaxFetches: sh.Cache.MaxFetches, MaxBodyBytes: int64(sh.Cache.MaxResponseSize),
			Relaxed: sh.RelaxX5U,
		})
		// at most half the workers wait for certificate fetches at once
		workers := cfg.SIP.Workers
		if workers <= 0 {
			workers = runtime.NumCPU()
		}
		s.verifier, err = NewVerifier(VerifierConfig{Roots: roots, Certs: cache, MaxAge: sh.MaxAge, MaxWaiting: max(1, workers/2),
			FutureSkew: sh.FutureSkew, Budget: sh.FetchBudget, CRL: sh.CRL, CountryCode: sh.CountryCode})
		if err != nil {
			return nil, config.At("shaken", err)
		}
	}
	return s, nil
}

// Name is the stage's name.
func (s *Stage) Name() string { return "shaken" }

// Stable verdict reasons of refused calls (metric labels, CDR).
var verdictReasons = map[string]string{
	ReasonInvalid:       "shaken_invalid_identity",
	ReasonInfoMismatch:  "shaken_info_mismatch",
	ReasonStale:         "shaken_stale_date",
	ReasonFuture:        "shaken_future_date",
	ReasonOrigMismatch:  "shaken_orig_mismatch",
	ReasonDestMismatch:  "shaken_dest_mismatch",
	ReasonX5U:           "shaken_x5u_fetch",
	ReasonCertificate:   "shaken_bad_certificate",
	ReasonRevoked:       "shaken_revoked",
	ReasonBadAlg:        "shaken_unsupported_alg",
	ReasonSignature:     "shaken_bad_signature",
	ReasonTooManyHeader: "shaken_too_many_identities",
}

// reasonPhrase is the RFC 8224 reason phrase of a verification failure code.
func reasonPhrase(code int) string {
	switch code {
	case 403:
		return "Stale Date"
	case 428:
		return "Use Identity Header"
	case 436:
		return "Bad Identity Info"
	case 437:
		return "Unsupported Credential"
	case 438:
		return "Invalid Identity Header"
	}
	return "Identity Failure"
}

// Handle signs or verifies an initial INVITE from a trunk with a shaken
// policy; from other trunks it only strips verstat. Calls from upstreams
// (the protected side) are left alone.
func (s *Stage) Handle(req *chain.Request) chain.Verdict {
	if !s.enabled || req.ParseErr != nil || req.PeerKind != chain.PeerTrunk || !req.Initial() || req.Msg.Method() != sip.INVITE {
		return chain.Next()
	}
	p := s.trunks[req.Trunk]
	switch {
	case p == nil:
		if !stripVerstat(req) {
			return tooManyHeaders()
		}
		return chain.Next()
	case p.signer != nil:
		return s.sign(req, p)
	default:
		return s.verify(req, p)
	}
}

func (s *Stage) sign(req *chain.Request, p *trunkPolicy) chain.Verdict {
	m := req.Msg
	trunk := req.Trunk.Name
	// a customer cannot assert a verstat, nor bring its own PASSporT: a
	// request with more of them than the edits can remove is refused
	if !stripVerstat(req) {
		return tooManyHeaders()
	}
	for i := m.Find(sip.HdrIdentity, 0); i >= 0; i = m.Find(sip.HdrIdentity, i+1) {
		if !req.DeleteHeader(i) {
			return tooManyHeaders()
		}
	}
	orig, dest, err := callNumbers(req, p.cfg.DestFromRURI, s.countryCode)
	if err != nil {
		s.notSigned("no_tn", trunk)
		return chain.Next()
	}
	attest, err := Attestation(Source{
		Known:         true,
		Authenticated: req.Trunk.Auth == config.AuthIP || req.TLSVerified, // identified by its source address or certificate
		OwnsNumber:    ownsNumber(req.Trunk, orig),
		Gateway:       p.cfg.Gateway,
	})
	if err != nil {
		s.notSigned("policy", trunk)
		return chain.Next()
	}
	signed, err := p.signer.SignCall(orig, []string{dest}, attest, "", m.Get(sip.HdrDate))
	switch {
	case errors.Is(err, ErrStaleDate):
		s.notSigned("stale_date", trunk)
		s.publish(req, "stale_date", 403, "Date header outside the freshness window")
		v := chain.ReplyWith(403, "shaken_stale_date")
		v.Warning = "Stale Date"
		return v
	case err != nil:
		s.notSigned("sign_error", trunk)
		s.publish(req, "sign_error", 0, err.Error())
		return chain.Next()
	}
	if !req.AddHeader("Identity", []byte(signed.Identity)) {
		s.notSigned("sign_error", trunk)
		return chain.Next()
	}
	if signed.Date != "" {
		req.AddHeader("Date", []byte(signed.Date))
	}
	if s.met != nil {
		s.met.signed.WithLabelValues(attest, trunk).Inc()
	}
	req.Identity = signedAs[attest] // constant strings: no allocation per call
	return chain.Next()
}

func (s *Stage) verify(req *chain.Request, p *trunkPolicy) chain.Verdict {
	// the numbers of the identities that will be forwarded: a
	// P-Asserted-Identity the identity stage removes verifies nothing
	call := CallFromFields(req.Msg, s.countryCode, req.ForwardedValue)
	r := s.verifier.VerifyMsgCall(req.Msg, call)
	trunk := req.Trunk.Name
	if s.met != nil {
		s.met.verified.WithLabelValues(r.Verstat, r.Reason, trunk).Inc()
	}
	req.Identity = cdrIdentity(&r)
	if r.Verstat == VerstatFailed {
		detail := r.Reason
		if r.Err != nil {
			detail = r.Err.Error()
		}
		s.publish(req, r.Reason, r.Code, detail)
		if p.cfg.Verify == config.ShakenReject {
			reason, ok := verdictReasons[r.Reason]
			if !ok {
				reason = "shaken_failed"
			}
			v := chain.ReplyWith(r.Code, reason)
			v.Warning = reasonPhrase(r.Code)
			return v
		}
		// passed on, with the verdict and why: a Reason header (RFC 3326, or
		// the STIR protocol of RFC 9410 section 3)
		var b []byte
		b = append(b, s.reasonProto...)
		b = append(b, " ;cause="...)
		b = strconv.AppendInt(b, int64(r.Code), 10)
		b = append(b, ` ;text="`...)
		b = append(b, reasonPhrase(r.Code)...)
		b = append(b, '"')
		req.AddHeader("Reason", b)
	}
	target := -1
	if r.Passed() {
		target = call.Field(r.OrigMatch) // the identity that verified
	}
	if !setVerstat(req, r.Verstat, target) {
		return tooManyHeaders()
	}
	return chain.Next()
}

// signedAs is the CDR identity of a call signed with each attestation.
var signedAs = map[string]string{"A": "signed:A", "B": "signed:B", "C": "signed:C"}

// cdrIdentity is the verification result as the CDR records it: the
// verstat (with the failure code and reason), the attestation of a PASSporT
// that verified (an unverified claim is not recorded), and the SPC of the
// certificate it named: "TN-Validation-Passed;attest=A;spc=709J",
// "TN-Validation-Failed:438:bad_signature;spc=709J".
func cdrIdentity(r *Result) string {
	id := r.Verstat
	if r.Verstat == VerstatFailed {
		id += ":" + strconv.Itoa(r.Code) + ":" + r.Reason
	}
	if r.Attest != "" && r.Passed() {
		id += ";attest=" + r.Attest
	}
	if r.SPC != "" {
		id += ";spc=" + r.SPC
	}
	return id
}

func (s *Stage) notSigned(reason, trunk string) {
	if s.met != nil {
		s.met.notSigned.WithLabelValues(reason, trunk).Inc()
	}
}

func (s *Stage) publish(req *chain.Request, reason string, code int, detail string) {
	if s.bus == nil {
		return
	}
	s.bus.Publish(events.Event{
		Kind:      events.Shaken,
		Stage:     "shaken",
		Reason:    reason,
		Src:       req.Src,
		Transport: req.Transport.String(),
		Trunk:     req.PeerName(),
		Method:    req.Msg.Method().String(),
		CallID:    string(req.Msg.CallID()),
		Code:      code,
		Detail:    detail,
	})
}

// stripVerstat removes every verstat from P-Asserted-Identity and From.
func stripVerstat(req *chain.Request) bool { return setVerstat(req, "", -1) }

// tooManyHeaders refuses a request whose identity headers do not fit in
// the edits of one request: forwarding it would let some of them (a
// forged verstat, a PASSporT of the customer's own) through.
func tooManyHeaders() chain.Verdict {
	v := chain.ReplyWith(403, "shaken_too_many_headers")
	v.Warning = "too many identity headers"
	return v
}

// setVerstat removes every verstat from the P-Asserted-Identity and From
// fields that will be forwarded and, when verstat is set, puts it on field
// target: the identity whose number the PASSporT's orig matched
// (ATIS-1000074: the verified identity, so that a PBX does not show a
// verified mark on a P-Asserted-Identity nobody signed). Without a target
// (a failure, no PASSporT) it goes on the first forwarded
// P-Asserted-Identity, or on From when there is none, as 3GPP TS 24.229
// section 5.7.1 has it. Values are read as forwarded (another stage may
// have rewritten From or removed a P-Asserted-Identity). It reports false
// when the edits of the request ran out.
func setVerstat(req *chain.Request, verstat string, target int) bool {
	m := req.Msg
	if target < 0 {
		for i := m.Find(sip.HdrPAssertedIdentity, 0); i >= 0; i = m.Find(sip.HdrPAssertedIdentity, i+1) {
			if !req.Deleted(i) {
				target = i
				break
			}
		}
	}
	if target < 0 {
		target = m.Find(sip.HdrFrom, 0)
	}
	for i := 0; i < m.NumHeaders(); i++ {
		h := m.Header(i)
		if h.ID != sip.HdrPAssertedIdentity && h.ID != sip.HdrFrom {
			continue
		}
		val := req.ForwardedValue(i)
		if val == nil {
			continue // removed
		}
		set := ""
		if i == target {
			set = verstat
		}
		if set == "" && !containsFold(val, "verstat") {
			continue
		}
		v, err := AppendVerstat(nil, val, set)
		switch {
		case err != nil && containsFold(val, "verstat"):
			// a verstat in a value that does not parse cannot be taken
			// out of it: the field goes (a From cannot: refused)
			if h.ID != sip.HdrPAssertedIdentity || !req.DeleteHeader(i) {
				return false
			}
			continue
		case err != nil || bytes.Equal(v, val):
			continue
		}
		if !req.SetHeader(i, v) {
			return false
		}
	}
	return true
}

// callNumbers is CallNumbers over the values that will be forwarded: the
// first P-Asserted-Identity that is not removed, else From as it will be.
func callNumbers(req *chain.Request, destFromRURI bool, cc string) (orig, dest string, err error) {
	m := req.Msg
	for i := m.Find(sip.HdrPAssertedIdentity, 0); i >= 0 && orig == ""; i = m.Find(sip.HdrPAssertedIdentity, i+1) {
		for rest := req.ForwardedValue(i); len(rest) > 0 && orig == ""; {
			na, r, err := sip.ParseNameAddr(rest)
			if err != nil {
				break
			}
			orig = NationalTN(na.URI, cc)
			rest = r
		}
	}
	if orig == "" {
		if na, _, err := sip.ParseNameAddr(req.ForwardedValue(m.Find(sip.HdrFrom, 0))); err == nil {
			orig = NationalTN(na.URI, cc)
		}
	}
	if destFromRURI {
		dest = NationalTN(m.RequestURI(), cc)
	} else if na, _, err := sip.ParseNameAddr(m.Get(sip.HdrTo)); err == nil {
		dest = NationalTN(na.URI, cc)
	}
	switch {
	case orig == "":
		return "", "", fmt.Errorf("%w: calling party", ErrNoTN)
	case dest == "":
		return "", "", fmt.Errorf("%w: called party", ErrNoTN)
	}
	return orig, dest, nil
}

// containsFold reports whether b contains the lower-case ASCII word s in any case.
func containsFold(b []byte, s string) bool {
next:
	for i := 0; i+len(s) <= len(b); i++ {
		for j := 0; j < len(s); j++ {
			if b[i+j]|0x20 != s[j] {
				continue next
			}
		}
		return true
	}
	return false
}

// ownsNumber reports whether the canonical tn is one of trunk's numbers.
func ownsNumber(t *config.Trunk, tn string) bool {
	for _, n := range t.Numbers {
		p := n.Prefix
		if len(p) > 0 && p[0] == '+' {
			p = p[1:]
		}
		if !strings.HasPrefix(tn, p) {
			continue
		}
		rest := len(tn) - len(p)
		switch {
		case n.Digits < 0:
			return true
		case rest == n.Digits:
			return true
		}
	}
	return false
}
