package e2e

import (
	"bytes"
	"net/http"
	"strconv"
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

// metricSum adds up the series of the metric name whose labels contain
// every one of labels (like `stage="acl"`); -1 when /metrics cannot be read.
func metricSum(e *testbed.Edge, name string, labels ...string) float64 {
	req, err := http.NewRequest(http.MethodGet, "http://"+e.Admin+"/metrics", nil)
	if err != nil {
		return -1
	}
	if tok := e.AdminToken(); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	sum := 0.0
next:
	for _, line := range strings.Split(b.String(), "\n") {
		series, value, ok := strings.Cut(line, " ")
		if !ok || (series != name && !strings.HasPrefix(series, name+"{")) {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(series, l) {
				continue next
			}
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			sum += v
		}
	}
	return sum
}

// waitSum waits until metricSum(e, name, labels...) reaches at least min;
// it fails the test after 10 s.
func waitSum(t *testing.T, e *testbed.Edge, min float64, name string, labels ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v := metricSum(e, name, labels...)
		if v >= min {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v after 10s, want >= %v", name, labels, v, min)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
