package media

import "github.com/prometheus/client_golang/prometheus"

// DelayMetricName is the histogram of the relay's own forwarding delay
// (Config.MeasureDelay).
const DelayMetricName = "sipwarden_media_relay_delay_seconds"

// delayBuckets span 5 µs to 0.96 s in steps of 1.5x: fine enough to tell a
// 0.1 ms tail from a 1 ms one (a quantile read from them is within about
// 20 %), wide enough for the stalls of an overloaded host (hundreds of
// milliseconds were measured on one), coarse enough for 31 series.
var delayBuckets = prometheus.ExponentialBuckets(5e-6, 1.5, 31)

// newDelayMetric returns the histogram of the time from the kernel's receipt
// of a packet on a relay socket (its SO_TIMESTAMPNS receive timestamp) to the
// return of the sendto that forwards it. It is what the relay adds, queueing
// included (the packet waiting in the socket while the poller works on
// others or is not scheduled), without the peers' own delays; measured on
// the packets the relay forwards, not on the ones it drops.
func newDelayMetric(reg prometheus.Registerer) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    DelayMetricName,
		Help:    "Time from a packet's arrival on a relay socket (kernel receive timestamp) to the end of the sendto that forwards it: the relay's own delay, queueing included.",
		Buckets: delayBuckets,
	})
	if reg != nil {
		reg.MustRegister(h)
	}
	return h
}
