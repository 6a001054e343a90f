package fraudsim

import (
	"errors"
	"fmt"
	"time"
)

// Kind is what a scenario does to the simulated world.
type Kind uint8

// Kinds of scenarios: two of attacks, two of false-positive stressors.
const (
	// Outbound is an attack made of fraudulent calls on a tenant's trunk
	// (IRSF, pumping, credential reuse, call-forward abuse): the attacker
	// keeps Channels calls up and replaces each refused or ended call after
	// RetryDelay.
	Outbound Kind = iota
	// Wangiri is a one-ring campaign: Numbers callers abroad ring customers of
	// every tenant Rings times each through an upstream and hang up within
	// seconds; CallbackShare of the customers rung call back from their
	// tenant's trunk (the premium-rate call the scam is after).
	Wangiri
	// Surge is a stressor: the tenant's own traffic times Factor.
	Surge
	// Extra is a stressor: Calls more benign calls of the tenant, spread
	// over the window, to Destinations (nil: the tenant's usual mix).
	Extra
)

var kindNames = [...]string{"outbound", "wangiri", "surge", "extra"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Label is "attack" or "stressor": what the scorer expects of the rules.
func (k Kind) Label() string {
	if k == Outbound || k == Wangiri {
		return "attack"
	}
	return "stressor"
}

// Scenario is one labelled scenario. An attack should be detected and
// blocked early; a stressor is benign traffic that looks unusual and must
// not be blocked or throttled.
//
// Destinations are number specs: a region ("SO": numbers near
// libphonenumber's example fixed and mobile numbers of Somalia), a region
// and a type ("GB/premium"), or a prefix with an optional number length in
// digits ("+8816", "+2224:11"; 11 digits for +1, 12 otherwise).
type Scenario struct {
	Name        string
	Description string
	Kind        Kind
	// Tenant is the tenant attacked or stressed ("office-1"); empty for
	// Wangiri, whose victims are customers of every tenant.
	Tenant string
	// Start is from the start of the run; Length is how long the attacker
	// keeps dialling (or ringing), or how long the stressor lasts.
	Start, Length time.Duration
	// Destinations are the numbers dialled (Outbound, Extra) or the callers
	// (Wangiri), as specs (see above).
	Destinations []string
	// MinDuration and MaxDuration bound answered attack calls (uniform),
	// Wangiri call-backs included.
	MinDuration, MaxDuration time.Duration

	// Outbound: calls kept up at once, the delay before a refused or ended
	// call is replaced, and whether the INVITEs carry a Diversion header (a
	// compromised extension forwarding inbound calls abroad).
	Channels   int
	RetryDelay time.Duration
	Diverted   bool

	// Wangiri: distinct calling numbers and the one-ring calls of each
	// (spread evenly over Length); the share of customers rung that call
	// back, CallbackDelay after the ring plus an exponential delay of mean
	// CallbackMean (0: none). Extra: the distinct numbers the calls go to
	// (a guest calls home: one or two numbers; 0: any number of the specs).
	Numbers, Rings              int
	CallbackShare               float64
	CallbackDelay, CallbackMean time.Duration

	// Surge: the factor on the tenant's traffic for the hours that start in the window.
	Factor float64

	// Extra: the calls, the share answered and their mean duration (exponential).
	Calls        int
	Answer       float64
	MeanDuration time.Duration
}

// validate checks a scenario against the tenants of the run.
func (sc *Scenario) validate(tenants map[string]*tenant) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("scenario %q: %s", sc.Name, fmt.Sprintf(format, args...))
	}
	if sc.Name == "" {
		return errors.New("scenario without a name")
	}
	if sc.Start < 0 || sc.Length <= 0 {
		return fail("start %v must be ≥ 0 and length %v above 0", sc.Start, sc.Length)
	}
	if sc.Kind == Wangiri {
		if sc.Tenant != "" {
			return fail("a Wangiri campaign rings customers of every tenant: leave the tenant empty")
		}
	} else if tenants[sc.Tenant] == nil {
		return fail("no tenant %q (tenants are named archetype-n, such as office-1)", sc.Tenant)
	}
	if (sc.Kind == Outbound || sc.Kind == Wangiri) && len(sc.Destinations) == 0 {
		return fail("no destinations")
	}
	if (sc.Kind == Outbound || sc.Kind == Wangiri) && (sc.MinDuration <= 0 || sc.MaxDuration < sc.MinDuration) {
		return fail("durations %v-%v: the minimum above 0, the maximum not below it", sc.MinDuration, sc.MaxDuration)
	}
	switch sc.Kind {
	case Outbound:
		if sc.Channels <= 0 || sc.RetryDelay <= 0 {
			return fail("channels %d and retry delay %v must be above 0", sc.Channels, sc.RetryDelay)
		}
	case Wangiri:
		if sc.Numbers <= 0 || sc.Rings <= 0 || sc.CallbackShare < 0 || sc.CallbackShare > 1 ||
			sc.CallbackDelay < 0 || sc.CallbackMean < 0 {
			return fail("numbers %d and rings %d above 0, call-back share %v in [0, 1], delays not negative",
				sc.Numbers, sc.Rings, sc.CallbackShare)
		}
	case Surge:
		if sc.Factor <= 0 {
			return fail("factor %v must be above 0", sc.Factor)
		}
	case Extra:
		if sc.Calls <= 0 || sc.Answer < 0 || sc.Answer > 1 || sc.MeanDuration <= 0 || sc.Numbers < 0 {
			return fail("calls %d and mean duration %v above 0, answer share %v in [0, 1], numbers %d not negative",
				sc.Calls, sc.MeanDuration, sc.Answer, sc.Numbers)
		}
	default:
		return fail("unknown kind %d", sc.Kind)
	}
	return nil
}

// DefaultScenarios are the labelled scenarios of the standard week (the run
// starts on Monday 2026-11-30 00:00 UTC). They use tenants 1 and 2 of each
// archetype only, so that a run with two tenants each has them all, and
// scenarios on one tenant are days apart (an incident's escalation memory
// is 24 hours).
func DefaultScenarios() []Scenario {
	const day = 24 * time.Hour
	irsf := []string{"SO", "CU", "SL", "LV", "GN"}
	return []Scenario{
		// Attacks.
		{Name: "irsf_burst_night", Kind: Outbound, Tenant: "office-1", Start: 5*day + 2*time.Hour, Length: 6 * time.Hour,
			Description: "scan, brute force, then IRSF at night: the scan and the brute force hit the registrar and " +
				"auth stages (the fraud stage sees neither); then 30 channels to high-cost ranges on Saturday 02:00, " +
				"redialled every 2 s, calls of 20-60 min",
			Channels: 30, RetryDelay: 2 * time.Second, Destinations: irsf, MinDuration: 20 * time.Minute, MaxDuration: 60 * time.Minute},
		{Name: "irsf_burst_hotel", Kind: Outbound, Tenant: "hotel-2", Start: 3*day + 23*time.Hour, Length: 4 * time.Hour,
			Description: "IRSF on a hotel (which calls abroad at night anyway): 10 channels on Thursday 23:00",
			Channels:    10, RetryDelay: 5 * time.Second, Destinations: irsf, MinDuration: 10 * time.Minute, MaxDuration: 40 * time.Minute},
		{Name: "slow_pumping_business", Kind: Outbound, Tenant: "contact_centre-1", Start: day + 14*time.Hour, Length: 8 * time.Hour,
			Description: "slow pumping in business hours: 2 channels to Tunisia and Guinea on a contact centre, Tuesday 14:00 for 8 h",
			Channels:    2, RetryDelay: 30 * time.Second, Destinations: []string{"TN", "GN"}, MinDuration: 10 * time.Minute, MaxDuration: 30 * time.Minute},
		{Name: "credential_reuse_new_country", Kind: Outbound, Tenant: "office-2", Start: 2*day + 9*time.Hour, Length: 8 * time.Hour,
			Description: "an office's stolen credentials used by day to sell minutes to countries the office never calls " +
				"(Pakistan, Egypt, Bangladesh at 0.06-0.22/min): 6 channels, Wednesday 09:00 for 8 h. The fraud " +
				"stage sees the trunk, not where the caller registered from",
			Channels: 6, RetryDelay: 20 * time.Second, Destinations: []string{"PK", "EG", "BD"}, MinDuration: 3 * time.Minute, MaxDuration: 20 * time.Minute},
		{Name: "call_forward_abuse", Kind: Outbound, Tenant: "office-2", Start: 4*day + 20*time.Hour, Length: 4 * time.Hour,
			Description: "a compromised extension forwards inbound calls (Diversion header) to high-cost ranges and a UK " +
				"premium number: 10 channels, Friday 20:00",
			Channels: 10, RetryDelay: 10 * time.Second, Diverted: true, Destinations: []string{"SO", "CU", "LV", "GB/premium"},
			MinDuration: 10 * time.Minute, MaxDuration: 40 * time.Minute},
		{Name: "wangiri_callbacks", Kind: Wangiri, Start: 3*day + 18*time.Hour, Length: time.Hour,
			Description: "10 Mauritanian numbers ring 40 customers each once (2-6 s) through the upstream, Thursday " +
				"18:00 for an hour; 8 % of the customers call back (20 s + an exponential delay of mean 30 min), " +
				"reaching a premium recording for 1-4 min",
			Destinations: []string{"MR"}, Numbers: 10, Rings: 40, CallbackShare: 0.08, CallbackDelay: 20 * time.Second,
			CallbackMean: 30 * time.Minute, MinDuration: time.Minute, MaxDuration: 4 * time.Minute},
		{Name: "wangiri_rotating", Kind: Wangiri, Start: 5*day + 12*time.Hour, Length: time.Hour,
			Description: "the same scam from 150 numbers of one Mauritanian range, each ringing only twice " +
				"(below a per-number count of 3): Saturday 12:00",
			Destinations: []string{"+2224:11"}, Numbers: 150, Rings: 2, CallbackShare: 0.08, CallbackDelay: 20 * time.Second,
			CallbackMean: 30 * time.Minute, MinDuration: time.Minute, MaxDuration: 4 * time.Minute},
		{Name: "caribbean_one_ring", Kind: Wangiri, Start: 4*day + 16*time.Hour, Length: time.Hour,
			Description: "one-ring calls from 8 numbers in NANP Caribbean ranges (+1-876, +1-809, +1-473, +1-268), " +
				"30 rings each, Friday 16:00; call-backs are dialled like domestic calls (1-876-...)",
			Destinations: []string{"+1876", "+1809", "+1473", "+1268"}, Numbers: 8, Rings: 30, CallbackShare: 0.08,
			CallbackDelay: 20 * time.Second, CallbackMean: 30 * time.Minute, MinDuration: time.Minute, MaxDuration: 4 * time.Minute},
		{Name: "satellite_ranges", Kind: Outbound, Tenant: "reseller-1", Start: 6*day + 3*time.Hour, Length: 3 * time.Hour,
			Description: "8 channels to Iridium (+881 6), Thuraya (+882 16) and Inmarsat (+870) at 5-7.50/min on a " +
				"reseller whose policy allows satellite (maritime customers), Sunday 03:00",
			Channels: 8, RetryDelay: 10 * time.Second, Destinations: []string{"+8816", "+88216", "+870"},
			MinDuration: 5 * time.Minute, MaxDuration: 30 * time.Minute},
		{Name: "domestic_pumping", Kind: Outbound, Tenant: "hotel-1", Start: 4*day + time.Hour, Length: 6 * time.Hour,
			Description: "traffic pumping to a domestic high-cost range (a rural exchange, +1-712, at 0.09/min): 12 long " +
				"channels on Friday 01:00. Domestic premium (+1-900) is refused by the policy of every tenant",
			Channels: 12, RetryDelay: 10 * time.Second, Destinations: []string{"+1712"}, MinDuration: 30 * time.Minute, MaxDuration: 90 * time.Minute},

		// False-positive stressors.
		{Name: "campaign_day", Kind: Surge, Tenant: "contact_centre-2", Start: 2*day + 8*time.Hour, Length: 12 * time.Hour,
			Description: "a contact centre runs a campaign: 3 times its traffic, Wednesday 08:00-20:00", Factor: 3},
		{Name: "month_end_surge", Kind: Surge, Tenant: "reseller-2", Start: 8 * time.Hour, Length: 12 * time.Hour,
			Description: "month end (Monday 30 November): a reseller's business customers double its traffic, 08:00-20:00", Factor: 2},
		{Name: "hotel_guest_abroad_night", Kind: Extra, Tenant: "hotel-1", Start: day + time.Hour, Length: 3 * time.Hour,
			Description: "a guest calls home to the Philippines (a country the hotel never calls): 6 calls to 2 numbers, " +
				"Tuesday 01:00-04:00, 25 min on average",
			Calls: 6, Numbers: 2, Destinations: []string{"PH"}, Answer: 0.8, MeanDuration: 25 * time.Minute},
		{Name: "travelling_employee", Kind: Extra, Tenant: "office-1", Start: 3 * day, Length: 8 * time.Hour,
			Description: "an employee in Tokyo on the office's softphone calls Japan (a new country) and home, 8 calls " +
				"to 4 numbers in the office's night (Thursday 00:00-08:00)",
			Calls: 8, Numbers: 4, Destinations: []string{"JP", "JP", "JP", "US"}, Answer: 0.8, MeanDuration: 8 * time.Minute},
		{Name: "re_registration_storm", Kind: Extra, Tenant: "contact_centre-2", Start: 3*day + 10*time.Hour, Length: 4 * time.Minute,
			Description: "after an outage all phones re-register (REGISTER never reaches the fraud stage) and the agents " +
				"redial: 250 short calls of the usual mix in 4 minutes, Thursday 10:00",
			Calls: 250, Answer: 0.3, MeanDuration: 40 * time.Second},
	}
}
