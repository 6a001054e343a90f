package config

import (
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Media configures the media relay (internal/media): where its sockets bind,
// the port range, and its defences. Trunks choose their policy in TrunkMedia.
type Media struct {
	// Enabled turns the media stage on (default false): without it, SDP
	// passes untouched and trunks may not set a media policy.
	Enabled bool
	// Addr is the address the relay's RTP sockets bind to (default 127.0.0.1).
	Addr netip.Addr
	// Advertise is the address written into SDP (default Addr).
	Advertise netip.Addr
	// PortMin and PortMax bound the RTP/RTCP ports (default 30000-39999).
	PortMin, PortMax int
	// Timeout closes media sessions without packets for this long (default 60s).
	Timeout time.Duration
	// MaxPacketRate caps packets per second per socket (default 400; 0 in
	// the file means the default).
	MaxPacketRate int
	// LatchPackets is the learning window of a plain-RTP leg behind NAT:
	// consecutive packets from one source it did not announce that latch it
	// (default 3).
	LatchPackets int
	// MeasureDelay exports the relay's own delay per packet (kernel receipt
	// to the end of the forwarding send) as a histogram (Linux only).
	MeasureDelay bool
}

// TrunkMedia is a trunk's media policy.
type TrunkMedia struct {
	// Mode is MediaRelay (default) or MediaDirect.
	Mode string
	// SRTP is SRTPOptional (default), SRTPRequired or SRTPBridge.
	SRTP string
	// ICE is ICEStrip (default) or ICEKeep (only with direct media).
	ICE string
	// OfferKeying is how the relay keys SRTP it offers to the trunk:
	// KeyingSDES (a=crypto; also when empty, the default) or KeyingDTLS
	// (DTLS-SRTP, RFC 5763).
	OfferKeying string
}

// Values of TrunkMedia fields.
const (
	MediaRelay   = "relay"
	MediaDirect  = "direct"
	SRTPOptional = "optional"
	SRTPRequired = "required"
	SRTPBridge   = "bridge"
	ICEStrip     = "strip"
	ICEKeep      = "keep"
	KeyingSDES   = "sdes"
	KeyingDTLS   = "dtls"
)

// Defaults of Media.
const (
	DefaultMediaPortMin       = 30000
	DefaultMediaPortMax       = 39999
	DefaultMediaTimeout       = 60 * time.Second
	DefaultMediaMaxPacketRate = 400
	DefaultMediaLatchPackets  = 3
)

type rawMedia struct {
	Enabled       bool   `yaml:"enabled"`
	Address       string `yaml:"address"`
	Advertise     string `yaml:"advertise"`
	Ports         string `yaml:"ports"`
	Timeout       string `yaml:"timeout"`
	MaxPacketRate int    `yaml:"max_packet_rate"`
	MeasureDelay  bool   `yaml:"measure_delay"`
	LatchPackets  int    `yaml:"latch_packets"`
}

type rawTrunkMedia struct {
	Mode        string `yaml:"mode"`
	SRTP        string `yaml:"srtp"`
	ICE         string `yaml:"ice"`
	OfferKeying string `yaml:"offer_keying"`
}

// media validates the top-level media section.
func (v *validator) media(raw rawMedia) Media {
	m := Media{Enabled: raw.Enabled, MeasureDelay: raw.MeasureDelay, PortMin: DefaultMediaPortMin, PortMax: DefaultMediaPortMax,
		MaxPacketRate: DefaultMediaMaxPacketRate, LatchPackets: DefaultMediaLatchPackets}
	m.Addr = netip.MustParseAddr("127.0.0.1")
	if raw.Address != "" {
		a, err := netip.ParseAddr(raw.Address)
		if err != nil {
			v.fail(p("media", "address"), "must be an IP address, got %q", raw.Address)
		} else {
			m.Addr = a
		}
	}
	m.Advertise = m.Addr
	if raw.Advertise != "" {
		a, err := netip.ParseAddr(raw.Advertise)
		if err != nil || a.IsUnspecified() {
			v.fail(p("media", "advertise"), "must be the IP address peers reach the relay at, got %q", raw.Advertise)
		} else {
			m.Advertise = a
		}
	} else if m.Addr.IsUnspecified() && m.Enabled {
		v.fail(p("media", "advertise"), "is required when media.address is %s (SDP needs a reachable address)", m.Addr)
	}
	if raw.Ports != "" {
		lo, hi, ok := strings.Cut(raw.Ports, "-")
		a, err1 := strconv.Atoi(strings.TrimSpace(lo))
		b, err2 := strconv.Atoi(strings.TrimSpace(hi))
		switch {
		case !ok || err1 != nil || err2 != nil:
			v.fail(p("media", "ports"), "must be a range min-max such as 30000-39999, got %q", raw.Ports)
		case a < 1024 || b > 65535 || b-a < 7:
			v.fail(p("media", "ports"), "must lie within 1024-65535 and hold at least 8 ports (one relayed stream takes 4), got %q", raw.Ports)
		default:
			m.PortMin, m.PortMax = a, b
		}
	}
	m.Timeout = v.duration(p("media", "timeout"), raw.Timeout, DefaultMediaTimeout)
	if m.Timeout < time.Second {
		v.fail(p("media", "timeout"), "must be at least 1s, got %s", m.Timeout)
	}
	switch {
	case raw.MaxPacketRate < 0:
		v.fail(p("media", "max_packet_rate"), "must be a number of packets per second per stream (0: the default %d), got %d", DefaultMediaMaxPacketRate, raw.MaxPacketRate)
	case raw.MaxPacketRate > 0:
		m.MaxPacketRate = raw.MaxPacketRate
	}
	switch {
	case raw.LatchPackets < 0 || raw.LatchPackets > 50:
		v.fail(p("media", "latch_packets"), "must be 1 to 50 packets (0: the default %d), got %d", DefaultMediaLatchPackets, raw.LatchPackets)
	case raw.LatchPackets > 0:
		m.LatchPackets = raw.LatchPackets
	}
	return m
}

// trunkMedia validates trunks[i].media.
func (v *validator) trunkMedia(base []any, raw rawTrunkMedia, m Media) TrunkMedia {
	t := TrunkMedia{Mode: MediaRelay, SRTP: SRTPOptional, ICE: ICEStrip}
	if raw == (rawTrunkMedia{}) {
		return t
	}
	if !m.Enabled {
		v.fail(base, "needs media.enabled: true")
		return t
	}
	switch raw.Mode {
	case "":
	case MediaRelay, MediaDirect:
		t.Mode = raw.Mode
	default:
		v.fail(append(base, "mode"), "must be relay or direct, got %q", raw.Mode)
	}
	switch raw.SRTP {
	case "":
	case SRTPOptional, SRTPRequired, SRTPBridge:
		t.SRTP = raw.SRTP
	default:
		v.fail(append(base, "srtp"), "must be optional, required or bridge, got %q", raw.SRTP)
	}
	switch raw.ICE {
	case "":
	case ICEStrip, ICEKeep:
		t.ICE = raw.ICE
	default:
		v.fail(append(base, "ice"), "must be strip or keep, got %q", raw.ICE)
	}
	switch raw.OfferKeying {
	case "":
	case KeyingSDES, KeyingDTLS:
		t.OfferKeying = raw.OfferKeying
	default:
		v.fail(append(base, "offer_keying"), "must be sdes or dtls, got %q", raw.OfferKeying)
	}
	if t.OfferKeying == KeyingDTLS && t.Mode == MediaDirect {
		v.fail(append(base, "offer_keying"), "dtls needs mode: relay (with direct media the endpoints negotiate their own keys)")
	}
	if t.SRTP == SRTPBridge && t.Mode == MediaDirect {
		v.fail(append(base, "srtp"), "bridge needs mode: relay (the relay translates between SRTP and RTP)")
	}
	if t.ICE == ICEKeep && t.Mode == MediaRelay {
		v.fail(append(base, "ice"), "keep needs mode: direct (relayed streams lose ICE: the relay is no ICE agent)")
	}
	return t
}
