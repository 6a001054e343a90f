package events

import (
	"context"
	"log/slog"
)

// LogSink writes every event of sub as one slog line until the subscription
// is closed. Keys are stable: kind, stage, reason, src, transport, trunk,
// method, call_id, code, detail.
func LogSink(ctx context.Context, log *slog.Logger, sub *Subscription) {
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-sub.C:
			if !ok {
				return
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
			level := slog.LevelWarn
			if e.Kind == ConfigReloaded {
				level = slog.LevelInfo
			}
			log.LogAttrs(ctx, level, "event", attrs...)
		}
	}
}
