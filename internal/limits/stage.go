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
			Help: "Calls and registrations refused by a limit, by trunk and reason (cps_limit, concurrent_limit, register_limit, account_cps_limit, ...).",
		}, []string{"trunk", "reason"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sipwarden_limits_active_calls",
			Help: "Calls in progress per trunk, as counted for the concurrent-call limit.",
		}, []string{"trunk"}),
	}
	if reg != nil {
		reg.MustRegister(m.rejected, m.active)
	}
	return &Registry{counters: map[string]*Counter{}, now: time.Now, met: m}
}

// Active returns the calls in progress on trunk name.
func (r *Registry) Active(name string) int { return r.trunk(name).Active() }

// AccountActive returns the calls in progress of account user of trunk.
func (r *Registry) AccountActive(trunk, user string) int { return r.account(trunk, user).Active() }

// concurrentRetryAfter is the Retry-After of a concurrent-call refusal.
const concurrentRetryAfter = 5

// Stage is the chain stage "limits".
type Stage struct {
	reg *Registry
	bus *events.Bus
	// counters of this configuration's trunks and accounts, resolved once so
	// Handle does no map write.
	trunks   map[*config.Trunk]*Counter
	accounts map[*config.Trunk]map[string]accountLimits
}

type accountLimits struct {
	c   *Counter
	cfg *config.TrunkLimits
}

// NewStage builds the limits stage of cfg over the process-wide registry.
func NewStage(cfg *config.Config, reg *Registry, bus *events.Bus) (*Stage, error) {
	s := &Stage{reg: reg, bus: bus, trunks: map[*config.Trunk]*Counter{}, accounts: map[*config.Trunk]map[string]accountLimits{}}
	for i := range cfg.Trunks {
		t := &cfg.Trunks[i]
		s.trunks[t] = reg.trunk(t.Name)
		for j := range t.Digest.Accounts {
			a := &t.Digest.Accounts[j]
			if s.accounts[t] == nil {
				s.accounts[t] = map[string]accountLimits{}
			}
			s.accounts[t][a.Username] = accountLimits{c: reg.account(t.Name, a.Username), cfg: &a.Limits}
		}
	}
	return s, nil
}

// Name implements chain.Stage.
func (*Stage) Name() string { return "limits" }

// Handle counts initial INVITEs and REGISTERs from trunks against the
// trunk's limits and, for a request that auth authenticated, the account's.
func (s *Stage) Handle(req *chain.Request) chain.Verdict {
	if req.PeerKind != chain.PeerTrunk || !req.Initial() {
		return chain.Next()
	}
	tc := s.trunks[req.Trunk]
	if tc == nil {
		return chain.Next()
	}
	var acct accountLimits
	if req.Account != "" {
		acct = s.accounts[req.Trunk][req.Account]
	}
	now := s.reg.now()
	switch req.Msg.Method() {
	case sip.REGISTER:
		tl := &req.Trunk.Limits
		if ok, wait := tc.allowRegister(now, tl.Registrations.Rate, tl.Registrations.Burst); !ok {
			return s.refuse(req, 429, "register_limit", wait)
		}
		if acct.c != nil {
			if ok, wait := acct.c.allowRegister(now, acct.cfg.Registrations.Rate, acct.cfg.Registrations.Burst); !ok {
				return s.refuse(req, 429, "account_register_limit", wait)
			}
		}
		return chain.Next()
	case sip.INVITE:
	default:
		return chain.Next()
	}
	tl := &req.Trunk.Limits
	if ok, wait := tc.allowCall(now, tl.CPS, tl.Burst); !ok {
		return s.refuse(req, 503, "cps_limit", wait)
	}
	if acct.c != nil {
		if ok, wait := acct.c.allowCall(now, acct.cfg.CPS, acct.cfg.Burst); !ok {
			return s.refuse(req, 503, "account_cps_limit", wait)
		}
	}
	// Every call is counted (the gauge shows calls in progress even without
	// a limit), so a reload that adds a limit sees the calls already up.
	if !tc.acquire(tl.Concurrent) {
		return s.refuse(req, 503, "concurrent_limit", concurrentRetryAfter)
	}
	req.Hold(tc)
	if acct.c != nil {
		if !acct.c.acquire(acct.cfg.Concurrent) {
			return s.refuse(req, 503, "account_concurrent_limit", concurrentRetryAfter) // the proxy releases the trunk's slot
		}
		req.Hold(acct.c)
	}
	return chain.Next()
}

func (s *Stage) refuse(req *chain.Request, code int, reason string, retryAfter uint32) chain.Verdict {
	s.reg.met.rejected.WithLabelValues(req.Trunk.Name, reason).Inc()
	s.bus.Publish(events.Event{Kind: events.LimitHit, Stage: "limits", Reason: reason, Src: req.Src,
		Transport: req.Transport.String(), Trunk: req.Trunk.Name, Method: req.Msg.Method().String(),
		CallID: string(req.Msg.CallID()), Code: code})
	return chain.ReplyRetry(code, retryAfter, reason)
}
