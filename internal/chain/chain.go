// Package chain is the contract between the proxy and the security stages.
//
// Every new request the proxy receives is wrapped in a Request and passed
// through the stages of a Chain in a fixed order (see stages.go). Each stage
// returns a Verdict; the first verdict that is not Continue ends the run. The
// proxy acts on the verdict: it forwards, replies with a SIP status, or drops
// the message silently.
//
// A Stage must not keep the Request (or anything it points into) after Handle
// returns: requests are pooled and the message bytes are reused.
package chain

import (
	"net/netip"
	"time"

	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/sip"
)

// A Stage decides what happens to one new request.
type Stage interface {
	// Name is the stage's stable name ("sanity", "acl", ...): metric label and event source.
	Name() string
	// Handle inspects (and may annotate) req and returns a verdict. It must not block.
	Handle(req *Request) Verdict
}

// Action is what the proxy does with a request once a stage has spoken.
type Action uint8

// The actions a verdict can ask for.
const (
	// Continue passes the request to the next stage.
	Continue Action = iota
	// Reply answers the request with Verdict.Code (and Retry-After when set).
	Reply
	// Drop discards the request without any answer (for unknown or hostile sources).
	Drop
	// Forward sends the request to Request.Target: routing is decided.
	Forward
)

// String names the action (a metric label).
func (a Action) String() string {
	switch a {
	case Continue:
		return "continue"
	case Reply:
		return "reply"
	case Drop:
		return "drop"
	case Forward:
		return "forward"
	}
	return "unknown"
}

// Verdict is a stage's decision. It is a small value: returning one never allocates.
type Verdict struct {
	Action Action
	// Code is the SIP status code for Reply.
	Code uint16
	// RetryAfter, in seconds, is added as a Retry-After header to a Reply when not zero.
	RetryAfter uint32
	// Reason is a stable, low-cardinality token ("unknown_source", "cps_limit"):
	// it is the metric label, the event reason and the CDR's blocked reason.
	// It must be a constant, never built from message contents.
	Reason string
	// Warning, when set, is sent as the text of a Warning header (399) with a Reply.
	Warning string
	// Header, when set, is one or more pre-formatted header lines sent with
	// a Reply, separated by CRLF, without the final line break
	// ("Unsupported: foo" with a 420; one WWW-Authenticate line per
	// algorithm with a 401).
	Header string
}

// Next is the verdict of a stage that has nothing against the request.
func Next() Verdict { return Verdict{Action: Continue} }

// ReplyWith answers the request with a SIP status code.
func ReplyWith(code int, reason string) Verdict {
	return Verdict{Action: Reply, Code: uint16(code), Reason: reason}
}

// ReplyRetry answers with a code (typically 503 or 429) and a Retry-After in seconds.
func ReplyRetry(code int, retryAfter uint32, reason string) Verdict {
	return Verdict{Action: Reply, Code: uint16(code), RetryAfter: retryAfter, Reason: reason}
}

// DropFor discards the request silently.
func DropFor(reason string) Verdict { return Verdict{Action: Drop, Reason: reason} }

// ForwardTo ends the chain: the request goes to req.Target.
func ForwardTo(reason string) Verdict { return Verdict{Action: Forward, Reason: reason} }

// PeerKind says what kind of configured peer sent a request.
type PeerKind uint8

// Kinds of peers.
const (
	// PeerUnknown is a source that matches no trunk and no upstream.
	PeerUnknown PeerKind = iota
	// PeerTrunk is a customer trunk (the untrusted side: PBXs, phones, carriers sending to us).
	PeerTrunk
	// PeerUpstream is the protected side (the PBX or softswitch behind sipwarden).
	PeerUpstream
)

// String names the kind.
func (k PeerKind) String() string {
	switch k {
	case PeerTrunk:
		return "trunk"
	case PeerUpstream:
		return "upstream"
	}
	return "unknown"
}

// Target is where the proxy sends a request: a transport and an address.
type Target struct {
	Transport sip.Transport
	Addr      netip.AddrPort
}

// IsValid reports whether the target is set.
func (t Target) IsValid() bool { return t.Transport != sip.TransportUnknown && t.Addr.IsValid() }

// A Releaser gives back something a stage acquired for a call (a concurrent-call slot).
// The proxy calls Release exactly once, when the call ends or fails.
type Releaser interface{ Release() }

// An Answerer is a Releaser that also wants to hear when its call is answered
// (the first 2xx to the INVITE): a meter that starts running then. The proxy
// calls Answered at most once, before Release.
type Answerer interface {
	Releaser
	Answered(at time.Time)
}

// MaxHolds is how many Releasers one request can carry.
const MaxHolds = 4

// Request is one new request travelling through the chain.
type Request struct {
	// Msg is the parsed message. Stages read it; edits are the proxy's job.
	Msg *sip.Msg
	// Src is the address the request came from (the packet's source, not Via).
	Src netip.AddrPort
	// Local is the listener address it arrived on.
	Local netip.AddrPort
	// Transport is how it arrived.
	Transport sip.Transport
	// InDialog is true for requests inside a dialog (To tag present).
	InDialog bool
	// TLSVerified is true when the request came over a TLS connection whose
	// client certificate verified against the configured client CA.
	TLSVerified bool
	// ParseErr is set when the message could not be parsed completely. The
	// chain still runs (acl decides between silence and an answer, sanity
	// turns the error into a 400), but only headers indexed before the error
	// are available in Msg.
	ParseErr error

	// Config is the configuration in force for this request (never nil in the proxy).
	Config *config.Config

	// Peer is set by the acl stage: who sent the request.
	PeerKind PeerKind
	Trunk    *config.Trunk    // when PeerKind == PeerTrunk
	Upstream *config.Upstream // when PeerKind == PeerUpstream
	// Account is set by the auth stage: the digest account that
	// authenticated the request (a configured username, never message bytes).
	Account string

	// Set by the route stage.
	// DestTrunk is the trunk a call from an upstream is going to (nil for calls to an upstream).
	DestTrunk *config.Trunk
	// Target is where the request goes next.
	Target Target
	// Identity is set by the shaken stage for the CDR: "signed:A" (the
	// attestation of a call it signed) or the verification result of a call
	// it verified ("TN-Validation-Passed", "TN-Validation-Failed:438:bad_signature").
	Identity string
	// RequestURI, when set, replaces the Request-URI of the forwarded
	// request (a call to a registered account goes to its contact).
	RequestURI string

	holds  [MaxHolds]Releaser
	nholds int
	edits  headerEdits // edits.go
}

// Reset clears the request for reuse.
func (r *Request) Reset() {
	*r = Request{}
}

// Hold registers rel to be released when the call ends (and, when rel is an
// Answerer, told when the call is answered). It reports false, and
// releases rel at once, when the request already carries MaxHolds releasers.
func (r *Request) Hold(rel Releaser) bool {
	if r.nholds == len(r.holds) {
		rel.Release()
		return false
	}
	r.holds[r.nholds] = rel
	r.nholds++
	return true
}

// TakeHolds moves the registered releasers into dst (the proxy keeps them with
// the call) and clears them from the request. It returns the number moved.
func (r *Request) TakeHolds(dst *[MaxHolds]Releaser) int {
	n := r.nholds
	copy(dst[:], r.holds[:n])
	for i := range r.holds[:n] {
		r.holds[i] = nil
	}
	r.nholds = 0
	return n
}

// ReleaseHolds releases everything the request holds (used when the request is
// refused after a stage acquired something).
func (r *Request) ReleaseHolds() {
	for i := range r.holds[:r.nholds] {
		r.holds[i].Release()
		r.holds[i] = nil
	}
	r.nholds = 0
}

// Initial reports whether the request starts something new (a call, a
// registration, an out-of-dialog request): not in a dialog, not ACK, not CANCEL.
// Limits and routing apply to initial requests only.
func (r *Request) Initial() bool {
	if r.InDialog || r.Msg == nil {
		return false
	}
	m := r.Msg.Method()
	return m != sip.ACK && m != sip.CANCEL
}

// PeerName returns the name of the trunk or upstream that sent the request, or "".
func (r *Request) PeerName() string {
	switch r.PeerKind {
	case PeerTrunk:
		return r.Trunk.Name
	case PeerUpstream:
		return r.Upstream.Name
	}
	return ""
}

// CallKey is the identity under which sipwarden keeps the state of one call
// (its dialog, fraud meter and media session): the Call-ID and the caller's
// From tag, separated by a NUL byte (which neither may contain). Two INVITEs
// that share a Call-ID but not a From tag are two calls (RFC 3261 12: a
// dialog is Call-ID, local tag and remote tag); the callee's To tag is not
// part of the key because it is unknown when the call starts, and the proxy
// checks it on every in-dialog request once the call is answered.
func CallKey(callID, fromTag []byte) string {
	return string(callID) + "\x00" + string(fromTag) // one allocation
}

// CallKey returns the call key of the request (see CallKey).
func (r *Request) CallKey() string {
	return CallKey(r.Msg.CallID(), r.Msg.FromTag())
}

// CallIDOf returns the Call-ID part of a call key (logs and events show the
// Call-ID, never the key). A string without a NUL byte is returned whole.
func CallIDOf(key string) string {
	for i := 0; i < len(key); i++ {
		if key[i] == 0 {
			return key[:i]
		}
	}
	return key
}
