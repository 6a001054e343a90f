package fraud

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/sipwarden/sipwarden/internal/events"
)

type repeat struct {
	n      int
	closed time.Time
}

// forgiveness is the value of a released rule's metric at the release,
// subtracted from the rule's value until the counted traffic has aged out.
// A ratio (low_asr) cannot be subtracted from: it counts only the traffic
// after the release, at.
type forgiveness struct {
	value float64
	at    time.Time
	until time.Time
}

// forgivenOf returns what the released rule name may not count again at now
// (the zero forgiveness when nothing is forgiven), forgetting expired forgiveness.
func (a *account) forgivenOf(name string, now time.Time) forgiveness {
	f, ok := a.forgiven[name]
	if !ok {
		return forgiveness{}
	}
	if !now.Before(f.until) {
		delete(a.forgiven, name)
		return forgiveness{}
	}
	return f
}

// countedSpan is how far back the metric of r counts traffic: what an
// operator's release forgives (0: the metric is a present state, concurrent
// calls or the burn rate, which a release cannot forgive: if it still holds,
// the rule trips again).
func (r *Rule) countedSpan() time.Duration {
	switch r.Metric {
	case MetricCalls, MetricIntlCalls, MetricScore, MetricSpend, MetricSameNumber, MetricCountryScore,
		MetricNewCountryScore, MetricSequential, MetricNewRange, MetricLowASR, MetricShortCalls, MetricNewCountrySpend:
		return r.Window
	case MetricCallsSpike, MetricIntlSpike, MetricSpendSpike, MetricOffHours, MetricUnusualHour:
		return time.Hour
	case MetricSpend24h:
		return 24 * time.Hour
	}
	return 0
}

const (
	// escalationMemory: an incident that opens within this time of the end
	// of the previous one of the same rule lasts twice as long.
	escalationMemory = 24 * time.Hour
	// maxActionSpan caps an escalated action window.
	maxActionSpan = 24 * time.Hour
)

type incident struct {
	rule   Rule
	opened time.Time
	until  time.Time
	// span is how long the action lasts after a breach: the rule's For,
	// doubled for each repeat.
	span     time.Duration
	repeat   int
	breaches int
	peak     float64
	report   bool
	tokens   float64
	tokAt    time.Time
	// key is what the incident's figure is of when the rule is keyed (a country), or "".
	key string
}

// Release closes account's incident of rule (an operator's decision). It
// reports whether there was one. It is ReleaseBy with no name.
func (e *Engine) Release(account, rule string) bool { return e.ReleaseBy(account, rule, "") }

// ReleaseBy closes account's incident of rule on the word of by (who or what
// released it, for the event; "" says nothing) and reports whether there was
// one. The operator vouched for the traffic the rule had counted: it is
// forgiven until it leaves the rule's window, so the next call goes through,
// while new traffic that alone passes the limit opens a new incident. A
// release is not an allow list. The escalation memory of the rule is cleared.
func (e *Engine) ReleaseBy(account, rule, by string) bool {
	e.mu.RLock()
	a := e.accts[account]
	e.mu.RUnlock()
	if a == nil {
		return false
	}
	now := e.now()
	a.mu.Lock()
	in := a.incidents[rule]
	delete(a.incidents, rule)
	delete(a.repeats, rule) // the operator vouched for the trunk: no escalation
	if in != nil {
		if span := in.rule.countedSpan(); span > 0 {
			a.forgiven[rule] = forgiveness{value: in.peak, at: now, until: now.Add(span)}
		}
	}
	a.mu.Unlock()
	if in == nil {
		return false
	}
	why := "released"
	if by != "" {
		why += " by " + by
	}
	e.opt.Bus.Publish(a.event(events.FraudRelease, in, now, why, ""))
	return true
}

// Incidents returns the open incidents, sorted by account and rule.
func (e *Engine) Incidents() []Incident {
	now := e.now()
	e.mu.RLock()
	accts := make([]*account, 0, len(e.accts))
	for _, a := range e.accts {
		accts = append(accts, a)
	}
	e.mu.RUnlock()
	var out []Incident
	for _, a := range accts {
		a.mu.Lock()
		for _, in := range a.incidents {
			if now.Before(in.until) {
				out = append(out, Incident{Account: a.name, Rule: in.rule.Name, Action: in.rule.Action,
					Scope: in.rule.Scope, ReportOnly: in.report, Opened: in.opened, Until: in.until,
					Breaches: in.breaches, Peak: in.peak, Escalation: in.repeat})
			}
		}
		a.mu.Unlock()
	}
	slices.SortFunc(out, func(x, y Incident) int {
		if x.Account != y.Account {
			if x.Account < y.Account {
				return -1
			}
			return 1
		}
		if x.Rule < y.Rule {
			return -1
		}
		if x.Rule > y.Rule {
			return 1
		}
		return 0
	})
	return out
}

// trip records a breach of r: it opens an incident (one event) or extends
// the open one (no event, so an attack is one incident and not one alert
// per call). key names what the figure is of (the country of a country_score), or "".
func (a *account) trip(e *Engine, now time.Time, r *Rule, value float64, callID, key string, evs []events.Event) []events.Event {
	in := a.incidents[r.Name]
	if in != nil && now.Before(in.until) {
		in.breaches++
		if r.Metric == MetricLowASR { // the worst answer ratio is the lowest
			in.peak = math.Min(in.peak, value)
		} else {
			in.peak = math.Max(in.peak, value)
		}
		in.until = now.Add(in.span)
		return evs
	}
	if in != nil { // expired, not yet collected by a tick
		evs = a.expire(in, now, evs)
	}
	in = &incident{rule: *r, opened: now, breaches: 1, peak: value, span: r.For, key: key,
		report: r.reporting(now) || e.reportOnly.Load(), tokAt: now}
	if rp, ok := a.repeats[r.Name]; ok && now.Sub(rp.closed) < escalationMemory {
		in.repeat = rp.n
		for range rp.n {
			if in.span >= maxActionSpan/2 {
				in.span = maxActionSpan
				break
			}
			in.span *= 2
		}
	}
	in.until = now.Add(in.span)
	a.incidents[r.Name] = in
	if m := e.opt.Metrics; m != nil {
		m.incidents.WithLabelValues(a.name, r.Name, r.Action.String()).Inc()
	}
	return append(evs, a.event(events.FraudIncident, in, now, "", callID))
}

// expire closes an incident whose window has passed and remembers it for escalation.
func (a *account) expire(in *incident, now time.Time, evs []events.Event) []events.Event {
	delete(a.incidents, in.rule.Name)
	a.repeats[in.rule.Name] = repeat{n: in.repeat + 1, closed: now}
	return append(evs, a.event(events.FraudRelease, in, now, "expired", ""))
}

func (a *account) event(kind events.Kind, in *incident, now time.Time, why, callID string) events.Event {
	r := &in.rule
	unit := ""
	if r.Metric.money() {
		unit = " (money)"
	}
	detail := "rule=" + r.Name + " metric=" + r.Metric.String() + " action=" + r.Action.String() +
		" scope=" + r.Scope.String() + " value=" + strconv.FormatFloat(in.peak, 'f', -1, 64) +
		" limit=" + strconv.FormatFloat(r.Limit, 'f', -1, 64) + unit
	if r.Window > 0 {
		detail += " window=" + r.Window.String()
	}
	if in.key != "" {
		detail += " key=" + in.key
	}
	if in.report {
		detail += " report_only=true"
	}
	if in.repeat > 0 {
		detail += " repeat=" + strconv.Itoa(in.repeat) + " for=" + in.span.String()
	}
	if kind == events.FraudRelease {
		detail = fmt.Sprintf("rule=%s %s after %s, %d breaches", r.Name, why, now.Sub(in.opened).Round(time.Second), in.breaches)
	} else {
		detail += " until=" + in.until.UTC().Format(time.RFC3339)
	}
	return events.Event{Time: now, Kind: kind, Stage: "fraud", Reason: r.Name, Trunk: a.name, CallID: callID, Detail: detail}
}
