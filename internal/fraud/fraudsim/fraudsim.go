// Package fraudsim is a synthetic traffic generator and scorer for the
// toll-fraud engine. It runs tenants of several archetypes (office, contact
// centre, hotel, reseller) with hour-of-week intensity, destination mixes,
// answer ratios and call durations, injects labelled scenarios — attacks
// (IRSF bursts, slow and domestic pumping, credential reuse, call-forward
// abuse, Wangiri and Caribbean one-ring call-backs, satellite ranges) and
// false-positive stressors (campaign day, month-end surge, a hotel guest or
// a travelling employee calling abroad, a re-registration storm) — and
// replays everything in virtual time through the same fraud stage and
// engine the proxy uses: INVITEs are parsed SIP messages handled by
// fraud.Stage (from trunks, or from an upstream for the one-ring calls),
// answers and ends go to what the stage asked to hold, and the engine
// ticks every 5 virtual seconds. It is deterministic for a seed.
//
// It reports, per attack: whether and when it was detected (first incident,
// policy refusal or tagged Wangiri number) and blocked, the money lost
// before the block and in total, and for Wangiri the call-backs that got
// through; per stressor and overall: false incidents (critical: block or
// throttle) and benign calls refused.
package fraudsim

import (
	"container/heap"
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
		Answer: 0.55, MeanDuration: 5 * time.Minute, Classes: []string{"nanp_foreign", "satellite"}, Intensity: func(_ time.Weekday, h int) float64 {
			return 0.35 + 0.65*math.Max(0, math.Sin(float64(h-6)/24*2*math.Pi))
		}},
}

// Config is one simulation.
type Config struct {
	Seed uint64
	// Start is the virtual start (default Monday 2026-11-30 00:00 UTC); Days the length.
	Start time.Time
	Days  int
	// Tenants per archetype (default 3 each).
	Tenants int
	// Scenarios are the labelled attacks and stressors (DefaultScenarios for the standard run).
	Scenarios []Scenario
	// Rules replace the built-in rules when not nil (an empty slice: no rules).
	Rules []config.FraudRule
	// Wangiri is the one-ring detection (nil: the configuration's defaults,
	// 3 short rings under 10 s within 24 h, 5 distinct numbers of a range;
	// ShortRings 0 turns it off).
	Wangiri *config.Wangiri
	// NoBenign leaves out the tenants' ordinary traffic (Extra stressors
	// still run; a Surge has nothing to multiply): unit tests of the
	// scorer, where a day of traffic is only cost.
	NoBenign bool
}

// BuiltinRules returns fraud.DefaultRules as configuration, exactly as the
// proxy runs them; with endCalls false no rule ends calls in progress (to
// measure what end_calls is worth).
func BuiltinRules(endCalls bool) []config.FraudRule {
	var out []config.FraudRule
	for _, r := range fraud.DefaultRules() {
		out = append(out, config.FraudRule{Name: r.Name, Metric: r.Metric.String(), Window: r.Window, Limit: r.Limit,
			Floor: r.Floor, MinSamples: r.MinSamples, Action: r.Action.String(), Scope: r.Scope.String(), For: r.For,
			ThrottlePerMinute: r.ThrottlePerMinute, ReportOnly: r.ReportOnly, EndCalls: endCalls && r.EndCalls})
	}
	return out
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
	{"92", "PK", "0.090", 60}, {"20", "EG", "0.220", 60}, {"880", "BD", "0.060", 60}, {"222", "MR", "0.950", 60},
	{"449", "GB premium", "1.500", 60}, {"1473", "GD", "0.300", 60}, {"1268", "AG", "0.280", 60},
	{"8816", "Iridium", "7.500", 60}, {"88216", "Thuraya", "6.500", 60}, {"870", "Inmarsat", "5.000", 60},
	{"1712", "US rural high-cost", "0.090", 60}, {"1900", "US premium", "1.990", 60},
}

// AttackResult is the outcome of one attack.
type AttackResult struct {
	Scenario
	Detected bool
	// TimeToDetect is from the attack's start to the first incident on the
	// tenant, the first attack call refused by the policy, or (Wangiri) the
	// first number tagged; TimeToBlock to the first block incident whose
	// scope covers the attack's calls, the first attack call refused, or the
	// first number tagged, whichever came first (Blocked false when none).
	TimeToDetect, TimeToBlock time.Duration
	Blocked                   bool
	// FirstRule is the rule of the first incident, the reason of the first
	// refusal ("diverted_international"), or "wangiri" for a tagged number.
	FirstRule         string
	Attempts, Refused int
	Answered          int
	// LostBeforeBlock is what answered attack calls had cost at the time to
	// block; LostTotal what they cost in the end.
	LostBeforeBlock, LostTotal fraud.Money
	// Collateral counts the tenant's own calls refused during the attack and the hour after.
	Collateral int
	// Incidents counts the incidents the attack caused (the first one is
	// its detection); for Wangiri, incidents on a customer's tenant in the
	// hour after one of its call-backs.
	Incidents int
	// Wangiri: one-ring calls made, numbers tagged, call-backs attempted
	// and call-backs forwarded (not refused): the scam's success.
	Rings, Tagged, Callbacks, CallbacksThrough int
}

// StressorResult is the outcome of one false-positive stressor: anything
// here is a false alarm.
type StressorResult struct {
	Scenario
	// Calls are the benign calls the stressor made (Extra) or the tenant's
	// calls in the surge hours (Surge).
	Calls int
	// Incidents on the tenant during the stressor and the hour after, by
	// action ("block", "throttle", "alert", "report_only") and by rule.
	Incidents map[string]int
	ByRule    map[string]int
	// Refused counts the tenant's benign calls refused in that time.
	Refused int
}

// Critical reports the stressor's block and throttle incidents.
func (r *StressorResult) Critical() int { return r.Incidents["block"] + r.Incidents["throttle"] }

// Report is the outcome of a run.
type Report struct {
	Config        Config
	Currency      string
	TenantDays    float64
	BenignCalls   int
	BenignCost    fraud.Money
	BenignRefused map[string]int // by verdict reason, outside attacked tenants' attack windows
	// FalseIncidents are incidents outside any attack window (stressors
	// included), by action and by rule.
	FalseIncidents map[string]int
	FalseByRule    map[string]int
	Attacks        []AttackResult
	Stressors      []StressorResult
	// Elapsed is the run's wall time, CPU the CPU time the process used
	// meanwhile (every goroutine, the garbage collector included).
	Elapsed, CPU time.Duration
}

// FalsePer100TenantDays returns the false incidents of action per 100 tenant-days.
func (r *Report) FalsePer100TenantDays(action string) float64 {
	return float64(r.FalseIncidents[action]) / r.TenantDays * 100
}

// CriticalPer100TenantDays returns the false block and throttle incidents per 100 tenant-days.
func (r *Report) CriticalPer100TenantDays() float64 {
	return r.FalsePer100TenantDays("block") + r.FalsePer100TenantDays("throttle")
}

type tenant struct {
	name  string
	arch  *Archetype
	trunk *config.Trunk
	scens []*scen // scenarios on this tenant, attacks and stressors
	// The Wangiri campaign one of its customers last called back, and when.
	callback   *scen
	callbackAt time.Time
}

// scen is the running state of one scenario.
type scen struct {
	sc          *Scenario
	attack      *AttackResult   // attacks
	stress      *StressorResult // stressors
	t           *tenant         // nil for Wangiri
	start, stop time.Time
	// domestic: every destination is domestic, so a block of scope "risky"
	// does not stop the attack.
	domestic          bool
	started           bool      // a scenario that starts after the run's end is not reported
	live              int       // attack calls in progress
	lastEnd           time.Time // of the last attack call
	calls             []*call   // attack calls forwarded (Wangiri: call-backs)
	detectAt, blockAt time.Time
	// Wangiri: the calling numbers, as the stage classifies them, tagged ones.
	callers []string
	dests   []fraud.Destination
	tagged  []bool
}

// covers reports whether at is in the scenario's scoring window: while it
// runs, while its calls last, and the hour after (incidents and refusals it
// caused: a pumping call of 90 minutes keeps the spend up after the last
// attempt).
func (sc *scen) covers(at time.Time) bool {
	if at.Before(sc.start) {
		return false
	}
	return sc.live > 0 || at.Before(sc.stop.Add(time.Hour)) || at.Before(sc.lastEnd.Add(time.Hour))
}

type callKind uint8

const (
	benignCall   callKind = iota
	attackCall            // an Outbound attacker's call
	ringCall              // a one-ring call from an upstream to a customer
	callbackCall          // a customer calling a one-ring number back
)

type call struct {
	id        string
	kind      callKind
	t         *tenant // the trunk it comes from (for a ring: the customer's tenant)
	sc        *scen   // the scenario it belongs to (nil: ordinary benign traffic)
	caller    int     // ring, callback: index of the calling number in sc.callers
	e164      string
	rate      fraud.Rate
	holds     [chain.MaxHolds]chain.Releaser
	nholds    int
	answerAt  time.Time
	endAt     time.Time
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
	evScenarioStart
)

type event struct {
	at   time.Time
	seq  uint64
	kind int
	t    *tenant
	c    *call
	sc   *scen
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
	dial    fraud.Dialling // the default (US) dialling context, for number hashes
	tenants map[string]*tenant
	order   []*tenant
	scens   []*scen
	pools   map[string]*pool // number spec -> numbers
	calls   map[string]*call
	nextID  int
	rep     *Report
	buf     []byte
}

// Run runs a simulation.
func Run(cfg Config) (*Report, error) {
	began, cpu := time.Now(), cpuTime()
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
		pools: map[string]*pool{}, calls: map[string]*call{},
		rep: &Report{Config: cfg, BenignRefused: map[string]int{}, FalseIncidents: map[string]int{}, FalseByRule: map[string]int{}}}
	if err := s.setup(); err != nil {
		return nil, err
	}
	s.loop()
	s.finish()
	s.rep.Elapsed, s.rep.CPU = time.Since(began), cpuTime()-cpu
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
	wangiri := config.Wangiri{ShortRings: 3, RangeShortRings: 5, Ring: 10 * time.Second, Window: 24 * time.Hour} // the configuration's defaults
	if s.cfg.Wangiri != nil {
		wangiri = *s.cfg.Wangiri
	}
	fc := &config.Fraud{Enabled: true, RateDeck: deckPath, Rules: s.cfg.Rules, Trunks: map[string]*config.TrunkFraud{},
		Default: config.TrunkFraud{Country: "US", Unrated: config.FraudAllow, Location: time.UTC}, Wangiri: wangiri}
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
	if s.dial, err = fraud.NewDialling("US", "", ""); err != nil {
		return err
	}
	s.rep.Currency = s.stage.Deck().Currency
	i := 0
	for ai := range Archetypes {
		for range s.cfg.Tenants {
			t := &tenant{name: cfg.Trunks[i].Name, arch: &Archetypes[ai], trunk: &cfg.Trunks[i]}
			s.tenants[t.name] = t
			s.order = append(s.order, t)
			if !s.cfg.NoBenign {
				s.push(&event{at: s.now, kind: evHour, t: t})
			}
			i++
		}
	}
	// Number pools: every region the tenants call, every spec of a scenario.
	specs := []string{"US"}
	for _, a := range Archetypes {
		specs = append(specs, a.Countries...)
	}
	for i := range s.cfg.Scenarios {
		sc := &s.cfg.Scenarios[i]
		if err := sc.validate(s.tenants); err != nil {
			return err
		}
		specs = append(specs, sc.Destinations...)
	}
	slices.Sort(specs)
	for _, spec := range slices.Compact(specs) {
		p, err := poolOf(spec)
		if err != nil {
			return err
		}
		s.pools[spec] = p
	}
	names := map[string]bool{}
	for i := range s.cfg.Scenarios {
		sc := &s.cfg.Scenarios[i]
		if names[sc.Name] {
			return fmt.Errorf("scenario %q: the name is used twice", sc.Name)
		}
		names[sc.Name] = true
		st := &scen{sc: sc, t: s.tenants[sc.Tenant], start: s.now.Add(sc.Start), stop: s.now.Add(sc.Start + sc.Length), domestic: true}
		for _, d := range sc.Destinations {
			if s.pools[d].class != fraud.ClassDomestic {
				st.domestic = false
			}
		}
		if sc.Kind.Label() == "attack" {
			st.attack = &AttackResult{Scenario: *sc}
		} else {
			st.stress = &StressorResult{Scenario: *sc, Incidents: map[string]int{}, ByRule: map[string]int{}}
		}
		if st.t != nil {
			st.t.scens = append(st.t.scens, st)
		}
		s.scens = append(s.scens, st)
		s.push(&event{at: st.start, kind: evScenarioStart, sc: st})
	}
	s.push(&event{at: s.now.Add(5 * time.Second), kind: evTick})
	return nil
}

// pool is the numbers of one spec and their class (the class of the first;
// a pool of mixed classes is reported as not domestic).
type pool struct {
	nums  []string
	class fraud.Class
}

// poolOf returns the numbers of spec (see Scenario): 2,000 numbers at home
// in the US, 40 of other regions, made by varying the last digits of
// libphonenumber's example numbers (a contact centre calling 40 US numbers
// 400 times an hour would redial each one like a pumping attack); 200 of a
// prefix, with random digits. Only numbers the stage classifies as valid
// (and in the region) are kept. Pools depend on the spec only (not on the
// seed) and are made once per process: libphonenumber's validation is the
// slow part of a short run.
func poolOf(spec string) (*pool, error) {
	if p, ok := poolCache.Load(spec); ok {
		return p.(*pool), nil
	}
	d, err := fraud.NewDialling("US", "", "")
	if err != nil {
		return nil, err
	}
	var seed uint64
	for _, c := range spec {
		seed = seed*31 + uint64(c)
	}
	rng := rand.New(rand.NewPCG(seed, 0x9001))
	cl := fraud.NewClassifier(256)
	p := &pool{}
	classes := map[fraud.Class]bool{}
	keep := func(n []byte, region string) {
		dest := cl.ClassifyE164(&d, n)
		if dest.Class != fraud.ClassInvalid && (region == "" || dest.Region == region) {
			if len(p.nums) == 0 {
				p.class = dest.Class
			}
			classes[dest.Class] = true
			p.nums = append(p.nums, string(n))
		}
	}
	if strings.HasPrefix(spec, "+") {
		prefix, length := spec, 12
		if strings.HasPrefix(spec, "+1") {
			length = 11
		}
		if i := strings.IndexByte(spec, ':'); i >= 0 {
			prefix = spec[:i]
			if length, err = strconv.Atoi(spec[i+1:]); err != nil || length > 15 {
				return nil, fmt.Errorf("number spec %q: the length after ':' is a number of digits up to 15", spec)
			}
		}
		if strings.Trim(prefix[1:], "0123456789") != "" || len(prefix) < 2 || len(prefix)-1 >= length {
			return nil, fmt.Errorf("number spec %q: '+', digits, and an optional ':length' longer than the prefix", spec)
		}
		const size = 200
		for tries := 0; tries < 20*size && len(p.nums) < size; tries++ {
			n := []byte(prefix)
			for len(n) < length+1 {
				n = append(n, '0'+byte(rng.IntN(10)))
			}
			keep(n, "")
		}
	} else {
		region, typ := spec, ""
		if i := strings.IndexByte(spec, '/'); i >= 0 {
			region, typ = spec[:i], spec[i+1:]
		}
		types := []phonenumbers.PhoneNumberType{phonenumbers.FIXED_LINE, phonenumbers.MOBILE}
		switch typ {
		case "":
		case "premium":
			types = []phonenumbers.PhoneNumberType{phonenumbers.PREMIUM_RATE}
		default:
			return nil, fmt.Errorf("number spec %q: unknown type %q (valid: premium)", spec, typ)
		}
		size, vary := 40, 3
		if spec == "US" {
			size, vary = 2000, 4
		}
		for _, typ := range types {
			ex := phonenumbers.GetExampleNumberForType(region, typ)
			if ex == nil {
				continue
			}
			base := phonenumbers.Format(ex, phonenumbers.E164)
			for tries := 0; tries < 10*size && len(p.nums) < size; tries++ {
				n := []byte(base)
				for k := len(n) - vary; k < len(n); k++ {
					n[k] = '0' + byte(rng.IntN(10))
				}
				keep(n, region)
			}
		}
	}
	if len(p.nums) == 0 {
		return nil, fmt.Errorf("number spec %q: no valid numbers (a region such as SO, a region/premium, or a prefix such as +8816)", spec)
	}
	if len(classes) > 1 {
		p.class = fraud.ClassInternational
	}
	poolCache.Store(spec, p)
	return p, nil
}

var poolCache sync.Map // spec -> *pool

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
		case evScenarioStart:
			s.startScenario(e.sc)
		}
		s.drain()
	}
	s.now = s.end
	ids := make([]string, 0, len(s.calls))
	for id := range s.calls { // calls still up at the end of the run, in a repeatable order
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		s.endCall(s.calls[id])
	}
	s.drain()
}

func (s *sim) startScenario(st *scen) {
	sc := st.sc
	st.started = true
	switch sc.Kind {
	case Outbound:
		for range sc.Channels {
			s.attackCall(st, s.now.Add(time.Duration(s.rng.IntN(3000))*time.Millisecond))
		}
	case Wangiri:
		s.wangiri(st)
	case Extra:
		t := st.t
		var numbers []string // the few numbers a person calls
		for range sc.Numbers {
			numbers = append(numbers, s.newCall(t, benignCall, s.extraSpec(t, sc)).e164)
		}
		for range sc.Calls {
			at := s.now.Add(time.Duration(s.rng.Int64N(int64(sc.Length))))
			c := s.newCall(t, benignCall, s.extraSpec(t, sc))
			if len(numbers) > 0 {
				c.e164 = numbers[s.rng.IntN(len(numbers))]
			}
			c.sc = st
			if s.rng.Float64() < sc.Answer {
				c.answerWin = true
				c.duration = time.Duration(s.rng.ExpFloat64() * float64(sc.MeanDuration))
			}
			s.push(&event{at: at, kind: evAttempt, c: c})
		}
	case Surge: // hour() applies the factor
	}
}

// extraSpec draws the destination of one call of an Extra stressor.
func (s *sim) extraSpec(t *tenant, sc *Scenario) string {
	if len(sc.Destinations) > 0 {
		return sc.Destinations[s.rng.IntN(len(sc.Destinations))]
	}
	return s.benignSpec(t)
}

// surge returns the stressor whose surge covers the hour starting now on t (nil: none) and its factor.
func (s *sim) surge(t *tenant) (*scen, float64) {
	for _, st := range t.scens {
		if st.sc.Kind == Surge && !s.now.Before(st.start) && s.now.Before(st.stop) {
			return st, st.sc.Factor
		}
	}
	return nil, 1
}

// benignSpec draws the destination of one of t's ordinary calls.
func (s *sim) benignSpec(t *tenant) string {
	if a := t.arch; s.rng.Float64() < a.IntlShare {
		return a.Countries[s.rng.IntN(len(a.Countries))]
	}
	return "US"
}

// hour schedules a tenant's benign attempts of the hour starting now.
func (s *sim) hour(t *tenant) {
	a := t.arch
	st, factor := s.surge(t)
	lambda := a.PeakPerHour * a.Intensity(s.now.Weekday(), s.now.Hour()) * factor
	n := poisson(s.rng, lambda)
	for range n {
		at := s.now.Add(time.Duration(s.rng.Int64N(int64(time.Hour))))
		c := s.newCall(t, benignCall, s.benignSpec(t))
		c.sc = st
		if s.rng.Float64() < a.Answer {
			c.answerWin = true
			c.duration = time.Duration(s.rng.ExpFloat64() * float64(a.MeanDuration))
		}
		s.push(&event{at: at, kind: evAttempt, c: c})
	}
	s.push(&event{at: s.now.Add(time.Hour), kind: evHour, t: t})
}

// attackCall schedules one call of an Outbound attacker at at (none once the attack is over).
func (s *sim) attackCall(st *scen, at time.Time) {
	if !at.Before(st.stop) {
		return
	}
	sc := st.sc
	c := s.newCall(st.t, attackCall, sc.Destinations[s.rng.IntN(len(sc.Destinations))])
	c.sc = st
	c.answerWin = true
	c.duration = s.between(sc.MinDuration, sc.MaxDuration)
	s.push(&event{at: at, kind: evAttempt, c: c})
}

func (s *sim) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(s.rng.Int64N(int64(hi-lo)+1))
}

// wangiri schedules a one-ring campaign: Numbers callers drawn from the
// specs in turn, each ringing Rings customers, ring i of every number in
// the i-th slice of the window (at a random point of its first quarter).
func (s *sim) wangiri(st *scen) {
	sc := st.sc
	seen := map[string]bool{}
	for i := 0; len(st.callers) < sc.Numbers && i < 100*sc.Numbers; i++ {
		p := s.pools[sc.Destinations[len(st.callers)%len(sc.Destinations)]]
		n := p.nums[s.rng.IntN(len(p.nums))]
		if seen[n] {
			continue
		}
		seen[n] = true
		var buf [24]byte
		_, dest := s.st.Classifier.Classify(&s.dial, []byte(n), buf[:0])
		st.callers = append(st.callers, n)
		st.dests = append(st.dests, dest)
	}
	st.tagged = make([]bool, len(st.callers))
	slot := sc.Length / time.Duration(sc.Rings)
	for r := range sc.Rings {
		for k := range st.callers {
			at := s.now.Add(time.Duration(r)*slot + time.Duration(s.rng.Int64N(int64(slot/4)+1)))
			t := s.order[s.rng.IntN(len(s.order))]
			c := s.newCall(t, ringCall, "US") // the customer's number
			c.sc, c.caller = st, k
			c.duration = time.Duration(2+s.rng.IntN(5)) * time.Second // rings, then the caller hangs up
			s.push(&event{at: at, kind: evAttempt, c: c})
		}
	}
}

func (s *sim) newCall(t *tenant, kind callKind, spec string) *call {
	s.nextID++
	p := s.pools[spec]
	return &call{id: "sim-" + strconv.Itoa(s.nextID), kind: kind, t: t, e164: p.nums[s.rng.IntN(len(p.nums))]}
}

// dialled writes the number as a US PBX dials it: 1+10 digits at home (and
// in the rest of NANP), 011 abroad, or with '+'.
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
	req := &chain.Request{PeerKind: chain.PeerTrunk, Trunk: c.t.trunk}
	switch c.kind {
	case ringCall: // from the upstream to the customer, the caller abroad
		req.PeerKind, req.Trunk = chain.PeerUpstream, nil
		s.buf = fmt.Appendf(s.buf[:0], "INVITE sip:%s@sim.invalid SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.1;branch=z9hG4bK%s\r\n"+
			"From: <sip:%s@198.51.100.1>;tag=1\r\nTo: <sip:%s@sim.invalid>\r\nCall-ID: %s\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
			c.e164, c.id, c.sc.callers[c.caller], c.e164, c.id)
	default:
		divert := ""
		if c.kind == attackCall && c.sc.sc.Diverted {
			divert = "Diversion: <sip:+12015550123@192.0.2.1>;reason=unconditional\r\n"
		}
		s.buf = fmt.Appendf(s.buf[:0], "INVITE sip:%s@sim.invalid SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK%s\r\n"+
			"From: <sip:pbx@192.0.2.1>;tag=1\r\nTo: <sip:%s@sim.invalid>\r\nCall-ID: %s\r\nCSeq: 1 INVITE\r\n%sContent-Length: 0\r\n\r\n",
			s.dialled(c.e164), c.id, c.e164, c.id, divert)
	}
	var m sip.Msg
	if err := m.Parse(s.buf); err != nil {
		panic(err) // the simulator's own message: a bug here, not input
	}
	req.Msg = &m
	v := s.stage.Handle(req)
	c.rate, _ = s.stage.Deck().Lookup([]byte(c.e164), s.now)
	switch c.kind {
	case attackCall:
		c.sc.attack.Attempts++
	case callbackCall:
		c.sc.attack.Attempts++
		c.sc.attack.Callbacks++
		c.t.callback, c.t.callbackAt = c.sc, s.now
	case ringCall:
		c.sc.attack.Rings++
	default:
		s.rep.BenignCalls++
		if c.sc != nil {
			c.sc.stress.Calls++
		}
	}
	if v.Action != chain.Continue {
		s.refused(c, v)
		return
	}
	c.nholds = req.TakeHolds(&c.holds)
	s.calls[c.id] = c
	if c.kind == attackCall || c.kind == callbackCall {
		c.sc.live++
	}
	switch c.kind {
	case ringCall: // never answered: the caller hangs up after a ring or two
		s.push(&event{at: s.now.Add(c.duration), kind: evEnd, c: c})
		return
	case callbackCall:
		c.sc.attack.CallbacksThrough++
		c.sc.calls = append(c.sc.calls, c)
	case attackCall:
		c.sc.calls = append(c.sc.calls, c)
	}
	ring := time.Duration(3+s.rng.IntN(12)) * time.Second
	if c.answerWin {
		s.push(&event{at: s.now.Add(ring), kind: evAnswer, c: c})
	} else {
		s.push(&event{at: s.now.Add(ring + 20*time.Second), kind: evEnd, c: c})
	}
}

func (s *sim) refused(c *call, v chain.Verdict) {
	switch c.kind {
	case attackCall, callbackCall:
		st := c.sc
		st.attack.Refused++
		if st.blockAt.IsZero() {
			st.blockAt = s.now
		}
		if c.kind == attackCall { // a refusal by the policy is a detection too; the engine's come as incidents
			if st.detectAt.IsZero() && !strings.HasPrefix(v.Reason, fraud.ReasonBlock) && !strings.HasPrefix(v.Reason, fraud.ReasonThrottle) {
				st.detectAt = s.now
				st.attack.FirstRule = v.Reason
			}
			s.attackCall(st, s.now.Add(st.sc.RetryDelay))
		} else if st.attack.FirstRule == "" {
			st.attack.FirstRule = v.Reason
		}
		return
	case ringCall:
		return // the stage does not refuse calls from upstreams
	}
	for _, st := range c.t.scens {
		if st.attack != nil && st.covers(s.now) {
			st.attack.Collateral++
			return
		}
	}
	s.rep.BenignRefused[v.Reason]++
	for _, st := range c.t.scens {
		if st.stress != nil && st.covers(s.now) {
			st.stress.Refused++
		}
	}
}

// answer tells what the stage holds for the call that it was answered (the
// proxy does so on the first 2xx): the engine's call starts costing.
func (s *sim) answer(c *call) {
	if c.ended {
		return
	}
	c.answered, c.answerAt = true, s.now
	for i := range c.nholds {
		if a, ok := c.holds[i].(chain.Answerer); ok {
			a.Answered(s.now)
		}
	}
	s.push(&event{at: s.now.Add(c.duration), kind: evEnd, c: c})
}

func (s *sim) endCall(c *call) {
	if c.ended {
		return
	}
	c.ended, c.endAt = true, s.now
	delete(s.calls, c.id)
	for i := range c.nholds {
		c.holds[i].Release()
	}
	if c.answered {
		cost := c.rate.Cost(s.now.Sub(c.answerAt))
		if c.kind == attackCall || c.kind == callbackCall {
			c.sc.attack.Answered++
			c.sc.attack.LostTotal += cost
		} else {
			s.rep.BenignCost += cost
		}
	}
	if c.kind == attackCall || c.kind == callbackCall {
		c.sc.live--
		c.sc.lastEnd = s.now
	}
	switch c.kind {
	case attackCall:
		s.attackCall(c.sc, s.now.Add(c.sc.sc.RetryDelay))
	case ringCall:
		s.rang(c)
	}
}

// rang follows a one-ring call that ended: the number may be tagged now,
// and the customer may call back.
func (s *sim) rang(c *call) {
	st := c.sc
	if k := c.caller; !st.tagged[k] && s.st.Wangiri.Tagged(&st.dests[k], s.now) {
		st.tagged[k] = true
		st.attack.Tagged++
		if st.detectAt.IsZero() {
			st.detectAt = s.now
			if st.blockAt.IsZero() || st.blockAt.After(s.now) {
				st.attack.FirstRule = "wangiri"
			}
		}
		if st.blockAt.IsZero() {
			st.blockAt = s.now
		}
	}
	if sc := st.sc; s.rng.Float64() < sc.CallbackShare && s.now.Before(s.end) {
		delay := sc.CallbackDelay
		if sc.CallbackMean > 0 {
			delay += time.Duration(s.rng.ExpFloat64() * float64(sc.CallbackMean))
		}
		s.nextID++
		cb := &call{id: "sim-" + strconv.Itoa(s.nextID), kind: callbackCall, t: c.t, sc: st, caller: c.caller,
			e164: st.callers[c.caller], answerWin: true, duration: s.between(sc.MinDuration, sc.MaxDuration)}
		s.push(&event{at: s.now.Add(delay), kind: evAttempt, c: cb})
	}
}

// hangup is the engine's request to end a call (BYE both ways), by the key
// the stage started it under (Call-ID and From tag).
func (s *sim) hangup(key, _, _ string) {
	if c := s.calls[chain.CallIDOf(key)]; c != nil {
		s.push(&event{at: s.now, kind: evEnd, c: c})
	}
}

// drain reads the engine's events: incidents tell detection and false alerts.
func (s *sim) drain() {
	for {
		select {
		case ev := <-s.sub.C:
			if ev.Kind == events.FraudIncident {
				s.incident(ev)
			}
		default:
			return
		}
	}
}

func (s *sim) incident(ev events.Event) {
	t := s.tenants[ev.Trunk]
	if t == nil {
		return
	}
	action := "alert"
	for _, act := range []string{"block", "throttle"} {
		if strings.Contains(ev.Detail, "action="+act) {
			action = act
		}
	}
	if strings.Contains(ev.Detail, "report_only=true") {
		action = "report_only"
	}
	// An alert on a call-back to a one-ring number is no false alarm (a
	// rule caught a customer calling a scam number); the Wangiri detection
	// itself is the tagging.
	if t.callback != nil && ev.Time.Sub(t.callbackAt) < time.Hour {
		t.callback.attack.Incidents++
		return
	}
	for _, st := range t.scens {
		if st.attack == nil || !st.covers(ev.Time) {
			continue
		}
		st.attack.Incidents++
		if st.detectAt.IsZero() {
			st.detectAt = ev.Time
			st.attack.FirstRule = ev.Reason
		}
		// New calls of the scope are refused from now on: a block of scope
		// "risky" does not stop an attack on domestic numbers.
		covers := !st.domestic || strings.Contains(ev.Detail, "scope=all")
		if action == "block" && covers && (st.blockAt.IsZero() || ev.Time.Before(st.blockAt)) {
			st.blockAt = ev.Time
		}
		return
	}
	s.rep.FalseIncidents[action]++
	s.rep.FalseByRule[ev.Reason]++
	for _, st := range t.scens {
		if st.stress != nil && st.covers(ev.Time) {
			st.stress.Incidents[action]++
			st.stress.ByRule[ev.Reason]++
		}
	}
}

func (s *sim) finish() {
	s.rep.TenantDays = float64(len(s.order)) * float64(s.cfg.Days)
	for _, st := range s.scens {
		if !st.started {
			continue
		}
		if st.stress != nil {
			s.rep.Stressors = append(s.rep.Stressors, *st.stress)
			continue
		}
		r := st.attack
		if !st.detectAt.IsZero() {
			r.Detected, r.TimeToDetect = true, st.detectAt.Sub(st.start)
		}
		r.LostBeforeBlock = r.LostTotal
		if !st.blockAt.IsZero() {
			r.Blocked, r.TimeToBlock = true, st.blockAt.Sub(st.start)
			r.LostBeforeBlock = lostBefore(st.calls, st.blockAt)
		}
		s.rep.Attacks = append(s.rep.Attacks, *r)
	}
}

// lostBefore returns what the answered calls had cost at t (the run is
// over: every call has ended).
func lostBefore(calls []*call, t time.Time) fraud.Money {
	var lost fraud.Money
	for _, c := range calls {
		if c.answered && c.answerAt.Before(t) {
			end := c.endAt
			if end.After(t) {
				end = t
			}
			lost += c.rate.Cost(end.Sub(c.answerAt))
		}
	}
	return lost
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
