package cli

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipwarden/sipwarden/internal/acl"
	"github.com/sipwarden/sipwarden/internal/auth"
	"github.com/sipwarden/sipwarden/internal/banlist"
	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/events"
	"github.com/sipwarden/sipwarden/internal/flood"
	"github.com/sipwarden/sipwarden/internal/fraud"
	"github.com/sipwarden/sipwarden/internal/geoip"
	"github.com/sipwarden/sipwarden/internal/identity"
	"github.com/sipwarden/sipwarden/internal/limits"
	"github.com/sipwarden/sipwarden/internal/media"
	"github.com/sipwarden/sipwarden/internal/proxy"
	"github.com/sipwarden/sipwarden/internal/registrar"
	"github.com/sipwarden/sipwarden/internal/route"
	"github.com/sipwarden/sipwarden/internal/sanity"
	"github.com/sipwarden/sipwarden/internal/scanner"
	"github.com/sipwarden/sipwarden/internal/shaken"
	"github.com/sipwarden/sipwarden/internal/sip"
)

// deps are what lives for the whole process and every chain shares: the
// metric registry (counters never reset on reload), the event bus, and state
// that must survive a reload (the concurrent-call counts of calls in progress).
type deps struct {
	reg     prometheus.Registerer
	bus     *events.Bus
	chain   *chain.Metrics
	acl     *acl.Metrics
	probes  *acl.ProbeTracker
	bans    *banlist.List // nil for check-config
	scanner *scanner.Metrics
	flood   *flood.State
	limits  *limits.Registry
	route   *route.Metrics
	auth    *auth.State // created by the first buildRuntime
	// bindings and their metrics, created by the first buildRuntime
	registrar    *registrar.Registrar
	registrarMet *registrar.Metrics
	shaken       *shaken.State
	identity     *identity.Metrics
	media        *media.StageMetrics
	// relay is the process-wide media relay, started with a configuration
	// that enables media (nil: media passes untouched).
	relay *media.Relay
	// geo is the country database, opened at start (nil: none).
	geo   *geoip.DB
	fraud *fraud.State
	// flows holds the stream connections phones registered over (the
	// transport, set by serve once it exists; nil for check-config).
	flows flowHolder
}

// flowHolder keeps a registered TCP or TLS connection open (transport.Manager).
type flowHolder interface {
	HoldFlow(t sip.Transport, remote netip.AddrPort, until time.Time)
}

func newDeps(reg prometheus.Registerer, bus *events.Bus, bans *banlist.List, floodSlots int) *deps {
	return &deps{
		flood:   flood.NewState(floodSlots, reg),
		reg:     reg,
		bus:     bus,
		chain:   chain.NewMetrics(reg),
		acl:     acl.NewMetrics(reg),
		probes:  acl.NewProbeTracker(0),
		bans:    bans,
		scanner: scanner.NewMetrics(reg),
		limits:  limits.NewRegistry(reg),
		route:   route.NewMetrics(reg),
		shaken:  shaken.NewState(reg),
		media:   media.NewStageMetrics(reg),

		identity: identity.NewMetrics(reg),
		fraud:    fraud.NewState(reg, bus, 0, 0),
	}
}

// buildRuntime builds every stage of cfg, in the canonical order of
// chain.Order. d nil builds a throw-away runtime (check-config, chain).
func buildRuntime(cfg *config.Config, d *deps) (*proxy.Runtime, error) {
	throwaway := d == nil
	if throwaway {
		d = newDeps(nil, nil, nil, 16)
	}
	// every stage's errors at once, each at its key's line
	var errs config.Errors
	fail := func(stage string, err error) {
		if err != nil {
			var es config.Errors
			if errors.As(cfg.Locate(stage, err), &es) {
				errs = append(errs, es...)
			}
		}
	}
	aclStage, err := acl.NewStage(cfg, d.bus, d.acl, d.bans, d.probes)
	fail("acl", err)
	floodStage, err := flood.NewStage(cfg, d.flood, d.bans, d.bus)
	fail("flood", err)
	scannerStage, err := scanner.NewStage(cfg, d.bans, d.bus, d.scanner)
	fail("scanner", err)
	if d.auth == nil {
		// created with the first configuration: its table sizes hold for the process
		d.auth = auth.NewState(cfg, d.bans, d.reg)
	}
	authStage, err := auth.NewStage(cfg, d.auth, d.bus)
	fail("auth", err)
	if d.registrar == nil {
		d.registrar = registrar.New()
		d.registrarMet = registrar.NewMetrics(d.reg, d.registrar)
	}
	registrarStage, err := registrar.NewStage(cfg, d.registrar, d.registrarMet, d.bus)
	fail("registrar", err)
	limitsStage, err := limits.NewStage(cfg, d.limits, d.bus)
	fail("limits", err)
	shakenStage, err := shaken.NewStage(cfg, &cfg.Shaken, d.shaken, d.bus)
	fail("shaken", err)
	routeStage, err := route.NewStage(cfg, d.bus, d.route)
	fail("route", err)
	if len(errs) > 0 {
		if throwaway {
			// nothing here is shared with a running proxy: the errors of
			// the stages built after the chain's assembly are wanted too
			if cfg.Fraud.Enabled {
				_, err := fraud.NewStage(cfg, &cfg.Fraud, d.fraud, d.bus)
				fail("fraud", err)
			}
			if cfg.Media.Enabled {
				_, err := media.NewStage(cfg, d.bus, d.media)
				fail("media", err)
			}
		}
		slices.SortStableFunc(errs, func(a, b *config.Error) int { return cmp.Or(a.Line-b.Line, a.Column-b.Column) })
		return nil, errs
	}
	stages := []chain.Stage{aclStage}
	if !cfg.Flood.Disabled {
		stages = append(stages, floodStage)
	}
	stages = append(stages, sanity.New())
	if !cfg.Scanner.Disabled {
		stages = append(stages, scannerStage)
	}
	if authStage.Enabled() {
		aclStage.SetResolver(authStage.Resolve)
		stages = append(stages, authStage)
	}
	// always: every trunk is outside the trust domain unless it says otherwise
	stages = append(stages, identity.NewStage(cfg, d.identity, d.bus))
	stages = append(stages, limitsStage)
	if registrarStage.Enabled() {
		stages = append(stages, registrarStage)
	}
	if registrarStage.Enabled() {
		registrarStage.SetFlowHold(func(t sip.Transport, src netip.AddrPort, until time.Time) {
			if d.flows != nil {
				d.flows.HoldFlow(t, src, until)
			}
		})
	}
	if registrarStage.Enabled() && d.geo != nil {
		registrarStage.SetCountry(d.geo.Country)
	}
	if registrarStage.Enabled() {
		reg := d.registrar
		routeStage.SetLocator(func(tr *config.Trunk, user string) (route.Location, bool) {
			bs := reg.Bindings(tr.Name+"\x00"+user, time.Now())
			if len(bs) == 0 {
				return route.Location{}, false
			}
			return route.Location{URI: bs[0].Contact, Transport: bs[0].Transport, Addr: bs[0].Source}, true
		})
	}
	var transfers chain.TransferPolicy // REFER and 3xx targets of trunks' calls
	if cfg.Fraud.Enabled {
		fraudStage, err := fraud.NewStage(cfg, &cfg.Fraud, d.fraud, d.bus)
		if err != nil {
			return nil, cfg.Locate("fraud", err)
		}
		stages = append(stages, fraudStage)
		transfers = fraudStage
	}
	if cfg.Shaken.Enabled() {
		stages = append(stages, shakenStage)
	}
	if cfg.Media.Enabled {
		mediaStage, err := media.NewStage(cfg, d.bus, d.media)
		if err != nil {
			return nil, cfg.Locate("media", err)
		}
		stages = append(stages, mediaStage)
	}
	stages = append(stages, routeStage)
	if err := checkOrder(stages); err != nil {
		return nil, err
	}
	rt := &proxy.Runtime{
		Config:     cfg,
		Chain:      chain.New(d.chain, stages...),
		Alternates: routeStage.Alternates,
		Transfers:  transfers,
	}
	if cfg.Media.Enabled && d.relay != nil {
		anchor, err := media.NewAnchor(d.relay, cfg)
		if err != nil {
			return nil, cfg.Locate("media", err)
		}
		rt.Media = anchor
	}
	if d.bans != nil {
		// No rule bans a configured peer of this configuration, and no feed
		// entry or prefix ban blocks one. Set last: a configuration refused
		// above leaves the running one's peers in place.
		d.bans.SetPeerCheck(aclStage.Table().IsPeer)
	}
	return rt, nil
}

// checkOrder verifies that stages follow chain.Order (stages may be left out).
func checkOrder(stages []chain.Stage) error {
	j := 0
	for _, s := range stages {
		for j < len(chain.Order) && chain.Order[j] != s.Name() {
			j++
		}
		if j == len(chain.Order) {
			return fmt.Errorf("internal error: stage %q is out of the canonical order %v", s.Name(), chain.Order)
		}
	}
	return nil
}

// stageSummaries explain each stage in one line for `sipwarden chain`.
var stageSummaries = map[string]string{
	"acl":     "identify the trunk or upstream by source address; unknown sources: %s",
	"flood":   "request budgets per source address and /24 or /64, by method class and peer profile (floored at a trunk's limits); over budget: a peer's excess is shed (503 or drop), never banned",
	"sanity":  "reject malformed requests (400, 416, 420, 483, 505) before any stage reads them",
	"scanner": "drop requests of SIP scanners and attack tools (User-Agent tokens) without reply, and ban their source unless it is a configured peer",
	"limits":  "calls per second and concurrent calls (503 + Retry-After), registrations (429 + Retry-After), per trunk and per account",
	"shaken":  "STIR/SHAKEN: sign calls from signing trunks (Identity, attestation A/B/C), verify those from verifying trunks (verstat)",
	"media":   "refuse offers without SRTP from trunks whose media policy requires it (488 + Warning)",
	"fraud":   "destination policy per trunk (403) and spend/velocity rules (403 block, 503 throttle)",
	"route":   "calls from trunks to their upstream; calls from upstreams to the trunk owning the number, or to a registered phone",

	"auth":      "digest authentication for trunks with auth: digest (401/407 challenges; bans and lockouts for guessing)",
	"identity":  "remove P-Asserted-Identity, P-Preferred-Identity, Diversion and Remote-Party-ID of trunks without trust_identity (in dialogs too); digest accounts call with their own numbers (403 or rewrite)",
	"registrar": "answer authenticated REGISTERs of digest trunks with a registrar (bindings, 423 Min-Expires, contact limits)",
}

// ChainCommand prints the effective chain of a configuration.
func ChainCommand(args []string, stdout, stderr io.Writer) int {
	cfg, code := configCommand("chain", args, stderr)
	if cfg == nil {
		return code
	}
	rt, err := buildRuntime(cfg, nil)
	if err != nil {
		printConfigError(stderr, cfg.File, err)
		return 1
	}
	fmt.Fprintf(stdout, "chain of %s (fixed order; the configuration enables and configures stages):\n", cfg.File)
	for i, s := range rt.Chain.Stages() {
		line := stageSummaries[s.Name()]
		if s.Name() == "acl" {
			line = fmt.Sprintf(line, cfg.UnknownSources)
		}
		fmt.Fprintf(stdout, "  %d. %-8s %s\n", i+1, s.Name(), line)
	}
	for _, t := range cfg.Trunks {
		fmt.Fprintf(stdout, "trunk %s: %d prefixes, upstream %s, %d number ranges, cps %g, concurrent %d\n",
			t.Name, len(t.Allow), t.Upstream, len(t.Numbers), t.Limits.CPS, t.Limits.Concurrent)
	}
	return 0
}
