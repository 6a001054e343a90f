package fraud

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/cdr"
	"github.com/sipwarden/sipwarden/internal/config"
)

func TestLearnFromCDRs(t *testing.T) {
	f := newStageFixture(t, map[string]*config.TrunkFraud{
		"office": {Country: "US", International: true, Unrated: config.FraudAllow},
	}, nil)
	// Four weeks of Mondays 10:00-11:00 UTC: 10, 12, 50 (one busy week) and
	// 11 calls; each week one answered 10-minute call to London (0.01/min).
	monday := time.Date(2026, 10, 5, 10, 0, 0, 0, time.UTC)
	var recs []cdr.Record
	for w, n := range []int{10, 12, 50, 11} {
		start := monday.Add(time.Duration(w) * 7 * 24 * time.Hour)
		for i := range n {
			recs = append(recs, cdr.Record{Trunk: "office", Direction: "originating", To: "+12015550123",
				Start: start.Add(time.Duration(i) * time.Second), Disposition: cdr.NoAnswer})
		}
		ans := start.Add(time.Minute)
		recs = append(recs, cdr.Record{Trunk: "office", Direction: "originating", To: "011442079460000", Start: start,
			Answer: ans, End: ans.Add(10 * time.Minute), Duration: 10 * time.Minute, Disposition: cdr.Answered})
	}
	// Not the trunk's traffic: another direction, another trunk, a refused
	// call, and a call the engine ended (its country is not learned).
	ans := monday.Add(time.Hour)
	recs = append(recs,
		cdr.Record{Trunk: "office", Direction: "terminating", To: "+12015550123", Start: monday},
		cdr.Record{Trunk: "nobody", Direction: "originating", To: "+12015550123", Start: monday},
		cdr.Record{Trunk: "office", Direction: "originating", To: "+8816123456", Start: monday, Disposition: cdr.Blocked,
			Stage: "fraud", Reason: "fraud_block:score_5m"},
		cdr.Record{Trunk: "office", Direction: "originating", To: "+33123456789", Start: ans, Answer: ans,
			End: ans.Add(time.Minute), Duration: time.Minute, Disposition: cdr.Answered, Stage: "fraud", Reason: "fraud_hangup:burn"},
	)
	rep, err := f.s.LearnFromCDRs(slices.Values(recs), LearnOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != len(recs) || rep.Skipped != 3 || len(rep.Trunks) != 1 {
		t.Fatalf("report %+v", rep)
	}
	// 83 calls at home, 4 to London, the hung-up call to Paris.
	th := rep.Trunks[0]
	if th.Trunk != "office" || th.Calls != 88 || th.Countries != 1 || th.Ranges != 1 || th.Weeks < 3 || th.Weeks > 3.01 ||
		!th.From.Equal(monday) || th.PeakCalls != 51 {
		t.Fatalf("history %+v", th)
	}
	a := f.st.Engine.account("office")
	a.mu.Lock()
	s := a.baseline[hourOfWeek(monday, time.UTC)]
	_, gb := a.knownCountries["GB"]
	_, fr := a.knownCountries["FR"]
	nRanges, since := len(a.knownRanges), a.since
	a.mu.Unlock()
	// p95 of 4 weeks (nearest rank) is the busiest: 51 calls, 1 abroad; 0.10 spent in the hour the calls ended.
	if s.n != 4 || s.calls != 51 || s.risky != 1 || s.spend < 0.0999 || s.spend > 0.1001 {
		t.Fatalf("slot %+v", s)
	}
	if !gb || fr || nRanges != 1 || since != monday.Unix() {
		t.Fatalf("learned GB %v, FR %v, %d ranges, since %d", gb, fr, nRanges, since)
	}
	// Another hour of the week: three weeks of zeros (the history ends on the fourth Monday at 10:00).
	if z := a.baseline[hourOfWeek(monday.Add(2*time.Hour), time.UTC)]; z.n != 3 || z.calls != 0 {
		t.Fatalf("quiet slot %+v", z)
	}
	// The median instead: 12 calls (10, 11, 12, 50 → the second of four).
	if _, err := f.s.LearnFromCDRs(slices.Values(recs), LearnOptions{Quantile: 0.5}); err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	s = a.baseline[hourOfWeek(monday, time.UTC)]
	a.mu.Unlock()
	if s.calls != 12 {
		t.Fatalf("median slot %+v", s)
	}
	for _, q := range []float64{-1, 1.5} {
		if _, err := f.s.LearnFromCDRs(slices.Values(recs), LearnOptions{Quantile: q}); err == nil {
			t.Errorf("quantile %v accepted", q)
		}
	}
	// The learned state survives the baseline file.
	var buf bytes.Buffer
	if err := f.st.Engine.SaveBaselines(&buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"GB":`) || !strings.Contains(buf.String(), `"+44207946xxxx"`) {
		t.Fatalf("file %s", buf.String())
	}
	e2 := NewEngine(Options{})
	if err := e2.LoadBaselines(&buf); err != nil {
		t.Fatal(err)
	}
	b := e2.account("office")
	if b.baseline != a.baseline || b.knownCountries["GB"] != a.knownCountries["GB"] || len(b.knownRanges) != 1 || b.since != monday.Unix() {
		t.Fatalf("after a round trip: countries %v ranges %v since %d", b.knownCountries, b.knownRanges, b.since)
	}
}

func TestRangeFormat(t *testing.T) {
	d := num("GB", 44, 442079460000)
	k := rangeKey(&d)
	if s := formatRange(k); s != "+44207946xxxx" {
		t.Fatalf("formatRange = %s", s)
	}
	if got, err := parseRange("+44207946xxxx"); err != nil || got != k {
		t.Fatalf("parseRange = %v, %v", got, err)
	}
	for _, bad := range []string{"", "+", "+xxxx", "44207946xxxx", "+4420794a6xxxx", "+44207946xxx", "+1234567890123xxxx"} {
		if _, err := parseRange(bad); err == nil {
			t.Errorf("parseRange(%q) accepted", bad)
		}
	}
	var buf bytes.Buffer
	for _, bad := range []string{
		`{"version":2,"accounts":{"x":{"slots":[` + strings.Repeat(`[0,0,0,0],`, 167) + `[0,0,0,0]],"ranges":{"+44zz":1}}}}`,
		`{"version":2,"accounts":{"x":{"slots":[` + strings.Repeat(`[0,0,0,0],`, 167) + `[0,0,0,0]],"countries":{"":1}}}}`,
		`{"version":2,"accounts":{"x":{"slots":[` + strings.Repeat(`[0,0,0,0],`, 167) + `[0,0,0,0]],"since":-5}}}`,
	} {
		buf.Reset()
		buf.WriteString(bad)
		if err := NewEngine(Options{}).LoadBaselines(&buf); err == nil {
			t.Errorf("accepted %.80s...", bad[len(bad)-40:])
		}
	}
}
