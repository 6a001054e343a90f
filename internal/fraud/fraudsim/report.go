package fraudsim

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// String formats the report as Markdown tables: the attacks, the
// stressors, and the false alarms overall.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d, %d days from %s, %d tenants (%.0f tenant-days), %d benign attempts costing %s %s; %s of CPU, %s wall\n\n",
		r.Config.Seed, r.Config.Days, r.Config.Start.Format("Mon 2006-01-02"), int(r.TenantDays)/max(1, r.Config.Days), r.TenantDays,
		r.BenignCalls, r.BenignCost, r.Currency, r.CPU.Round(time.Millisecond), r.Elapsed.Round(time.Millisecond))
	if len(r.Attacks) > 0 {
		b.WriteString("| attack | tenant | detected | first rule | time to detect | time to block | lost before block | lost in total | attempts | refused | collateral | call-backs through |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, a := range r.Attacks {
			ttd, ttb := "never", "never"
			if a.Detected {
				ttd = a.TimeToDetect.Round(time.Millisecond).String()
			}
			if a.Blocked {
				ttb = a.TimeToBlock.Round(time.Millisecond).String()
			}
			tenant, callbacks := a.Tenant, "-"
			if a.Kind == Wangiri {
				tenant = "(customers)"
				callbacks = fmt.Sprintf("%d of %d (%d rings, %d of %d numbers tagged)", a.CallbacksThrough, a.Callbacks, a.Rings, a.Tagged, a.Numbers)
			}
			fmt.Fprintf(&b, "| %s | %s | %v | %s | %s | %s | %s | %s | %d | %d | %d | %s |\n", a.Name, tenant, a.Detected,
				a.FirstRule, ttd, ttb, a.LostBeforeBlock, a.LostTotal, a.Attempts, a.Refused, a.Collateral, callbacks)
		}
	}
	if len(r.Stressors) > 0 {
		b.WriteString("\n| stressor | tenant | calls | block | throttle | alert | rules | benign calls refused |\n|---|---|---|---|---|---|---|---|\n")
		for _, st := range r.Stressors {
			fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %d | %s | %d |\n", st.Name, st.Tenant, st.Calls, st.Incidents["block"],
				st.Incidents["throttle"], st.Incidents["alert"], countsString(st.ByRule), st.Refused)
		}
	}
	fmt.Fprintf(&b, "\nfalse incidents per 100 tenant-days: critical (block + throttle) %.2f (block %.2f, throttle %.2f), alert %.2f; by rule: %s; benign calls refused: %d %s\n",
		r.CriticalPer100TenantDays(), r.FalsePer100TenantDays("block"), r.FalsePer100TenantDays("throttle"),
		r.FalsePer100TenantDays("alert"), countsString(r.FalseByRule), sum(r.BenignRefused), countsString(r.BenignRefused))
	return b.String()
}

// countsString writes counts sorted by key ("off_hours 2, spend_spike 1"; "-" when none).
func countsString(m map[string]int) string {
	if len(m) == 0 {
		return "-"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// JSONReport is the machine form of a Report (`--format json`): durations
// in seconds, money in currency units. Summarize reads it back.
type JSONReport struct {
	Seed             uint64         `json:"seed"`
	Start            time.Time      `json:"start"`
	Days             int            `json:"days"`
	TenantDays       float64        `json:"tenant_days"`
	Currency         string         `json:"currency"`
	BenignCalls      int            `json:"benign_calls"`
	BenignCost       float64        `json:"benign_cost"`
	BenignRefused    map[string]int `json:"benign_refused"`
	FalseIncidents   map[string]int `json:"false_incidents"`
	FalseByRule      map[string]int `json:"false_incidents_by_rule"`
	CriticalPer100TD float64        `json:"critical_false_per_100_tenant_days"`
	Attacks          []JSONAttack   `json:"attacks"`
	Stressors        []JSONStressor `json:"stressors"`
	CPUSeconds       float64        `json:"cpu_s"`
	WallSeconds      float64        `json:"wall_s"`
}

// JSONAttack is one attack of a JSONReport.
type JSONAttack struct {
	Name             string  `json:"name"`
	Label            string  `json:"label"`
	Kind             string  `json:"kind"`
	Description      string  `json:"description"`
	Tenant           string  `json:"tenant,omitempty"`
	Channels         int     `json:"channels,omitempty"`
	StartSeconds     float64 `json:"start_s"`
	Detected         bool    `json:"detected"`
	FirstRule        string  `json:"first_rule,omitempty"`
	DetectSeconds    float64 `json:"time_to_detect_s"`
	Blocked          bool    `json:"blocked"`
	BlockSeconds     float64 `json:"time_to_block_s"`
	LostBeforeBlock  float64 `json:"lost_before_block"`
	LostTotal        float64 `json:"lost_total"`
	Attempts         int     `json:"attempts"`
	Refused          int     `json:"refused"`
	Answered         int     `json:"answered"`
	Collateral       int     `json:"collateral"`
	Incidents        int     `json:"incidents"`
	Rings            int     `json:"rings,omitempty"`
	Numbers          int     `json:"numbers,omitempty"`
	Tagged           int     `json:"numbers_tagged,omitempty"`
	Callbacks        *int    `json:"callbacks,omitempty"`
	CallbacksThrough *int    `json:"callbacks_through,omitempty"`
}

// JSONStressor is one stressor of a JSONReport.
type JSONStressor struct {
	Name         string         `json:"name"`
	Label        string         `json:"label"`
	Kind         string         `json:"kind"`
	Description  string         `json:"description"`
	Tenant       string         `json:"tenant"`
	StartSeconds float64        `json:"start_s"`
	Calls        int            `json:"calls"`
	Critical     int            `json:"critical_incidents"`
	Incidents    map[string]int `json:"incidents"`
	ByRule       map[string]int `json:"incidents_by_rule"`
	Refused      int            `json:"benign_refused"`
}

// JSON returns the machine form of the report.
func (r *Report) JSON() *JSONReport {
	out := &JSONReport{Seed: r.Config.Seed, Start: r.Config.Start, Days: r.Config.Days, TenantDays: r.TenantDays, Currency: r.Currency,
		BenignCalls: r.BenignCalls, BenignCost: r.BenignCost.Float(), BenignRefused: r.BenignRefused,
		FalseIncidents: r.FalseIncidents, FalseByRule: r.FalseByRule, CriticalPer100TD: r.CriticalPer100TenantDays(),
		CPUSeconds: r.CPU.Seconds(), WallSeconds: r.Elapsed.Seconds(), Attacks: []JSONAttack{}, Stressors: []JSONStressor{}}
	for _, a := range r.Attacks {
		j := JSONAttack{Name: a.Name, Label: a.Kind.Label(), Kind: a.Kind.String(), Description: a.Description, Tenant: a.Tenant,
			Channels: a.Channels, StartSeconds: a.Start.Seconds(), Detected: a.Detected, FirstRule: a.FirstRule,
			DetectSeconds: a.TimeToDetect.Seconds(), Blocked: a.Blocked, BlockSeconds: a.TimeToBlock.Seconds(),
			LostBeforeBlock: a.LostBeforeBlock.Float(), LostTotal: a.LostTotal.Float(), Attempts: a.Attempts,
			Refused: a.Refused, Answered: a.Answered, Collateral: a.Collateral, Incidents: a.Incidents}
		if a.Kind == Wangiri {
			j.Rings, j.Numbers, j.Tagged = a.Rings, a.Numbers, a.Tagged
			j.Callbacks, j.CallbacksThrough = &a.Callbacks, &a.CallbacksThrough
		}
		out.Attacks = append(out.Attacks, j)
	}
	for _, st := range r.Stressors {
		out.Stressors = append(out.Stressors, JSONStressor{Name: st.Name, Label: st.Kind.Label(), Kind: st.Kind.String(),
			Description: st.Description, Tenant: st.Tenant, StartSeconds: st.Start.Seconds(), Calls: st.Calls,
			Critical: st.Critical(), Incidents: st.Incidents, ByRule: st.ByRule, Refused: st.Refused})
	}
	return out
}

// MarshalJSON writes the report for machines (JSONReport).
func (r *Report) MarshalJSON() ([]byte, error) { return json.Marshal(r.JSON()) }
