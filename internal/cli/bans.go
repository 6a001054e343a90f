package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipwarden/sipwarden/internal/banlist"
	bansqlite "github.com/sipwarden/sipwarden/internal/banlist/sqlite"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/events"
)

// openBans opens the persistent ban list of cfg (storage.path/bans.db).
func openBans(cfg *config.Config, now func() time.Time) (*banlist.List, *bansqlite.Store, error) {
	st, err := bansqlite.Open(filepath.Join(cfg.Storage.Path, "bans.db"))
	if err != nil {
		return nil, nil, fmt.Errorf("open ban store: %w", err)
	}
	l := banlist.New(st, banlist.Options{Base: cfg.Bans.Duration, Factor: cfg.Bans.Factor, Max: cfg.Bans.Max, Now: now})
	if err := l.Load(); err != nil {
		st.Close()
		return nil, nil, fmt.Errorf("load bans: %w", err)
	}
	return l, st, nil
}

// watchBans publishes ban changes as events and metrics, and keeps the list
// in step with the store (bans added by `sipwarden ban`) until ctx ends or
// the returned stop is called (before the store closes).
func watchBans(ctx context.Context, l *banlist.List, bus *events.Bus, reg prometheus.Registerer, log *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	added := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sipwarden_banlist_bans_total",
		Help: "Bans added, by reason.",
	}, []string{"reason"})
	active := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sipwarden_banlist_entries",
		Help: "Entries in the ban list (bans in force and feed entries).",
	}, func() float64 { return float64(l.Len()) })
	reg.MustRegister(added, active)
	l.OnChange(func(event string, b banlist.Ban) {
		kind := events.Unban
		if event == "ban" {
			kind = events.Ban
			added.WithLabelValues(b.Reason).Inc()
		}
		detail := fmt.Sprintf("%s %s by %s", event, b.Prefix, b.Source)
		if !b.Expires.IsZero() && event == "ban" {
			detail += fmt.Sprintf(" until %s (offense %d)", b.Expires.UTC().Format(time.RFC3339), b.Offense)
		}
		bus.Publish(events.Event{Kind: kind, Stage: "banlist", Reason: b.Reason, Detail: detail})
	})
	go func() {
		defer close(done)
		sync := time.NewTicker(2 * time.Second)
		sweep := time.NewTicker(30 * time.Second)
		defer sync.Stop()
		defer sweep.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-sync.C:
				if changed, err := l.Sync(); err != nil {
					log.Warn("ban store sync failed", "err", err)
				} else if changed {
					log.Info("ban list reloaded from the store", "entries", l.Len())
				}
			case <-sweep.C:
				l.Sweep()
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

const banUsage = `Usage: sipwarden ban add|remove|list [flags] [ADDRESS|PREFIX]

  add PREFIX     ban an address or CIDR prefix (--for 1h, --reason text; --for 0 is permanent)
  remove PREFIX  lift a ban
  list           show the bans in force

A running sipwarden picks changes up within two seconds.
Run 'sipwarden ban add|remove|list --help' for a subcommand's flags.
`

// BanCommand manages the ban list: `sipwarden ban add|remove|list`.
func BanCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "add" && args[0] != "remove" && args[0] != "list") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(stdout, banUsage)
			return 0
		}
		fmt.Fprint(stderr, banUsage)
		return 2
	}
	sub := args[0]
	synopsis := "ban " + sub + " [flags] ADDRESS|PREFIX"
	if sub == "list" {
		synopsis = "ban list [flags]"
	}
	fs := newFlagSet("ban "+sub, synopsis, stderr)
	file := fs.String("config", "sipwarden.yaml", "configuration file (finds the ban store)")
	// Each subcommand has only the flags it uses (ban list --help shows no --for).
	dur, reason, format := new(time.Duration), new(string), new(string)
	*dur, *reason, *format = time.Hour, "operator", "table"
	switch sub {
	case "add":
		fs.DurationVar(dur, "for", time.Hour, "ban duration (0: permanent)")
		fs.StringVar(reason, "reason", "operator", "why (a short token, shown in events and the list)")
	case "list":
		fs.StringVar(format, "format", "table", "output: table or json")
	}
	if code := parseFlags(fs, args[1:]); code >= 0 {
		return code
	}
	cfg, err := config.Load(*file)
	if err != nil {
		printConfigError(stderr, *file, err)
		return 1
	}
	l, st, err := openBans(cfg, time.Now)
	if err != nil {
		fmt.Fprintf(stderr, "sipwarden ban: %v\n", err)
		return 1
	}
	defer st.Close()
	var prefix netip.Prefix
	if sub != "list" {
		if fs.NArg() != 1 {
			fmt.Fprintf(stderr, "sipwarden ban %s: one address or prefix expected\n", sub)
			return 2
		}
		prefix, err = parsePrefixArg(fs.Arg(0))
		if err != nil {
			fmt.Fprintf(stderr, "sipwarden ban %s: %v\n", sub, err)
			return 2
		}
	}
	switch sub {
	case "add":
		d := *dur
		if d == 0 {
			d = -1
		}
		b, err := l.Add(prefix, *reason, "operator", d)
		if err != nil {
			fmt.Fprintf(stderr, "sipwarden ban add: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "banned %s (%s) %s\n", b.Prefix, b.Reason, until(b))
	case "remove":
		if !l.Remove(prefix) {
			fmt.Fprintf(stderr, "sipwarden ban remove: %s is not banned\n", prefix)
			return 1
		}
		fmt.Fprintf(stdout, "unbanned %s\n", prefix)
	case "list":
		bans := l.List(false)
		if *format == "json" {
			fmt.Fprint(stdout, "[")
			for i, b := range bans {
				if i > 0 {
					fmt.Fprint(stdout, ",")
				}
				exp := ""
				if !b.Expires.IsZero() {
					exp = b.Expires.UTC().Format(time.RFC3339Nano)
				}
				fmt.Fprintf(stdout, "\n  {\"prefix\": %q, \"reason\": %q, \"source\": %q, \"created\": %q, \"expires\": %q, \"offense\": %d}",
					b.Prefix.String(), b.Reason, b.Source, b.Created.UTC().Format(time.RFC3339Nano), exp, b.Offense)
			}
			fmt.Fprint(stdout, "\n]\n")
			return 0
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PREFIX\tREASON\tSOURCE\tOFFENSE\tEXPIRES")
		for _, b := range bans {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", b.Prefix, b.Reason, b.Source, b.Offense, until(b))
		}
		fmt.Fprintf(tw, "(%d bans)\n", len(bans))
		_ = tw.Flush()
	}
	return 0
}

func until(b banlist.Ban) string {
	if b.Expires.IsZero() {
		return "permanently"
	}
	return "until " + b.Expires.Local().Format("2006-01-02 15:04:05")
}

func parsePrefixArg(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is no CIDR prefix", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is no IP address", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// startFeeds keeps every configured reputation feed refreshed into l until
// ctx ends. Feeds are read at start; changes to the feed list take effect at
// the next restart.
func startFeeds(ctx context.Context, cfg *config.Config, l *banlist.List, log *slog.Logger) {
	client := &http.Client{Timeout: 30 * time.Second}
	for _, f := range cfg.Bans.Feeds {
		src := banlist.FeedSource{Name: f.Name, URL: f.URL, File: f.File, Format: f.Format, Refresh: f.Refresh}
		go l.RunFeed(ctx, src, client, func(f banlist.FeedSource, n, skipped int, err error) {
			if err != nil {
				log.Warn("reputation feed refresh failed; the previous entries stay", "feed", f.Name, "err", err)
				return
			}
			log.Info("reputation feed refreshed", "feed", f.Name, "entries", n, "skipped", skipped)
		})
	}
}
