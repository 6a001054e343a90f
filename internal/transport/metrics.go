package transport

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipwarden/sipwarden/internal/sip"
)

type metrics struct {
	received      *prometheus.CounterVec
	receivedBytes *prometheus.CounterVec
	sent          *prometheus.CounterVec
	dropped       *prometheus.CounterVec
	conns         *prometheus.GaugeVec
	refused       *prometheus.CounterVec

	// label children cached per transport, so the per-packet path does not allocate
	rx, rxBytes, tx [4]prometheus.Counter
	// drops holds the drop counter of each reason and transport, resolved
	// once: a flood's packets are counted without a label lookup.
	drops map[string]*[4]prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sipwarden_transport_received_total",
			Help: "SIP messages received and passed to the proxy, by transport.",
		}, []string{"transport"}),
		receivedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sipwarden_transport_received_bytes_total",
			Help: "Bytes of SIP messages passed to the proxy, by transport.",
		}, []string{"transport"}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sipwarden_transport_sent_total",
			Help: "SIP messages sent, by transport.",
		}, []string{"transport"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sipwarden_transport_dropped_total",
			Help: "Messages dropped by the pre-parse gate or by framing, by transport and reason.",
		}, []string{"transport", "reason"}),
		conns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sipwarden_transport_connections",
			Help: "Open stream connections, by transport.",
		}, []string{"transport"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sipwarden_transport_conn_refused_total",
			Help: "Stream connections refused or closed by a limit or timeout, by transport and reason.",
		}, []string{"transport", "reason"}),
	}
	for _, t := range []sip.Transport{sip.UDP, sip.TCP, sip.TLS} {
		m.rx[t] = m.received.WithLabelValues(t.String())
		m.rxBytes[t] = m.receivedBytes.WithLabelValues(t.String())
		m.tx[t] = m.sent.WithLabelValues(t.String())
	}
	m.drops = make(map[string]*[4]prometheus.Counter, len(dropReasons))
	for _, r := range dropReasons {
		var c [4]prometheus.Counter
		for _, t := range []sip.Transport{sip.UDP, sip.TCP, sip.TLS} {
			c[t] = m.dropped.WithLabelValues(t.String(), r)
		}
		m.drops[r] = &c
	}
	if reg != nil {
		reg.MustRegister(m.received, m.receivedBytes, m.sent, m.dropped, m.conns, m.refused)
	}
	return m
}

func (m *metrics) drop(t sip.Transport, reason string) {
	if c := m.drops[reason]; c != nil && int(t) < len(c) && c[t] != nil {
		c[t].Inc()
		return
	}
	m.dropped.WithLabelValues(t.String(), reason).Inc()
}
