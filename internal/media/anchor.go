package media

import (
	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
)

// Anchor connects the relay to the proxy (chain.MediaAnchor): for each call
// the chain routed from or to a trunk, a session that runs the call's SDP
// through the relay under the trunk's policy. One Anchor is built per
// configuration over the process-wide Relay (policies change on reload,
// sessions and ports do not).
type Anchor struct {
	relay    *Relay
	policies map[*config.Trunk][2]Policy // by the leg that faces the trunk
}

// NewAnchor builds the anchor of cfg's trunks over r.
func NewAnchor(r *Relay, cfg *config.Config) (*Anchor, error) {
	a := &Anchor{relay: r, policies: map[*config.Trunk][2]Policy{}}
	for i := range cfg.Trunks {
		t := &cfg.Trunks[i]
		var p [2]Policy
		for _, leg := range []Leg{LegA, LegB} {
			pol, err := PolicyFor(t, leg)
			if err != nil {
				return nil, err
			}
			p[leg] = pol
		}
		a.policies[t] = p
	}
	return a, nil
}

// Open implements chain.MediaAnchor: calls from a trunk are anchored with
// the trunk on the caller's leg, calls from an upstream to a trunk with the
// trunk on the callee's leg. Other calls (no trunk) are not anchored.
func (a *Anchor) Open(req *chain.Request) chain.MediaSession {
	var t *config.Trunk
	trunkLeg := LegA
	switch {
	case req.PeerKind == chain.PeerTrunk:
		t = req.Trunk
	case req.DestTrunk != nil:
		t, trunkLeg = req.DestTrunk, LegB
	}
	p, ok := a.policies[t]
	if !ok {
		return nil
	}
	// The session is keyed by the call's identity (Call-ID and From tag),
	// not its Call-ID alone: another INVITE that reuses the Call-ID must not
	// update, answer or close this call's session.
	return &anchoredCall{relay: a.relay, callID: req.CallKey(), pol: p[trunkLeg]}
}

// anchoredCall is one anchored call (chain.MediaSession).
type anchoredCall struct {
	relay  *Relay
	callID string // the relay's session key: chain.CallKey of the INVITE
	pol    Policy
}

func leg(fromCaller bool) Leg {
	if fromCaller {
		return LegA
	}
	return LegB
}

// Offer implements chain.MediaSession (the relay's Offer works as Update on
// a call it knows).
func (c *anchoredCall) Offer(fromCaller bool, body []byte) ([]byte, error) {
	out, err := c.relay.Offer(c.callID, leg(fromCaller), body, c.pol)
	return out, verdictError(err)
}

// Answer implements chain.MediaSession.
func (c *anchoredCall) Answer(fromCaller bool, body []byte) ([]byte, error) {
	out, err := c.relay.Answer(c.callID, leg(fromCaller), body)
	return out, verdictError(err)
}

// Close implements chain.MediaSession.
func (c *anchoredCall) Close() (caller, callee string) {
	sec := c.relay.Close(c.callID)
	return sec[LegA].String(), sec[LegB].String()
}

// verdictError says how to answer the request whose SDP the relay refused.
func verdictError(err error) error {
	if err == nil {
		return nil
	}
	code, warning, reason := SIPStatus(err)
	return &chain.VerdictError{Verdict: chain.Verdict{Action: chain.Reply, Code: uint16(code), Reason: reason, Warning: warning}, Err: err}
}
