package route

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/e164"
	"github.com/sipwarden/sipwarden/internal/events"
	"github.com/sipwarden/sipwarden/internal/sip"
)

// Metrics are the route stage's collectors; they live for the process.
type Metrics struct {
	originating, terminating prometheus.Counter
	noRoute, notRegistered   prometheus.Counter
}

// NewMetrics creates and registers the collectors (reg may be nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	routed := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sipwarden_route_routed_total",
		Help: "Initial requests routed, by direction (originating: trunk to upstream; terminating: upstream to trunk).",
	}, []string{"direction"})
	noRoute := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sipwarden_route_no_route_total",
		Help: "Initial requests no route could place (answered 404).",
	})
	notRegistered := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sipwarden_route_not_registered_total",
		Help: "Calls from an upstream to an account of a registrar trunk that had no registration (answered 480).",
	})
	if reg != nil {
		reg.MustRegister(routed, noRoute, notRegistered)
	}
	return &Metrics{originating: routed.WithLabelValues("originating"), terminating: routed.WithLabelValues("terminating"),
		noRoute: noRoute, notRegistered: notRegistered}
}

// Stage is the chain stage "route".
type Stage struct {
	cfg    *config.Config
	table  *Table
	hosted hosted
	locate Locator
	bus    *events.Bus
	met    *Metrics
}

// NewStage builds the route stage of cfg.
func NewStage(cfg *config.Config, bus *events.Bus, met *Metrics) (*Stage, error) {
	if met == nil {
		met = NewMetrics(nil)
	}
	return &Stage{cfg: cfg, table: NewTable(cfg), hosted: newHosted(cfg), bus: bus, met: met}, nil
}

// SetLocator lets the stage route calls from an upstream to the accounts of
// digest trunks with a registrar (their registrations).
func (s *Stage) SetLocator(l Locator) { s.locate = l }

// Name implements chain.Stage.
func (*Stage) Name() string { return "route" }

// Handle places initial requests; others continue (the proxy routes them in their dialog).
func (s *Stage) Handle(req *chain.Request) chain.Verdict {
	if !req.Initial() {
		return chain.Next()
	}
	switch req.PeerKind {
	case chain.PeerTrunk:
		up := s.cfg.UpstreamByName(req.Trunk.Upstream)
		if up == nil || len(up.Targets) == 0 {
			return s.noRoute(req)
		}
		req.Target = chain.Target{Transport: up.Targets[0].Transport, Addr: up.Targets[0].Addr}
		s.met.originating.Inc()
		return chain.ForwardTo("routed")
	case chain.PeerUpstream:
		if s.locate != nil && len(s.hosted.byDomain) > 0 {
			if u, err := sip.ParseURI(req.Msg.RequestURI()); err == nil {
				if tr := s.hosted.trunkFor(u.Host, u.User, req.Upstream.Name); tr != nil {
					return s.toRegistration(req, tr, string(u.User))
				}
			}
		}
		var buf [32]byte
		num, ok := e164.Normalize(dialledUser(req.Msg), buf[:0])
		if !ok {
			return s.noRoute(req)
		}
		tr := s.table.Lookup(num)
		if tr == nil || len(tr.Targets) == 0 {
			return s.noRoute(req)
		}
		req.DestTrunk = tr
		req.Target = chain.Target{Transport: tr.Targets[0].Transport, Addr: tr.Targets[0].Addr}
		s.met.terminating.Inc()
		return chain.ForwardTo("routed")
	}
	return s.noRoute(req)
}

// toRegistration sends a call from an upstream to where account user of tr
// registered, with the registered contact as Request-URI; an account with
// no registration in force is "480 Temporarily Unavailable" (RFC 3261
// section 21.4.18).
func (s *Stage) toRegistration(req *chain.Request, tr *config.Trunk, user string) chain.Verdict {
	loc, ok := s.locate(tr, user)
	if ok && !validRequestURI(loc.URI) {
		ok = false // a contact that cannot be a Request-URI is no way to reach the phone
	}
	if !ok {
		s.met.notRegistered.Inc()
		return chain.ReplyWith(480, "not_registered")
	}
	req.DestTrunk = tr
	req.Target = chain.Target{Transport: loc.Transport, Addr: loc.Addr}
	req.RequestURI = loc.URI
	s.met.terminating.Inc()
	return chain.ForwardTo("routed")
}

// validRequestURI reports whether uri can stand in a request line: a SIP
// or SIPS URI that parses, without spaces or control characters.
func validRequestURI(uri string) bool {
	if uri == "" || len(uri) > 1024 {
		return false
	}
	for i := 0; i < len(uri); i++ {
		if uri[i] <= ' ' || uri[i] == 0x7f {
			return false
		}
	}
	u, err := sip.ParseURI([]byte(uri))
	return err == nil && (strings.EqualFold(string(u.Scheme), "sip") || strings.EqualFold(string(u.Scheme), "sips"))
}

// Alternates returns the failover targets after the first one of a routed request.
func (s *Stage) Alternates(req *chain.Request) []config.Target {
	var list []config.Target
	switch {
	case req.DestTrunk != nil:
		list = req.DestTrunk.Targets
	case req.PeerKind == chain.PeerTrunk:
		if up := s.cfg.UpstreamByName(req.Trunk.Upstream); up != nil {
			list = up.Targets
		}
	}
	if len(list) < 2 {
		return nil
	}
	return list[1:]
}

// dialledUser is the user part of the Request-URI (sip:, sips: or tel:).
func dialledUser(m *sip.Msg) []byte {
	u, err := sip.ParseURI(m.RequestURI())
	if err != nil {
		return nil
	}
	return u.User
}

func (s *Stage) noRoute(req *chain.Request) chain.Verdict {
	s.met.noRoute.Inc()
	s.bus.Publish(events.Event{Kind: events.NoRoute, Stage: "route", Reason: "no_route", Src: req.Src,
		Transport: req.Transport.String(), Trunk: req.PeerName(), Method: req.Msg.Method().String(), Code: 404})
	return chain.ReplyWith(404, "no_route")
}
