package firewall

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipwarden/sipwarden/internal/banlist"
)

// Kernel receives the full set of banned prefixes; *Mirror implements it.
type Kernel interface {
	Replace(prefixes []netip.Prefix) error
}

// Bans is what Keep reads; *banlist.List implements it.
type Bans interface {
	Generation() uint64
	NextExpiry() time.Time
	List(withFeeds bool) []banlist.Ban
	IsPeer(a netip.Addr) bool
}

// KeepOptions tune Keep.
type KeepOptions struct {
	// Poll is how often the list's generation is looked at (default 100ms):
	// the longest a new ban waits before the kernel drops its packets.
	Poll time.Duration
	// Retry is the wait after a failed write to the kernel (default 5s).
	Retry time.Duration
	// Registerer receives the mirror's metrics (nil: none).
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Keep mirrors the bans in force into k (except reputation-feed entries and
// strangers' prefixes, which spare configured peers and which only the gate
// can judge; a rule's ban of one address is mirrored while that address is
// no configured peer) until ctx ends: at once, after every change of the list, and when the next
// ban expires. A failed write is logged, counted and retried; the userspace
// gate keeps enforcing every ban meanwhile.
func Keep(ctx context.Context, k Kernel, bans Bans, opt KeepOptions) {
	if opt.Poll <= 0 {
		opt.Poll = 100 * time.Millisecond
	}
	if opt.Retry <= 0 {
		opt.Retry = 5 * time.Second
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	syncs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sipwarden_firewall_syncs_total",
		Help: "Writes of the ban list to the kernel's nftables sets, by result (ok, error).",
	}, []string{"result"})
	mirrored := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "sipwarden_firewall_banned_prefixes",
		Help: "Banned prefixes mirrored into the kernel at the last successful write.",
	})
	if opt.Registerer != nil {
		opt.Registerer.MustRegister(syncs, mirrored)
	}

	var (
		lastGen   uint64
		synced    bool
		nextTry   time.Time
		expiresAt time.Time
	)
	tick := time.NewTicker(opt.Poll)
	defer tick.Stop()
	for {
		now := time.Now()
		gen := bans.Generation()
		due := !synced || gen != lastGen || (!expiresAt.IsZero() && !now.Before(expiresAt))
		if due && !now.Before(nextTry) {
			expiresAt = bans.NextExpiry() // read before the list, so a ban ending in between is caught next time
			var prefixes []netip.Prefix
			for _, b := range bans.List(false) {
				// The kernel cannot tell peers apart: the gate judges the
				// bans that spare them, except a stranger's own address.
				if !b.SparesPeers || (b.Prefix.IsSingleIP() && !bans.IsPeer(b.Prefix.Addr())) {
					prefixes = append(prefixes, b.Prefix)
				}
			}
			if err := k.Replace(prefixes); err != nil {
				syncs.WithLabelValues("error").Inc()
				opt.Logger.Warn("mirroring bans into nftables failed; the gate still enforces them", "err", err, "retry_in", opt.Retry)
				nextTry = now.Add(opt.Retry)
			} else {
				syncs.WithLabelValues("ok").Inc()
				mirrored.Set(float64(len(prefixes)))
				synced, lastGen, nextTry = true, gen, time.Time{}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
