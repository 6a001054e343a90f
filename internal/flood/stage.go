package flood

import (
	"errors"
	"math"
	"net/netip"
	"strconv"
	"sync"
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
	shed            *prometheus.CounterVec
	reasons         [2][numClasses]string
	shedReasons     [numClasses]string

	// alerted holds when a peer's last PeerOverBudget event was published
	// (one a peer, class and AlertEvery); its keys are configured peer names.
	mu      sync.Mutex
	alerted map[alertKey]time.Time
}

type alertKey struct {
	peer  string
	class Class
}

// AlertEvery is the least time between two PeerOverBudget events of one
// peer and class.
const AlertEvery = time.Minute

// NewState creates the tables (size slots each) and registers the metrics on reg (nil: not registered).
func NewState(size int, reg prometheus.Registerer) *State {
	s := &State{
		addrs:    NewTable(size),
		prefixes: NewTable(size / 4),
		exceeded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sipwarden_flood_exceeded_total",
			Help: "Requests over a flood budget, by class and scope (address, prefix): a stranger's source is banned, a configured peer's excess shed.",
		}, []string{"class", "scope"}),
		shed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sipwarden_flood_shed_total",
			Help: "Requests of configured trunks and upstreams over their flood budget, shed (503 + Retry-After for INVITE and REGISTER, dropped otherwise) and never banned, by peer and class.",
		}, []string{"trunk", "class"}),
		alerted: map[alertKey]time.Time{},
	}
	for c := Class(0); c < numClasses; c++ {
		s.reasons[0][c] = "flood_" + c.String()
		s.reasons[1][c] = "flood_prefix_" + c.String()
		s.shedReasons[c] = "flood_shed_" + c.String()
	}
	if reg != nil {
		reg.MustRegister(s.exceeded, s.shed)
	}
	return s
}

// alert reports whether a PeerOverBudget event of peer and c is due at now.
func (s *State) alert(peer string, c Class, now time.Time) bool {
	k := alertKey{peer, c}
	s.mu.Lock()
	defer s.mu.Unlock()
	if last, ok := s.alerted[k]; ok && now.Sub(last) < AlertEvery {
		return false
	}
	s.alerted[k] = now
	return true
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

// Handle counts the request against its peer's budgets. Over budget, a
// source that is a configured trunk or upstream is never banned (anyone can
// spoof its address, and a customer can go over by accident): its excess is
// shed — 503 with Retry-After for INVITE and REGISTER, silence otherwise —
// counted and reported. Any other source (a digest trunk's phone) is
// banned, with its /24 or /64 when the prefix went over, and dropped.
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
	s.st.exceeded.WithLabelValues(c.String(), [2]string{"address", "prefix"}[scope]).Inc()
	if s.bans == nil || s.bans.IsPeer(a) {
		return s.shed(req, c, b, now)
	}
	reason := s.st.reasons[scope][c]
	if _, err := s.bans.AddSparingPeers(key, reason, "flood", 0); errors.Is(err, banlist.ErrPeer) {
		return s.shed(req, c, b, now)
	}
	s.bus.Publish(events.Event{Kind: events.Flood, Stage: "flood", Reason: reason, Src: req.Src,
		Transport: req.Transport.String(), Trunk: req.PeerName(), Detail: "banned " + key.String()})
	return chain.DropFor(reason)
}

// shed refuses one request of a configured peer over budget b.
func (s *Stage) shed(req *chain.Request, c Class, b Budget, now time.Time) chain.Verdict {
	peer := req.PeerName()
	reason := s.st.shedReasons[c]
	s.st.shed.WithLabelValues(peer, c.String()).Inc()
	v := chain.DropFor(reason)
	if c == Invite || c == Register {
		// the time one token takes to come back, at least a second
		v = chain.ReplyRetry(503, uint32(max(1, math.Ceil(1/b.Rate))), reason)
	}
	if s.st.alert(peer, c, now) {
		s.bus.Publish(events.Event{Kind: events.PeerOverBudget, Stage: "flood", Reason: reason, Src: req.Src,
			Transport: req.Transport.String(), Trunk: peer, Code: int(v.Code),
			Detail: req.PeerKind.String() + " " + peer + " over its " + c.String() + " budget " +
				strconv.FormatFloat(b.Rate, 'g', 4, 64) + "/s: excess shed, never banned"})
	}
	return v
}
