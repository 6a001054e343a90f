package acl

import (
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipwarden/sipwarden/internal/banlist"
	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/cidr"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/events"
	"github.com/sipwarden/sipwarden/internal/sip"
)

// Metrics are the acl stage's collectors; they live for the process.
type Metrics struct {
	unknown [4]prometheus.Counter // by transport
	matched [3]prometheus.Counter // by peer kind
}

// NewMetrics creates and registers the collectors (reg may be nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	unknown := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sipwarden_acl_unknown_source_total",
		Help: "Requests from addresses that are no trunk and no upstream, by transport.",
	}, []string{"transport"})
	matched := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sipwarden_acl_requests_total",
		Help: "Requests identified by source address, by peer kind (trunk, upstream, unknown).",
	}, []string{"peer"})
	m := &Metrics{}
	for _, t := range []sip.Transport{sip.UDP, sip.TCP, sip.TLS} {
		m.unknown[t] = unknown.WithLabelValues(t.String())
	}
	m.unknown[0] = unknown.WithLabelValues("unknown")
	for _, k := range []chain.PeerKind{chain.PeerUnknown, chain.PeerTrunk, chain.PeerUpstream} {
		m.matched[k] = matched.WithLabelValues(k.String())
	}
	if reg != nil {
		reg.MustRegister(unknown, matched)
	}
	return m
}

// Stage is the chain stage "acl".
type Stage struct {
	table  *Table
	reject bool
	bus    *events.Bus
	met    *Metrics
	bans   *banlist.List
	probes *ProbeTracker
	rate   float64
	burst  int
	// resolve identifies digest trunks of sources without a fixed address (resolver.go).
	resolve Resolver
	// blockFactor multiplies the probe budget for a whole /24 or /64 (0: off).
	blockFactor float64
}

// NewStage builds the acl stage of cfg. bans and probes may be nil: unknown
// sources are then dropped but never banned.
func NewStage(cfg *config.Config, bus *events.Bus, met *Metrics, bans *banlist.List, probes *ProbeTracker) (*Stage, error) {
	if met == nil {
		met = NewMetrics(nil)
	}
	return &Stage{table: New(cfg), reject: cfg.UnknownSources == config.UnknownReject, bus: bus, met: met,
		bans: bans, probes: probes, rate: cfg.Bans.ProbeRate, burst: cfg.Bans.ProbeBurst, blockFactor: cfg.Bans.ProbePrefixFactor}, nil
}

// Table returns the stage's address table (the ban list asks it who is a peer).
func (s *Stage) Table() *Table { return s.table }

// IsPeer reports whether a belongs to a configured trunk or upstream (any port).
func (t *Table) IsPeer(a netip.Addr) bool {
	if t.Lookup(netip.AddrPortFrom(a, 0), sip.TCP).Kind != chain.PeerUnknown {
		return true
	}
	for ap := range t.exact {
		if ap.Addr() == a.Unmap() {
			return true
		}
	}
	return false
}

// Name implements chain.Stage.
func (*Stage) Name() string { return "acl" }

// Handle identifies the peer; unknown sources are dropped (or refused with 403).
func (s *Stage) Handle(req *chain.Request) chain.Verdict {
	m := s.table.Lookup(req.Src, req.Transport)
	if m.Kind == chain.PeerUnknown && s.resolve != nil {
		if t := s.resolve(req); t != nil {
			m = Match{Kind: chain.PeerTrunk, Trunk: t}
		}
	}
	s.met.matched[m.Kind].Inc()
	switch m.Kind {
	case chain.PeerTrunk:
		req.PeerKind, req.Trunk = m.Kind, m.Trunk
		if m.Trunk.TLS.RequireClientCert && (req.Transport != sip.TLS || !req.TLSVerified) {
			return chain.Verdict{Action: chain.Reply, Code: 403, Reason: "client_cert_required",
				Warning: "this trunk requires TLS with a client certificate"}
		}
		return chain.Next()
	case chain.PeerUpstream:
		req.PeerKind, req.Upstream = m.Kind, m.Upstream
		return chain.Next()
	}
	if int(req.Transport) < len(s.met.unknown) {
		s.met.unknown[req.Transport].Inc()
	}
	method := ""
	if req.Msg != nil && req.Msg.IsRequest() {
		method = req.Msg.Method().String()
	}
	s.bus.Publish(events.Event{Kind: events.UnknownSource, Stage: "acl", Reason: "unknown_source",
		Src: req.Src, Transport: req.Transport.String(), Method: method})
	if s.bans != nil && s.probes != nil {
		a := req.Src.Addr().Unmap()
		switch s.probes.Exceeded(a, time.Now(), s.rate, s.burst, s.blockFactor) {
		case AddressBudget:
			// A peer's address on another port (UDP is easy to spoof) is
			// unknown here, but the ban list never bans it (ErrPeer).
			_, _ = s.bans.AddSparingPeers(netip.PrefixFrom(a, a.BitLen()), "unknown_source_probe", "acl", 0)
		case BlockBudget:
			// A peer may live in the same /24: the ban spares configured peers.
			_, _ = s.bans.AddSparingPeers(cidr.BlockOf(a), "unknown_prefix_probe", "acl", 0)
		}
	}
	if s.reject {
		return chain.ReplyWith(403, "unknown_source")
	}
	return chain.DropFor("unknown_source")
}
