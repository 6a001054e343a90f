package media

import "github.com/prometheus/client_golang/prometheus"

// kind is the kind of a relay socket: RTP or RTCP.
type kind uint8

const (
	kindRTP kind = iota
	kindRTCP
	nKinds
)

func (k kind) String() string {
	if k == kindRTP {
		return "rtp"
	}
	return "rtcp"
}

// dropReason says why the relay dropped a packet (a metric label).
type dropReason uint8

const (
	dropNotReady  dropReason = iota // no answer yet: no keys, no destination
	dropMalformed                   // not RTP/RTCP version 2, too short, RTCP on the RTP port
	dropSource                      // from another source than the latched one (RTP bleed, injection)
	dropRate                        // over the per-stream packet-rate cap
	dropAuth                        // SRTP/SRTCP authentication failed
	dropReplay                      // SRTP/SRTCP replay (RFC 3711 section 3.3.2)
	dropSequence                    // SSRC change or sequence jump not confirmed (RFC 3550 A.1)
	dropNoDest                      // the other leg has no address (on hold, rejected)
	dropWrite                       // the send failed
	dropCrypto                      // encryption towards the other leg failed
	dropLearning                    // plain RTP behind NAT from a source not confirmed yet (learning window)
	dropKeepalive                   // a NAT keep-alive (STUN, an empty or tiny datagram): expected, never relayed
	nDropReasons
)

var dropReasonNames = [nDropReasons]string{
	"not_ready", "malformed", "source", "rate", "auth", "replay", "sequence", "no_destination", "write_error", "crypto_error", "learning", "keepalive",
}

func (d dropReason) String() string { return dropReasonNames[d] }

// metrics are the relay's Prometheus collectors. The per-packet counters are
// resolved to their children once, so that the hot path does no label lookup.
type metrics struct {
	forwarded [nKinds]prometheus.Counter
	dropped   [nKinds][nDropReasons]prometheus.Counter
	sessions  prometheus.Gauge
	streams   prometheus.Gauge
	ports     prometheus.Gauge
	timeouts  prometheus.Counter
	latched   [nLatchHow]prometheus.Counter
	offers    *prometheus.CounterVec
	dtls      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	fwd := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sipwarden_media_packets_forwarded_total",
		Help: "RTP and RTCP packets relayed from one leg to the other, by kind (rtp, rtcp).",
	}, []string{"kind"})
	drop := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sipwarden_media_packets_dropped_total",
		Help: "Packets the relay dropped, by kind and reason (source: RTP bleed or injection, from a source the leg did not announce or after latching; learning: plain RTP behind NAT before a source sent enough packets in a row; auth: SRTP authentication failure; replay; rate: over the per-stream cap; sequence; keepalive: NAT keep-alives such as the STUN binding requests of Linphone, or empty datagrams, which are expected and not relayed; malformed; not_ready; no_destination; write_error; crypto_error).",
	}, []string{"kind", "reason"})
	m := &metrics{
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sipwarden_media_sessions",
			Help: "Calls with a media session in the relay.",
		}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sipwarden_media_streams",
			Help: "Relayed streams (m-lines) with sockets open.",
		}),
		ports: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sipwarden_media_ports_in_use",
			Help: "RTP/RTCP port pairs allocated from the media port range (two pairs per stream).",
		}),
		timeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sipwarden_media_timeouts_total",
			Help: "Media sessions closed because no packet flowed for the inactivity timeout.",
		}),
		offers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sipwarden_media_offers_total",
			Help: "SDP offers handled, by result (ok, srtp_required, bad_sdp, no_media_ports, media_error).",
		}, []string{"result"}),
		dtls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sipwarden_media_dtls_handshakes_total",
			Help: "DTLS-SRTP handshakes on relay ports, by result (ok, failed: timeout, wrong fingerprint, no SRTP profile).",
		}, []string{"result"}),
	}
	latched := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sipwarden_media_latched_total",
		Help: "Sockets that latched to their peer's source address (symmetric RTP), by how: signalled (the leg's SDP or signalling address), learned (behind NAT, after a learning window), srtp (an authenticated SRTP packet, also a NAT rebinding).",
	}, []string{"how"})
	for h := latchHow(0); h < nLatchHow; h++ {
		m.latched[h] = latched.WithLabelValues(h.String())
	}
	for k := kind(0); k < nKinds; k++ {
		m.forwarded[k] = fwd.WithLabelValues(k.String())
		for r := dropReason(0); r < nDropReasons; r++ {
			m.dropped[k][r] = drop.WithLabelValues(k.String(), r.String())
		}
	}
	if reg != nil {
		reg.MustRegister(fwd, drop, m.sessions, m.streams, m.ports, m.timeouts, latched, m.offers, m.dtls)
	}
	return m
}
