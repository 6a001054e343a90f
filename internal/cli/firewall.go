package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipwarden/sipwarden/internal/banlist"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/firewall"
)

const firewallUsage = `Usage: sipwarden firewall nft [flags]

Prints an nftables ruleset that opens the SIP listener ports (and an RTP port
range, with --rtp-ports) only to the configured trunks and upstreams. Review
it, then load it with 'nft -f FILE'. Bans are mirrored into a separate table
by a running sipwarden when firewall.nftables is on.

Run 'sipwarden firewall nft --help' for its flags.
`

// FirewallCommand is `sipwarden firewall nft`.
func FirewallCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "nft" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(stdout, firewallUsage)
			return 0
		}
		fmt.Fprint(stderr, firewallUsage)
		return 2
	}
	fs := newFlagSet("firewall nft", "firewall nft [flags]", stderr)
	file := fs.String("config", "sipwarden.yaml", "configuration file")
	rtp := fs.String("rtp-ports", "", "UDP port range of the media relay to open to the peers too (10000-20000)")
	table := fs.String("table", "sipwarden", "name of the nftables table to print")
	if code := parseFlags(fs, args[1:]); code >= 0 {
		return code
	}
	opt := firewall.RulesetOptions{Table: *table}
	if *rtp != "" {
		from, to, err := parsePortRange(*rtp)
		if err != nil {
			fmt.Fprintf(stderr, "sipwarden firewall nft: --rtp-ports: %v\n", err)
			return 2
		}
		opt.RTPFrom, opt.RTPTo = from, to
	}
	cfg, err := config.Load(*file)
	if err != nil {
		printConfigError(stderr, *file, err)
		return 1
	}
	fmt.Fprint(stdout, firewall.Ruleset(cfg, opt))
	return 0
}

// parsePortRange reads "FROM-TO" (1 <= FROM <= TO <= 65535).
func parsePortRange(s string) (uint16, uint16, error) {
	a, b, ok := strings.Cut(s, "-")
	from, err1 := strconv.ParseUint(a, 10, 16)
	to, err2 := strconv.ParseUint(b, 10, 16)
	if !ok || err1 != nil || err2 != nil || from == 0 || from > to {
		return 0, 0, fmt.Errorf("want FROM-TO with 1 <= FROM <= TO <= 65535, got %q", s)
	}
	return uint16(from), uint16(to), nil
}

// startFirewall mirrors the bans into nftables when the configuration asks
// for it. The returned stop function ends the mirror and removes its table.
func startFirewall(ctx context.Context, cfg *config.Config, bans *banlist.List, reg prometheus.Registerer, log *slog.Logger) (stop func(), err error) {
	if !cfg.Firewall.Nftables {
		return func() {}, nil
	}
	var ports []uint16
	for _, l := range cfg.Listen {
		if !slices.Contains(ports, l.Addr.Port()) {
			ports = append(ports, l.Addr.Port())
		}
	}
	m, err := firewall.OpenMirror(firewall.MirrorOptions{Table: cfg.Firewall.Table, Ports: ports})
	if err != nil {
		return nil, fmt.Errorf("firewall.nftables: %w (it needs Linux and CAP_NET_ADMIN)", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		firewall.Keep(ctx, m, bans, firewall.KeepOptions{Registerer: reg, Logger: log})
	}()
	log.Info("mirroring bans into nftables", "table", "inet "+cfg.Firewall.Table, "ports", ports)
	return func() {
		cancel()
		<-done
		if err := m.Close(); err != nil {
			log.Warn("removing the nftables ban table failed", "table", cfg.Firewall.Table, "err", err)
		}
	}, nil
}
