package fraud

import (
	"fmt"
	"math"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/events"
	"github.com/sipwarden/sipwarden/internal/sip"
)

// Reasons of the stage's verdicts (metric labels, event reasons, CDR blocked reasons).
const (
	ReasonHotList       = "hot_list"
	ReasonInvalid       = "invalid_number"
	ReasonInternational = "international_disabled"
	ReasonCountry       = "country_not_allowed"
	ReasonPremium       = "premium_blocked"
	ReasonSatellite     = "satellite_blocked"
	ReasonNANPForeign   = "nanp_foreign_blocked"
	ReasonPriceCap      = "price_cap"
	ReasonUnrated       = "unrated"
	ReasonDiverted      = "diverted_international"
	ReasonWangiri       = "wangiri_callback"
	ReasonHairpin       = "hairpin_international"
	// ReasonBlock and ReasonThrottle are followed by ":" and the rule's name
	// ("fraud_block:score_5m"), so that the CDR of a refused call names the rule.
	ReasonBlock    = "fraud_block"
	ReasonThrottle = "fraud_throttle"
	// ReasonHangup, followed by ":" and the rule, is the CDR reason of a
	// call the engine ended (the proxy's hangup writes it).
	ReasonHangup = "fraud_hangup"
)

// warnings are the Warning texts of policy refusals: constant strings, so a refusal does not allocate.
var warnings = map[string]string{
	ReasonHotList:       "destination is on the hot list",
	ReasonInvalid:       "number is invalid or unallocated",
	ReasonInternational: "international calls are not enabled for this trunk",
	ReasonCountry:       "destination country is not allowed for this trunk",
	ReasonPremium:       "premium-rate, shared-cost and UAN numbers are not enabled for this trunk",
	ReasonSatellite:     "satellite and international network numbers are not enabled for this trunk",
	ReasonNANPForeign:   "NANP numbers outside the US and Canada are not enabled for this trunk",
	ReasonPriceCap:      "destination costs more per minute than this trunk's price cap",
	ReasonUnrated:       "destination has no rate",
	ReasonDiverted:      "forwarded calls to other countries are not enabled for this trunk",
	ReasonWangiri:       "the number rang many lines once and hung up: a call-back scam (Wangiri)",
	ReasonHairpin:       "calls that came in and are forwarded to other countries are not enabled for this trunk",
}

// State is the fraud state that lives for the process: the engine (windows,
// calls in progress, baselines, incidents), the classification cache, the
// metrics, and the last rate deck loaded (reused by a reload when its file
// has not changed).
type State struct {
	Engine     *Engine
	Classifier *Classifier
	// Wangiri watches one-ring calls from abroad (wangiri.go).
	Wangiri *Wangiri
	// Hairpins remembers the callers of inbound calls (hairpin.go).
	Hairpins *Hairpins
	met      *Metrics

	mu       sync.Mutex
	deckPath string
	deckMod  time.Time
	deckSize int64
	deck     *Deck
}

// NewState creates the process-wide state; metrics are registered on reg
// (nil: not registered). The caller runs st.Engine.Run in a goroutine and,
// once the proxy exists, gives the engine its hangup function (SetHangup).
func NewState(reg prometheus.Registerer, bus *events.Bus, tick time.Duration, classifierCache int) *State {
	m := NewMetrics(reg)
	return &State{
		Engine:     NewEngine(Options{Tick: tick, Bus: bus, Metrics: m}),
		Classifier: NewClassifier(classifierCache),
		Wangiri:    NewWangiri(0),
		Hairpins:   NewHairpins(0),
		met:        m,
	}
}

// Deck returns the rate deck at path, loading it only when the file changed
// since the last load.
func (st *State) Deck(path string) (*Deck, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load rate deck: %w", err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.deck != nil && st.deckPath == path && st.deckMod.Equal(fi.ModTime()) && st.deckSize == fi.Size() {
		return st.deck, nil
	}
	d, err := LoadDeckFile(path)
	if err != nil {
		return nil, err
	}
	st.deck, st.deckPath, st.deckMod, st.deckSize = d, path, fi.ModTime(), fi.Size()
	return d, nil
}

// Stage is the chain stage "fraud": destination policy and the engine's
// verdicts for initial INVITEs from trunks.
type Stage struct {
	st       *State
	deck     *Deck
	bus      *events.Bus
	policies map[*config.Trunk]*policy
	// rules holds the verdict texts of each rule's refusals, built once so a refusal does not allocate.
	rules map[string]ruleText
	// inbound classifies the callers of calls from upstreams (the default dialling context).
	inbound *policy
}

type ruleText struct{ block, throttle, warning string }

type policy struct {
	name          string
	dial          Dialling
	international bool
	diverted      bool            // forwarded calls may go abroad
	countries     map[string]bool // nil: every country
	allowClass    [numClasses]bool
	maxRate       Money // 0: none
	unratedBlock  bool
	hot           hotList
}

// NewStage builds the fraud stage of cfg. It loads the rate deck (unless
// unchanged) and gives the engine each trunk's rules: a reload applies new
// rules to the same windows, calls in progress and incidents.
func NewStage(cfg *config.Config, fc *config.Fraud, st *State, bus *events.Bus) (*Stage, error) {
	s := &Stage{st: st, bus: bus, policies: map[*config.Trunk]*policy{}, rules: map[string]ruleText{}}
	if fc.RateDeck != "" {
		d, err := st.Deck(fc.RateDeck)
		if err != nil {
			return nil, config.At("fraud.rate_deck", err)
		}
		s.deck = d
	}
	inbound, err := newPolicy("", &fc.Default)
	if err != nil {
		return nil, config.At("fraud.default", err)
	}
	s.inbound = inbound
	st.Wangiri.Configure(fc.Wangiri.ShortRings, fc.Wangiri.Ring, fc.Wangiri.Window)
	st.Wangiri.ConfigureRanges(fc.Wangiri.RangeShortRings)
	defaults := DefaultRules()
	if fc.Rules != nil {
		var err error
		if defaults, err = convertRules("fraud.rules", fc.Rules); err != nil {
			return nil, err
		}
	}
	for i := range cfg.Trunks {
		t := &cfg.Trunks[i]
		tf := fc.Trunks[t.Name]
		if tf == nil {
			tf = &fc.Default
		}
		// the key of the section this trunk's policy comes from
		key := cfg.FirstKey(fmt.Sprintf("trunks[%d].fraud", i), "fraud.default")
		p, err := newPolicy(t.Name, tf)
		if err != nil {
			return nil, config.At(key, err)
		}
		s.policies[t] = p
		rules := defaults
		if tf.Rules != nil {
			if rules, err = convertRules(cfg.FirstKey(key+".rules", "fraud.rules"), tf.Rules); err != nil {
				return nil, err
			}
		}
		rules = append([]Rule(nil), rules...)
		if tf.MaxCallCost > 0 {
			rules = append(rules, Rule{Name: "max_call_cost", Metric: MetricCallCost, Limit: tf.MaxCallCost, Action: ActionBlock})
		}
		for j := range rules {
			rules[j].ReportOnly = rules[j].ReportOnly || tf.ReportOnly
			if rules[j].ReportOnlyUntil.IsZero() {
				rules[j].ReportOnlyUntil = fc.ReportOnlyUntil // the built-in rules' trial too
			}
		}
		if err := st.Engine.SetRules(t.Name, rules, tf.Location); err != nil {
			return nil, config.At(key, err)
		}
		st.Engine.SetBusinessHours(t.Name, tf.BusinessHours)
		for _, r := range rules {
			s.rules[r.Name] = ruleText{block: ReasonBlock + ":" + r.Name, throttle: ReasonThrottle + ":" + r.Name,
				warning: "fraud rule " + r.Name + " tripped for this trunk"}
		}
	}
	st.Engine.SetReportOnly(fc.ReportOnly)
	return s, nil
}

func newPolicy(name string, tf *config.TrunkFraud) (*policy, error) {
	d, err := NewDialling(tf.Country, tf.NationalPrefix, tf.InternationalPrefix)
	if err != nil {
		return nil, err
	}
	p := &policy{name: name, dial: d, international: tf.International, diverted: tf.AllowDivertedInternational,
		unratedBlock: tf.Unrated == config.FraudBlock,
		hot:          newHotList(tf.HotList)}
	if len(tf.AllowCountries) > 0 {
		p.countries = map[string]bool{}
		for _, c := range tf.AllowCountries {
			p.countries[c] = true
		}
	}
	p.allowClass[ClassDomestic], p.allowClass[ClassInternational] = true, true
	p.allowClass[ClassInvalid] = tf.AllowInvalid
	for _, c := range tf.AllowClasses {
		cl, err := ParseClass(c)
		if err != nil {
			return nil, err
		}
		p.allowClass[cl] = true
	}
	if tf.MaxRate > 0 {
		p.maxRate = Money(math.Round(tf.MaxRate * float64(MoneyUnit)))
	}
	return p, nil
}

// convertRules converts the rules of the list at key (for errors).
func convertRules(key string, in []config.FraudRule) ([]Rule, error) {
	out := make([]Rule, 0, len(in))
	for j, c := range in {
		at := func(err error) error { return config.At(fmt.Sprintf("%s[%d]", key, j), err) }
		r := Rule{Name: c.Name, Window: c.Window, Limit: c.Limit, Floor: c.Floor, MinSamples: c.MinSamples,
			For: c.For, ThrottlePerMinute: c.ThrottlePerMinute, ReportOnly: c.ReportOnly, ReportOnlyUntil: c.ReportOnlyUntil,
			EndCalls: c.EndCalls}
		var err error
		if r.Metric, err = ParseMetric(c.Metric); err != nil {
			return nil, at(err)
		}
		if r.Action, err = ParseAction(c.Action); err != nil {
			return nil, at(err)
		}
		if c.Scope != "" {
			if r.Scope, err = ParseScope(c.Scope); err != nil {
				return nil, at(err)
			}
		}
		if err := r.Validate(); err != nil {
			return nil, at(err)
		}
		out = append(out, r)
	}
	return out, nil
}

// Name implements chain.Stage.
func (*Stage) Name() string { return "fraud" }

// Deck returns the rate deck in use (nil: none).
func (s *Stage) Deck() *Deck { return s.deck }

// Handle decides on initial INVITEs from trunks; everything else continues.
func (s *Stage) Handle(req *chain.Request) chain.Verdict {
	if !req.Initial() || req.Msg.Method() != sip.INVITE {
		return chain.Next()
	}
	if req.PeerKind == chain.PeerUpstream {
		caller := s.callerNumber(req.Msg, &s.inbound.dial)
		s.st.Hairpins.noteInbound(caller.Number, s.st.Engine.Now())
		s.watchRing(req, caller)
		return chain.Next()
	}
	if req.PeerKind != chain.PeerTrunk {
		return chain.Next()
	}
	p := s.policies[req.Trunk]
	if p == nil {
		return chain.Next()
	}
	var user []byte
	if u, err := sip.ParseURI(req.Msg.RequestURI()); err == nil {
		user = u.User
	}
	var buf [24]byte
	num, dest := s.st.Classifier.Classify(&p.dial, user, buf[:0])
	now := s.st.Engine.Now()
	var rate Rate
	rated := false
	if len(num) > 0 {
		rate, rated = s.deck.Lookup(num, now)
	}
	if s.st.Wangiri.Tagged(&dest, now) {
		return s.refuse(req, dest, ReasonWangiri)
	}
	switch p.hot.match(num) {
	case hotBlock:
		return s.refuse(req, dest, ReasonHotList)
	case hotAllow:
	default:
		if reason := p.check(dest, rate, rated, s.deck != nil); reason != "" {
			return s.refuse(req, dest, reason)
		}
		if dest.International && !p.diverted && diverted(req.Msg) {
			return s.refuse(req, dest, ReasonDiverted)
		}
		if dest.International && !p.diverted && s.st.Hairpins.calledIn(s.callerNumber(req.Msg, &p.dial).Number, now) {
			return s.refuse(req, dest, ReasonHairpin)
		}
	}
	d := s.st.Engine.Check(p.name, dest, rate.PerMinute)
	switch d.Action {
	case ActionBlock:
		rt := s.rule(d.Rule)
		return s.refuseRule(req, dest, chain.Verdict{Action: chain.Reply, Code: 403, Reason: rt.block, Warning: rt.warning}, d.Rule)
	case ActionThrottle:
		rt := s.rule(d.Rule)
		return s.refuseRule(req, dest, chain.Verdict{Action: chain.Reply, Code: 503, RetryAfter: d.RetryAfter,
			Reason: rt.throttle, Warning: rt.warning}, d.Rule)
	}
	call := s.st.Engine.CallStarted(req.CallKey(), p.name, dest, rate)
	req.Hold(call)
	return chain.Next()
}

// CheckTransfer implements chain.TransferPolicy: the destination policy of
// req.Trunk for target (a REFER's Refer-To, a 3xx's Contact), as a new call
// to it would meet it: hot list, Wangiri numbers, classes, countries, price
// cap, unrated destinations, and, since a transferred call is a forwarded
// one, allow_diverted_international. The rate rules of the engine are not
// consulted: the transfer starts no call of the trunk here (the call the
// far end then makes is its own). A refusal is counted and published like
// a refused INVITE.
func (s *Stage) CheckTransfer(req *chain.Request, target []byte) chain.Verdict {
	p := s.policies[req.Trunk]
	if p == nil {
		return chain.Next()
	}
	var user []byte
	if u, err := sip.ParseURI(target); err == nil {
		user = u.User
	}
	var buf [24]byte
	num, dest := s.st.Classifier.Classify(&p.dial, user, buf[:0])
	now := s.st.Engine.Now()
	var rate Rate
	rated := false
	if len(num) > 0 {
		rate, rated = s.deck.Lookup(num, now)
	}
	reason := ""
	switch {
	case s.st.Wangiri.Tagged(&dest, now):
		reason = ReasonWangiri
	default:
		switch p.hot.match(num) {
		case hotBlock:
			reason = ReasonHotList
		case hotAllow:
		default:
			reason = p.check(dest, rate, rated, s.deck != nil)
			if reason == "" && dest.International && !p.diverted {
				reason = ReasonDiverted
			}
		}
	}
	if reason == "" {
		return chain.Next()
	}
	v := chain.Verdict{Action: chain.Reply, Code: 403, Reason: reason, Warning: warnings[reason]}
	s.st.met.refused.WithLabelValues(req.Trunk.Name, reason).Inc()
	method := "INVITE" // a 3xx to the trunk's INVITE
	if req.Msg.IsRequest() {
		method = req.Msg.Method().String() // REFER
	}
	s.bus.Publish(events.Event{Kind: events.FraudBlocked, Stage: "fraud", Reason: reason, Src: req.Src,
		Transport: req.Transport.String(), Trunk: req.Trunk.Name, Method: method, CallID: string(req.Msg.CallID()),
		Code: 403, Detail: "transfer to class=" + dest.Class.String() + " region=" + dest.Region})
	return v
}

// watchRing watches a call from an upstream to a customer whose caller
// (dest) is abroad or high-risk, for one-ring (Wangiri) numbers.
func (s *Stage) watchRing(req *chain.Request, dest Destination) {
	if !s.st.Wangiri.Enabled() {
		return
	}
	if dest.Number == 0 || !(dest.International || dest.Class == ClassPremium || dest.Class == ClassSatellite) {
		return
	}
	now := s.st.Engine.now
	req.Hold(s.st.Wangiri.newRing(&dest, now))
}

func (s *Stage) rule(name string) ruleText {
	if rt, ok := s.rules[name]; ok {
		return rt
	}
	return ruleText{block: ReasonBlock, throttle: ReasonThrottle, warning: "a fraud rule tripped for this trunk"}
}

// check applies the destination policy; it returns the reason of a refusal or "".
func (p *policy) check(dest Destination, rate Rate, rated, haveDeck bool) string {
	if dest.Class == ClassInvalid && !p.allowClass[ClassInvalid] {
		return ReasonInvalid
	}
	if dest.International {
		if !p.international {
			return ReasonInternational
		}
		if p.countries != nil && !p.countries[dest.Region] {
			return ReasonCountry
		}
	}
	if !p.allowClass[dest.Class] {
		switch dest.Class {
		case ClassPremium:
			return ReasonPremium
		case ClassSatellite:
			return ReasonSatellite
		case ClassNANPForeign:
			return ReasonNANPForeign
		}
	}
	if p.maxRate > 0 && rate.PerMinute > p.maxRate {
		return ReasonPriceCap
	}
	if haveDeck && !rated && p.unratedBlock && dest.Class != ClassDomestic {
		return ReasonUnrated
	}
	return ""
}

// diverted reports whether the INVITE was forwarded: a Diversion header
// (RFC 5806) or a History-Info entry whose index has a '.' (RFC 7044
// section 10.3: a retargeted request).
func diverted(m *sip.Msg) bool {
	if m.Get(sip.HdrDiversion) != nil {
		return true
	}
	for i := 0; i < m.NumHeaders(); i++ {
		h := m.Header(i)
		if h.ID != sip.HdrOther || !equalFold(h.Name, "History-Info") {
			continue
		}
		v := h.Value
		for {
			j := indexFold(v, "index=")
			if j < 0 {
				break
			}
			v = v[j+len("index="):]
			for k := 0; k < len(v) && (v[k] == '.' || v[k] >= '0' && v[k] <= '9'); k++ {
				if v[k] == '.' {
					return true
				}
			}
		}
	}
	return false
}

func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

func indexFold(b []byte, s string) int {
	for i := 0; i+len(s) <= len(b); i++ {
		if equalFold(b[i:i+len(s)], s) {
			return i
		}
	}
	return -1
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func (s *Stage) refuse(req *chain.Request, dest Destination, reason string) chain.Verdict {
	return s.refuseRule(req, dest, chain.Verdict{Action: chain.Reply, Code: 403, Reason: reason, Warning: warnings[reason]}, "")
}

func (s *Stage) refuseRule(req *chain.Request, dest Destination, v chain.Verdict, rule string) chain.Verdict {
	s.st.met.refused.WithLabelValues(req.Trunk.Name, v.Reason).Inc()
	detail := "class=" + dest.Class.String() + " region=" + dest.Region
	if rule != "" {
		detail += " rule=" + rule
	}
	s.bus.Publish(events.Event{Kind: events.FraudBlocked, Stage: "fraud", Reason: v.Reason, Src: req.Src,
		Transport: req.Transport.String(), Trunk: req.Trunk.Name, Method: "INVITE", CallID: string(req.Msg.CallID()),
		Code: int(v.Code), Detail: detail})
	return v
}
