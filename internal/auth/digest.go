package auth

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/sipwarden/sipwarden/internal/sip"
)

// Account is one set of digest credentials. The password itself is never
// kept: HA1 holds H(username:realm:password) per algorithm, in lower-case hex
// ("" for an algorithm the account cannot use).
type Account struct {
	Username string
	HA1      [numAlgorithms]string
	// SHAOnly accounts never use MD5: it is neither offered nor accepted.
	SHAOnly bool
	// Offer, when set, is the account's own offer, in challenge order: a
	// subset of the realm's (nil: the realm's offer).
	Offer []Algorithm
	// RegisterFrom, when not empty, lists the only source prefixes this
	// account may REGISTER from (even with the right password).
	RegisterFrom []netip.Prefix

	detail string // "account <name>", built once for events
	// offered has bit alg set for each algorithm of offer (set by NewVerifier).
	offered uint8
	// offer is what the account is challenged with: Offer or the realm's,
	// without MD5 for a SHA-only account (set by NewVerifier).
	offer []Algorithm
}

// Accepts reports whether the account may authenticate with alg: its realm
// offers alg (an HA1 kept for an algorithm the realm no longer offers is
// never used), the account has an HA1 for it, and it is not MD5 for a
// SHA-only account. An account that belongs to no Verifier accepts nothing.
func (a *Account) Accepts(alg Algorithm) bool {
	return alg > AlgUnknown && alg < numAlgorithms && a.offered&(1<<alg) != 0 && a.HA1[alg] != "" && !(a.SHAOnly && alg == MD5)
}

// MayRegisterFrom reports whether src is within the account's RegisterFrom (or it is empty).
func (a *Account) MayRegisterFrom(src netip.Addr) bool {
	if len(a.RegisterFrom) == 0 {
		return true
	}
	src = src.Unmap()
	for _, p := range a.RegisterFrom {
		if p.Contains(src) {
			return true
		}
	}
	return false
}

// Verifier checks digest credentials for one realm and its accounts, and
// builds the challenges. It is immutable once built and safe for concurrent
// use; Nonces and ReplayGuard are shared process-wide.
type Verifier struct {
	realm    string
	offer    []Algorithm
	accounts map[string]*Account
	nonces   *Nonces
	replay   *ReplayGuard
	lifetime time.Duration
	// shares are the distinct offers of the accounts with the share of
	// accounts that get each: an unknown username gets one of them, in
	// the same proportion (a stable, secret choice per name), so the offer
	// tells nothing about which names exist.
	shares []offerShare
}

type offerShare struct {
	offer []Algorithm
	share float64 // cumulative, the last one 1
}

// NewVerifier builds the verifier of realm. offer lists the algorithms to
// challenge with, in the order of the challenges (nil: DefaultOffer): many
// phones answer only the first one. Every account must have
// an HA1 for every offered algorithm (MD5 excepted for SHA-only accounts).
// Nonces are accepted for lifetime after their issue.
func NewVerifier(realm string, offer []Algorithm, accounts []Account, nonces *Nonces, replay *ReplayGuard, lifetime time.Duration) (*Verifier, error) {
	if realm == "" || strings.ContainsAny(realm, "\"\\\r\n") {
		return nil, fmt.Errorf("realm %q must be non-empty without quotes, backslashes or line breaks", realm)
	}
	if offer == nil {
		offer = DefaultOffer
	}
	v := &Verifier{realm: realm, offer: offer, accounts: make(map[string]*Account, len(accounts)), nonces: nonces, replay: replay, lifetime: lifetime}
	counts := map[string]int{}
	var distinct [][]Algorithm
	for i := range accounts {
		a := &accounts[i]
		if _, dup := v.accounts[a.Username]; dup {
			return nil, fmt.Errorf("account %q is defined twice", a.Username)
		}
		own := offer
		if a.Offer != nil {
			for _, alg := range a.Offer {
				if !slices.Contains(offer, alg) {
					return nil, fmt.Errorf("account %q: %s is not offered by the realm", a.Username, alg)
				}
			}
			own = a.Offer
		}
		a.offer = make([]Algorithm, 0, len(own))
		for _, alg := range own {
			if !(alg == MD5 && a.SHAOnly) {
				a.offer = append(a.offer, alg)
			}
		}
		if len(a.offer) == 0 {
			return nil, fmt.Errorf("account %q is offered no algorithm", a.Username)
		}
		a.detail = "account " + a.Username
		a.offered = 0
		for _, alg := range a.offer {
			if a.HA1[alg] == "" {
				return nil, fmt.Errorf("account %q has no HA1 for %s, which it is offered", a.Username, alg)
			}
			if alg > AlgUnknown && alg < numAlgorithms {
				a.offered |= 1 << alg
			}
		}
		v.accounts[a.Username] = a
		key := fmt.Sprint(a.offer)
		if counts[key] == 0 {
			distinct = append(distinct, a.offer)
		}
		counts[key]++
	}
	cum := 0
	for _, o := range distinct {
		cum += counts[fmt.Sprint(o)]
		v.shares = append(v.shares, offerShare{offer: o, share: float64(cum) / float64(len(accounts))})
	}
	return v, nil
}

// Realm returns the verifier's realm.
func (v *Verifier) Realm() string { return v.realm }

// Account returns the account named username, or nil.
func (v *Verifier) Account(username string) *Account { return v.accounts[username] }

// Result is the outcome of a verification.
type Result uint8

// Results of Verify. Only Failure and UnknownAccount are failed guesses; the
// others are protocol problems or a correct answer that needs a fresh nonce.
const (
	// Success: the response is right, the nonce valid and the count fresh.
	Success Result = iota
	// Failure: a known account, a wrong response (or an algorithm the account may not use).
	Failure
	// UnknownAccount: no such username (answered exactly like Failure).
	UnknownAccount
	// Stale: the response is right but the nonce expired, was issued to
	// another address or is no longer tracked: challenge again with stale=true.
	Stale
	// Replay: the response is right but its nonce-count was already used.
	Replay
	// Malformed: a required parameter is missing, qop is not auth, userhash
	// was asked for, or the digest URI is not the Request-URI.
	Malformed
)

var resultNames = [...]string{"success", "failure", "unknown_account", "stale", "replay", "malformed"}

// String returns the result's stable name (metric label, event reason).
func (r Result) String() string {
	if int(r) < len(resultNames) {
		return resultNames[r]
	}
	return "unknown"
}

// Outcome is a verification's result with its detail.
type Outcome struct {
	Result  Result
	Account *Account // the account for Success, Failure, Stale and Replay
	// Why is a constant explaining Failure and Malformed ("wrong_response",
	// "algorithm_refused", "uri_mismatch", "qop_required", ...). Never a secret.
	Why string
}

// ErrNoRealm is returned by FindCredentials when no credentials name the realm.
var ErrNoRealm = errors.New("auth: no credentials for this realm")

// Pending is a verification between its two halves (Check and Finish): the
// credentials are well formed, their nonce is ours, fresh and bound to the
// source, and Account is the account they name (nil: no such username).
// Nothing about the response has been looked at yet, so a caller may refuse
// the account here (a lockout, a source restriction) without telling a right
// password from a wrong one.
type Pending struct {
	Account *Account
	key     NonceKey
	issued  time.Time
}

// Verify checks c, received from src in a request with method and
// requestURI: Check, then Finish. It allocates nothing. Its timing does not
// depend on whether the username exists or on where the response differs.
func (v *Verifier) Verify(c *Credentials, method, requestURI []byte, src netip.Addr, now time.Time) Outcome {
	p, o, ok := v.Check(c, requestURI, src, now)
	if !ok {
		return o
	}
	return v.Finish(c, method, &p, now)
}

// Check is the first half of a verification: everything that does not
// depend on the password, in this order: the syntax (Malformed); the nonce,
// which must be ours, for this realm, fresh and bound to src (Stale
// otherwise, whatever the response: a right and a wrong password get the
// same answer); the algorithm, which must be one the realm offers and the
// account may use (Failure "algorithm_refused", UnknownAccount for an
// unknown username). ok is false when o is the final outcome.
func (v *Verifier) Check(c *Credentials, requestURI []byte, src netip.Addr, now time.Time) (p Pending, o Outcome, ok bool) {
	switch {
	case len(c.Username) == 0 || len(c.Nonce) == 0 || len(c.URI) == 0 || len(c.Response) == 0:
		return p, Outcome{Result: Malformed, Why: "missing_parameter"}, false
	case !equalFold(c.QOP, "auth"):
		return p, Outcome{Result: Malformed, Why: "qop_required"}, false
	case len(c.CNonce) == 0 || len(c.NC) == 0:
		return p, Outcome{Result: Malformed, Why: "missing_parameter"}, false
	case c.UserHash:
		return p, Outcome{Result: Malformed, Why: "userhash_unsupported"}, false
	case string(c.Realm) != v.realm:
		return p, Outcome{Result: Malformed, Why: "realm_mismatch"}, false
	case !sameURI(c.URI, requestURI):
		return p, Outcome{Result: Malformed, Why: "uri_mismatch"}, false
	}
	st, key, issued := v.nonces.Check(c.Nonce, v.realm, src, now, v.lifetime)
	switch st {
	case NonceExpired:
		return p, Outcome{Result: Stale, Why: "nonce_expired"}, false
	case NonceInvalid:
		return p, Outcome{Result: Stale, Why: "nonce_invalid"}, false
	}
	acct := v.accounts[string(c.Username)]
	switch {
	case acct == nil && !v.offers(c.Algorithm):
		return p, Outcome{Result: UnknownAccount, Why: "unknown_account"}, false
	case acct != nil && !acct.Accepts(c.Algorithm):
		if v.offers(c.Algorithm) {
			v.Spend(c) // MD5 for a SHA-only account: as long as an unknown name's MD5
		}
		return p, Outcome{Result: Failure, Account: acct, Why: "algorithm_refused"}, false
	}
	return Pending{Account: acct, key: key, issued: issued}, Outcome{}, true
}

// offers reports whether alg is one of the realm's algorithms.
func (v *Verifier) offers(alg Algorithm) bool {
	for _, a := range v.offer {
		if a == alg {
			return true
		}
	}
	return false
}

// Finish is the second half of a verification (after Check): the response,
// compared in constant time (an unknown username against a pseudo-HA1, so
// that it costs the same), then the nonce-count, recorded only for a right
// response. It allocates nothing.
func (v *Verifier) Finish(c *Credentials, method []byte, p *Pending, now time.Time) Outcome {
	acct, alg := p.Account, c.Algorithm
	var ha1buf [64]byte
	var ha1 []byte
	if acct != nil {
		ha1 = append(ha1buf[:0], acct.HA1[alg]...)
	} else {
		ha1 = v.nonces.pseudoHA1(ha1buf[:0], alg, c.Username, []byte(v.realm))
	}
	var exp [64]byte
	expected := appendResponse(exp[:0], alg, ha1, method, c.URI, c.Nonce, c.NC, c.CNonce, c.QOP)
	var got [64]byte
	ok := len(c.Response) == len(expected)
	n := copy(got[:], c.Response)
	for i := range n {
		if x := got[i]; 'A' <= x && x <= 'F' {
			got[i] = x + 'a' - 'A'
		}
	}
	ok = subtle.ConstantTimeCompare(got[:n], expected) == 1 && ok
	switch {
	case acct == nil:
		return Outcome{Result: UnknownAccount, Why: "unknown_account"}
	case !ok:
		return Outcome{Result: Failure, Account: acct, Why: "wrong_response"}
	}
	switch v.replay.Use(p.key, p.issued, c.NonceCnt, now) {
	case NCReplay:
		return Outcome{Result: Replay, Account: acct, Why: "nonce_count_reused"}
	case NCForgotten:
		return Outcome{Result: Stale, Account: acct, Why: "nonce_forgotten"}
	}
	return Outcome{Result: Success, Account: acct}
}

// Spend costs what Finish costs for an unknown username, deciding nothing:
// a refusal decided before the response (a lockout, register_from, MD5 for
// a SHA-only account) then takes as long as a verification, so that its
// timing does not tell a refused account from a name that does not exist.
// It allocates nothing.
func (v *Verifier) Spend(c *Credentials) {
	var ha1buf, exp [64]byte
	ha1 := v.nonces.pseudoHA1(ha1buf[:0], c.Algorithm, c.Username, []byte(v.realm))
	_ = appendResponse(exp[:0], c.Algorithm, ha1, []byte("REGISTER"), c.URI, c.Nonce, c.NC, c.CNonce, c.QOP)
}

// sameURI reports whether the digest uri names the Request-URI (RFC 3261
// section 22.4, RFC 7616 section 3.4.6): the same bytes, or SIP URIs with
// the same scheme, user, host (any case) and port. URI parameters may differ:
// some clients leave them out of the digest uri.
func sameURI(digestURI, requestURI []byte) bool {
	if string(digestURI) == string(requestURI) {
		return true
	}
	a, err := sip.ParseURI(digestURI)
	if err != nil || len(a.Host) == 0 {
		return false
	}
	b, err := sip.ParseURI(requestURI)
	if err != nil {
		return false
	}
	return bytes.EqualFold(a.Scheme, b.Scheme) && bytes.Equal(a.User, b.User) &&
		bytes.EqualFold(a.Host, b.Host) && a.Port == b.Port
}

// appendResponse appends the expected response of RFC 7616 section 3.4.1
// for qop=auth: H(HA1:nonce:nc:cnonce:qop:H(method:uri)).
func appendResponse(dst []byte, alg Algorithm, ha1, method, uri, nonce, nc, cnonce, qop []byte) []byte {
	var buf [1024]byte
	in := append(buf[:0], method...)
	in = append(in, ':')
	in = append(in, uri...)
	var ha2buf [64]byte
	ha2 := alg.appendSum(ha2buf[:0], in)
	in = append(buf[:0], ha1...)
	for _, p := range [...][]byte{nonce, nc, cnonce, qop, ha2} {
		in = append(in, ':')
		in = append(in, p...)
	}
	return alg.appendSum(dst, in)
}

// Offer returns the algorithms to challenge a request from user with: the
// account's own offer or the realm's, without MD5 for a SHA-only account.
// A username that is no account gets one of the accounts' offers, each as
// often as the accounts have it (a stable, secret choice per username), so
// that the offer cannot tell them apart.
func (v *Verifier) Offer(user []byte) []Algorithm {
	if a := v.accounts[string(user)]; a != nil {
		return a.offer
	}
	if len(v.shares) > 1 && len(user) > 0 {
		p := v.nonces.Pick(user)
		for _, o := range v.shares {
			if p < o.share {
				return o.offer
			}
		}
	}
	if len(v.shares) > 0 {
		return v.shares[len(v.shares)-1].offer
	}
	return v.offer
}

// AppendChallenge appends one challenge header line per algorithm of offer
// (RFC 8760 section 2.4), each ending in CRLF: header is "WWW-Authenticate"
// (401) or "Proxy-Authenticate" (407). The nonce is bound to src.
func (v *Verifier) AppendChallenge(dst []byte, header string, offer []Algorithm, src netip.Addr, stale bool, now time.Time) []byte {
	var nb [NonceLen]byte
	nonce := v.nonces.Append(nb[:0], v.realm, src, now)
	for _, alg := range offer {
		dst = append(dst, header...)
		dst = append(dst, `: Digest realm="`...)
		dst = append(dst, v.realm...)
		dst = append(dst, `", nonce="`...)
		dst = append(dst, nonce...)
		dst = append(dst, `", algorithm=`...)
		dst = append(dst, alg.String()...)
		dst = append(dst, `, qop="auth"`...)
		if stale {
			dst = append(dst, ", stale=true"...)
		}
		dst = append(dst, "\r\n"...)
	}
	return dst
}
