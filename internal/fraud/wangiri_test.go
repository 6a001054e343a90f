package fraud

import (
	"strconv"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/events"
	"github.com/sipwarden/sipwarden/internal/sip"
)

// inboundFrom is an INVITE from an upstream to a customer, from caller.
func inboundFrom(t *testing.T, caller, callID string) *sip.Msg {
	t.Helper()
	var m sip.Msg
	raw := "INVITE sip:+12125550100@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:" + caller + "@carrier>;tag=1\r\n" +
		"To: <sip:+12125550100@x>\r\nCall-ID: " + callID + "\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
	if err := m.Parse([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	return &m
}

// A number abroad that rings customers once and hangs up three times is a
// Wangiri number: the customers' call-backs to it are refused. Answered
// calls and long rings do not count; domestic callers are not watched.
func TestWangiri(t *testing.T) {
	f := newStageFixture(t, map[string]*config.TrunkFraud{"office": {Country: "US", International: true, Unrated: config.FraudAllow}}, nil)
	f.st.Wangiri.Configure(3, 10*time.Second, 24*time.Hour)
	const scam = "+2348031234567"
	n := 0
	ring := func(caller string, ringFor time.Duration, answer bool) {
		t.Helper()
		n++
		req := &chain.Request{Msg: inboundFrom(t, caller, "in-"+string(rune('a'+n))), PeerKind: chain.PeerUpstream, Upstream: &config.Upstream{Name: "carrier"}}
		if v := f.s.Handle(req); v.Action != chain.Continue {
			t.Fatalf("inbound call: %+v", v)
		}
		var holds [chain.MaxHolds]chain.Releaser
		k := req.TakeHolds(&holds)
		f.clk.t = f.clk.t.Add(ringFor)
		for _, h := range holds[:k] {
			if a, ok := h.(chain.Answerer); ok && answer {
				a.Answered(f.clk.t)
				f.clk.t = f.clk.t.Add(time.Minute)
			}
			h.Release()
		}
	}
	callBack := func() chain.Verdict {
		t.Helper()
		v, req := f.call(t, "office", "sip:"+scam+"@x", "back")
		req.ReleaseHolds()
		return v
	}

	ring(scam, 3*time.Second, false)
	ring(scam, 2*time.Second, true)   // answered: no one-ring call
	ring(scam, 30*time.Second, false) // rang long: someone was not there
	ring(scam, 4*time.Second, false)
	ring("+12125550199", time.Second, false) // domestic callers are not watched
	if v := callBack(); v.Action == chain.Reply {
		t.Fatalf("call-back after two short rings: %+v", v)
	}
	ring(scam, time.Second, false) // the third short ring
	if v := callBack(); v.Code != 403 || v.Reason != ReasonWangiri {
		t.Fatalf("call-back to a Wangiri number: %+v, want 403 %s", v, ReasonWangiri)
	}
	f.clk.t = f.clk.t.Add(25 * time.Hour)
	if v := callBack(); v.Action == chain.Reply {
		t.Fatalf("call-back a day later: %+v", v)
	}
	f.st.Wangiri.Configure(0, 0, 0)
	ring(scam, time.Second, false)
	ring(scam, time.Second, false)
	ring(scam, time.Second, false)
	if v := callBack(); v.Action == chain.Reply {
		t.Fatalf("detection off: %+v", v)
	}
}

// e164Dest is the destination of an E.164 number as the stage sees it: its
// hash and digits (the detector needs nothing else).
func e164Dest(t testing.TB, e164 string) Destination {
	t.Helper()
	d, n := digitsOf([]byte(e164))
	if n == 0 {
		t.Fatalf("%q is not an E.164 number", e164)
	}
	return Destination{Class: ClassInternational, International: true, Number: numberHash([]byte(e164)), Digits: d, NDigits: n}
}

func TestWangiriRangeKey(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"+22244123456", "+22244999999", true},  // 11 digits: the last 6 go
		{"+22244123456", "+22245123456", false}, // the next million
		{"+442079460000", "+442079999999", true},
		{"+442079460000", "+44207946000", false}, // same leading digits, another length
		{"+18762101234", "+18762999999", true},
		{"+18762101234", "+18763101234", false},
		{"+68212345", "+68212999", true}, // 8 digits: keeps 5, a block of 1,000
		{"+68212345", "+68213345", false},
	} {
		a, b := e164Dest(t, tc.a), e164Dest(t, tc.b)
		ka, kb := wangiriRange(&a), wangiriRange(&b)
		if ka == 0 || kb == 0 || (ka == kb) != tc.same {
			t.Errorf("%s %#x, %s %#x: same range %v, want %v", tc.a, ka, tc.b, kb, ka == kb, tc.same)
		}
	}
	for _, short := range []string{"+12345", "+1"} {
		d := e164Dest(t, short)
		if k := wangiriRange(&d); k != 0 {
			t.Errorf("%s: range %#x, want none (too short)", short, k)
		}
	}
}

// TestWangiriRanges: a range is tagged when RangeShortRings distinct numbers
// of it short-rang within the window, and then a call to any number of it
// is refused; the same number ringing again is not a new number; numbers of
// another range are not refused.
func TestWangiriRanges(t *testing.T) {
	const n = 5
	// rangeNum is the i-th number of the campaign's range +222 44 (a million numbers).
	rangeNum := func(i int) string {
		return "+2224412" + string(rune('0'+i/1000%10)) + string(rune('0'+i/100%10)) + string(rune('0'+i/10%10)) + string(rune('0'+i%10))
	}
	type ringAt struct {
		num string
		at  time.Duration // from t0
	}
	distinct := func(k int, every time.Duration) []ringAt {
		var r []ringAt
		for i := range k {
			r = append(r, ringAt{rangeNum(i * 37), time.Duration(i) * every})
		}
		return r
	}
	for _, tc := range []struct {
		name     string
		ranges   int // RangeShortRings
		shorts   int // ShortRings: 100 keeps the per-number rule out
		rings    []ringAt
		at       time.Duration
		check    string
		want     bool
		wantNums int // of the rung numbers, how many are tagged at at
	}{
		{"n-1 distinct numbers", n, 100, distinct(n-1, time.Minute), time.Hour, rangeNum(9999), false, 0},
		{"n distinct numbers", n, 100, distinct(n, time.Minute), time.Hour, rangeNum(9999), true, n},
		{"n distinct within the hour (rangeBurst)", n, 100, distinct(n, 15*time.Minute), 23 * time.Hour, rangeNum(9999), true, n},
		{"n distinct, the last just after the hour", n, 100, distinct(n, 15*time.Minute+time.Second), 2 * time.Hour, rangeNum(9999), false, 0},
		{"n distinct, spread over the window", n, 100, distinct(n, 6*time.Hour), 24 * time.Hour, rangeNum(9999), false, 0},
		{"tagged, then the window ends", n, 100, distinct(n, time.Minute), 24*time.Hour + 5*time.Minute, rangeNum(9999), false, 0},
		{"the same number n times", n, 100, []ringAt{{rangeNum(1), 0}, {rangeNum(1), time.Minute}, {rangeNum(1), 2 * time.Minute},
			{rangeNum(1), 3 * time.Minute}, {rangeNum(1), 4 * time.Minute}}, time.Hour, rangeNum(9999), false, 0},
		{"n-1 distinct, one of them twice", n, 100, append(distinct(n-1, time.Minute), ringAt{rangeNum(0), time.Hour}), 2 * time.Hour, rangeNum(9999), false, 0},
		{"another range", n, 100, distinct(n, time.Minute), time.Hour, "+22245129999", false, n},
		{"another length", n, 100, distinct(n, time.Minute), time.Hour, "+222441299999", false, n},
		{"range tagging off", 0, 100, distinct(2*n, time.Minute), time.Hour, rangeNum(9999), false, 0},
		{"detection off", n, 0, distinct(2*n, time.Minute), time.Hour, rangeNum(9999), false, 0},
		{"one distinct number is enough", 1, 100, distinct(1, 0), time.Minute, rangeNum(9999), true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := NewWangiri(1024)
			w.Configure(tc.shorts, 10*time.Second, 24*time.Hour)
			w.ConfigureRanges(tc.ranges)
			for _, r := range tc.rings {
				d := e164Dest(t, r.num)
				w.noteShortRing(d.Number, wangiriRange(&d), t0.Add(r.at))
			}
			d := e164Dest(t, tc.check)
			if got := w.Tagged(&d, t0.Add(tc.at)); got != tc.want {
				t.Errorf("%s tagged: %v, want %v", tc.check, got, tc.want)
			}
			nums := 0
			for _, r := range tc.rings {
				d := e164Dest(t, r.num)
				if w.Tagged(&d, t0.Add(tc.at)) {
					nums++
				}
			}
			if nums != tc.wantNums {
				t.Errorf("%d of the rung numbers tagged, want %d", nums, tc.wantNums)
			}
		})
	}
}

// Range tagging is bounded: RangeShortRings above MaxRangeShortRings is
// taken as the maximum, and a range keeps counting up to it.
func TestWangiriRangeLimit(t *testing.T) {
	w := NewWangiri(0)
	w.Configure(3, 0, 0)
	w.ConfigureRanges(1000)
	if w.RangeShortRings != MaxRangeShortRings {
		t.Fatalf("RangeShortRings %d, want %d", w.RangeShortRings, MaxRangeShortRings)
	}
	probe := e164Dest(t, "+22244999999")
	for i := range MaxRangeShortRings {
		if w.Tagged(&probe, t0) {
			t.Fatalf("tagged after %d distinct numbers", i)
		}
		d := e164Dest(t, "+222440000"+string(rune('0'+i/10))+string(rune('0'+i%10)))
		w.noteShortRing(d.Number, wangiriRange(&d), t0)
	}
	if !w.Tagged(&probe, t0) {
		t.Fatalf("not tagged after %d distinct numbers", MaxRangeShortRings)
	}
}

// The checks run on every call from a trunk and every ring: no allocation.
func TestWangiriNoAlloc(t *testing.T) {
	w := NewWangiri(0)
	w.Configure(3, 0, 0)
	w.ConfigureRanges(5)
	d := e164Dest(t, "+22244123456")
	rng := wangiriRange(&d)
	if a := testing.AllocsPerRun(100, func() {
		w.noteShortRing(d.Number, rng, t0)
		_ = w.Tagged(&d, t0)
	}); a != 0 {
		t.Errorf("%v allocations per ring and check, want 0", a)
	}
}

// TestWangiriRotating is the rotating campaign through the stage: numbers
// of one range abroad ring customers twice each (below ShortRings), and
// once RangeShortRings distinct numbers of the range have, a call-back to
// any number of it is refused, while a number of another range is not.
func TestWangiriRotating(t *testing.T) {
	f := newStageFixture(t, map[string]*config.TrunkFraud{"office": {Country: "US", International: true, Unrated: config.FraudAllow}}, nil)
	f.st.Wangiri.Configure(3, 10*time.Second, 24*time.Hour)
	f.st.Wangiri.ConfigureRanges(4)
	n := 0
	ring := func(caller string, watched bool) {
		t.Helper()
		n++
		req := &chain.Request{Msg: inboundFrom(t, caller, "rot-"+strconv.Itoa(n)), PeerKind: chain.PeerUpstream, Upstream: &config.Upstream{Name: "carrier"}}
		if v := f.s.Handle(req); v.Action != chain.Continue {
			t.Fatalf("inbound call: %+v", v)
		}
		var holds [chain.MaxHolds]chain.Releaser
		k := req.TakeHolds(&holds)
		if (k > 0) != watched {
			t.Fatalf("a call from %s: %d holds, watched %v", caller, k, watched)
		}
		f.clk.t = f.clk.t.Add(3 * time.Second)
		for _, h := range holds[:k] {
			h.Release()
		}
	}
	callBack := func(num string) chain.Verdict {
		t.Helper()
		n++
		v, req := f.call(t, "office", "sip:"+num+"@x", "back-"+strconv.Itoa(n))
		req.ReleaseHolds()
		return v
	}
	campaign := []string{"+22244120001", "+22244503377", "+22244987012", "+22244001999"}
	for _, c := range campaign[:3] {
		ring(c, true)
		ring(c, true)
		ring("+12125550199", false) // domestic callers are not watched, nor counted
	}
	if v := callBack("+22244777777"); v.Action == chain.Reply {
		t.Fatalf("call-back after 3 distinct numbers of the range: %+v", v)
	}
	ring(campaign[3], true)
	for _, num := range []string{campaign[0], campaign[3], "+22244777777"} {
		if v := callBack(num); v.Code != 403 || v.Reason != ReasonWangiri {
			t.Fatalf("call-back to %s, of a Wangiri range: %+v, want 403 %s", num, v, ReasonWangiri)
		}
	}
	if v := callBack("+22245777777"); v.Action == chain.Reply {
		t.Fatalf("call to another range: %+v", v)
	}
	f.clk.t = f.clk.t.Add(25 * time.Hour)
	if v := callBack("+22244777777"); v.Action == chain.Reply {
		t.Fatalf("call-back a day later: %+v", v)
	}
}

// The configuration's range_short_rings reaches the detector.
func TestWangiriRangeConfig(t *testing.T) {
	st := NewState(nil, events.NewBus(), time.Second, 0)
	fc := &config.Fraud{Enabled: true, Default: config.TrunkFraud{Country: "US", Unrated: config.FraudAllow},
		Wangiri: config.Wangiri{ShortRings: 3, RangeShortRings: 7, Ring: 5 * time.Second, Window: time.Hour}}
	if _, err := NewStage(&config.Config{}, fc, st, events.NewBus()); err != nil {
		t.Fatal(err)
	}
	if w := st.Wangiri; w.ShortRings != 3 || w.RangeShortRings != 7 || w.Ring != 5*time.Second || w.Window != time.Hour {
		t.Fatalf("detector %d/%d %v %v, want 3/7 5s 1h", w.ShortRings, w.RangeShortRings, w.Ring, w.Window)
	}
}

// Ranges share buckets of wangiriWays slots: two campaigns ringing at once
// in one bucket are both counted, and a tagged range is not evicted by a
// flood of ranges with one number each.
func TestWangiriRangeBucket(t *testing.T) {
	w := NewWangiri(64) // a range table of one bucket
	if len(w.ranges) != wangiriWays {
		t.Fatalf("%d range slots, want one bucket of %d", len(w.ranges), wangiriWays)
	}
	w.Configure(100, 0, 0)
	w.ConfigureRanges(3)
	note := func(e164 string, at time.Duration) {
		d := e164Dest(t, e164)
		w.noteShortRing(d.Number, wangiriRange(&d), t0.Add(at))
	}
	tagged := func(e164 string, at time.Duration) bool {
		d := e164Dest(t, e164)
		return w.Tagged(&d, t0.Add(at))
	}
	for i := range 3 {
		note("+2224400000"+strconv.Itoa(i), time.Duration(i)*time.Minute)
		note("+2224500000"+strconv.Itoa(i), time.Duration(i)*time.Minute)
	}
	if !tagged("+22244999999", 5*time.Minute) || !tagged("+22245999999", 5*time.Minute) {
		t.Fatal("two interleaved ranges of one bucket: not both tagged")
	}
	for i := range 2 * wangiriWays { // one number in each of 8 other ranges
		note("+22230"+strconv.Itoa(i)+"00000", 10*time.Minute)
	}
	if !tagged("+22244999999", 15*time.Minute) || !tagged("+22245999999", 15*time.Minute) {
		t.Fatal("tagged ranges evicted by ranges with one number each")
	}
	// A slot whose window ended is taken first.
	note("+22246000000", 25*time.Hour)
	if tagged("+22244999999", 25*time.Hour) {
		t.Fatal("tagged after the window")
	}
}

// The distinct numbers of a range tag it only when their short rings come
// within rangeBurst: the same count spread over a day is genuine callers.
func TestWangiriRangeBurst(t *testing.T) {
	w := NewWangiri(0)
	w.Configure(3, 10*time.Second, 24*time.Hour)
	w.ConfigureRanges(5)
	const rng = 222400
	at := t0
	for num := uint64(1); num <= 5; num++ { // one every 20 minutes: 80 minutes in all
		w.noteShortRing(num, rng, at)
		at = at.Add(20 * time.Minute)
	}
	if w.rangeTagged(rng, at) {
		t.Error("five distinct numbers over 80 minutes tagged the range")
	}
	for num := uint64(11); num <= 15; num++ { // five within 40 minutes
		w.noteShortRing(num, rng, at)
		at = at.Add(10 * time.Minute)
	}
	if !w.rangeTagged(rng, at) {
		t.Error("five distinct numbers within an hour did not tag the range")
	}
	if !w.rangeTagged(rng, at.Add(20*time.Hour)) {
		t.Error("the tag did not last the window")
	}
}
