// Package fraudsim is a synthetic traffic generator and scorer for the
// toll-fraud engine. It runs tenants of several archetypes (office, contact
// centre, hotel, reseller) with hour-of-week intensity, destination mixes,
// answer ratios and call durations, injects labelled attacks (IRSF bursts,
// slow pumping), and replays everything in virtual time through the same
// fraud stage and engine the proxy uses: INVITEs are parsed SIP messages
// handled by fraud.Stage, answers and ends go to the engine, and the engine
// ticks every 5 virtual seconds. It is deterministic for a seed.
//
// It reports, per attack: whether and when it was detected (first incident)
// and blocked (first refused attack call), the money lost before the block
// and in total; and for benign traffic: false incidents per 100 tenant-days
// and benign calls refused.
package fraudsim

import (
	"container/heap"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nyaruka/phonenumbers"

	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/events"
	"github.com/sipwarden/sipwarden/internal/fraud"
	"github.com/sipwarden/sipwarden/internal/sip"
)

// Archetype is a kind of tenant.
type Archetype struct {
	Name string
	// PeakPerHour is the call attempts per hour at full intensity.
	PeakPerHour float64
	// Intensity is the share of the peak in an hour of the week (0 = Sunday 00:00).
	Intensity func(weekday time.Weekday, hour int) float64
	// IntlShare is the share of attempts to other countries; Countries are their regions.
	IntlShare float64
	Countries []string
	// Answer is the share of attempts answered; durations are exponential with mean MeanDuration.
	Answer       float64
	MeanDuration time.Duration
	// Classes are the high-risk classes the tenant's policy allows.
	Classes []string
	// BusinessHours, when set, are configured on the tenant's trunk ("mon-fri 07:00-19:00").
	BusinessHours *[7][][2]int
}

func weekdaysHours(from, to int) *[7][][2]int {
	var w [7][][2]int
	for d := time.Monday; d <= time.Friday; d++ {
		w[d] = [][2]int{{from * 60, to * 60}}
	}
	return &w
}

func weekdayBusiness(wd time.Weekday, h int, from, to int, weekend float64) float64 {
	if wd == time.Saturday || wd == time.Sunday {
		return weekend
	}
	switch {
	case h >= from && h < to:
		return 1
	case h == from-1 || h == to:
		return 0.3
	}
	return 0.02
}

// Archetypes are the built-in tenant kinds.
var Archetypes = []Archetype{
	{Name: "office", PeakPerHour: 30, IntlShare: 0.05, Countries: []string{"GB", "DE", "FR", "MX"}, Answer: 0.7,
		MeanDuration: 4 * time.Minute, BusinessHours: weekdaysHours(7, 19), Intensity: func(wd time.Weekday, h int) float64 { return weekdayBusiness(wd, h, 8, 18, 0.02) }},
	{Name: "contact_centre", PeakPerHour: 400, IntlShare: 0.02, Countries: []string{"GB", "CA", "MX", "IN", "PH"}, Answer: 0.45,
		MeanDuration: 3 * time.Minute, Intensity: func(wd time.Weekday, h int) float64 {
			if wd == time.Sunday {
				return 0.01
			}
			if h >= 8 && h < 20 {
				return 1
			}
			return 0.02
		}},
	{Name: "hotel", PeakPerHour: 20, IntlShare: 0.2, Countries: []string{"GB", "DE", "FR", "CN", "BR", "JP", "DO", "JM"}, Answer: 0.6,
		MeanDuration: 6 * time.Minute, Classes: []string{"nanp_foreign"}, Intensity: func(_ time.Weekday, h int) float64 {
			switch {
			case h >= 18 && h < 23:
				return 1
			case h >= 7 && h < 18:
				return 0.5
			}
			return 0.08
		}},
	{Name: "reseller", PeakPerHour: 250, IntlShare: 0.3, Countries: []string{"GB", "DE", "FR", "MX", "IN", "PH", "NG", "CN", "BR", "DO", "JM"},
		Answer: 0.55, MeanDuration: 5 * time.Minute, Classes: []string{"nanp_foreign"}, Intensity: func(_ time.Weekday, h int) float64 {
			return 0.35 + 0.65*math.Max(0, math.Sin(float64(h-6)/24*2*math.Pi))
		}},
}

// Attack is a labelled attack on one tenant.
type Attack struct {
	Name   string
	Tenant string        // tenant name ("office-1")
	Start  time.Duration // from the start of the run
	Length time.Duration // the attacker keeps dialling this long
	// Channels are the calls the attacker keeps up at once; a refused or
	// ended call is replaced after RetryDelay.
	Channels   int
	RetryDelay time.Duration
	// Regions are the destination countries; calls last between MinDuration and MaxDuration.
	Regions                  []string
	MinDuration, MaxDuration time.Duration
}

// Config is one simulation.
type Config struct {
	Seed uint64
	// Start is the virtual start (default Monday 2026-11-30 00:00 UTC); Days the length.
	Start time.Time
	Days  int
	// Tenants per archetype (default 3 each).
	Tenants int
	Attacks []Attack
	// Rules replace the built-in rules when not nil.
	Rules []config.FraudRule
}

// BuiltinRules returns fraud.DefaultRules as configuration, with end_calls
// set on the block rules as endCalls says (to measure what it is worth).
func BuiltinRules(endCalls bool) []config.FraudRule {
	var out []config.FraudRule
	for _, r := range fraud.DefaultRules() {
		out = append(out, config.FraudRule{Name: r.Name, Metric: r.Metric.String(), Window: r.Window, Limit: r.Limit,
			Floor: r.Floor, MinSamples: r.MinSamples, Action: r.Action.String(), Scope: r.Scope.String(), For: r.For,
			ThrottlePerMinute: r.ThrottlePerMinute, EndCalls: endCalls && r.Action == fraud.ActionBlock})
	}
	return out
}

// DefaultAttacks are the labelled attacks of the standard run.
func DefaultAttacks() []Attack {
	irsf := []string{"SO", "CU", "SL", "LV", "GN"}
	return []Attack{
		{Name: "irsf_burst_night", Tenant: "office-1", Start: 5*24*time.Hour + 2*time.Hour, Length: 6 * time.Hour,
			Channels: 30, RetryDelay: 2 * time.Second, Regions: irsf, MinDuration: 20 * time.Minute, MaxDuration: 60 * time.Minute},
		{Name: "irsf_burst_hotel", Tenant: "hotel-2", Start: 3*24*time.Hour + 23*time.Hour, Length: 4 * time.Hour,
			Channels: 10, RetryDelay: 5 * time.Second, Regions: irsf, MinDuration: 10 * time.Minute, MaxDuration: 40 * time.Minute},
		{Name: "slow_pumping_business", Tenant: "contact_centre-1", Start: 24*time.Hour + 14*time.Hour, Length: 8 * time.Hour,
			Channels: 2, RetryDelay: 30 * time.Second, Regions: []string{"TN", "GN"}, MinDuration: 10 * time.Minute, MaxDuration: 30 * time.Minute},
	}
}

// deckRows are the prices of the simulated world (per minute, increments).
var deckRows = []struct {
	prefix, region string
	rate           string
	inc            int
}{
	{"1", "US", "0.005", 6}, {"44", "GB", "0.010", 1}, {"447", "GB", "0.020", 1}, {"49", "DE", "0.012", 1}, {"33", "FR", "0.012", 1},
	{"52", "MX", "0.030", 6}, {"91", "IN", "0.015", 6}, {"63", "PH", "0.120", 6}, {"86", "CN", "0.010", 6}, {"55", "BR", "0.030", 6},
	{"81", "JP", "0.025", 6}, {"234", "NG", "0.150", 60}, {"1809", "DO", "0.120", 60}, {"1876", "JM", "0.250", 60},
	{"252", "SO", "1.600", 60}, {"53", "CU", "1.100", 60}, {"232", "SL", "0.900", 60}, {"371", "LV", "0.800", 60},
	{"224", "GN", "0.700", 60}, {"216", "TN", "0.450", 60},
}

// AttackResult is the outcome of one attack.
type AttackResult struct {
	Attack
	Detected bool
	// TimeToDetect is from the attack's start to the tenant's first incident;
	// TimeToBlock to the first block incident or refused attack call,
	// whichever came first (Blocked false when neither).
	TimeToDetect, TimeToBlock time.Duration
	Blocked                   bool
	FirstRule                 string
	Attempts, Refused         int
	Answered                  int
	// LostBeforeBlock is what answered attack calls had cost when the first
	// attack call was refused; LostTotal what they cost in the end.
	LostBeforeBlock, LostTotal fraud.Money
	// Collateral counts the tenant's own calls refused during the attack.
	Collateral int
}

// Report is the outcome of a run.
type Report struct {
	Config        Config
	Currency      string
	TenantDays    float64
	BenignCalls   int
	BenignCost    fraud.Money
	BenignRefused map[string]int // by verdict reason, outside attacked tenants' attack windows
	// FalseIncidents are incidents outside any attack window, by action and by rule.
	FalseIncidents map[string]int
	FalseByRule    map[string]int
	Attacks        []AttackResult
	Elapsed        time.Duration
}

// FalsePer100TenantDays returns the false incidents of action per 100 tenant-days.
func (r *Report) FalsePer100TenantDays(action string) float64 {
	return float64(r.FalseIncidents[action]) / r.TenantDays * 100
}

type tenant struct {
	name   string
	arch   *Archetype
	trunk  *config.Trunk
	attack *attackState
}

type attackState struct {
	res      *AttackResult
	start    time.Time
	stop     time.Time
	calls    []*call
	blockAt  time.Time
	detectAt time.Time
}

type call struct {
	id        string
	t         *tenant
	attack    *attackState
	e164      string
	rate      fraud.Rate
	holds     [chain.MaxHolds]chain.Releaser
	nholds    int
	answerAt  time.Time
	answered  bool
	ended     bool
	duration  time.Duration
	answerWin bool
}

const (
	evHour = iota
	evAttempt
	evAnswer
	evEnd
	evTick
	evAttackStart
)

type event struct {
	at   time.Time
	seq  uint64
	kind int
	t    *tenant
	c    *call
	a    *attackState
}

type queue []*event

func (q queue) Len() int { return len(q) }
func (q queue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q queue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)   { *q = append(*q, x.(*event)) }
func (q *queue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

type sim struct {
	cfg     Config
	rng     *rand.Rand
	now     time.Time
	end     time.Time
	q       queue
	seq     uint64
	st      *fraud.State
	stage   *fraud.Stage
	sub     *events.Subscription
	tenants map[string]*tenant
	order   []*tenant
	pools   map[string][]string // region -> E.164 numbers
	calls   map[string]*call
	nextID  int
	rep     *Report
	buf     []byte
}

// Run runs a simulation.
func Run(cfg Config) (*Report, error) {
	began := time.Now()
	if cfg.Start.IsZero() {
		cfg.Start = time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	}
	if cfg.Days <= 0 {
		cfg.Days = 7
	}
	if cfg.Tenants <= 0 {
		cfg.Tenants = 3
	}
	s := &sim{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 0x5eed)), now: cfg.Start,
		end: cfg.Start.Add(time.Duration(cfg.Days) * 24 * time.Hour), tenants: map[string]*tenant{},
		pools: map[string][]string{}, calls: map[string]*call{},
		rep: &Report{Config: cfg, BenignRefused: map[string]int{}, FalseIncidents: map[string]int{}, FalseByRule: map[string]int{}}}
	if err := s.setup(); err != nil {
		return nil, err
	}
	s.loop()
	s.finish()
	s.rep.Elapsed = time.Since(began)
	return s.rep, nil
}

func (s *sim) setup() error {
	dir, err := os.MkdirTemp("", "fraudsim")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var deck strings.Builder
	deck.WriteString("# currency: USD\nprefix,description,rate,initial_increment,subsequent_increment\n")
	for _, r := range deckRows {
		fmt.Fprintf(&deck, "%s,%s,%s,%d,%d\n", r.prefix, r.region, r.rate, r.inc, r.inc)
	}
	deckPath := filepath.Join(dir, "deck.csv")
	if err := os.WriteFile(deckPath, []byte(deck.String()), 0o600); err != nil {
		return err
	}
	cfg := &config.Config{}
	fc := &config.Fraud{Enabled: true, RateDeck: deckPath, Rules: s.cfg.Rules, Trunks: map[string]*config.TrunkFraud{},
		Default: config.TrunkFraud{Country: "US", Unrated: config.FraudAllow, Location: time.UTC}}
	for ai := range Archetypes {
		a := &Archetypes[ai]
		for i := 1; i <= s.cfg.Tenants; i++ {
			name := a.Name + "-" + strconv.Itoa(i)
			cfg.Trunks = append(cfg.Trunks, config.Trunk{Name: name})
			// The policy is open (every country): the engine alone must catch the attacks.
			fc.Trunks[name] = &config.TrunkFraud{Country: "US", International: true, AllowClasses: a.Classes,
				Unrated: config.FraudAllow, Location: time.UTC, BusinessHours: a.BusinessHours}
		}
	}
	bus := events.NewBus()
	s.sub = bus.Subscribe("sim", 1<<16)
	s.st = fraud.NewState(nil, bus, 5*time.Second, 0)
	s.st.Engine.SetClock(func() time.Time { return s.now })
	s.st.Engine.SetHangup(s.hangup)
	s.stage, err = fraud.NewStage(cfg, fc, s.st, bus)
	if err != nil {
		return err
	}
	s.rep.Currency = s.stage.Deck().Currency
	i := 0
	for ai := range Archetypes {
		for range s.cfg.Tenants {
			t := &tenant{name: cfg.Trunks[i].Name, arch: &Archetypes[ai], trunk: &cfg.Trunks[i]}
			s.tenants[t.name] = t
			s.order = append(s.order, t)
			s.push(&event{at: s.now, kind: evHour, t: t})
			i++
		}
	}
	for ai := range s.cfg.Attacks {
		a := s.cfg.Attacks[ai]
		t := s.tenants[a.Tenant]
		if t == nil {
			return fmt.Errorf("attack %s: no tenant %q", a.Name, a.Tenant)
		}
		if t.attack != nil {
			return fmt.Errorf("attack %s: tenant %s is already attacked", a.Name, a.Tenant)
		}
		res := &AttackResult{Attack: a}
		st := &attackState{res: res, start: s.now.Add(a.Start), stop: s.now.Add(a.Start + a.Length)}
		t.attack = st
		s.push(&event{at: st.start, kind: evAttackStart, t: t, a: st})
	}
	s.push(&event{at: s.now.Add(5 * time.Second), kind: evTick})
	// Number pools: valid numbers of every region, from libphonenumber's examples.
	regions := []string{"US"}
	for _, r := range deckRows {
		regions = append(regions, r.region)
	}
	for _, a := range Archetypes {
		regions = append(regions, a.Countries...)
	}
	for _, a := range s.cfg.Attacks {
		regions = append(regions, a.Regions...)
	}
	slices.Sort(regions)
	for _, r := range slices.Compact(regions) {
		if err := s.pool(r); err != nil {
			return err
		}
	}
	return nil
}

// pool returns valid numbers of region (2,000 at home in the US, 40 in
// other countries), made by varying the last digits of libphonenumber's
// example numbers: a contact centre calling 40 numbers 400 times an hour
// would redial each one like a pumping attack. Pools depend on the region only (not
// on the seed) and are made once per process: libphonenumber's validation is
// the slow part of a short run.
func (s *sim) pool(region string) error {
	if p, ok := poolCache.Load(region); ok {
		s.pools[region] = p.([]string)
		return nil
	}
	d, err := fraud.NewDialling("US", "", "")
	if err != nil {
		return err
	}
	var seed uint64
	for _, c := range region {
		seed = seed*31 + uint64(c)
	}
	rng := rand.New(rand.NewPCG(seed, 0x9001))
	cl := fraud.NewClassifier(256)
	size, vary := 40, 3
	if region == "US" {
		size, vary = 2000, 4
	}
	var pool []string
	for _, typ := range []phonenumbers.PhoneNumberType{phonenumbers.FIXED_LINE, phonenumbers.MOBILE} {
		ex := phonenumbers.GetExampleNumberForType(region, typ)
		if ex == nil {
			continue
		}
		base := phonenumbers.Format(ex, phonenumbers.E164)
		for tries := 0; tries < 10*size && len(pool) < size; tries++ {
			n := []byte(base)
			for k := len(n) - vary; k < len(n); k++ {
				n[k] = '0' + byte(rng.IntN(10))
			}
			if dest := cl.ClassifyE164(&d, n); dest.Class != fraud.ClassInvalid && dest.Region == region {
				pool = append(pool, string(n))
			}
		}
	}
	if len(pool) == 0 {
		return fmt.Errorf("no valid numbers for %s", region)
	}
	poolCache.Store(region, pool)
	s.pools[region] = pool
	return nil
}

var poolCache sync.Map // region -> []string

func (s *sim) push(e *event) {
	s.seq++
	e.seq = s.seq
	heap.Push(&s.q, e)
}

func (s *sim) loop() {
	for s.q.Len() > 0 {
		e := heap.Pop(&s.q).(*event)
		if e.at.After(s.end) {
			break
		}
		s.now = e.at
		switch e.kind {
		case evHour:
			s.hour(e.t)
		case evAttempt:
			s.attempt(e.c)
		case evAnswer:
			s.answer(e.c)
		case evEnd:
			s.endCall(e.c)
		case evTick:
			s.st.Engine.Tick()
			s.push(&event{at: s.now.Add(5 * time.Second), kind: evTick})
		case evAttackStart:
			for range e.a.res.Channels {
				s.attackCall(e.t, e.a, s.now.Add(time.Duration(s.rng.IntN(3000))*time.Millisecond))
			}
		}
		s.drain()
	}
	s.now = s.end
	for _, c := range s.calls { // calls still up at the end of the run
		if !c.ended {
			s.endCall(c)
		}
	}
	s.drain()
}

// hour schedules a tenant's benign attempts of the hour starting now.
func (s *sim) hour(t *tenant) {
	a := t.arch
	lambda := a.PeakPerHour * a.Intensity(s.now.Weekday(), s.now.Hour())
	n := poisson(s.rng, lambda)
	for range n {
		at := s.now.Add(time.Duration(s.rng.Int64N(int64(time.Hour))))
		region := "US"
		if s.rng.Float64() < a.IntlShare {
			region = a.Countries[s.rng.IntN(len(a.Countries))]
		}
		c := s.newCall(t, nil, region)
		if s.rng.Float64() < a.Answer {
			c.answerWin = true
			c.duration = time.Duration(s.rng.ExpFloat64() * float64(a.MeanDuration))
		}
		s.push(&event{at: at, kind: evAttempt, c: c})
	}
	s.push(&event{at: s.now.Add(time.Hour), kind: evHour, t: t})
}

func (s *sim) attackCall(t *tenant, a *attackState, at time.Time) {
	if !at.Before(a.stop) {
		return
	}
	c := s.newCall(t, a, a.res.Regions[s.rng.IntN(len(a.res.Regions))])
	c.answerWin = true
	c.duration = a.res.MinDuration + time.Duration(s.rng.Int64N(int64(a.res.MaxDuration-a.res.MinDuration)+1))
	s.push(&event{at: at, kind: evAttempt, c: c})
}

func (s *sim) newCall(t *tenant, a *attackState, region string) *call {
	s.nextID++
	pool := s.pools[region]
	return &call{id: "sim-" + strconv.Itoa(s.nextID), t: t, attack: a, e164: pool[s.rng.IntN(len(pool))]}
}

// dialled writes the number as a US PBX dials it: 1+10 digits at home, 011 abroad, or with '+'.
func (s *sim) dialled(e164 string) string {
	switch {
	case s.rng.IntN(4) == 0:
		return e164
	case strings.HasPrefix(e164, "+1"):
		return e164[1:]
	default:
		return "011" + e164[1:]
	}
}

func (s *sim) attempt(c *call) {
	s.buf = fmt.Appendf(s.buf[:0], "INVITE sip:%s@sim.invalid SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK%s\r\n"+
		"From: <sip:pbx@192.0.2.1>;tag=1\r\nTo: <sip:%s@sim.invalid>\r\nCall-ID: %s\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
		s.dialled(c.e164), c.id, c.e164, c.id)
	var m sip.Msg
	if err := m.Parse(s.buf); err != nil {
		panic(err) // the simulator's own message: a bug here, not input
	}
	req := &chain.Request{Msg: &m, PeerKind: chain.PeerTrunk, Trunk: c.t.trunk}
	v := s.stage.Handle(req)
	c.rate, _ = s.stage.Deck().Lookup([]byte(c.e164), s.now)
	if c.attack != nil {
		c.attack.res.Attempts++
	} else if c.e164 != "" {
		s.rep.BenignCalls++
	}
	if v.Action != chain.Continue {
		s.refused(c, v)
		return
	}
	c.nholds = req.TakeHolds(&c.holds)
	s.calls[c.id] = c
	if c.attack != nil {
		c.attack.calls = append(c.attack.calls, c)
	}
	ring := time.Duration(3+s.rng.IntN(12)) * time.Second
	if c.answerWin {
		s.push(&event{at: s.now.Add(ring), kind: evAnswer, c: c})
	} else {
		s.push(&event{at: s.now.Add(ring + 20*time.Second), kind: evEnd, c: c})
	}
}

func (s *sim) refused(c *call, v chain.Verdict) {
	if a := c.attack; a != nil {
		a.res.Refused++
		if a.blockAt.IsZero() {
			a.blockAt = s.now
		}
		s.attackCall(c.t, a, s.now.Add(a.res.RetryDelay))
		return
	}
	if a := c.t.attack; a != nil && !s.now.Before(a.start) && s.now.Before(a.stop.Add(time.Hour)) {
		a.res.Collateral++
		return
	}
	s.rep.BenignRefused[v.Reason]++
}

func (s *sim) answer(c *call) {
	if c.ended {
		return
	}
	c.answered, c.answerAt = true, s.now
	s.st.Engine.CallAnswered(c.id)
	s.push(&event{at: s.now.Add(c.duration), kind: evEnd, c: c})
}

func (s *sim) endCall(c *call) {
	if c.ended {
		return
	}
	c.ended = true
	delete(s.calls, c.id)
	for i := range c.nholds {
		c.holds[i].Release()
	}
	if c.answered {
		cost := c.rate.Cost(s.now.Sub(c.answerAt))
		if a := c.attack; a != nil {
			a.res.Answered++
			a.res.LostTotal += cost
		} else {
			s.rep.BenignCost += cost
		}
	}
	if a := c.attack; a != nil {
		s.attackCall(c.t, a, s.now.Add(a.res.RetryDelay))
	}
}

// hangup is the engine's request to end a call (BYE both ways).
func (s *sim) hangup(callID, _, _ string) {
	if c := s.calls[callID]; c != nil {
		s.push(&event{at: s.now, kind: evEnd, c: c})
	}
}

// drain reads the engine's events: incidents tell detection and false alerts.
func (s *sim) drain() {
	for {
		select {
		case ev := <-s.sub.C:
			if ev.Kind != events.FraudIncident {
				continue
			}
			t := s.tenants[ev.Trunk]
			action := "alert"
			for _, act := range []string{"block", "throttle"} {
				if strings.Contains(ev.Detail, "action="+act) {
					action = act
				}
			}
			if strings.Contains(ev.Detail, "report_only=true") {
				action = "report_only"
			}
			if a := t.attack; a != nil && !ev.Time.Before(a.start) && ev.Time.Before(a.stop.Add(time.Hour)) {
				if a.detectAt.IsZero() {
					a.detectAt = ev.Time
					a.res.FirstRule = ev.Reason
				}
				if action == "block" && (a.blockAt.IsZero() || ev.Time.Before(a.blockAt)) {
					a.blockAt = ev.Time // new calls of the scope are refused from now on
				}
				continue
			}
			s.rep.FalseIncidents[action]++
			s.rep.FalseByRule[ev.Reason]++
		default:
			return
		}
	}
}

func (s *sim) finish() {
	s.rep.TenantDays = float64(len(s.order)) * float64(s.cfg.Days)
	s.rep.Attacks = s.rep.Attacks[:0]
	for ai := range s.cfg.Attacks {
		t := s.tenants[s.cfg.Attacks[ai].Tenant]
		a := t.attack
		r := a.res
		if !a.detectAt.IsZero() {
			r.Detected, r.TimeToDetect = true, a.detectAt.Sub(a.start)
		}
		if !a.blockAt.IsZero() {
			r.Blocked, r.TimeToBlock = true, a.blockAt.Sub(a.start)
			for _, c := range a.calls {
				if c.answered && c.answerAt.Before(a.blockAt) {
					end := c.answerAt.Add(c.duration)
					if end.After(a.blockAt) {
						end = a.blockAt
					}
					r.LostBeforeBlock += c.rate.Cost(end.Sub(c.answerAt))
				}
			}
		} else {
			r.LostBeforeBlock = r.LostTotal
		}
		s.rep.Attacks = append(s.rep.Attacks, *r)
	}
}

// poisson draws from a Poisson distribution (Knuth for small means, normal approximation above 50).
func poisson(rng *rand.Rand, lambda float64) int {
	if lambda <= 0 {
		return 0
	}
	if lambda > 50 {
		return max(0, int(math.Round(lambda+math.Sqrt(lambda)*rng.NormFloat64())))
	}
	l, k, p := math.Exp(-lambda), 0, 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

// String formats the report as Markdown tables.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d, %d days from %s, %d tenants (%.0f tenant-days), %d benign attempts costing %s %s; %s of CPU\n\n",
		r.Config.Seed, r.Config.Days, r.Config.Start.Format("Mon 2006-01-02"), int(r.TenantDays)/max(1, r.Config.Days), r.TenantDays,
		r.BenignCalls, r.BenignCost, r.Currency, r.Elapsed.Round(time.Millisecond))
	b.WriteString("| attack | tenant | channels | detected | first rule | time to detect | time to block | lost before block | lost in total | attempts | refused | collateral |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, a := range r.Attacks {
		ttb := "never"
		if a.Blocked {
			ttb = a.TimeToBlock.String()
		}
		ttd := "never"
		if a.Detected {
			ttd = a.TimeToDetect.String()
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %v | %s | %s | %s | %s | %s | %d | %d | %d |\n", a.Name, a.Tenant, a.Channels, a.Detected,
			a.FirstRule, ttd, ttb, a.LostBeforeBlock, a.LostTotal, a.Attempts, a.Refused, a.Collateral)
	}
	fmt.Fprintf(&b, "\nfalse incidents per 100 tenant-days: block %.2f, throttle %.2f, alert %.2f (by rule: %v); benign calls refused: %d %v\n",
		r.FalsePer100TenantDays("block"), r.FalsePer100TenantDays("throttle"), r.FalsePer100TenantDays("alert"),
		r.FalseByRule, sum(r.BenignRefused), r.BenignRefused)
	return b.String()
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// MarshalJSON writes the report for machines: durations in seconds, money in currency units.
func (r *Report) MarshalJSON() ([]byte, error) {
	type attack struct {
		Name            string  `json:"name"`
		Tenant          string  `json:"tenant"`
		Channels        int     `json:"channels"`
		StartSeconds    float64 `json:"start_s"`
		Detected        bool    `json:"detected"`
		FirstRule       string  `json:"first_rule,omitempty"`
		DetectSeconds   float64 `json:"time_to_detect_s"`
		Blocked         bool    `json:"blocked"`
		BlockSeconds    float64 `json:"time_to_block_s"`
		LostBeforeBlock float64 `json:"lost_before_block"`
		LostTotal       float64 `json:"lost_total"`
		Attempts        int     `json:"attempts"`
		Refused         int     `json:"refused"`
		Answered        int     `json:"answered"`
		Collateral      int     `json:"collateral"`
	}
	out := struct {
		Seed           uint64         `json:"seed"`
		Start          time.Time      `json:"start"`
		Days           int            `json:"days"`
		TenantDays     float64        `json:"tenant_days"`
		Currency       string         `json:"currency"`
		BenignCalls    int            `json:"benign_calls"`
		BenignCost     float64        `json:"benign_cost"`
		BenignRefused  map[string]int `json:"benign_refused"`
		FalseIncidents map[string]int `json:"false_incidents"`
		FalseByRule    map[string]int `json:"false_incidents_by_rule"`
		Attacks        []attack       `json:"attacks"`
		ElapsedSeconds float64        `json:"cpu_s"`
	}{Seed: r.Config.Seed, Start: r.Config.Start, Days: r.Config.Days, TenantDays: r.TenantDays, Currency: r.Currency,
		BenignCalls: r.BenignCalls, BenignCost: r.BenignCost.Float(), BenignRefused: r.BenignRefused,
		FalseIncidents: r.FalseIncidents, FalseByRule: r.FalseByRule, ElapsedSeconds: r.Elapsed.Seconds()}
	for _, a := range r.Attacks {
		out.Attacks = append(out.Attacks, attack{Name: a.Name, Tenant: a.Tenant, Channels: a.Channels,
			StartSeconds: a.Start.Seconds(), Detected: a.Detected, FirstRule: a.FirstRule,
			DetectSeconds: a.TimeToDetect.Seconds(), Blocked: a.Blocked, BlockSeconds: a.TimeToBlock.Seconds(),
			LostBeforeBlock: a.LostBeforeBlock.Float(), LostTotal: a.LostTotal.Float(), Attempts: a.Attempts,
			Refused: a.Refused, Answered: a.Answered, Collateral: a.Collateral})
	}
	return json.Marshal(out)
}
