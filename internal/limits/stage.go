package limits

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/events"
	"github.com/sipwarden/sipwarden/internal/sip"
)

type metrics struct {
	rejected *prometheus.CounterVec
	active   *prometheus.GaugeVec
}

func (m *metrics) setActive(trunk string, n int) {
	if m != nil {
		m.active.WithLabelValues(trunk).Set(float64(n))
	}
}

// NewRegistry creates the process-wide limits state and registers its
// metrics on reg (nil: not registered).
func NewRegistry(reg prometheus.Registerer) *Registry {
	m := &metrics{
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sipwarden_limits_rejected_total",
			Help: "Calls refused by a per-trunk limit, by trunk and reason (cps_limit, concurrent_limit).",
		}, []string{"trunk", "reason"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sipwarden_limits_active_calls",
			Help: "Calls in progress per trunk, as counted for the concurrent-call limit.",
		}, []string{"trunk"}),
	}
	if reg != nil {
		reg.MustRegister(m.rejected, m.active)
	}
	return &Registry{trunks: map[string]*Trunk{}, now: time.Now, met: m}
}

// Active returns the calls in progress on trunk name.
func (r *Registry) Active(name string) int { return r.trunk(name).Active() }

// concurrentRetryAfter is the Retry-After of a concurrent-call refusal.
const concurrentRetryAfter = 5

// Stage is the chain stage "limits".
type Stage struct {
	reg *Registry
	bus *events.Bus
	// trunks of this configuration, resolved once so Handle does no map write.
	state map[*config.Trunk]*Trunk
}

// NewStage builds the limits stage of cfg over the process-wide registry.
func NewStage(cfg *config.Config, reg *Registry, bus *events.Bus) (*Stage, error) {
	s := &Stage{reg: reg, bus: bus, state: map[*config.Trunk]*Trunk{}}
	for i := range cfg.Trunks {
		t := &cfg.Trunks[i]
		s.state[t] = reg.trunk(t.Name)
	}
	return s, nil
}

// Name implements chain.Stage.
func (*Stage) Name() string { return "limits" }

// Handle counts initial INVITEs from trunks against the trunk's limits.
func (s *Stage) Handle(req *chain.Request) chain.Verdict {
	if req.PeerKind != chain.PeerTrunk || !req.Initial() || req.Msg.Method() != sip.INVITE {
		return chain.Next()
	}
	cfg := req.Trunk
	t := s.state[cfg]
	if t == nil {
		return chain.Next()
	}
	if ok, wait := t.allowCall(s.reg.now(), cfg.Limits.CPS, cfg.Limits.Burst); !ok {
		return s.refuse(req, "cps_limit", wait)
	}
	// Every call is counted (the gauge shows calls in progress even without
	// a limit), so a reload that adds a limit sees the calls already up.
	if !t.acquire(cfg.Limits.Concurrent) {
		return s.refuse(req, "concurrent_limit", concurrentRetryAfter)
	}
	req.Hold(t)
	return chain.Next()
}

func (s *Stage) refuse(req *chain.Request, reason string, retryAfter uint32) chain.Verdict {
	s.reg.met.rejected.WithLabelValues(req.Trunk.Name, reason).Inc()
	s.bus.Publish(events.Event{Kind: events.LimitHit, Stage: "limits", Reason: reason, Src: req.Src,
		Transport: req.Transport.String(), Trunk: req.Trunk.Name, Method: "INVITE", CallID: string(req.Msg.CallID()), Code: 503})
	return chain.ReplyRetry(503, retryAfter, reason)
}
