package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"hash/maphash"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipwarden/sipwarden/internal/cdr"
	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/events"
	"github.com/sipwarden/sipwarden/internal/sip"
	"github.com/sipwarden/sipwarden/internal/transport"
)

// Sender sends messages; *transport.Manager implements it.
type Sender interface {
	Send(t sip.Transport, from *transport.Listener, dst netip.AddrPort, conn *transport.Conn, b []byte) error
	ListenerFor(t sip.Transport, dst netip.Addr) *transport.Listener
}

// CDRSink receives one record per INVITE dialog; *cdr.Writer implements it.
type CDRSink interface {
	Write(r cdr.Record)
}

// Runtime is what a configuration reload replaces as a whole: the config and
// the chain of stages built from it.
type Runtime struct {
	Config *config.Config
	Chain  *chain.Chain
	// Alternates returns the failover targets after the first for a routed
	// request (may be nil).
	Alternates func(req *chain.Request) []config.Target
	// Media anchors the media of calls (nil: SDP passes untouched; media.go).
	Media chain.MediaAnchor
	// Transfers judges the targets of transfers of trunks' calls (a REFER
	// from a trunk with transfers: allow, a 3xx from the upstream to a
	// trunk's call); nil: not checked (transfer.go).
	Transfers chain.TransferPolicy
}

// Options configure a Proxy. Sender and Runtime are required.
type Options struct {
	Sender  Sender
	Runtime *Runtime
	CDR     CDRSink // nil: no CDRs
	Bus     *events.Bus
	Logger  *slog.Logger
	// Registerer receives the proxy's metrics (nil: not registered).
	Registerer prometheus.Registerer
	// Workers is the number of message workers (default 2).
	Workers int
	// QueueLen is each worker's inbound queue (default 4096); a full queue drops.
	QueueLen int
	// Timers (RFC 3261 defaults when zero).
	T1, T2, T4    time.Duration
	TimerC        time.Duration // proxy INVITE transaction timeout after a provisional (default 3m)
	DialogTimeout time.Duration // confirmed dialog without traffic (default 2h)
	// ServerHeader is sent in locally generated replies ("" for none).
	ServerHeader string
}

// Proxy is the SIP proxy core. Create it with New, feed it with HandlePacket.
type Proxy struct {
	opt      Options
	runtime  atomic.Pointer[Runtime]
	workers  []*worker
	seed     maphash.Seed
	instance string // random per process: part of every branch and tag we make
	met      *metrics
	refl     *reflectGuard // reply budgets and counts for unauthenticated sources (reflect.go)
	log      *slog.Logger

	locals   atomic.Pointer[[]localAddr]
	draining atomic.Bool
	wg       sync.WaitGroup
	stop     chan struct{}
	stopOnce sync.Once

	// pendingByes counts BYEs of our own not yet answered (EndCalls waits for them).
	pendingByes atomic.Int64
}

// New builds a proxy and starts its workers.
func New(opt Options) (*Proxy, error) {
	if opt.Sender == nil || opt.Runtime == nil || opt.Runtime.Chain == nil || opt.Runtime.Config == nil {
		return nil, errors.New("proxy: Sender and a Runtime with Config and Chain are required")
	}
	if opt.Workers <= 0 {
		opt.Workers = 2
	}
	if opt.QueueLen <= 0 {
		opt.QueueLen = 4096
	}
	if opt.T1 <= 0 {
		opt.T1 = 500 * time.Millisecond
	}
	if opt.T2 <= 0 {
		opt.T2 = 4 * time.Second
	}
	if opt.T4 <= 0 {
		opt.T4 = 5 * time.Second
	}
	if opt.TimerC <= 0 {
		opt.TimerC = 3 * time.Minute
	}
	if opt.DialogTimeout <= 0 {
		opt.DialogTimeout = 2 * time.Hour
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	var salt [4]byte
	_, _ = rand.Read(salt[:])
	p := &Proxy{
		opt:      opt,
		seed:     maphash.MakeSeed(),
		instance: hex.EncodeToString(salt[:]),
		met:      newMetrics(opt.Registerer),
		log:      opt.Logger,
		stop:     make(chan struct{}),
	}
	p.refl = newReflectGuard(opt.Registerer, p.met.dropVec)
	p.runtime.Store(opt.Runtime)
	p.workers = make([]*worker, opt.Workers)
	for i := range p.workers {
		p.workers[i] = newWorker(p, i)
	}
	for _, w := range p.workers {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			w.run()
		}()
	}
	return p, nil
}

// SetRuntime swaps the configuration and chain atomically. Calls in progress
// keep the trunk and upstream they started with.
func (p *Proxy) SetRuntime(rt *Runtime) { p.runtime.Store(rt) }

// Runtime returns the runtime in force.
func (p *Proxy) Runtime() *Runtime { return p.runtime.Load() }

// HandlePacket implements transport.Handler: it queues p to the worker that
// owns its Call-ID. It never blocks: with a full queue the packet is dropped
// and counted (overload).
func (p *Proxy) HandlePacket(pkt *transport.Packet) {
	w := p.workers[0]
	if n := len(p.workers); n > 1 {
		callID := sip.ScanCallID(pkt.Buf)
		w = p.workers[maphash.Bytes(p.seed, callID)%uint64(n)]
	}
	select {
	case w.in <- pkt:
	default:
		p.met.dropped(reasonOverload)
		pkt.Release()
	}
}

// ActiveCalls returns the number of INVITE dialogs in progress (early or confirmed).
func (p *Proxy) ActiveCalls() int {
	n := 0
	for _, w := range p.workers {
		n += int(w.activeCalls.Load())
	}
	return n
}

// Draining reports whether a graceful stop has begun.
func (p *Proxy) Draining() bool { return p.draining.Load() }

// Drain starts a graceful stop: every new request that would be forwarded or
// answered with a success or a challenge (INVITE, REGISTER, OPTIONS, ...) gets
// 503 with Retry-After; calls in progress continue. It returns when no call is
// left or ctx ends, whichever comes first; EndCalls then ends the rest.
func (p *Proxy) Drain(ctx context.Context) error {
	p.draining.Store(true)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for p.ActiveCalls() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// Close stops the workers. Calls still open (EndCalls was not called, or
// their BYE could not be sent) are closed with an "interrupted" CDR, so that
// no call goes unrecorded. Packets still queued are released.
func (p *Proxy) Close() {
	p.stopOnce.Do(func() {
		close(p.stop)
		p.wg.Wait()
	})
}
