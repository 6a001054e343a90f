package proxy

import (
	"errors"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/sip"
	"github.com/sipwarden/sipwarden/internal/transport"
)

// maxServerTx bounds the server transactions one worker keeps for requests it
// answered itself (refusals); beyond it such answers are sent statelessly.
const maxServerTx = 200_000

// worker owns a share of the calls (by Call-ID hash) and everything about
// them: transactions, dialogs and timers. Only its own goroutine touches them.
type worker struct {
	p  *Proxy
	id int
	in chan *transport.Packet
	// ctl runs work other goroutines hand to the worker (Hangup).
	ctl chan func()

	msg   sip.Msg // the message being handled
	aux   sip.Msg // a stored message re-parsed (failover, CANCEL, timeouts)
	ed    sip.Editor
	req   chain.Request
	out   []byte // outgoing message scratch
	key   []byte // map key scratch
	extra []byte // extra header lines scratch
	tmp   []byte // small value scratch (Via, Record-Route)
	tmp2  []byte
	topo  topoWorker // topology hiding (topology.go)

	stx     map[string]*serverTx
	ctx     map[string]*clientTx
	dialogs map[string]*dialog
	// the most entries each map held since it was last rebuilt (shrink)
	stxPeak, ctxPeak, dialogsPeak int

	epoch  time.Time
	now    time.Time
	timers timerHeap
	timer  *time.Timer
	armed  int64

	seq         uint64
	activeCalls atomic.Int64
}

func newWorker(p *Proxy, id int) *worker {
	w := &worker{
		p:       p,
		id:      id,
		in:      make(chan *transport.Packet, p.opt.QueueLen),
		ctl:     make(chan func(), 256),
		out:     make([]byte, 0, 8192),
		key:     make([]byte, 0, 256),
		stx:     make(map[string]*serverTx),
		ctx:     make(map[string]*clientTx),
		dialogs: make(map[string]*dialog),
		epoch:   time.Now(),
		timer:   time.NewTimer(time.Hour),
		armed:   -1,
	}
	w.timer.Stop()
	return w
}

func (w *worker) run() {
	for {
		select {
		case pkt := <-w.in:
			w.now = time.Now()
			w.handle(pkt)
			pkt.Release()
		case f := <-w.ctl:
			w.now = time.Now()
			f()
		case <-w.timer.C:
			w.armed = -1
			w.now = time.Now()
			w.fireTimers()
		case <-w.p.stop:
			w.shutdown()
			return
		}
		w.rearm()
	}
}

// rearm points the worker's single timer at the earliest entry.
func (w *worker) rearm() {
	if len(w.timers) == 0 {
		return
	}
	at := w.timers[0].at
	if w.armed >= 0 && w.armed <= at {
		return
	}
	w.armed = at
	d := time.Duration(at - int64(time.Since(w.epoch)))
	if d < 0 {
		d = 0
	}
	w.timer.Reset(d)
}

// schedule (re)starts t as a timer of kind k, due after d.
func (w *worker) schedule(t *timer, k timerKind, d time.Duration) {
	t.kind = k
	w.timers.set(t, int64(w.now.Sub(w.epoch)+d))
}

// clientTimer (re)starts one of ct's timers.
func (w *worker) clientTimer(ct *clientTx, t *timer, k timerKind, d time.Duration) {
	t.ct = ct
	w.schedule(t, k, d)
}

// serverTimer (re)starts one of st's timers.
func (w *worker) serverTimer(st *serverTx, t *timer, k timerKind, d time.Duration) {
	t.st = st
	w.schedule(t, k, d)
}

func (w *worker) fireTimers() {
	nowNs := int64(w.now.Sub(w.epoch))
	for len(w.timers) > 0 && w.timers[0].at <= nowNs {
		w.onTimer(w.timers.pop())
	}
}

// handle parses one packet and dispatches it.
func (w *worker) handle(pkt *transport.Packet) {
	m := &w.msg
	err := m.Parse(pkt.Buf)
	if err != nil && !m.IsRequest() {
		// Not even a request line: nobody to answer.
		if errors.Is(err, sip.ErrEmpty) || errors.Is(err, sip.ErrStartLine) {
			w.p.met.dropped(reasonUnparseable)
		} else {
			w.p.met.dropped(reasonBadResponse)
		}
		return
	}
	if !m.IsRequest() {
		if err != nil {
			w.p.met.dropped(reasonBadResponse)
			return
		}
		w.onResponse(pkt)
		return
	}
	w.onRequest(pkt, err)
}

// shutdown closes every call still open with an "interrupted" CDR.
func (w *worker) shutdown() {
	for {
		select {
		case pkt := <-w.in:
			pkt.Release()
			continue
		default:
		}
		break
	}
	w.now = time.Now()
	for _, d := range w.dialogs {
		w.endDialog(d, 0, dispInterrupted, "", "shutdown")
	}
	w.timer.Stop()
}

// shrink returns m, or a copy of it when it holds an eighth of the entries
// it once held: a Go map keeps the space of its peak, so a burst of calls
// (or a flood of refused INVITEs) would keep its memory after the calls
// ended. The copy costs O(entries left), after seven times as many
// deletions.
func shrink[V any](m map[string]V, peak *int) map[string]V {
	const minPeak = 4096 // small maps are not worth the copy
	if *peak < minPeak || len(m) > *peak/8 {
		return m
	}
	c := make(map[string]V, len(m))
	for k, v := range m {
		c[k] = v
	}
	*peak = len(m)
	return c
}

// nextBranch returns a new RFC 3261 branch: magic cookie, a marker that says
// it is ours, the process instance, the worker and a counter.
func (w *worker) nextBranch() string {
	w.seq++
	b := w.tmp2[:0]
	b = append(b, branchPrefix...)
	b = append(b, w.p.instance...)
	b = append(b, '.')
	b = strconv.AppendUint(b, uint64(w.id), 36)
	b = append(b, '.')
	b = strconv.AppendUint(b, w.seq, 36)
	w.tmp2 = b
	return string(b)
}

// branchPrefix starts every branch sipwarden creates.
const branchPrefix = "z9hG4bK-sw."
