package config

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/nyaruka/phonenumbers"
)

// Fraud configures the toll-fraud stage (internal/fraud): destination policy
// per trunk, the rate deck, and the spend and velocity rules.
type Fraud struct {
	// Enabled turns the stage on (default false: no key, no stage).
	Enabled bool
	// RateDeck is the CSV rate deck ("" : no prices; score and spend rules see zero).
	RateDeck string
	// ReportOnly publishes incidents without refusing calls (engine-wide;
	// destination policy still applies).
	ReportOnly bool
	// ReportOnlyUntil is the trial period of every rule without one of its
	// own, the built-in rules included: they only report until then (zero:
	// no trial).
	ReportOnlyUntil time.Time
	// Default is the policy of trunks without a fraud section, and the base
	// that a trunk's fraud section overrides key by key.
	Default TrunkFraud
	// Rules are the default rules of every trunk (nil: the built-in rules).
	Rules []FraudRule
	// Trunks holds each trunk's effective policy, by trunk name.
	Trunks map[string]*TrunkFraud
	// Wangiri configures the one-ring call-back detection.
	Wangiri Wangiri
}

// Wangiri: a number abroad that rings customers for less than Ring and
// hangs up ShortRings times within Window is a call-back scam; calls from
// trunks to it are refused. ShortRings 0 turns it off. RangeShortRings
// distinct numbers of one range (a rotating campaign) short-ringing within
// Window tag the range the same way; 0 turns range tagging off.
type Wangiri struct {
	ShortRings      int
	RangeShortRings int
	Ring, Window    time.Duration
}

// MaxWangiriRangeShortRings bounds range_short_rings: the detector keeps
// that many number hashes per range (fraud.MaxRangeShortRings).
const MaxWangiriRangeShortRings = 32

type rawWangiri struct {
	ShortRings      *int   `yaml:"short_rings"`
	RangeShortRings *int   `yaml:"range_short_rings"`
	Ring            string `yaml:"ring"`
	Window          string `yaml:"window"`
}

// TrunkFraud is one trunk's destination policy and rules.
type TrunkFraud struct {
	// Dialling context: ISO 3166 country, national and international prefixes
	// ("" : the country's own).
	Country, NationalPrefix, InternationalPrefix string
	// Timezone of the trunk's hour-of-week baseline and business hours (default UTC).
	Timezone string
	Location *time.Location
	// BusinessHours, when set, are the trunk's working hours by weekday
	// (Sunday = 0) as [from, to) minutes of the day; off_hours rules watch
	// the rest of the week.
	BusinessHours *[7][][2]int
	// International allows calls outside the trunk's country (default false).
	International bool
	// AllowCountries, when not empty, limits international calls to these regions.
	AllowCountries []string
	// AllowClasses enables high-risk classes: premium, satellite, nanp_foreign.
	AllowClasses []string
	// AllowInvalid lets invalid or unallocated numbers through (default false).
	AllowInvalid bool
	// AllowDivertedInternational lets forwarded calls (Diversion, or a
	// retargeted History-Info entry) go abroad (default false: call-forward abuse).
	AllowDivertedInternational bool
	// MaxRate refuses ranges dearer than this per minute (0: no cap).
	MaxRate float64
	// MaxCallCost ends a call in progress once it has cost this much (0: no cap).
	MaxCallCost float64
	// Unrated is what happens to a non-domestic number without a rate in the
	// deck: FraudAllow (default) or FraudBlock.
	Unrated string
	// HotList entries: exact numbers beat ranges, longer ranges beat shorter.
	HotList []HotEntry
	// Rules replace the default rules for this trunk (nil: the defaults).
	Rules []FraudRule
	// ReportOnly makes this trunk's rules report-only.
	ReportOnly bool
}

// HotEntry is a hot-list entry: a number or range and what to do with calls to it.
type HotEntry struct {
	Number NumberRange
	Action string // FraudAllow or FraudBlock
}

// Values of TrunkFraud.Unrated and HotEntry.Action.
const (
	FraudAllow = "allow"
	FraudBlock = "block"
)

// FraudRule is one spend or velocity rule (see internal/fraud.Rule).
type FraudRule struct {
	Name, Metric      string
	Window            time.Duration
	Limit, Floor      float64
	MinSamples        int
	Action, Scope     string
	For               time.Duration
	ThrottlePerMinute float64
	ReportOnly        bool
	// ReportOnlyUntil: the rule only reports until then (a new rule's trial).
	ReportOnlyUntil time.Time
	// EndCalls: a block also ends the calls in progress of its scope.
	EndCalls bool
}

// The names internal/fraud accepts (a test there keeps them in step).
var (
	FraudMetrics = []string{"calls", "intl_calls", "score", "spend", "burn", "concurrent",
		"concurrent_intl", "calls_spike", "intl_spike", "unusual_hour", "call_cost", "spend_spike", "off_hours", "same_number",
		"country_score", "new_country_score", "sequential", "new_range", "low_asr", "short_calls", "new_country_spend", "spend_24h"}
	FraudActions      = []string{"alert", "throttle", "block"}
	FraudScopes       = []string{"risky", "all", "new"}
	FraudRiskyClasses = []string{"premium", "satellite", "nanp_foreign"}
)

type rawFraud struct {
	Enabled         *bool          `yaml:"enabled"`
	RateDeck        string         `yaml:"rate_deck"`
	ReportOnly      bool           `yaml:"report_only"`
	ReportOnlyUntil string         `yaml:"report_only_until"`
	Default         rawTrunkFraud  `yaml:"default"`
	Rules           []rawFraudRule `yaml:"rules"`
	Wangiri         rawWangiri     `yaml:"wangiri"`
}

type rawTrunkFraud struct {
	Country             string         `yaml:"country"`
	NationalPrefix      *string        `yaml:"national_prefix"`
	InternationalPrefix *string        `yaml:"international_prefix"`
	Timezone            string         `yaml:"timezone"`
	BusinessHours       []string       `yaml:"business_hours"`
	International       *bool          `yaml:"international"`
	AllowCountries      []string       `yaml:"allow_countries"`
	AllowClasses        []string       `yaml:"allow_classes"`
	AllowInvalid        *bool          `yaml:"allow_invalid"`
	AllowDiverted       *bool          `yaml:"allow_diverted_international"`
	MaxRate             *float64       `yaml:"max_rate"`
	MaxCallCost         *float64       `yaml:"max_call_cost"`
	Unrated             string         `yaml:"unrated"`
	HotList             []rawHotEntry  `yaml:"hot_list"`
	Rules               []rawFraudRule `yaml:"rules"`
	ReportOnly          *bool          `yaml:"report_only"`
}

type rawHotEntry struct {
	Number string `yaml:"number"`
	Action string `yaml:"action"`
}

type rawFraudRule struct {
	Name              string  `yaml:"name"`
	Metric            string  `yaml:"metric"`
	Window            string  `yaml:"window"`
	Limit             float64 `yaml:"limit"`
	Floor             float64 `yaml:"floor"`
	MinSamples        int     `yaml:"min_samples"`
	Action            string  `yaml:"action"`
	Scope             string  `yaml:"scope"`
	For               string  `yaml:"for"`
	ThrottlePerMinute float64 `yaml:"throttle_per_minute"`
	ReportOnly        bool    `yaml:"report_only"`
	ReportOnlyUntil   string  `yaml:"report_only_until"`
	EndCalls          bool    `yaml:"end_calls"`
}

// fraud builds Config.Fraud from the fraud section and the trunks' fraud
// sections (trunks[i] is the section of the trunk named names[i]).
func (v *validator) fraud(raw rawFraud, names []string, trunks []rawTrunkFraud) Fraud {
	f := Fraud{RateDeck: raw.RateDeck, ReportOnly: raw.ReportOnly, Trunks: map[string]*TrunkFraud{},
		ReportOnlyUntil: v.reportOnlyUntil(p("fraud", "report_only_until"), raw.ReportOnlyUntil)}
	if raw.Enabled != nil {
		f.Enabled = *raw.Enabled
	}
	def := TrunkFraud{Unrated: FraudAllow, Location: time.UTC}
	f.Default = v.trunkFraud(p("fraud", "default"), raw.Default, def)
	if f.Enabled && f.Default.Country == "" {
		// Trunks must each name their country then.
		for i, t := range trunks {
			if t.Country == "" {
				v.fail(p("trunks", i, "fraud", "country"), "the fraud stage needs the trunk's country (or fraud.default.country) to tell domestic from international, e.g. GB or US")
			}
		}
	}
	if raw.Rules != nil {
		f.Rules = v.fraudRules(p("fraud", "rules"), raw.Rules)
	}
	f.Wangiri = Wangiri{ShortRings: 3, RangeShortRings: 5,
		Ring:   v.duration(p("fraud", "wangiri", "ring"), raw.Wangiri.Ring, 10*time.Second),
		Window: v.duration(p("fraud", "wangiri", "window"), raw.Wangiri.Window, 24*time.Hour)}
	if n := raw.Wangiri.ShortRings; n != nil {
		if *n < 0 {
			v.fail(p("fraud", "wangiri", "short_rings"), "must be >= 0 (0: off), got %d", *n)
		}
		f.Wangiri.ShortRings = *n
	}
	if n := raw.Wangiri.RangeShortRings; n != nil {
		if *n < 0 || *n > MaxWangiriRangeShortRings {
			v.fail(p("fraud", "wangiri", "range_short_rings"), "must be from 0 (off) to %d distinct numbers, got %d", MaxWangiriRangeShortRings, *n)
		}
		f.Wangiri.RangeShortRings = *n
	}
	for i, t := range trunks {
		tf := v.trunkFraud(p("trunks", i, "fraud"), t, f.Default)
		f.Trunks[names[i]] = &tf
	}
	return f
}

// trunkFraud reads a trunk's fraud section over base (keys left out keep base's value).
func (v *validator) trunkFraud(base []any, r rawTrunkFraud, def TrunkFraud) TrunkFraud {
	at := func(k ...any) []any { return append(append([]any{}, base...), k...) }
	t := def
	t.AllowCountries, t.AllowClasses = slices.Clone(def.AllowCountries), slices.Clone(def.AllowClasses)
	if r.Country != "" {
		t.Country = strings.ToUpper(r.Country)
		if phonenumbers.GetCountryCodeForRegion(t.Country) == 0 {
			v.fail(at("country"), "must be an ISO 3166 country code such as GB, US or DE, got %q", r.Country)
		}
	}
	for _, pf := range []struct {
		key string
		raw *string
		dst *string
	}{{"national_prefix", r.NationalPrefix, &t.NationalPrefix}, {"international_prefix", r.InternationalPrefix, &t.InternationalPrefix}} {
		if pf.raw == nil {
			continue
		}
		if len(*pf.raw) > 4 || strings.Trim(*pf.raw, "0123456789") != "" {
			v.fail(at(pf.key), "must be up to 4 digits (quote it: \"0\"), got %q", *pf.raw)
		}
		*pf.dst = *pf.raw
	}
	if r.Timezone != "" {
		loc, err := time.LoadLocation(r.Timezone)
		if err != nil {
			v.fail(at("timezone"), "must be an IANA time zone such as Europe/London, got %q", r.Timezone)
		} else {
			t.Timezone, t.Location = r.Timezone, loc
		}
	}
	if r.BusinessHours != nil {
		var week [7][][2]int
		for j, s := range r.BusinessHours {
			if err := parseBusinessHours(s, &week); err != nil {
				v.fail(at("business_hours", j), "%v", err)
			}
		}
		t.BusinessHours = &week
	}
	if r.International != nil {
		t.International = *r.International
	}
	if r.AllowCountries != nil {
		t.AllowCountries = nil
		for j, c := range r.AllowCountries {
			c = strings.ToUpper(c)
			if phonenumbers.GetCountryCodeForRegion(c) == 0 {
				v.fail(at("allow_countries", j), "must be an ISO 3166 country code such as FR, got %q", c)
			}
			t.AllowCountries = append(t.AllowCountries, c)
		}
	}
	if r.AllowClasses != nil {
		t.AllowClasses = nil
		for j, c := range r.AllowClasses {
			if !slices.Contains(FraudRiskyClasses, c) {
				v.fail(at("allow_classes", j), "must be one of %s, got %q", strings.Join(FraudRiskyClasses, ", "), c)
			}
			t.AllowClasses = append(t.AllowClasses, c)
		}
	}
	if r.AllowInvalid != nil {
		t.AllowInvalid = *r.AllowInvalid
	}
	if r.AllowDiverted != nil {
		t.AllowDivertedInternational = *r.AllowDiverted
	}
	for _, m := range []struct {
		key string
		raw *float64
		dst *float64
	}{{"max_rate", r.MaxRate, &t.MaxRate}, {"max_call_cost", r.MaxCallCost, &t.MaxCallCost}} {
		if m.raw == nil {
			continue
		}
		if *m.raw < 0 || math.IsNaN(*m.raw) || math.IsInf(*m.raw, 0) {
			v.fail(at(m.key), "must be an amount >= 0 (0: no cap), got %v", *m.raw)
		}
		*m.dst = *m.raw
	}
	switch r.Unrated {
	case "":
	case FraudAllow, FraudBlock:
		t.Unrated = r.Unrated
	default:
		v.fail(at("unrated"), "must be allow or block, got %q", r.Unrated)
	}
	if r.HotList != nil {
		t.HotList = nil
		seen := map[string]int{}
		for j, h := range r.HotList {
			nr, err := parseNumber(h.Number)
			if err != nil {
				v.fail(at("hot_list", j, "number"), "%v", err)
				continue
			}
			if h.Action != FraudAllow && h.Action != FraudBlock {
				v.fail(at("hot_list", j, "action"), "must be allow or block, got %q", h.Action)
			}
			if k, dup := seen[nr.Raw]; dup {
				v.fail(at("hot_list", j, "number"), "%s is also hot_list[%d]", h.Number, k)
			}
			seen[nr.Raw] = j
			t.HotList = append(t.HotList, HotEntry{Number: nr, Action: h.Action})
		}
	}
	if r.Rules != nil {
		t.Rules = v.fraudRules(at("rules"), r.Rules)
	}
	if r.ReportOnly != nil {
		t.ReportOnly = *r.ReportOnly
	}
	return t
}

var weekdays = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// parseBusinessHours adds "mon-fri 08:00-18:00" (or "sat 09:00-13:00") to week.
func parseBusinessHours(s string, week *[7][][2]int) error {
	bad := fmt.Errorf("must be days and hours such as \"mon-fri 08:00-18:00\" or \"sat 09:00-13:00\", got %q", s)
	days, hours, ok := strings.Cut(strings.ToLower(strings.TrimSpace(s)), " ")
	if !ok {
		return bad
	}
	d1, d2, isRange := strings.Cut(days, "-")
	if !isRange {
		d2 = d1
	}
	from, to := slices.Index(weekdays, d1), slices.Index(weekdays, d2)
	h1, h2, ok := strings.Cut(strings.TrimSpace(hours), "-")
	m1, err1 := minuteOfDay(h1)
	m2, err2 := minuteOfDay(h2)
	if from < 0 || to < 0 || !ok || err1 != nil || err2 != nil || m2 <= m1 {
		return bad
	}
	for d := from; ; d = (d + 1) % 7 {
		week[d] = append(week[d], [2]int{m1, m2})
		if d == to {
			break
		}
	}
	return nil
}

func minuteOfDay(s string) (int, error) {
	t, err := time.Parse("15:04", strings.TrimSpace(s))
	if s == "24:00" {
		return 24 * 60, nil
	}
	if err != nil {
		return 0, err
	}
	return t.Hour()*60 + t.Minute(), nil
}

func (v *validator) fraudRules(base []any, raw []rawFraudRule) []FraudRule {
	out := []FraudRule{}
	names := map[string]int{}
	for i, r := range raw {
		at := func(k string) []any { return append(append([]any{}, base...), i, k) }
		fr := FraudRule{Name: r.Name, Metric: r.Metric, Limit: r.Limit, Floor: r.Floor, MinSamples: r.MinSamples,
			Action: r.Action, Scope: r.Scope, ThrottlePerMinute: r.ThrottlePerMinute, ReportOnly: r.ReportOnly, EndCalls: r.EndCalls,
			ReportOnlyUntil: v.reportOnlyUntil(at("report_only_until"), r.ReportOnlyUntil)}
		if !nameRe.MatchString(r.Name) {
			v.fail(at("name"), "must be letters, digits, '_', '.' or '-', got %q", r.Name)
		}
		if j, dup := names[r.Name]; dup {
			v.fail(at("name"), "rule %q is also rule [%d]", r.Name, j)
		}
		names[r.Name] = i
		if !slices.Contains(FraudMetrics, r.Metric) {
			v.fail(at("metric"), "must be one of %s, got %q", strings.Join(FraudMetrics, ", "), r.Metric)
		}
		if r.Window != "" {
			fr.Window = v.duration(at("window"), r.Window, 0)
			if fr.Window < time.Minute || fr.Window > time.Hour || fr.Window%time.Minute != 0 {
				v.fail(at("window"), "must be whole minutes from 1m to 60m, got %q", r.Window)
			}
		}
		spike := r.Metric == "calls_spike" || r.Metric == "intl_spike" || r.Metric == "spend_spike"
		noLimit := r.Metric == "off_hours"
		if r.Limit < 0 || math.IsNaN(r.Limit) || (!spike && !noLimit && r.Limit == 0) || (spike && r.Limit == 0 && r.Floor <= 0) {
			v.fail(at("limit"), "must be above 0 (a spike rule needs a limit or a floor), got %v", r.Limit)
		}
		if r.Metric == "same_number" && r.Limit >= 30 {
			v.fail(at("limit"), "a same_number limit must be below 30 (attempts to one number in the window), got %v", r.Limit)
		}
		if (r.Metric == "sequential" || r.Metric == "new_range") && r.Limit >= 128 {
			v.fail(at("limit"), "a %s limit must be below 128 (distinct numbers kept per trunk), got %v", r.Metric, r.Limit)
		}
		if r.Metric == "low_asr" && r.Limit > 1 {
			v.fail(at("limit"), "a low_asr limit is an answer ratio from 0 to 1 (0.15: fewer than 15 %% answered), got %v", r.Limit)
		}
		if r.Floor < 0 || r.MinSamples < 0 || r.ThrottlePerMinute < 0 {
			v.fail(at("name"), "floor, min_samples and throttle_per_minute must be >= 0")
		}
		if r.Action == "" {
			fr.Action = "alert"
		} else if !slices.Contains(FraudActions, r.Action) {
			v.fail(at("action"), "must be alert, throttle or block, got %q", r.Action)
		}
		if r.Scope == "" {
			fr.Scope = "risky"
		} else if !slices.Contains(FraudScopes, r.Scope) {
			v.fail(at("scope"), "must be risky (every call that is not domestic), all, or new (calls to countries the trunk has not learned), got %q", r.Scope)
		}
		fr.For = v.duration(at("for"), r.For, 15*time.Minute)
		if r.EndCalls && fr.Action != "block" {
			v.fail(at("end_calls"), "only a block rule can end calls in progress")
		}
		out = append(out, fr)
	}
	return out
}

// reportOnlyUntil parses the end of a trial period: a date (2026-12-14,
// midnight UTC) or an RFC 3339 time; "" is no trial.
func (v *validator) reportOnlyUntil(path []any, s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		v.fail(path, "must be a date (2026-12-14) or an RFC 3339 time (2026-12-14T09:00:00+01:00), got %q", s)
	}
	return t
}
