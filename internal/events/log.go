package events

import (
	"context"
	"log/slog"
	"time"
)

// LogSink writes the events of sub as slog lines until the subscription is
// closed. Keys are stable: kind, stage, reason, src, transport, trunk,
// method, call_id, code, detail. A flood must not become a flood of log
// lines: each kind may log a burst of logBurst lines, then logRate lines per
// second; what is left out is counted and summed up in one line per kind
// every 10 seconds (metrics count every event).
func LogSink(ctx context.Context, log *slog.Logger, sub *Subscription) {
	var limits [len(kindNames)]logLimiter
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	defer reportSuppressed(ctx, log, &limits)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			reportSuppressed(ctx, log, &limits)
		case e, ok := <-sub.C:
			if !ok {
				return
			}
			if int(e.Kind) < len(limits) && !limits[e.Kind].allow(e.Time) {
				continue
			}
			attrs := make([]slog.Attr, 0, 10)
			attrs = append(attrs, slog.String("kind", e.Kind.String()))
			if e.Stage != "" {
				attrs = append(attrs, slog.String("stage", e.Stage))
			}
			if e.Reason != "" {
				attrs = append(attrs, slog.String("reason", e.Reason))
			}
			if e.Src.IsValid() {
				attrs = append(attrs, slog.String("src", e.Src.String()))
			}
			if e.Transport != "" {
				attrs = append(attrs, slog.String("transport", e.Transport))
			}
			if e.Trunk != "" {
				attrs = append(attrs, slog.String("trunk", e.Trunk))
			}
			if e.Method != "" {
				attrs = append(attrs, slog.String("method", e.Method))
			}
			if e.CallID != "" {
				attrs = append(attrs, slog.String("call_id", e.CallID))
			}
			if e.Code != 0 {
				attrs = append(attrs, slog.Int("code", e.Code))
			}
			if e.Detail != "" {
				attrs = append(attrs, slog.String("detail", e.Detail))
			}
			log.LogAttrs(ctx, e.Kind.Level(), "event", attrs...)
		}
	}
}

// Level is the log level of an event of kind k: INFO for the events of
// normal operation (a successful login, a reload), WARN for the rest.
func (k Kind) Level() slog.Level {
	switch k {
	case AuthSuccess, ConfigReloaded:
		return slog.LevelInfo
	}
	return slog.LevelWarn
}

const (
	logRate  = 20 // lines per second per kind, after the burst
	logBurst = 100
)

// logLimiter is a token bucket of log lines for one event kind.
type logLimiter struct {
	tokens     float64
	last       time.Time
	suppressed uint64
}

func (l *logLimiter) allow(now time.Time) bool {
	if l.last.IsZero() {
		l.tokens = logBurst
	} else {
		l.tokens = min(logBurst, l.tokens+now.Sub(l.last).Seconds()*logRate)
	}
	l.last = now
	if l.tokens >= 1 {
		l.tokens--
		return true
	}
	l.suppressed++
	return false
}

func reportSuppressed(ctx context.Context, log *slog.Logger, limits *[len(kindNames)]logLimiter) {
	for k := range limits {
		if n := limits[k].suppressed; n > 0 {
			log.LogAttrs(ctx, slog.LevelWarn, "events not logged (rate limit)", slog.String("kind", Kind(k).String()), slog.Uint64("count", n))
			limits[k].suppressed = 0
		}
	}
}
