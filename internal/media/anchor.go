package media

import (
	"fmt"
	"net/netip"

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
	// targets are the addresses of a trunk's targets and of its upstream's:
	// where the callee's signalling comes from, for latching (LegPolicy.Signal).
	targets map[*config.Trunk][2][]netip.Addr // [0]: the trunk's, [1]: its upstream's
}

// NewAnchor builds the anchor of cfg's trunks over r.
func NewAnchor(r *Relay, cfg *config.Config) (*Anchor, error) {
	a := &Anchor{relay: r, policies: map[*config.Trunk][2]Policy{}, targets: map[*config.Trunk][2][]netip.Addr{}}
	addrs := func(ts []config.Target) []netip.Addr {
		var out []netip.Addr
		for _, tg := range ts {
			out = append(out, tg.Addr.Addr().Unmap())
		}
		return out
	}
	for i := range cfg.Trunks {
		t := &cfg.Trunks[i]
		var up []netip.Addr
		if u := cfg.UpstreamByName(t.Upstream); u != nil {
			up = addrs(u.Targets)
		}
		a.targets[t] = [2][]netip.Addr{addrs(t.Targets), up}
		var p [2]Policy
		for _, leg := range []Leg{LegA, LegB} {
			pol, err := PolicyFor(t, leg)
			if err != nil {
				return nil, config.At(cfg.FirstKey(fmt.Sprintf("trunks[%d].media", i), "media"), err)
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
	// Where each leg's signalling comes from: the caller's is this
	// request's source; the callee's, the targets the call is routed to
	// (the trunk's for a call to it, its upstream's for a call from it).
	pol := p[trunkLeg]
	tg := a.targets[t]
	pol.Legs[LegA].Signal = []netip.Addr{req.Src.Addr().Unmap()}
	if trunkLeg == LegB {
		pol.Legs[LegB].Signal = tg[0]
	} else {
		pol.Legs[LegB].Signal = tg[1]
	}
	// The session is keyed by the call's identity (Call-ID and From tag),
	// not its Call-ID alone: another INVITE that reuses the Call-ID must not
	// update, answer or close this call's session.
	return &anchoredCall{relay: a.relay, callID: req.CallKey(), pol: pol}
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
