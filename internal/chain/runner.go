package chain

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Chain is an ordered, immutable list of stages. A new configuration builds a
// new Chain; the proxy swaps it atomically.
type Chain struct {
	stages []Stage
	counts *verdictCounter
}

// New builds a chain from stages, already in their canonical order (see Order).
func New(m *Metrics, stages ...Stage) *Chain {
	return &Chain{stages: stages, counts: m.counter()}
}

// Stages returns the stages in order (for `sipwarden chain` and tests).
func (c *Chain) Stages() []Stage { return c.stages }

// Run passes req through every stage until one returns a verdict other than
// Continue, and returns that verdict with the stage that gave it. If every
// stage continues, Run returns a Continue verdict and stage "".
//
// A stage that panics does not bring the process down: its request is dropped
// with reason "stage_panic" and the panic is counted.
func (c *Chain) Run(req *Request) (v Verdict, stage string) {
	for _, s := range c.stages {
		v = c.handle(s, req)
		if v.Action != Continue {
			c.counts.observe(s.Name(), v)
			return v, s.Name()
		}
	}
	return Next(), ""
}

func (c *Chain) handle(s Stage, req *Request) (v Verdict) {
	defer func() {
		if p := recover(); p != nil {
			c.counts.panics.WithLabelValues(s.Name()).Inc()
			v = DropFor("stage_panic")
		}
	}()
	return s.Handle(req)
}

// Metrics holds the runner's Prometheus collectors. They live for the whole
// process (one per registry), so counters survive configuration reloads.
type Metrics struct {
	verdicts *prometheus.CounterVec
	panics   *prometheus.CounterVec
}

// NewMetrics creates and registers the chain's collectors on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sipwarden_chain_verdicts_total",
			Help: "Verdicts that ended the chain for a request, by stage, action and reason.",
		}, []string{"stage", "action", "reason"}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sipwarden_chain_stage_panics_total",
			Help: "Stage panics turned into drops, by stage.",
		}, []string{"stage"}),
	}
	if reg != nil {
		reg.MustRegister(m.verdicts, m.panics)
	}
	return m
}

type verdictCounter struct {
	*Metrics
}

func (m *Metrics) counter() *verdictCounter {
	if m == nil {
		m = NewMetrics(nil)
	}
	return &verdictCounter{m}
}

// observe counts a verdict. WithLabelValues on a known label set does not
// allocate after the first call for that set.
func (c *verdictCounter) observe(stage string, v Verdict) {
	c.verdicts.WithLabelValues(stage, v.Action.String(), v.Reason).Inc()
}
