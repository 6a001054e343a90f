package fraud

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/events"
)

// Run calls Tick every Options.Tick until ctx is done. With a baseline
// file (SetBaselineFile) it saves the baselines every hour (a failed save is
// published as an event); the owner calls SaveBaselineFile when it stops,
// after Run has returned or while nothing waits for it.
func (e *Engine) Run(ctx context.Context) {
	t := time.NewTicker(e.opt.Tick)
	defer t.Stop()
	save := time.NewTicker(time.Hour)
	defer save.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.Tick()
		case <-save.C:
			e.saveOrReport()
		}
	}
}

func (e *Engine) saveOrReport() {
	if err := e.saveBaselines(); err != nil {
		e.opt.Bus.Publish(events.Event{Kind: events.FraudError, Stage: "fraud", Reason: "baseline_save_failed", Detail: err.Error()})
	}
}

type hangup struct{ id, account, rule string }

// Tick recomputes the live exposure of every account, evaluates the rules,
// ends calls over a per-call cap and expires incidents.
func (e *Engine) Tick() {
	now := e.now()
	e.mu.RLock()
	accts := make([]*account, 0, len(e.accts))
	for _, a := range e.accts {
		accts = append(accts, a)
	}
	e.mu.RUnlock()
	var evs []events.Event
	var hangups []hangup
	for _, a := range accts {
		a.mu.Lock()
		a.advance(now)
		a.accrued, a.newAccrued = 0, 0
		for c := range a.live {
			if c.isNew && !a.isNewKey(c.country, now.Unix()) {
				c.isNew = false
			}
			if c.answered.IsZero() {
				continue
			}
			cost := c.rate.Cost(now.Sub(c.answered))
			c.tickCost = cost
			a.accrued += cost
			if c.isNew && a.watched(now) {
				a.newAccrued += cost
			}
			for i := range a.rules {
				r := &a.rules[i]
				if r.Metric != MetricCallCost || c.hungUp || cost.Float() < r.Limit {
					continue
				}
				evs = a.trip(e, now, r, cost.Float(), chain.CallIDOf(c.id), "", evs)
				if !r.reporting(now) && !e.reportOnly.Load() {
					c.hungUp = true
					hangups = append(hangups, hangup{c.id, a.name, r.Name})
				}
			}
		}
		evs = a.evaluate(e, now, nil, evs)
		if now.Sub(a.swept) >= 5*time.Minute { // thousands of numbers: not on every tick
			a.swept = now
			for n, h := range a.numbers {
				if h.last() <= now.Unix()-3600 {
					delete(a.numbers, n)
				}
			}
		}
		for i := range a.rules { // in the order of the rules: deterministic events
			in := a.incidents[a.rules[i].Name]
			if in == nil {
				continue
			}
			if !now.Before(in.until) {
				evs = a.expire(in, now, evs)
				continue
			}
			if in.rule.EndCalls && in.rule.Action == ActionBlock && !in.report {
				for c := range a.live {
					if !c.hungUp && in.rule.Scope.covers(c.risky, c.isNew) {
						c.hungUp = true
						hangups = append(hangups, hangup{c.id, a.name, in.rule.Name})
					}
				}
			}
		}
		if m := e.opt.Metrics; m != nil {
			m.exposure.WithLabelValues(a.name).Set((a.spent(now, 60) + a.accrued).Float())
			m.burn.WithLabelValues(a.name).Set(a.burn.Float())
		}
		a.mu.Unlock()
	}
	for _, ev := range evs {
		e.opt.Bus.Publish(ev)
	}
	// Calls in progress are a set: order the hangups so that runs repeat.
	slices.SortFunc(hangups, func(x, y hangup) int { return strings.Compare(x.id, y.id) })
	for _, h := range hangups {
		e.opt.Bus.Publish(events.Event{Time: now, Kind: events.FraudHangup, Stage: "fraud", Reason: h.rule,
			Trunk: h.account, CallID: chain.CallIDOf(h.id), Detail: "call ended by rule " + h.rule})
		if m := e.opt.Metrics; m != nil {
			m.hangups.WithLabelValues(h.account, h.rule).Inc()
		}
		if f := e.hangup.Load(); f != nil {
			(*f)(h.id, h.account, h.rule)
		}
	}
}
