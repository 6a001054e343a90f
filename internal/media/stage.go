package media

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/events"
	"github.com/sipwarden/sipwarden/internal/sip"
)

// CheckOffer applies the SRTP policy of leg from to an SDP offer without
// changing it or allocating anything: ErrSRTPRequired when the leg requires
// SRTP and an active RTP stream has neither an acceptable a=crypto nor a
// usable DTLS-SRTP a=fingerprint, ErrBadSDP when
// the body cannot be parsed (only reported where SRTP is required).
func CheckOffer(body []byte, pol Policy, from Leg) error {
	if pol.Legs[from].SRTP != SRTPRequired {
		return nil
	}
	sd, err := parseSDP(body)
	if err != nil {
		return err
	}
	for i, md := range sd.MediaDescriptions {
		if md.MediaName.Port.Value == 0 || !isRTP(md.MediaName.Protos) {
			continue
		}
		if !securable(sd, md) {
			return errors.Join(ErrSRTPRequired, errStream(i, md.MediaName.Media))
		}
	}
	return nil
}

type streamError struct {
	index int
	media string
}

func (e streamError) Error() string {
	return "m-line " + strconv.Itoa(e.index) + " (" + e.media + ") has no acceptable a=crypto or a=fingerprint"
}

func errStream(i int, media string) error { return streamError{i, media} }

// StageMetrics are the media stage's counters; they live for the process.
type StageMetrics struct {
	refused *prometheus.CounterVec
}

// NewStageMetrics registers the stage's metrics on reg (nil: not registered).
func NewStageMetrics(reg prometheus.Registerer) *StageMetrics {
	m := &StageMetrics{refused: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sipwarden_media_refused_total",
		Help: "Offers from trunks refused by the media policy (488), by trunk and reason (srtp_required, bad_sdp).",
	}, []string{"trunk", "reason"})}
	if reg != nil {
		reg.MustRegister(m.refused)
	}
	return m
}

// Stage is the chain stage "media": it refuses, with 488 Not Acceptable Here
// and a Warning, INVITE and UPDATE offers from trunks whose policy requires
// SRTP when an active stream lacks acceptable keying (SDES crypto or a
// DTLS-SRTP fingerprint). Rewriting SDP and relaying media happen in the
// proxy (Relay), once the call is routed.
type Stage struct {
	bus      *events.Bus
	met      *StageMetrics
	policies map[*config.Trunk]Policy
}

// NewStage builds the stage for cfg.
func NewStage(cfg *config.Config, bus *events.Bus, met *StageMetrics) (*Stage, error) {
	if met == nil {
		met = NewStageMetrics(nil)
	}
	s := &Stage{bus: bus, met: met, policies: map[*config.Trunk]Policy{}}
	for i := range cfg.Trunks {
		t := &cfg.Trunks[i]
		pol, err := PolicyFor(t, LegA)
		if err != nil {
			return nil, config.At(cfg.FirstKey(fmt.Sprintf("trunks[%d].media", i), "media"), err)
		}
		if pol.Legs[LegA].SRTP == SRTPRequired {
			s.policies[t] = pol
		}
	}
	return s, nil
}

// Name implements chain.Stage.
func (*Stage) Name() string { return "media" }

// Handle checks offers from trunks that require SRTP. INVITEs without a
// body (the offer comes in the 200 and the answer in the ACK) and bodies
// that are not application/sdp pass: the relay checks those.
func (s *Stage) Handle(req *chain.Request) chain.Verdict {
	if req.PeerKind != chain.PeerTrunk || req.Msg == nil {
		return chain.Next()
	}
	if m := req.Msg.Method(); m != sip.INVITE && m != sip.UPDATE {
		return chain.Next()
	}
	pol, ok := s.policies[req.Trunk]
	if !ok {
		return chain.Next()
	}
	body := req.Msg.Body()
	if len(body) == 0 || !isSDP(req.Msg.Get(sip.HdrContentType)) {
		return chain.Next()
	}
	err := CheckOffer(body, pol, LegA)
	if err == nil {
		return chain.Next()
	}
	code, warning, reason := SIPStatus(err)
	s.met.refused.WithLabelValues(req.Trunk.Name, reason).Inc()
	if s.bus != nil {
		s.bus.Publish(events.Event{Kind: events.MediaRefused, Stage: "media", Reason: reason, Src: req.Src,
			Transport: req.Transport.String(), Trunk: req.Trunk.Name, Method: string(req.Msg.MethodName()),
			CallID: string(req.Msg.CallID()), Code: code, Detail: err.Error()})
	}
	v := chain.ReplyWith(code, reason)
	v.Warning = warning
	return v
}

// isSDP reports whether a Content-Type value is application/sdp (parameters ignored).
func isSDP(ct []byte) bool {
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return bytes.EqualFold(bytes.TrimSpace(ct), []byte("application/sdp"))
}

// RelayConfig maps the media section of the configuration to a relay's
// Config (OnTimeout, Logger and Registerer are the caller's to set).
func RelayConfig(m config.Media) Config {
	return Config{Addr: m.Addr, Advertise: m.Advertise, PortMin: m.PortMin, PortMax: m.PortMax,
		Timeout: m.Timeout, MaxPacketRate: m.MaxPacketRate, MeasureDelay: m.MeasureDelay, LatchPackets: m.LatchPackets}
}

// PolicyFor returns the media policy of a call from (trunkLeg LegA) or to
// (LegB) trunk t.
func PolicyFor(t *config.Trunk, trunkLeg Leg) (Policy, error) {
	p, err := TrunkPolicy(t.Media.SRTP, t.Media.Mode, t.Media.ICE == config.ICEKeep, trunkLeg)
	p.Legs[trunkLeg].OfferDTLS = t.Media.OfferKeying == config.KeyingDTLS
	return p, err
}
