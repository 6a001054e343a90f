package fraud

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the fraud engine's and stage's Prometheus collectors. Labels
// are trunk names, rule names, classes and actions: never numbers.
type Metrics struct {
	incidents *prometheus.CounterVec
	refused   *prometheus.CounterVec
	hangups   *prometheus.CounterVec
	exposure  *prometheus.GaugeVec
	burn      *prometheus.GaugeVec
}

// NewMetrics creates the collectors and registers them on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		incidents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sipwarden_fraud_incidents_total",
			Help: "Fraud incidents opened, by trunk, rule and action.",
		}, []string{"trunk", "reason", "action"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sipwarden_fraud_refused_total",
			Help: "Calls refused by the fraud stage, by trunk and reason (policy reason or rule name).",
		}, []string{"trunk", "reason"}),
		hangups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sipwarden_fraud_hangups_total",
			Help: "Calls in progress the fraud engine asked to end, by trunk and rule.",
		}, []string{"trunk", "reason"}),
		exposure: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sipwarden_fraud_exposure",
			Help: "Money spent in the last 60 minutes plus accrued by calls in progress, per trunk, in the rate deck's currency.",
		}, []string{"trunk"}),
		burn: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sipwarden_fraud_burn_per_minute",
			Help: "Sum of the per-minute rates of answered calls in progress, per trunk.",
		}, []string{"trunk"}),
	}
	if reg != nil {
		reg.MustRegister(m.incidents, m.refused, m.hangups, m.exposure, m.burn)
	}
	return m
}
