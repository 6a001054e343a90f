package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sipwarden/sipwarden/internal/admin"
	"github.com/sipwarden/sipwarden/internal/banlist"
	"github.com/sipwarden/sipwarden/internal/cdr"
	cdrpostgres "github.com/sipwarden/sipwarden/internal/cdr/postgres"
	cdrsqlite "github.com/sipwarden/sipwarden/internal/cdr/sqlite"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/events"
	"github.com/sipwarden/sipwarden/internal/geoip"
	"github.com/sipwarden/sipwarden/internal/media"
	"github.com/sipwarden/sipwarden/internal/proxy"
	"github.com/sipwarden/sipwarden/internal/transport"
)

// Serve runs the proxy until SIGTERM or SIGINT: `sipwarden serve --config FILE`.
func Serve(args []string, stdout, stderr io.Writer) int {
	cfg, code := configCommand("serve", args, stderr)
	if cfg == nil {
		return code
	}
	log := newLogger(cfg, stderr)
	logConfigWarnings(log, cfg)
	srv, err := start(cfg, log)
	if err != nil {
		log.Error("start failed", "err", err)
		return 1
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			if err := srv.reload(); err != nil {
				log.Error("configuration reload refused; the running configuration stays", "file", cfg.File, "err", err)
			}
			continue
		}
		log.Info("stopping", "signal", sig.String())
		return srv.stop(sigs)
	}
	return 0
}

// configCommand parses the flags of a command that takes only a
// configuration file (--config FILE, or FILE alone) and loads the file. It
// returns nil and the exit code when the command must stop.
func configCommand(name string, args []string, stderr io.Writer) (*config.Config, int) {
	fs := newFlagSet(name, name+" [--config] FILE", stderr)
	file := fs.String("config", defaultConfigFile, "configuration file (may also be given without --config)")
	if code := parseFlags(fs, args); code >= 0 {
		return nil, code
	}
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "config" })
	switch {
	case fs.NArg() > 1:
		fmt.Fprintf(stderr, "sipwarden %s: one configuration file expected, got %d: %s\n", name, fs.NArg(), strings.Join(fs.Args(), " "))
		return nil, 2
	case fs.NArg() == 1 && given && fs.Arg(0) != *file:
		fmt.Fprintf(stderr, "sipwarden %s: two configuration files, --config %s and %s: give one\n", name, *file, fs.Arg(0))
		return nil, 2
	case fs.NArg() == 1:
		*file, given = fs.Arg(0), true
	}
	cfg, err := config.Load(*file)
	if err != nil {
		if !given && errors.Is(err, iofs.ErrNotExist) {
			fmt.Fprintf(stderr, "sipwarden %s: no configuration file: %s is not in this directory.\n"+
				"Give one: sipwarden %s --config FILE (examples/quickstart.yaml is a start; README.md, \"Run it\").\n", name, *file, name)
			return nil, 2
		}
		printConfigError(stderr, *file, err)
		return nil, 1
	}
	return cfg, 0
}

// defaultConfigFile is the configuration a command reads without --config.
const defaultConfigFile = "sipwarden.yaml"

func printConfigError(w io.Writer, file string, err error) {
	var errs config.Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			fmt.Fprintln(w, e.Error())
		}
		return
	}
	fmt.Fprintf(w, "%s: %v\n", file, err)
}

// logConfigWarnings logs the settings of cfg that contradict one another.
func logConfigWarnings(log *slog.Logger, cfg *config.Config) {
	for _, w := range cfg.Warnings {
		log.Warn("configuration warning", "file", w.File, "line", w.Line, "column", w.Column, "key", w.Key, "msg", w.Msg)
	}
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// server is one running sipwarden process.
type server struct {
	log       *slog.Logger
	file      string
	deps      *deps
	transport *transport.Manager
	proxy     *proxy.Proxy
	admin     *admin.Server
	store     cdr.Store
	cdrs      *cdr.Writer
	banStore  interface{ Close() error }
	regStore  interface{ Close() error } // registrar.go
	regStop   func() error
	firewall  func() // stops the nftables mirror
	webhooks  sync.WaitGroup
	hangupTo  atomic.Pointer[proxy.Proxy] // the proxy, once it exists (media timeouts end calls)
	stopBans  func()
	cancelLog context.CancelFunc
	logDone   chan struct{}

	mu  sync.Mutex // serialises reloads
	cfg *config.Config
}

// lateHandler lets the transport start before the proxy exists.
type lateHandler struct{ p *proxy.Proxy }

func (h *lateHandler) HandlePacket(pkt *transport.Packet) {
	if h.p == nil {
		pkt.Release()
		return
	}
	h.p.HandlePacket(pkt)
}

func start(cfg *config.Config, log *slog.Logger) (_ *server, err error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	bus := events.NewBus()
	reg.MustRegister(bus.Collector())
	s := &server{log: log, file: cfg.File, cfg: cfg, logDone: make(chan struct{})}
	var logCtx context.Context
	logCtx, s.cancelLog = context.WithCancel(context.Background())
	sub := bus.Subscribe("log", 4096)
	go func() {
		defer close(s.logDone)
		events.LogSink(logCtx, log, sub)
	}()
	if err := s.startWebhooks(logCtx, cfg, bus, reg, log); err != nil {
		s.cancelLog()
		return nil, err
	}
	var bans *banlist.List
	bans, s.banStore, err = openBans(cfg, time.Now)
	if err != nil {
		return nil, err
	}
	s.stopBans = watchBans(logCtx, bans, bus, reg, log)
	startFeeds(logCtx, cfg, bans, log)
	s.deps = newDeps(reg, bus, bans, cfg.Flood.TableSize)
	if err := s.openRegistrar(cfg, reg); err != nil {
		return nil, err
	}

	if cfg.GeoIP.CountryDB != "" {
		if s.deps.geo, err = geoip.Open(cfg.GeoIP.CountryDB); err != nil {
			return nil, err
		}
	}
	if cfg.Media.Enabled {
		rc := media.RelayConfig(cfg.Media)
		rc.Logger, rc.Registerer = log, reg
		// A call whose media stopped (a phone gone behind its NAT, a
		// half-dead call still billing) is ended: BYE both ways.
		rc.OnTimeout = func(key string) {
			if p := s.hangupTo.Load(); p != nil {
				p.Hangup(key, "media", "media_timeout")
			}
		}
		if s.deps.relay, err = media.New(rc); err != nil {
			return nil, fmt.Errorf("media relay: %w", err)
		}
		log.Info("media relay started", "addr", rc.Addr.String(), "advertise", rc.Advertise.String(),
			"ports", fmt.Sprintf("%d-%d", rc.PortMin, rc.PortMax))
	}
	if err := s.deps.fraud.Engine.SetBaselineFile(filepath.Join(cfg.Storage.Path, "fraud-baselines.json")); err != nil {
		log.Warn("fraud baselines not restored: they learn again", "err", err)
	}
	go s.deps.fraud.Engine.Run(logCtx) // live exposure, incident expiry, hourly baseline saves

	rt, err := buildRuntime(cfg, s.deps)
	if err != nil {
		if s.deps.relay != nil {
			s.deps.relay.Shutdown()
		}
		return nil, err
	}
	defer func() {
		if err != nil {
			s.closeAll()
		}
	}()

	s.store, err = openCDRStore(cfg, log)
	if err != nil {
		return nil, err
	}
	// The journal and the dead-letter file live beside the other stores.
	s.cdrs, err = cdr.OpenWriter(s.store, cdr.WriterOptions{
		BatchSize:       cfg.CDR.BatchSize,
		FlushInterval:   cfg.CDR.FlushInterval,
		Dir:             cfg.Storage.Path,
		JournalMaxBytes: cfg.CDR.JournalMaxBytes,
		Logger:          log,
		Registerer:      reg,
		Bus:             bus,
	})
	if err != nil {
		return nil, fmt.Errorf("CDR writer: %w", err)
	}

	h := &lateHandler{}
	s.transport, err = transport.NewManager(transport.Options{
		MaxMessageSize:    cfg.SIP.MaxMessageSize,
		IdleTimeout:       cfg.SIP.TCPIdleTimeout,
		HandshakeTimeout:  cfg.TLS.HandshakeTimeout,
		MaxConnsPerSource: cfg.SIP.MaxConnsPerSource,
		MaxConnsPerPrefix: cfg.SIP.MaxConnsPerPrefix,
		MaxConns:          cfg.SIP.MaxConns,
		ReservedPeerConns: cfg.SIP.ReservedPeerConns,
		CertFile:          cfg.TLS.Cert,
		KeyFile:           cfg.TLS.Key,
		ClientCAFile:      cfg.TLS.ClientCA,
		RootCAFile:        cfg.TLS.UpstreamCA,
		Gate:              bans,
		Bus:               bus,
		Registerer:        reg,
		Logger:            log,
	}, h)
	if err != nil {
		return nil, fmt.Errorf("transport: %w", err)
	}
	s.transport.SetPeers(connPeers(cfg))
	s.deps.flows = s.transport // before the listeners start: no request has run a stage yet
	workers := cfg.SIP.Workers
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	s.proxy, err = proxy.New(proxy.Options{
		Sender:        s.transport,
		Runtime:       rt,
		CDR:           s.cdrs,
		Bus:           bus,
		Logger:        log,
		Registerer:    reg,
		Workers:       workers,
		DialogTimeout: cfg.SIP.DialogTimeout,
		ServerHeader:  cfg.SIP.UserAgent,
	})
	if err != nil {
		return nil, err
	}
	h.p = s.proxy
	s.hangupTo.Store(s.proxy)
	// A fraud rule with end_calls ends the risky calls already up: BYE both
	// ways (answered calls are known to the engine through chain.Answerer).
	s.deps.fraud.Engine.SetHangup(func(key, _, rule string) {
		s.proxy.Hangup(key, "fraud", "fraud_hangup:"+rule)
	})
	for _, l := range cfg.Listen {
		ln, err := s.transport.Listen(l.Transport, l.Addr, l.Advertise)
		if err != nil {
			return nil, fmt.Errorf("listen %s: %w", l.Raw, err)
		}
		log.Info("listening", "transport", l.Transport.String(), "addr", ln.Addr().String(), "advertise", ln.Advertise())
	}
	s.proxy.SetListeners(s.transport.Listeners())
	if s.firewall, err = startFirewall(logCtx, cfg, bans, reg, log); err != nil {
		return nil, err
	}

	if cfg.Admin.Listen != "" {
		// Changes through the API need the token of this file, created on
		// the first start; `sipwarden incidents release` reads it there.
		token, created, err := admin.LoadToken(adminTokenPath(cfg), true)
		if err != nil {
			return nil, err
		}
		if created {
			log.Info("admin API token created", "file", adminTokenPath(cfg))
		}
		// Reads (metrics, status, incidents, bans) need a token too: this
		// one reads and changes nothing (a Prometheus scrape, a dashboard).
		readToken, created, err := admin.LoadToken(adminReadTokenPath(cfg), true)
		if err != nil {
			return nil, err
		}
		if created {
			log.Info("admin API read token created", "file", adminReadTokenPath(cfg))
		}
		tlsConf, err := adminTLS(cfg)
		if err != nil {
			return nil, err
		}
		s.admin = admin.New(cfg.Admin.Listen, reg, admin.Hooks{
			Ready:  func() bool { return !s.proxy.Draining() },
			Reload: s.reload,
			Status: s.status,
			Fraud:  s.deps.fraud.Engine,
			Bans:   bans,
			Token:  token,

			Registrar: s.deps.registrar,

			ReadToken:   readToken,
			OpenMetrics: cfg.Admin.OpenMetrics,
			Hosts:       cfg.Admin.Hosts,
			TLS:         tlsConf,
		}, log)
		if err := s.admin.Start(); err != nil {
			return nil, fmt.Errorf("admin listen %s: %w", cfg.Admin.Listen, err)
		}
		log.Info("admin listening", "addr", s.admin.Addr())
	}
	log.Info("sipwarden started", "version", Version(), "config", cfg.File, "workers", workers,
		"trunks", len(cfg.Trunks), "upstreams", len(cfg.Upstreams))
	return s, nil
}

func openCDRStore(cfg *config.Config, log *slog.Logger) (cdr.Store, error) {
	switch cfg.CDR.Backend {
	case "postgres":
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := cdrpostgres.Open(ctx, cfg.CDR.DSN)
		if cdrpostgres.Unreachable(err) {
			// Unreachable, not refused: start, and journal CDRs until it answers.
			log.Warn("CDR store (postgres) unreachable at start; CDRs go to the journal until it answers", "err", err)
			st, err = cdrpostgres.OpenLater(cfg.CDR.DSN)
		}
		if err != nil {
			return nil, fmt.Errorf("open CDR store (postgres): %w", err)
		}
		return st, nil
	default:
		if err := os.MkdirAll(cfg.Storage.Path, 0o750); err != nil {
			return nil, fmt.Errorf("storage path: %w", err)
		}
		path := filepath.Join(cfg.Storage.Path, "cdr.db")
		st, err := cdrsqlite.Open(path)
		if err != nil {
			return nil, fmt.Errorf("open CDR store %s: %w", path, err)
		}
		return st, nil
	}
}

// reload loads the configuration file again and swaps the chain atomically.
// A bad file is refused and the running configuration stays.
func (s *server) reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg, err := config.Load(s.file)
	if err == nil {
		var rt *proxy.Runtime
		if cfg.GeoIP != s.cfg.GeoIP {
			err = errors.New("geoip.country_db changes only at a restart: restore it, or restart")
		} else if cfg.Media != s.cfg.Media {
			err = errors.New("the media section (relay address, ports, enabled) changes only at a restart: restore it, or restart")
		} else {
			rt, err = buildRuntime(cfg, s.deps)
		}
		if err == nil {
			if !sameListeners(s.cfg, cfg) {
				s.log.Warn("listen addresses changed: they take effect at the next restart")
			}
			if err := s.transport.ReloadTLS(); err != nil {
				s.log.Warn("TLS certificate reload failed; the old certificate stays", "err", err)
			}
			s.proxy.SetRuntime(rt)
			s.transport.SetPeers(connPeers(cfg))
			s.cfg = cfg
			logConfigWarnings(s.log, cfg)
			s.deps.bus.Publish(events.Event{Kind: events.ConfigReloaded, Stage: "config", Detail: s.file})
			s.log.Info("configuration reloaded", "file", s.file, "trunks", len(cfg.Trunks))
			return nil
		}
	}
	s.deps.bus.Publish(events.Event{Kind: events.ConfigRejected, Stage: "config", Reason: "invalid", Detail: s.file})
	return err
}

func sameListeners(a, b *config.Config) bool {
	if len(a.Listen) != len(b.Listen) {
		return false
	}
	for i := range a.Listen {
		if a.Listen[i].Raw != b.Listen[i].Raw || a.Listen[i].Advertise != b.Listen[i].Advertise {
			return false
		}
	}
	return true
}

func (s *server) status() any {
	s.mu.Lock()
	file, trunks := s.cfg.File, len(s.cfg.Trunks)
	s.mu.Unlock()
	return map[string]any{
		"version":      Version(),
		"config":       file,
		"trunks":       trunks,
		"active_calls": s.proxy.ActiveCalls(),
		"draining":     s.proxy.Draining(),
		"cdr_queue":    s.cdrs.QueueDepth(),
		"cdr_backlog":  s.cdrs.Backlog(),
	}
}

// endCallsWait bounds the wait for the answers to the BYEs that end the
// calls still up after a drain (UDP retransmits them meanwhile: T1, 2*T1, ...).
const endCallsWait = 4 * time.Second

// stop drains calls (until the drain timeout or a second signal), ends the
// calls still up with a BYE both ways, then closes everything so that no
// CDR is lost.
func (s *server) stop(sigs <-chan os.Signal) int {
	hurry, stopNow := context.WithCancel(context.Background())
	defer stopNow()
	go func() {
		select {
		case sig := <-sigs:
			s.log.Warn("second signal: stopping now", "signal", sig.String())
			stopNow()
		case <-hurry.Done():
		}
	}()
	ctx, cancel := context.WithTimeout(hurry, s.cfg.SIP.DrainTimeout)
	defer cancel()
	if err := s.proxy.Drain(ctx); err != nil {
		// Nobody may stay in a call that no node carries any more: each
		// side gets a BYE (once at least, even after a second signal).
		open := s.proxy.ActiveCalls()
		endCtx, endCancel := context.WithTimeout(hurry, endCallsWait)
		n := s.proxy.EndCalls(endCtx, "shutdown")
		endCancel()
		s.log.Warn("drain ended with calls still open; each side got a BYE and the CDRs say interrupted",
			"active_calls", open, "ended", n)
	}
	stopNow()
	s.closeAll()
	s.log.Info("stopped")
	return 0
}

func (s *server) closeAll() {
	if s.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = s.admin.Shutdown(ctx)
		cancel()
	}
	if s.transport != nil {
		_ = s.transport.Close()
	}
	if s.proxy != nil {
		s.proxy.Close()
	}
	if s.deps != nil {
		s.deps.shaken.Close() // certificate fetches in progress
	}
	if s.cdrs != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := s.cdrs.Close(ctx); err != nil {
			s.log.Error("CDR flush failed", "err", err)
		}
		cancel()
	}
	if s.store != nil {
		_ = s.store.Close()
	}
	if s.firewall != nil {
		s.firewall()
	}
	if s.deps != nil && s.deps.relay != nil {
		s.deps.relay.Shutdown() // after the proxy: its dialogs closed their sessions
	}
	if s.deps != nil && s.deps.geo != nil {
		_ = s.deps.geo.Close()
	}
	if s.stopBans != nil {
		s.stopBans() // before the store closes: no sync against a closed database
	}
	if s.banStore != nil {
		_ = s.banStore.Close()
	}
	s.closeRegistrar()
	if s.deps != nil {
		if err := s.deps.fraud.Engine.SaveBaselineFile(); err != nil {
			s.log.Warn("fraud baselines not saved", "err", err)
		}
	}
	s.cancelLog()
	<-s.logDone
	s.webhooks.Wait() // each posts what it gathered, once, bounded by its timeout
}
