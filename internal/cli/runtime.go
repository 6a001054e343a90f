package cli

import (
	"fmt"
	"io"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipwarden/sipwarden/internal/acl"
	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/events"
	"github.com/sipwarden/sipwarden/internal/limits"
	"github.com/sipwarden/sipwarden/internal/proxy"
	"github.com/sipwarden/sipwarden/internal/route"
	"github.com/sipwarden/sipwarden/internal/sanity"
)

// deps are what lives for the whole process and every chain shares: the
// metric registry (counters never reset on reload), the event bus, and state
// that must survive a reload (the concurrent-call counts of calls in progress).
type deps struct {
	reg    prometheus.Registerer
	bus    *events.Bus
	chain  *chain.Metrics
	acl    *acl.Metrics
	limits *limits.Registry
	route  *route.Metrics
}

func newDeps(reg prometheus.Registerer, bus *events.Bus) *deps {
	return &deps{
		reg:    reg,
		bus:    bus,
		chain:  chain.NewMetrics(reg),
		acl:    acl.NewMetrics(reg),
		limits: limits.NewRegistry(reg),
		route:  route.NewMetrics(reg),
	}
}

// buildRuntime builds every stage of cfg, in the canonical order of
// chain.Order. d nil builds a throw-away runtime (check-config, chain).
func buildRuntime(cfg *config.Config, d *deps) (*proxy.Runtime, error) {
	if d == nil {
		d = newDeps(nil, nil)
	}
	aclStage, err := acl.NewStage(cfg, d.bus, d.acl)
	if err != nil {
		return nil, fmt.Errorf("acl: %w", err)
	}
	limitsStage, err := limits.NewStage(cfg, d.limits, d.bus)
	if err != nil {
		return nil, fmt.Errorf("limits: %w", err)
	}
	routeStage, err := route.NewStage(cfg, d.bus, d.route)
	if err != nil {
		return nil, fmt.Errorf("route: %w", err)
	}
	stages := []chain.Stage{aclStage, sanity.New(), limitsStage, routeStage}
	for i, s := range stages {
		if s.Name() != chain.Order[i] {
			return nil, fmt.Errorf("internal error: stage %d is %q, the canonical order says %q", i, s.Name(), chain.Order[i])
		}
	}
	return &proxy.Runtime{
		Config:     cfg,
		Chain:      chain.New(d.chain, stages...),
		Alternates: routeStage.Alternates,
	}, nil
}

// stageSummaries explain each stage in one line for `sipwarden chain`.
var stageSummaries = map[string]string{
	"acl":    "identify the trunk or upstream by source address; unknown sources: %s",
	"sanity": "reject malformed requests (400, 416, 420, 483, 505) before any stage reads them",
	"limits": "per-trunk calls per second and concurrent calls (503 + Retry-After)",
	"route":  "calls from trunks to their upstream; calls from upstreams to the trunk owning the number",
}

// ChainCommand prints the effective chain of a configuration.
func ChainCommand(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("chain", "chain --config FILE", stderr)
	file := fs.String("config", "sipwarden.yaml", "configuration file")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	cfg, err := config.Load(*file)
	if err != nil {
		printConfigError(stderr, *file, err)
		return 1
	}
	rt, err := buildRuntime(cfg, nil)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", *file, err)
		return 1
	}
	fmt.Fprintf(stdout, "chain of %s (fixed order; the configuration enables and configures stages):\n", cfg.File)
	for i, s := range rt.Chain.Stages() {
		line := stageSummaries[s.Name()]
		if s.Name() == "acl" {
			line = fmt.Sprintf(line, cfg.UnknownSources)
		}
		fmt.Fprintf(stdout, "  %d. %-7s %s\n", i+1, s.Name(), line)
	}
	for _, t := range cfg.Trunks {
		fmt.Fprintf(stdout, "trunk %s: %d prefixes, upstream %s, %d number ranges, cps %g, concurrent %d\n",
			t.Name, len(t.Allow), t.Upstream, len(t.Numbers), t.Limits.CPS, t.Limits.Concurrent)
	}
	return 0
}
