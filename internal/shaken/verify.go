package shaken

import (
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/sipwarden/sipwarden/internal/e164"
	"github.com/sipwarden/sipwarden/internal/sip"
)

// Verification results (verstat values, 3GPP TS 24.229 section 7.2A.20,
// ATIS-1000074 section 5.3.1).
const (
	VerstatPassed = "TN-Validation-Passed"
	VerstatFailed = "TN-Validation-Failed"
	VerstatNone   = "No-TN-Validation"
)

// Stable reasons of a verification result (metric labels, event reasons,
// CDR). They never carry message contents.
const (
	ReasonPassed        = "passed"
	ReasonNoIdentity    = "no_identity"      // no Identity header
	ReasonUnsupported   = "unsupported"      // only PASSporTs of other types (div, rcd, ...)
	ReasonInvalid       = "invalid_identity" // 438: unparseable header or PASSporT
	ReasonInfoMismatch  = "info_mismatch"    // 438: info parameter differs from x5u
	ReasonStale         = "stale_date"       // 403: iat too old
	ReasonFuture        = "future_date"      // 403: iat too far ahead
	ReasonOrigMismatch  = "orig_mismatch"    // 438: orig.tn is not the caller
	ReasonDestMismatch  = "dest_mismatch"    // 438: dest.tn is not the callee
	ReasonX5U           = "x5u_fetch"        // 436: x5u refused or not fetched in time
	ReasonCertificate   = "bad_certificate"  // 437: chain, validity, key usage or TNAuthList
	ReasonRevoked       = "revoked"          // 437: the certificate is on its CRL
	ReasonBadAlg        = "unsupported_alg"  // 437: alg other than ES256
	ReasonSignature     = "bad_signature"    // 438
	ReasonTooManyHeader = "too_many_identities"
)

// MaxIdentities is how many Identity values of one request are examined.
const MaxIdentities = 8

// CertSource gives the certificates at an x5u URL, waiting at most budget.
// *Cache is one; tests and the CLI use fixed certificates.
type CertSource interface {
	Get(x5u string, budget time.Duration) (*CertEntry, error)
}

// VerifierConfig configures a Verifier. Zero durations take the defaults.
type VerifierConfig struct {
	// Roots are the STI-CA trust anchors (required).
	Roots *x509.CertPool
	// Certs fetches signing certificates (required).
	Certs CertSource
	// MaxAge is how old an iat may be (default 60s, ATIS-1000074).
	MaxAge time.Duration
	// FutureSkew is how far ahead of our clock an iat may be (default 5s).
	FutureSkew time.Duration
	// Budget is the longest a call waits for a certificate (default 500ms).
	Budget time.Duration
	// MaxWaiting bounds the calls that wait for a certificate at once
	// (default 4); more do not wait (436 while the fetch goes on), so that
	// many distinct slow x5u URLs cannot hold every worker.
	MaxWaiting int
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// CRL is the revocation check: CRLOff (default), CRLSoft or CRLHard.
	CRL string
	// CRLs fetches revocation lists (nil: Certs, when it is a CRLSource).
	CRLs CRLSource
	// CountryCode, when set ("1"), is put before numbers of the SIP message
	// written without one (no '+' or "00"): From "2155551212" then also
	// matches orig.tn "12155551212".
	CountryCode string
}

// Verifier is the verification service (ATIS-1000074 section 5.3). Safe
// for concurrent use.
type Verifier struct {
	cfg     VerifierConfig
	waiting atomic.Int64
}

// NewVerifier checks cfg and returns a Verifier.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.Roots == nil {
		return nil, errors.New("verifier: no STI-CA trust anchors")
	}
	if cfg.Certs == nil {
		return nil, errors.New("verifier: no certificate source")
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 60 * time.Second
	}
	if cfg.FutureSkew <= 0 {
		cfg.FutureSkew = 5 * time.Second
	}
	if cfg.Budget <= 0 {
		cfg.Budget = 500 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxWaiting <= 0 {
		cfg.MaxWaiting = 4
	}
	switch cfg.CRL {
	case "":
		cfg.CRL = CRLOff
	case CRLOff, CRLSoft, CRLHard:
	default:
		return nil, fmt.Errorf("verifier: crl mode %q: want off, soft or hard", cfg.CRL)
	}
	if cfg.CRLs == nil {
		cfg.CRLs, _ = cfg.Certs.(CRLSource)
	}
	return &Verifier{cfg: cfg}, nil
}

// Result is the outcome of verifying a request's Identity headers.
type Result struct {
	// Verstat is TN-Validation-Passed, TN-Validation-Failed or No-TN-Validation.
	Verstat string
	// Code is the SIP status code of a failure (403, 436, 437, 438); 0 otherwise.
	Code int
	// Reason is a stable token (Reason* constants).
	Reason string
	// Err says what exactly failed (for logs at debug level; it may quote
	// the message, never key material).
	Err error
	// From the PASSporT that decided the result (empty when none did).
	Attest, OrigID, X5U, SPC string
	// Identities is how many Identity values were examined.
	Identities int
	// OrigMatch is 1 + the index in Call.Orig of the number the PASSporT's
	// orig matched (0: none did), so that the verified identity, and not
	// another one, gets the verstat (Call.OrigField).
	OrigMatch int
}

// Passed reports whether some Identity verified.
func (r *Result) Passed() bool { return r.Verstat == VerstatPassed }

// Call is what the verifier checks a PASSporT against: the calling number
// candidates (P-Asserted-Identity, From) and the called number candidates
// (To, Request-URI), in canonical form (CanonicalTN: digits only).
type Call struct {
	Orig []string
	Dest []string
	// OrigField, when set, is parallel to Orig: the header field of the
	// message each number came from (a P-Asserted-Identity or the From).
	OrigField []int
}

// AddOrig adds the calling numbers of the header field value v (one or
// more name-addrs) read from field index field (-1: unknown).
func (c *Call) AddOrig(v []byte, field int, cc string) {
	for rest := v; len(rest) > 0 && len(c.Orig) < 4; {
		na, r, err := sip.ParseNameAddr(rest)
		if err != nil {
			break
		}
		n := len(c.Orig)
		c.Orig = appendTN(c.Orig, na.URI, cc)
		for range len(c.Orig) - n {
			c.OrigField = append(c.OrigField, field)
		}
		rest = r
	}
}

// Field is the header field index the Orig number at OrigMatch came from,
// or -1.
func (c *Call) Field(origMatch int) int {
	if origMatch < 1 || origMatch > len(c.OrigField) {
		return -1
	}
	return c.OrigField[origMatch-1]
}

// CallFromMsg reads the calling and called numbers of a request: orig from
// P-Asserted-Identity and From, dest from To and the Request-URI. Numbers
// that are no telephone numbers are left out; a number without country
// code is also taken with cc before it (cc "" for none).
func CallFromMsg(m *sip.Msg, cc string) Call {
	return CallFromFields(m, cc, func(i int) []byte { return m.Header(i).Value })
}

// CallFromFields is CallFromMsg over the values value(i) gives for the
// header fields of m: the forwarded ones, after other stages removed or
// changed some (nil: the field is removed).
func CallFromFields(m *sip.Msg, cc string, value func(i int) []byte) Call {
	var c Call
	for i := m.Find(sip.HdrPAssertedIdentity, 0); i >= 0 && len(c.Orig) < 4; i = m.Find(sip.HdrPAssertedIdentity, i+1) {
		c.AddOrig(value(i), i, cc)
	}
	if from := m.Find(sip.HdrFrom, 0); from >= 0 {
		// From holds one name-addr: only the first counts
		if na, _, err := sip.ParseNameAddr(value(from)); err == nil {
			n := len(c.Orig)
			c.Orig = appendTN(c.Orig, na.URI, cc)
			for range len(c.Orig) - n {
				c.OrigField = append(c.OrigField, from)
			}
		}
	}
	if na, _, err := sip.ParseNameAddr(m.Get(sip.HdrTo)); err == nil {
		c.Dest = appendTN(c.Dest, na.URI, cc)
	}
	c.Dest = appendTN(c.Dest, m.RequestURI(), cc)
	return c
}

// URITN returns the canonical telephone number in a SIP or tel URI's user
// part (RFC 8224 section 8.3: digits only), or "".
func URITN(uri []byte) string {
	tn, _ := uriTN(uri)
	return tn
}

// uriTN is URITN that also reports whether the number was written with
// its country code ('+' or "00").
func uriTN(uri []byte) (string, bool) {
	u, err := sip.ParseURI(uri)
	if err != nil || len(u.User) == 0 {
		return "", false
	}
	var buf [40]byte
	n, intl := e164.Normalize(u.User, buf[:0])
	if len(n) > 0 && n[0] == '+' {
		n = n[1:]
	}
	if len(n) == 0 || len(n) > 15 {
		return "", false
	}
	return string(n), intl
}

// NationalTN returns the canonical number of uri with cc put before it when
// it was written without a country code (cc "" leaves it as it is).
func NationalTN(uri []byte, cc string) string {
	tn, intl := uriTN(uri)
	if tn == "" || intl || cc == "" || len(cc)+len(tn) > 15 {
		return tn
	}
	return cc + tn
}

func appendTN(list []string, uri []byte, cc string) []string {
	tn, intl := uriTN(uri)
	if tn == "" {
		return list
	}
	list = appendUnique(list, tn)
	if !intl && cc != "" && len(cc)+len(tn) <= 15 {
		list = appendUnique(list, cc+tn)
	}
	return list
}

func appendUnique(list []string, tn string) []string {
	for _, x := range list {
		if x == tn {
			return list
		}
	}
	return append(list, tn)
}

// VerifyMsg verifies every Identity header of m (at most MaxIdentities)
// against m's numbers. One PASSporT of type shaken that verifies is enough:
// the result is TN-Validation-Passed. Without any shaken PASSporT the result
// is No-TN-Validation; otherwise it is the failure of the first one.
func (v *Verifier) VerifyMsg(m *sip.Msg) Result {
	return v.VerifyMsgCall(m, CallFromMsg(m, v.cfg.CountryCode))
}

// VerifyMsgCall is VerifyMsg against the numbers of call (CallFromFields).
func (v *Verifier) VerifyMsgCall(m *sip.Msg, call Call) Result {
	var vals [MaxIdentities][]byte
	n := 0
	more := false
	for i := m.Find(sip.HdrIdentity, 0); i >= 0; i = m.Find(sip.HdrIdentity, i+1) {
		SplitIdentities(m.Header(i).Value, func(val []byte) bool {
			if n == len(vals) {
				more = true
				return false
			}
			vals[n] = val
			n++
			return true
		})
	}
	r := v.Verify(vals[:n], call)
	if more && !r.Passed() && r.Reason != ReasonInvalid {
		r.Reason = ReasonTooManyHeader
	}
	return r
}

// Verify verifies Identity header values against call (see VerifyMsg).
func (v *Verifier) Verify(identities [][]byte, call Call) Result {
	if len(identities) == 0 {
		return Result{Verstat: VerstatNone, Reason: ReasonNoIdentity}
	}
	var first *Result
	for _, val := range identities {
		r := v.verifyOne(val, call)
		r.Identities = len(identities)
		switch {
		case r.Passed():
			return r
		case r.Verstat == VerstatFailed && first == nil:
			first = &r
		}
	}
	if first != nil {
		return *first
	}
	return Result{Verstat: VerstatNone, Reason: ReasonUnsupported, Identities: len(identities)}
}

func fail(code int, reason string, err error) Result {
	return Result{Verstat: VerstatFailed, Code: code, Reason: reason, Err: err}
}

// verifyOne runs the ATIS-1000074 steps on one Identity value, in the order
// of RFC 8224 section 6.2: the cheap checks before any fetch or signature.
func (v *Verifier) verifyOne(val []byte, call Call) Result {
	id, err := ParseIdentity(val)
	if err != nil {
		return fail(438, ReasonInvalid, err)
	}
	if id.PPT != "" && id.PPT != PPTShaken {
		return Result{Verstat: VerstatNone, Reason: ReasonUnsupported}
	}
	p, err := ParsePASSporT(id.Token)
	switch {
	case errors.Is(err, ErrUnsupported) && p != nil && p.Header.PPT == PPTShaken:
		return fail(437, ReasonBadAlg, err) // a shaken PASSporT with another alg
	case errors.Is(err, ErrUnsupported):
		return Result{Verstat: VerstatNone, Reason: ReasonUnsupported}
	case err != nil:
		return fail(438, ReasonInvalid, err)
	}
	if id.Alg != "" && id.Alg != AlgES256 {
		return fail(437, ReasonBadAlg, fmt.Errorf("alg parameter %q", id.Alg))
	}
	res := func(r Result) Result {
		r.Attest, r.OrigID, r.X5U = p.Claims.Attest, p.Claims.OrigID, p.Header.X5U
		return r
	}
	if id.Info != "" && id.Info != p.Header.X5U {
		return res(fail(438, ReasonInfoMismatch, errors.New("info parameter differs from x5u")))
	}
	now := v.cfg.Now()
	// iat has a resolution of one second: compare in whole seconds
	// (no Duration arithmetic: a hostile iat would overflow it)
	if age := now.Unix() - p.Claims.IAT; age > int64(v.cfg.MaxAge/time.Second) {
		return res(fail(403, ReasonStale, fmt.Errorf("iat is %d s old, at most %v", age, v.cfg.MaxAge)))
	} else if -age > int64(v.cfg.FutureSkew/time.Second) {
		return res(fail(403, ReasonFuture, fmt.Errorf("iat is %d s ahead", -age)))
	}
	origAt := indexTN(call.Orig, p.Claims.Orig)
	if origAt < 0 {
		return res(fail(438, ReasonOrigMismatch, fmt.Errorf("orig.tn %s is not the caller %v", p.Claims.Orig, call.Orig)))
	}
	res = func(r Result) Result {
		r.Attest, r.OrigID, r.X5U = p.Claims.Attest, p.Claims.OrigID, p.Header.X5U
		r.OrigMatch = origAt + 1
		return r
	}
	destOK := false
	for _, d := range p.Claims.Dest {
		if matchTN(call.Dest, d) {
			destOK = true
			break
		}
	}
	if !destOK {
		return res(fail(438, ReasonDestMismatch, fmt.Errorf("dest.tn %v is not the callee %v", p.Claims.Dest, call.Dest)))
	}
	budget := v.cfg.Budget
	if v.waiting.Add(1) > int64(v.cfg.MaxWaiting) {
		budget = 0 // enough calls are waiting already: look in the cache only
	}
	entry, err := v.cfg.Certs.Get(p.Header.X5U, budget)
	v.waiting.Add(-1)
	switch {
	case errors.Is(err, ErrCertificate):
		return res(fail(437, ReasonCertificate, err))
	case err != nil:
		return res(fail(436, ReasonX5U, err))
	}
	checked, err := entry.Check(v.cfg.Roots, now)
	if err == nil {
		err = checkRevocation(v.cfg.CRLs, v.cfg.CRL, checked.Chain, now, v.cfg.Budget)
	}
	if errors.Is(err, ErrRevoked) {
		return res(fail(437, ReasonRevoked, err))
	}
	if err != nil {
		return res(fail(437, ReasonCertificate, err))
	}
	if err := p.VerifySignature(checked.Key); err != nil {
		r := res(fail(438, ReasonSignature, err))
		r.SPC = checked.SPC
		return r
	}
	r := res(Result{Verstat: VerstatPassed, Reason: ReasonPassed})
	r.SPC = checked.SPC
	return r
}

// matchTN reports whether claim (from a PASSporT) is one of the canonical
// numbers in list. The claim is canonicalised first: some signers keep a '+'.
func matchTN(list []string, claim string) bool { return indexTN(list, claim) >= 0 }

// indexTN is the index in list of the canonical claim, or -1.
func indexTN(list []string, claim string) int {
	tn, ok := CanonicalTN(claim)
	if !ok {
		return -1
	}
	for i, x := range list {
		if x == tn {
			return i
		}
	}
	return -1
}

// StaticCerts is a CertSource that serves fixed certificates for any URL
// (the CLI's --cert, and tests).
type StaticCerts struct{ Entry *CertEntry }

// Get returns the fixed certificates.
func (s StaticCerts) Get(string, time.Duration) (*CertEntry, error) {
	if s.Entry == nil {
		return nil, fmt.Errorf("%w: no certificate", ErrX5U)
	}
	return s.Entry, nil
}
