package fraudsim

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Summarize returns the figures of several runs (one per seed, as written
// by `--format json`) as Markdown tables: per attack, in how many runs it
// was detected and blocked (within 2 minutes, within 2 hours), the median
// and worst time to block and money lost, and the Wangiri call-backs that
// got through; per stressor, the false incidents and benign refusals; and
// the false alarms over every tenant-day. Scenarios are listed in the
// order of the first run that has them.
func Summarize(runs []*JSONReport) string {
	type attackRuns struct {
		name, kind        string
		runs              []JSONAttack
		firstRules        map[string]int
		detected, blocked int
		within2m, within2 int
		under25           int
	}
	type stressorRuns struct {
		name, tenant     string
		calls, critRuns  int
		refused, runs    int
		incidents, rules map[string]int
	}
	var attacks []*attackRuns
	var stressors []*stressorRuns
	byAttack, byStressor := map[string]*attackRuns{}, map[string]*stressorRuns{}
	var tenantDays float64
	var benign, refused int
	falseInc, falseByRule, refusedBy := map[string]int{}, map[string]int{}, map[string]int{}
	var cpu []float64
	for _, r := range runs {
		tenantDays += r.TenantDays
		benign += r.BenignCalls
		for k, v := range r.FalseIncidents {
			falseInc[k] += v
		}
		for k, v := range r.FalseByRule {
			falseByRule[k] += v
		}
		for k, v := range r.BenignRefused {
			refusedBy[k] += v
			refused += v
		}
		cpu = append(cpu, r.CPUSeconds)
		for _, a := range r.Attacks {
			ar := byAttack[a.Name]
			if ar == nil {
				ar = &attackRuns{name: a.Name, kind: a.Kind, firstRules: map[string]int{}}
				byAttack[a.Name] = ar
				attacks = append(attacks, ar)
			}
			ar.runs = append(ar.runs, a)
			if a.Detected {
				ar.detected++
				ar.firstRules[a.FirstRule]++
			}
			if a.Blocked {
				ar.blocked++
				if a.BlockSeconds <= 120 {
					ar.within2m++
				}
				if a.BlockSeconds <= 7200 {
					ar.within2++
				}
			}
			if a.LostTotal < 25 {
				ar.under25++
			}
		}
		for _, st := range r.Stressors {
			sr := byStressor[st.Name]
			if sr == nil {
				sr = &stressorRuns{name: st.Name, tenant: st.Tenant, incidents: map[string]int{}, rules: map[string]int{}}
				byStressor[st.Name] = sr
				stressors = append(stressors, sr)
			}
			sr.runs++
			sr.calls += st.Calls
			sr.refused += st.Refused
			if st.Critical > 0 {
				sr.critRuns++
			}
			for k, v := range st.Incidents {
				sr.incidents[k] += v
			}
			for k, v := range st.ByRule {
				sr.rules[k] += v
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d runs, %.0f tenant-days, %d benign attempts; CPU per run: median %.1f s, max %.1f s\n\n",
		len(runs), tenantDays, benign, median(cpu), slices.Max(append(cpu, 0)))
	if len(attacks) > 0 {
		b.WriteString("| attack | detected | first rule (runs) | blocked | blocked within 2 min | within 2 h | time to block, median / max | " +
			"lost before block, median / max | lost in total, median / max | runs losing < 25 | call-backs through, total (max per run) |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, ar := range attacks {
			n := len(ar.runs)
			var ttb, before, total []float64
			callbacks, through, worst := 0, 0, 0
			for _, a := range ar.runs {
				if a.Blocked {
					ttb = append(ttb, a.BlockSeconds)
				}
				before = append(before, a.LostBeforeBlock)
				total = append(total, a.LostTotal)
				if a.Callbacks != nil {
					callbacks += *a.Callbacks
					through += *a.CallbacksThrough
					worst = max(worst, *a.CallbacksThrough)
				}
			}
			ttbs := "-"
			if len(ttb) > 0 {
				ttbs = seconds(median(ttb)) + " / " + seconds(slices.Max(ttb))
			}
			cb := "-"
			if ar.kind == Wangiri.String() {
				cb = fmt.Sprintf("%d of %d (%d)", through, callbacks, worst)
			}
			fmt.Fprintf(&b, "| %s | %d/%d | %s | %d/%d | %d/%d | %d/%d | %s | %.2f / %.2f | %.2f / %.2f | %d/%d | %s |\n",
				ar.name, ar.detected, n, countsString(ar.firstRules), ar.blocked, n, ar.within2m, n, ar.within2, n, ttbs,
				median(before), slices.Max(before), median(total), slices.Max(total), ar.under25, n, cb)
		}
	}
	if len(stressors) > 0 {
		b.WriteString("\n| stressor | tenant | calls | runs with a block or throttle | block | throttle | alert | rules | benign calls refused |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
		for _, sr := range stressors {
			fmt.Fprintf(&b, "| %s | %s | %d | %d/%d | %d | %d | %d | %s | %d |\n", sr.name, sr.tenant, sr.calls, sr.critRuns, sr.runs,
				sr.incidents["block"], sr.incidents["throttle"], sr.incidents["alert"], countsString(sr.rules), sr.refused)
		}
	}
	per100 := func(n int) float64 {
		if tenantDays == 0 {
			return 0
		}
		return float64(n) / tenantDays * 100
	}
	crit := falseInc["block"] + falseInc["throttle"]
	fmt.Fprintf(&b, "\nfalse incidents: critical (block + throttle) %d (%.2f per 100 tenant-days), alert %d (%.2f per 100 tenant-days); "+
		"by rule: %s; benign calls refused: %d (%s)\n", crit, per100(crit), falseInc["alert"], per100(falseInc["alert"]),
		countsString(falseByRule), refused, countsString(refusedBy))
	return b.String()
}

// median returns the median of xs (0 for none).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if n := len(s); n%2 == 1 {
		return s[n/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// seconds formats a time to block: to 0.1 s under a minute, to the second under an hour, to the minute above.
func seconds(s float64) string {
	d := time.Duration(s * float64(time.Second))
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%.1f s", math.Round(s*10)/10)
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	return d.Round(time.Minute).String()
}
