package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/test/testbed"
)

// waitMetric waits until the edge's sample (a metric with its labels, as
// /metrics prints it) reaches at least min; it fails the test after 10 s.
func waitMetric(t *testing.T, e *testbed.Edge, sample string, min float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v := e.Metric(sample)
		if v >= min {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v after 10s, want >= %v", sample, v, min)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitOutput waits until a peer's output contains s; it fails the test
// after d.
func waitOutput(t *testing.T, what string, out *testbed.SyncBuffer, s string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(out.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %q within %v:\n%s", what, s, d, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
