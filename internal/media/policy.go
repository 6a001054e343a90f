package media

import (
	"errors"
	"fmt"
	"net/netip"
)

// Leg is one side of a call through the relay. LegA is the side that sent the
// initial INVITE (the caller), LegB the side it went to. Either leg may send
// a later offer (re-INVITE, UPDATE).
type Leg uint8

// The two legs of a call.
const (
	LegA Leg = 0
	LegB Leg = 1
)

func (l Leg) other() Leg { return 1 - l }

// String names the leg ("a" or "b").
func (l Leg) String() string {
	if l == LegA {
		return "a"
	}
	return "b"
}

// SRTPMode is what a leg's policy asks of the media security on that leg.
type SRTPMode uint8

// SRTP modes of one leg.
const (
	// SRTPOptional uses SRTP on the leg when its peer offers it, and offers
	// SRTP to the peer when the other leg's offer had it (mirroring).
	SRTPOptional SRTPMode = iota
	// SRTPRequired refuses offers and answers from the leg that have no
	// acceptable a=crypto on an active RTP stream, and always offers SRTP to it.
	SRTPRequired
	// SRTPPlain never offers SRTP to the leg (a PBX that cannot do SRTP); an
	// offer with SRTP from it is still accepted.
	SRTPPlain
)

// LegPolicy is the policy of one leg.
type LegPolicy struct {
	SRTP SRTPMode
	// KeepICE passes ICE attributes (RFC 8445: a=candidate, a=ice-ufrag, ...)
	// on to this leg. It applies to direct media only: a relayed stream
	// always loses them, since candidates would route media around the relay
	// and reveal the other side's addresses.
	KeepICE bool
	// OfferDTLS makes the relay offer SRTP to this leg with DTLS-SRTP
	// (UDP/TLS/RTP/SAVP, a=fingerprint, a=setup:actpass; RFC 5763) instead
	// of SDES a=crypto. What the leg offers itself is accepted either way.
	OfferDTLS bool
	// Signal are the addresses the leg's signalling comes from (a NAT's
	// public address), when known: plain RTP from them latches at once, as
	// from the leg's SDP address; from any other address only behind NAT,
	// after a learning window (Config.LatchPackets).
	Signal []netip.Addr
}

// Policy is the media policy of one call.
type Policy struct {
	// Direct leaves media between the endpoints: the SDP is checked against
	// the SRTP policy (and ICE is stripped as asked) but not rewritten, and
	// no port is allocated.
	Direct bool
	Legs   [2]LegPolicy
}

// Trunk policy values, as written in the configuration.
const (
	TrunkSRTPOptional = "optional"
	TrunkSRTPRequired = "required"
	TrunkSRTPBridge   = "bridge"
	TrunkMediaDirect  = "direct"
	TrunkMediaRelay   = "relay"
)

// TrunkPolicy builds a call's policy from a trunk's `srtp` and `media`
// settings; trunkLeg says which leg faces the trunk (LegA for calls from the
// trunk, LegB for calls to it). The other leg faces the protected side.
//
//   - optional: SRTP where the trunk offers it, mirrored to the other side.
//   - required: the trunk leg must use SRTP; the other side gets SRTP when
//     the trunk's offer had it (always true), with keys of its own.
//   - bridge:   the trunk leg must use SRTP, the protected side gets plain RTP
//     (a PBX that cannot do SRTP); needs media: relay.
func TrunkPolicy(srtpMode, mediaMode string, keepICE bool, trunkLeg Leg) (Policy, error) {
	var p Policy
	switch mediaMode {
	case TrunkMediaRelay, "":
	case TrunkMediaDirect:
		p.Direct = true
	default:
		return p, fmt.Errorf("media %q: want %s or %s", mediaMode, TrunkMediaDirect, TrunkMediaRelay)
	}
	t, o := &p.Legs[trunkLeg], &p.Legs[trunkLeg.other()]
	switch srtpMode {
	case TrunkSRTPOptional, "":
	case TrunkSRTPRequired:
		t.SRTP = SRTPRequired
	case TrunkSRTPBridge:
		if p.Direct {
			return p, errors.New("srtp bridge needs media: relay")
		}
		t.SRTP, o.SRTP = SRTPRequired, SRTPPlain
	default:
		return p, fmt.Errorf("srtp %q: want %s, %s or %s", srtpMode, TrunkSRTPOptional, TrunkSRTPRequired, TrunkSRTPBridge)
	}
	if keepICE && !p.Direct {
		return p, errors.New("ice: keep needs media: direct (the relay is not an ICE agent)")
	}
	t.KeepICE, o.KeepICE = keepICE, keepICE
	return p, nil
}

// Errors of Offer, Answer and Update. SIPStatus maps them to a reply.
var (
	// ErrSRTPRequired: a leg whose policy requires SRTP sent SDP without
	// acceptable keying (SDES a=crypto or DTLS-SRTP a=fingerprint) on an
	// active stream.
	ErrSRTPRequired = errors.New("SRTP required")
	// ErrBadSDP: the body is not SDP the relay can work with.
	ErrBadSDP = errors.New("unusable SDP")
	// ErrNoPorts: the port range is exhausted.
	ErrNoPorts = errors.New("no free media ports")
	// ErrNoSession: no session for the Call-ID (Answer or Update without Offer).
	ErrNoSession = errors.New("no media session for the call")
	// ErrNoOffer: an answer arrived with no offer pending from the other leg.
	ErrNoOffer = errors.New("answer without a pending offer")
	// ErrClosed: the relay is shut down.
	ErrClosed = errors.New("media relay closed")
)

// SIPStatus maps an error of Offer/Update to the SIP reply a stage sends:
// the status code, the text of a Warning header (code 399) and a stable
// reason token (metric label). Errors that are not the offerer's fault map
// to 503 or 500.
func SIPStatus(err error) (code int, warning, reason string) {
	switch {
	case errors.Is(err, ErrSRTPRequired):
		return 488, "SRTP required: offer RTP/SAVP with a=crypto AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32 or AEAD_AES_128_GCM, or UDP/TLS/RTP/SAVP with a=fingerprint (DTLS-SRTP)", "srtp_required"
	case errors.Is(err, ErrBadSDP):
		return 488, "unusable SDP", "bad_sdp"
	case errors.Is(err, ErrNoPorts):
		return 503, "", "no_media_ports"
	case errors.Is(err, ErrClosed):
		return 503, "", "media_closed"
	}
	return 500, "", "media_error"
}
