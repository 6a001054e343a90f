package scanner

import (
	"errors"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipwarden/sipwarden/internal/banlist"
	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/events"
)

// Metrics are the scanner stage's collectors; they live for the process.
type Metrics struct {
	dropped prometheus.Counter
}

// NewMetrics creates and registers the collectors (reg may be nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{dropped: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sipwarden_scanner_dropped_total",
		Help: "Requests carrying a scanner or attack-tool signature, dropped without reply.",
	})}
	if reg != nil {
		reg.MustRegister(m.dropped)
	}
	return m
}

// Stage is the chain stage "scanner".
type Stage struct {
	match    *Matcher
	bans     *banlist.List
	banAfter int
	bus      *events.Bus
	met      *Metrics
	hits     *hitTable
}

// NewStage builds the scanner stage of cfg. bans may be nil (no bans).
func NewStage(cfg *config.Config, bans *banlist.List, bus *events.Bus, met *Metrics) (*Stage, error) {
	if met == nil {
		met = NewMetrics(nil)
	}
	return &Stage{match: NewMatcher(cfg.Scanner.Signatures), bans: bans, banAfter: cfg.Scanner.BanAfter,
		bus: bus, met: met, hits: newHitTable(4096)}, nil
}

// Name implements chain.Stage.
func (*Stage) Name() string { return "scanner" }

// Handle drops requests with a scanner signature and bans their source.
func (s *Stage) Handle(req *chain.Request) chain.Verdict {
	sig := s.match.Match(req.Msg)
	if sig == "" {
		return chain.Next()
	}
	s.met.dropped.Inc()
	a := req.Src.Addr().Unmap()
	detail := "signature " + sig
	if s.bans != nil && s.banAfter > 0 && s.hits.hit(a) >= s.banAfter {
		// The list refuses to ban a configured peer (ErrPeer): anyone can
		// put a tool's name in a packet from a trunk's address.
		switch _, err := s.bans.AddSparingPeers(netip.PrefixFrom(a, a.BitLen()), "scanner", "scanner", 0); {
		case err == nil:
			detail += "; source banned"
		case errors.Is(err, banlist.ErrPeer):
			detail += "; source is a configured peer: not banned"
		}
	}
	s.bus.Publish(events.Event{Kind: events.Scanner, Stage: "scanner", Reason: "scanner", Src: req.Src,
		Transport: req.Transport.String(), Trunk: req.PeerName(), Method: req.Msg.Method().String(), Detail: detail})
	return chain.DropFor("scanner")
}

// hitTable counts hits per address in a fixed number of slots: memory stays
// bounded whatever the number of sources (a collision restarts the count).
type hitTable struct {
	mu    sync.Mutex
	slots []hitSlot
}

type hitSlot struct {
	addr netip.Addr
	n    int
	last time.Time
}

func newHitTable(n int) *hitTable { return &hitTable{slots: make([]hitSlot, n)} }

func (h *hitTable) hit(a netip.Addr) int {
	b := a.As16()
	var x uint64
	for _, c := range b {
		x = x*1099511628211 ^ uint64(c)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	s := &h.slots[x%uint64(len(h.slots))]
	now := time.Now()
	if s.addr != a || now.Sub(s.last) > time.Hour {
		*s = hitSlot{addr: a}
	}
	s.n++
	s.last = now
	return s.n
}
