package flood

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

// State is what lives for the process: the tables and the metrics. A reload
// builds a new Stage over the same State, so counts survive it.
type State struct {
	addrs, prefixes *Table
	exceeded        *prometheus.CounterVec
	reasons         [2][numClasses]string
}

// NewState creates the tables (size slots each) and registers the metrics on reg (nil: not registered).
func NewState(size int, reg prometheus.Registerer) *State {
	s := &State{
		addrs:    NewTable(size),
		prefixes: NewTable(size / 4),
		exceeded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sipwarden_flood_exceeded_total",
			Help: "Requests over a flood budget (their source is banned), by class and scope (address, prefix).",
		}, []string{"class", "scope"}),
	}
	for c := Class(0); c < numClasses; c++ {
		s.reasons[0][c] = "flood_" + c.String()
		s.reasons[1][c] = "flood_prefix_" + c.String()
	}
	if reg != nil {
		reg.MustRegister(s.exceeded)
	}
	return s
}

// Stage is the chain stage "flood".
type Stage struct {
	st       *State
	bans     *banlist.List
	bus      *events.Bus
	factor   float64
	upstream Profile
}

// profileOf converts a configured profile.
func profileOf(p config.FloodProfile) Profile {
	var out Profile
	for c, b := range [numClasses]config.Budget{p.Invite, p.Register, p.Options, p.Other, p.Malformed} {
		out[c] = Budget{Rate: b.Rate, Burst: b.Burst}
	}
	return out
}

// NewStage builds the flood stage of cfg over the process-wide state.
func NewStage(cfg *config.Config, st *State, bans *banlist.List, bus *events.Bus) (*Stage, error) {
	return &Stage{st: st, bans: bans, bus: bus, factor: cfg.Flood.PrefixFactor, upstream: profileOf(cfg.Flood.Upstream)}, nil
}

// Name implements chain.Stage.
func (*Stage) Name() string { return "flood" }

// ClassOf returns the budget class of a request.
func ClassOf(req *chain.Request) Class {
	if req.ParseErr != nil {
		return Malformed
	}
	switch req.Msg.Method() {
	case sip.INVITE:
		return Invite
	case sip.REGISTER:
		return Register
	case sip.OPTIONS:
		return Options
	}
	return Other
}

// Handle counts the request against its peer's budgets; over budget, the
// source address (or its /24 or /64) is banned and the request dropped.
func (s *Stage) Handle(req *chain.Request) chain.Verdict {
	var prof Profile
	switch req.PeerKind {
	case chain.PeerTrunk:
		prof = profileOf(req.Trunk.Flood)
	case chain.PeerUpstream:
		prof = s.upstream
	default:
		return chain.Next()
	}
	c := ClassOf(req)
	b := prof[c]
	if b.Unlimited() {
		return chain.Next()
	}
	a := req.Src.Addr().Unmap()
	now := time.Now()
	scope, key := 0, netip.PrefixFrom(a, a.BitLen())
	if !s.st.addrs.Take(key, c, b, now) {
		scope, key = 1, cidr.BlockOf(a)
		pb := Budget{Rate: b.Rate * s.factor, Burst: b.Burst * s.factor}
		if !s.st.prefixes.Take(key, c, pb, now) {
			return chain.Next()
		}
	}
	reason := s.st.reasons[scope][c]
	s.st.exceeded.WithLabelValues(c.String(), [2]string{"address", "prefix"}[scope]).Inc()
	if s.bans != nil {
		_, _ = s.bans.Add(key, reason, "flood", 0)
	}
	s.bus.Publish(events.Event{Kind: events.Flood, Stage: "flood", Reason: reason, Src: req.Src,
		Transport: req.Transport.String(), Trunk: req.PeerName(), Detail: "banned " + key.String()})
	return chain.DropFor(reason)
}
