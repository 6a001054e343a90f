package shaken

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the stage's Prometheus collectors. They live for the process:
// a reload builds a new stage over the same Metrics.
type Metrics struct {
	signed    *prometheus.CounterVec // attest, trunk
	notSigned *prometheus.CounterVec // reason, trunk
	verified  *prometheus.CounterVec // verstat, reason, trunk
	fetch     *prometheus.HistogramVec
}

// NewMetrics registers the collectors on reg (nil: not registered). cache,
// when not nil, is the process-wide certificate cache whose counters are
// exported too.
func NewMetrics(reg prometheus.Registerer, cache func() *Cache) *Metrics {
	m := &Metrics{
		signed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sipwarden_shaken_signed_total",
			Help: "Calls signed by the authentication service, by attestation (A, B, C) and trunk.",
		}, []string{"attest", "trunk"}),
		notSigned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sipwarden_shaken_not_signed_total",
			Help: "Calls from signing trunks that were not signed, by reason (no_tn, stale_date, sign_error) and trunk.",
		}, []string{"reason", "trunk"}),
		verified: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sipwarden_shaken_verified_total",
			Help: "Calls verified by the verification service, by verstat, reason and trunk.",
		}, []string{"verstat", "reason", "trunk"}),
		fetch: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sipwarden_shaken_cert_fetch_seconds",
			Help:    "Duration of certificate fetches from x5u URLs, by result (ok, error).",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.signed, m.notSigned, m.verified, m.fetch)
		if cache != nil {
			stat := func(f func(CacheStats) uint64) func() float64 {
				return func() float64 {
					if c := cache(); c != nil {
						return float64(f(c.Stats()))
					}
					return 0
				}
			}
			for _, r := range []struct {
				result string
				f      func(CacheStats) uint64
			}{
				{"hit", func(s CacheStats) uint64 { return s.Hits }},
				{"stale", func(s CacheStats) uint64 { return s.Stale }},
				{"miss", func(s CacheStats) uint64 { return s.Misses }},
				{"negative", func(s CacheStats) uint64 { return s.Negative }},
				{"timeout", func(s CacheStats) uint64 { return s.Timeouts }},
			} {
				reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
					Name:        "sipwarden_shaken_cert_cache_lookups_total",
					Help:        "Certificate cache lookups by result (hit, stale: served while refreshing, miss, negative: a cached failure, timeout: the budget ran out).",
					ConstLabels: prometheus.Labels{"result": r.result},
				}, stat(r.f)))
			}
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "sipwarden_shaken_cert_cache_entries",
				Help: "Entries in the certificate cache.",
			}, func() float64 {
				if c := cache(); c != nil {
					return float64(c.Stats().Entries)
				}
				return 0
			}))
		}
	}
	return m
}

func (m *Metrics) observeFetch(d time.Duration, err error) {
	if m == nil {
		return
	}
	r := "ok"
	if err != nil {
		r = "error"
	}
	m.fetch.WithLabelValues(r).Observe(d.Seconds())
}

// State is what the shaken stage keeps across reloads: the certificate
// cache (so a reload does not refetch every certificate) and the metrics.
// The cache is made with the first configuration that needs one; its
// settings take effect at the next start.
type State struct {
	Metrics *Metrics
	mu      sync.Mutex
	cache   *Cache
}

// NewState creates the process-wide state and registers the metrics on reg.
func NewState(reg prometheus.Registerer) *State {
	s := &State{}
	s.Metrics = NewMetrics(reg, s.Cache)
	return s
}

// Cache returns the certificate cache, nil before a stage needed one.
func (s *State) Cache() *Cache {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cache
}

func (s *State) cacheFor(cfg CacheConfig) *Cache {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cache == nil {
		cfg.OnFetch = s.Metrics.observeFetch
		s.cache = NewCache(cfg)
	}
	return s.cache
}

// Close stops the cache's fetches.
func (s *State) Close() {
	if c := s.Cache(); c != nil {
		c.Close()
	}
}
