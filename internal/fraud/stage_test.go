package fraud

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/events"
	"github.com/sipwarden/sipwarden/internal/sip"
)

func invite(t testing.TB, ruri, callID string) *sip.Msg {
	t.Helper()
	var m sip.Msg
	raw := "INVITE " + ruri + " SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\n" +
		"Call-ID: " + callID + "\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
	if err := m.Parse([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	return &m
}

func writeDeck(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "deck.csv")
	if err := os.WriteFile(p, []byte(testDeck), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

type stageFixture struct {
	cfg *config.Config
	st  *State
	s   *Stage
	sub *events.Subscription
	clk *fakeClock
}

func newStageFixture(t *testing.T, trunks map[string]*config.TrunkFraud, rules []config.FraudRule) *stageFixture {
	t.Helper()
	cfg := &config.Config{}
	fc := &config.Fraud{Enabled: true, RateDeck: writeDeck(t), Default: config.TrunkFraud{Country: "US", Unrated: config.FraudAllow},
		Trunks: trunks, Rules: rules}
	for name := range trunks {
		cfg.Trunks = append(cfg.Trunks, config.Trunk{Name: name})
	}
	cfg.Trunks = append(cfg.Trunks, config.Trunk{Name: "plain"})
	bus := events.NewBus()
	sub := bus.Subscribe("t", 100)
	st := NewState(nil, bus, time.Second, 0)
	clk := &fakeClock{t: t0}
	st.Engine.now = clk.Now
	s, err := NewStage(cfg, fc, st, bus)
	if err != nil {
		t.Fatal(err)
	}
	return &stageFixture{cfg: cfg, st: st, s: s, sub: sub, clk: clk}
}

func (f *stageFixture) trunk(name string) *config.Trunk { return f.cfg.Trunk(name) }

func (f *stageFixture) call(t testing.TB, trunk, ruri, callID string) (chain.Verdict, *chain.Request) {
	req := &chain.Request{Msg: invite(t, ruri, callID), PeerKind: chain.PeerTrunk, Trunk: f.trunk(trunk)}
	return f.s.Handle(req), req
}

func TestStagePolicy(t *testing.T) {
	f := newStageFixture(t, map[string]*config.TrunkFraud{
		"office": {Country: "GB", Unrated: config.FraudAllow}, // international off (the default)
		"intl": {Country: "US", International: true, AllowCountries: []string{"GB", "FR", "DE"}, Unrated: config.FraudBlock,
			MaxRate: 0.30},
		"carrier": {Country: "US", International: true, AllowClasses: []string{"premium", "satellite", "nanp_foreign"},
			AllowInvalid: true, Unrated: config.FraudAllow},
		"hot": {Country: "US", International: true, AllowCountries: []string{"GB"}, Unrated: config.FraudAllow, HotList: []config.HotEntry{
			{Number: config.NumberRange{Prefix: "+4420", Digits: -1}, Action: config.FraudBlock},
			{Number: config.NumberRange{Prefix: "+442079460000"}, Action: config.FraudAllow},
			{Number: config.NumberRange{Prefix: "+1268", Digits: -1}, Action: config.FraudAllow},
			{Number: config.NumberRange{Prefix: "+120155501", Digits: 2}, Action: config.FraudBlock},
		}},
		// The policy alone: with the built-in rules the carrier's 7.50/min
		// satellite call to a country it never called trips new_country_5m.
	}, []config.FraudRule{{Name: "calls", Metric: "calls", Window: time.Minute, Limit: 1000, Action: "alert"}})
	tests := []struct {
		trunk, ruri string
		code        uint16
		reason      string
	}{
		{"office", "sip:01212345678@x", 0, ""},
		{"office", "sip:0033123456789@x", 403, ReasonInternational},
		{"office", "sip:09012345678@x", 403, ReasonPremium},
		{"office", "sip:alice@x", 403, ReasonInvalid},
		{"office", "sip:+881612345678@x", 403, ReasonInternational},
		{"plain", "sip:12015550123@x", 0, ""}, // the default policy: US, domestic only
		{"plain", "tel:+1-268-460-1234", 403, ReasonInternational},
		{"intl", "sip:011441212345678@x", 0, ""},
		{"intl", "sip:011447400123456@x", 0, ""},               // 0.02-0.025/min, under the 0.30 cap
		{"intl", "sip:011447011234567@x", 403, ReasonPriceCap}, // 0.45/min
		{"intl", "sip:01134912345678@x", 403, ReasonCountry},
		{"intl", "sip:01149301234567@x", 403, ReasonUnrated}, // DE allowed, but the deck has no +49
		{"intl", "sip:12684601234@x", 403, ReasonCountry},    // NANP foreign: international
		{"intl", "sip:19002345678@x", 403, ReasonPremium},
		{"carrier", "sip:12684601234@x", 0, ""},
		{"carrier", "sip:011881612345678@x", 0, ""},
		{"carrier", "sip:19002345678@x", 0, ""},
		{"carrier", "sip:12685551234@x", 0, ""}, // invalid, allowed
		{"hot", "sip:011441212345678@x", 0, ""},
		{"hot", "sip:011442079460001@x", 403, ReasonHotList},
		{"hot", "sip:011442079460000@x", 0, ""}, // exact allow beats the +4420 block
		{"hot", "sip:12684601234@x", 0, ""},     // allowed range skips the policy
		{"hot", "sip:12015550199@x", 403, ReasonHotList},
		{"hot", "sip:12015550200@x", 0, ""},
	}
	for i, tc := range tests {
		v, req := f.call(t, tc.trunk, tc.ruri, "c"+string(rune('a'+i)))
		if tc.code == 0 {
			if v.Action != chain.Continue {
				t.Errorf("%s %s: %+v", tc.trunk, tc.ruri, v)
			}
			req.ReleaseHolds()
			continue
		}
		if v.Action != chain.Reply || v.Code != tc.code || v.Reason != tc.reason || v.Warning == "" {
			t.Errorf("%s %s: %+v, want %d %s", tc.trunk, tc.ruri, v, tc.code, tc.reason)
		}
	}
	evs := drain(f.sub)
	if len(evs) == 0 || evs[0].Kind != events.FraudBlocked || evs[0].Trunk != "office" || evs[0].Code != 403 {
		t.Fatalf("events %+v", evs)
	}
	for _, ev := range evs {
		if strings.Contains(ev.Detail, "+44") || strings.Contains(ev.Detail, "0033") {
			t.Errorf("a number in an event: %+v", ev)
		}
	}
}

func TestStageIgnores(t *testing.T) {
	f := newStageFixture(t, map[string]*config.TrunkFraud{"office": {Country: "GB"}}, nil)
	m := invite(t, "sip:0033123456789@x", "x")
	for _, req := range []*chain.Request{
		{Msg: m, PeerKind: chain.PeerUpstream, Upstream: &config.Upstream{Name: "pbx"}},
		{Msg: m, PeerKind: chain.PeerTrunk, Trunk: f.trunk("office"), InDialog: true},
		{Msg: m, PeerKind: chain.PeerTrunk, Trunk: &config.Trunk{Name: "not in this config"}},
	} {
		if v := f.s.Handle(req); v.Action != chain.Continue {
			t.Errorf("%+v: %+v", req, v)
		}
	}
	var opt sip.Msg
	if err := opt.Parse([]byte("OPTIONS sip:0033123456789@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: o\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if v := f.s.Handle(&chain.Request{Msg: &opt, PeerKind: chain.PeerTrunk, Trunk: f.trunk("office")}); v.Action != chain.Continue {
		t.Errorf("OPTIONS: %+v", v)
	}
}

// TestStageEngine: an IRSF burst of long calls to a costly range is blocked
// by the score rule with 403, throttled calls get 503 with Retry-After, and
// calls in progress are tracked through the hold the proxy releases.
func TestStageEngine(t *testing.T) {
	f := newStageFixture(t, map[string]*config.TrunkFraud{
		"acme": {Country: "US", International: true, AllowClasses: []string{"satellite"}, Unrated: config.FraudAllow},
	}, []config.FraudRule{
		{Name: "score_5m", Metric: "score", Window: 5 * time.Minute, Limit: 20, Action: "block", Scope: "risky", For: 15 * time.Minute},
		{Name: "intl_1m", Metric: "intl_calls", Window: time.Minute, Limit: 3, Action: "throttle", Scope: "risky", For: time.Minute, ThrottlePerMinute: 1},
	})
	var holds [chain.MaxHolds]chain.Releaser
	var calls []chain.Releaser
	// 7.50/min Iridium: the third attempt makes 22.50 > 20.
	for i, want := range []uint16{0, 0, 403, 403} {
		v, req := f.call(t, "acme", "sip:011881612345678@x", "irsf"+string(rune('0'+i)))
		if v.Code != want {
			t.Fatalf("attempt %d: %+v", i, v)
		}
		if want == 403 && (v.Reason != "fraud_block:score_5m" || !strings.Contains(v.Warning, "score_5m")) {
			t.Fatalf("attempt %d: %+v", i, v)
		}
		if n := req.TakeHolds(&holds); n == 1 {
			calls = append(calls, holds[0])
		}
	}
	if len(calls) != 2 || f.st.Engine.Stats("acme").Live != 2 {
		t.Fatalf("calls in progress: %d, engine %+v", len(calls), f.st.Engine.Stats("acme"))
	}
	// Domestic calls still flow (risky scope).
	if v, req := f.call(t, "acme", "sip:12015550123@x", "home"); v.Action != chain.Continue {
		t.Fatalf("domestic: %+v", v)
	} else {
		req.ReleaseHolds()
	}
	for _, c := range calls {
		c.Release()
	}
	if s := f.st.Engine.Stats("acme"); s.Live != 0 {
		t.Fatalf("after release: %+v", s)
	}
	// Throttle on another trunk-sized window: cheap UK calls, 4 in a minute.
	f.clk.Add(time.Hour)
	f.st.Engine.Release("acme", "score_5m")
	for i, want := range []uint16{0, 0, 0, 503} {
		v, req := f.call(t, "acme", "sip:011441212345678@x", "uk"+string(rune('0'+i)))
		if v.Code != want {
			t.Fatalf("uk attempt %d: %+v", i, v)
		}
		if want == 503 && (v.RetryAfter != 60 || v.Reason != "fraud_throttle:intl_1m") {
			t.Fatalf("uk attempt %d: %+v", i, v)
		}
		req.ReleaseHolds()
	}
}

func TestStageDeckReuse(t *testing.T) {
	st := NewState(nil, nil, 0, 0)
	p := writeDeck(t)
	d1, err := st.Deck(p)
	if err != nil {
		t.Fatal(err)
	}
	d2, _ := st.Deck(p)
	if d1 != d2 {
		t.Fatal("unchanged deck reloaded")
	}
	if err := os.WriteFile(p, []byte("# currency: EUR\nprefix,rate\n44,0.1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d3, err := st.Deck(p)
	if err != nil || d3 == d1 || d3.Currency != "EUR" {
		t.Fatalf("changed deck: %v %+v", err, d3)
	}
	if _, err := st.Deck(filepath.Join(t.TempDir(), "missing.csv")); err == nil {
		t.Fatal("missing deck accepted")
	}
	cfg := &config.Config{Trunks: []config.Trunk{{Name: "a"}}}
	bad := filepath.Join(t.TempDir(), "bad.csv")
	_ = os.WriteFile(bad, []byte("prefix,rate\n"), 0o600)
	if _, err := NewStage(cfg, &config.Fraud{RateDeck: bad, Default: config.TrunkFraud{Country: "GB"}}, st, nil); err == nil ||
		!strings.Contains(err.Error(), "line 1: no currency") {
		t.Fatalf("bad deck: %v", err)
	}
	if _, err := NewStage(cfg, &config.Fraud{}, st, nil); err == nil {
		t.Fatal("a trunk without a country accepted")
	}
}

// TestConfigNamesInStep keeps config's lists of names equal to this package's.
func TestConfigNamesInStep(t *testing.T) {
	if strings.Join(config.FraudMetrics, ",") != strings.Join(metricNames[:], ",") {
		t.Errorf("config.FraudMetrics %v != %v", config.FraudMetrics, metricNames)
	}
	if strings.Join(config.FraudActions, ",") != strings.Join(actionNames[1:], ",") {
		t.Errorf("config.FraudActions %v != %v", config.FraudActions, actionNames[1:])
	}
	for _, c := range config.FraudRiskyClasses {
		if _, err := ParseClass(c); err != nil {
			t.Error(err)
		}
	}
}

func BenchmarkStageHandle(b *testing.B) {
	cfg := &config.Config{Trunks: []config.Trunk{{Name: "acme"}}}
	fc := &config.Fraud{RateDeck: writeDeck(b), Default: config.TrunkFraud{Country: "US", International: true}}
	for _, r := range DefaultRules() { // every default rule is evaluated, none trips
		limit := 1e12
		switch r.Metric {
		case MetricSameNumber:
			limit = maxSameNumber - 1
		case MetricSequential, MetricNewRange:
			limit = recentSize - 1
		case MetricLowASR:
			limit = 0.01
		}
		fc.Rules = append(fc.Rules, config.FraudRule{Name: r.Name, Metric: r.Metric.String(), Window: r.Window,
			Limit: limit, Floor: 1e12, Action: r.Action.String(), Scope: r.Scope.String()})
	}
	st := NewState(nil, nil, 0, 0)
	// Virtual time, a second per reading, and 64 destinations in turn: no
	// number is redialled 30 times in 15 minutes.
	vt := t0
	st.Engine.SetClock(func() time.Time { vt = vt.Add(time.Second); return vt })
	s, err := NewStage(cfg, fc, st, nil)
	if err != nil {
		b.Fatal(err)
	}
	msgs := make([]*sip.Msg, 64)
	for i := range msgs {
		msgs[i] = invite(b, fmt.Sprintf("sip:0114412123456%02d@x", i), "bench")
	}
	req := &chain.Request{PeerKind: chain.PeerTrunk, Trunk: &cfg.Trunks[0]}
	var holds [chain.MaxHolds]chain.Releaser
	// A day after the trunk's first call: the novelty rules run too.
	req.Msg = msgs[0]
	s.Handle(req)
	req.ReleaseHolds()
	vt = vt.Add(learnDelay)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		req.Msg = msgs[i&63]
		i++
		if v := s.Handle(req); v.Action != chain.Continue {
			b.Fatal(v)
		}
		if req.TakeHolds(&holds) == 1 {
			holds[0].Release()
		}
	}
}

func inviteWith(t testing.TB, ruri, callID, extra string) *sip.Msg {
	t.Helper()
	var m sip.Msg
	raw := "INVITE " + ruri + " SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\n" +
		"Call-ID: " + callID + "\r\nCSeq: 1 INVITE\r\n" + extra + "Content-Length: 0\r\n\r\n"
	if err := m.Parse([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	return &m
}

func TestStageDiverted(t *testing.T) {
	f := newStageFixture(t, map[string]*config.TrunkFraud{
		"pbx":     {Country: "US", International: true, Unrated: config.FraudAllow},
		"forward": {Country: "US", International: true, AllowDivertedInternational: true, Unrated: config.FraudAllow},
	}, nil)
	const (
		diversion = "Diversion: <sip:+12015550123@pbx>;reason=unconditional\r\n"
		hiRetgt   = "History-Info: <sip:+12015550123@pbx>;index=1, <sip:011441212345678@pbx?Reason=SIP%3Bcause%3D302>;index=1.1\r\n"
		hiPlain   = "history-info: <sip:+12015550123@pbx>;INDEX=1\r\n"
	)
	tests := []struct {
		trunk, ruri, extra string
		refused            bool
	}{
		{"pbx", "sip:011441212345678@x", "", false},
		{"pbx", "sip:011441212345678@x", diversion, true},
		{"pbx", "sip:011441212345678@x", hiRetgt, true},
		{"pbx", "sip:011441212345678@x", hiPlain, false}, // one entry: not retargeted
		{"pbx", "sip:12015550199@x", diversion, false},   // forwarded at home
		{"forward", "sip:011441212345678@x", diversion, false},
	}
	for i, tc := range tests {
		req := &chain.Request{Msg: inviteWith(t, tc.ruri, fmt.Sprint("d", i), tc.extra), PeerKind: chain.PeerTrunk, Trunk: f.trunk(tc.trunk)}
		v := f.s.Handle(req)
		req.ReleaseHolds()
		if refused := v.Action != chain.Continue; refused != tc.refused || (refused && (v.Code != 403 || v.Reason != ReasonDiverted)) {
			t.Errorf("%d %s %q: %+v", i, tc.trunk, tc.extra, v)
		}
	}
}

// BenchmarkStageRefuse: a policy refusal (international off), with its event and metric.
func BenchmarkStageRefuse(b *testing.B) {
	cfg := &config.Config{Trunks: []config.Trunk{{Name: "acme"}}}
	fc := &config.Fraud{Default: config.TrunkFraud{Country: "US"}}
	bus := events.NewBus()
	sub := bus.Subscribe("b", 16) // a full queue: events are counted as lost, never block
	_ = sub
	s, err := NewStage(cfg, fc, NewState(nil, bus, 0, 0), bus)
	if err != nil {
		b.Fatal(err)
	}
	req := &chain.Request{Msg: invite(b, "sip:011441212345678@x", "bench"), PeerKind: chain.PeerTrunk, Trunk: &cfg.Trunks[0]}
	b.ReportAllocs()
	for b.Loop() {
		if v := s.Handle(req); v.Reason != ReasonInternational {
			b.Fatal(v)
		}
	}
}
