package chain

// A MediaSession anchors the media of one call (package media's relay). The
// proxy hands it every session description (SDP body) of the call's dialog
// as it relays it, says whether it is an offer or an answer and which side
// sent it, and forwards the body it returns in its place.
type MediaSession interface {
	// Offer takes an offer from the caller (fromCaller) or the callee and
	// returns the body to forward to the other side. An error that is a
	// *VerdictError says how to answer the request that carried the offer.
	Offer(fromCaller bool, body []byte) ([]byte, error)
	// Answer takes the answer to the pending offer.
	Answer(fromCaller bool, body []byte) ([]byte, error)
	// Close ends the call's media; it returns the media security of the
	// caller's and the callee's legs for the CDR ("srtp:<suite>", "rtp", "").
	Close() (caller, callee string)
}

// A MediaAnchor opens a MediaSession for a call the chain routed; nil when
// the call's media is not to be anchored (no policy for its trunk). The
// proxy calls it once per initial INVITE, after the chain, so that the
// request's trunk, destination trunk and target are known.
type MediaAnchor interface {
	Open(req *Request) MediaSession
}

// VerdictError is an error that says how to answer the request that caused it.
type VerdictError struct {
	Verdict Verdict
	Err     error
}

func (e *VerdictError) Error() string { return e.Err.Error() }
func (e *VerdictError) Unwrap() error { return e.Err }
