package proxy

import (
	"hash/maphash"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/events"
)

// Replies to sources that have proved nothing.
//
// A UDP source address is forged for free: an INVITE "from" a victim that
// names a digest trunk's domain gets its 407 sent to the victim. sipwarden
// therefore answers a source that has not authenticated (no configured peer,
// or a digest trunk's request without a verified account) like this:
//
//   - over UDP, the reply is sent once: no timer G retransmissions (a
//     retransmitted INVITE still gets the same reply from its transaction,
//     one reply per request the victim did not send either);
//   - each destination (an address, an IPv6 /64) has a reply budget in a
//     fixed-size table, so spoofed floods neither grow memory nor pour more
//     than the budget onto one victim; over budget the reply is dropped and
//     counted (sipwarden_proxy_dropped_total{reason="reply_budget"}). An
//     address that authenticated over UDP within provenFor (it received our
//     nonce there and answered it: no forger can) is no third-party victim:
//     its replies are not budgeted, so a customer's SBC or NAT that
//     registers thousands of phones is challenged at any rate;
//   - an INVITE refused to such a source writes no CDR: it is counted
//     (sipwarden_proxy_unauthenticated_calls_total{trunk,reason}) and sampled into
//     one "unauthenticated" event a second at most.
const (
	// replyBudget replies per destination in each replyWindow.
	replyBudget = 32
	replyWindow = time.Second
	// replySlots is the size of the budget table (8 bytes a slot).
	replySlots = 1 << 14
	// unauthEventEvery is the sampling period of the unauthenticated event.
	unauthEventEvery = time.Second
	// provenFor is how long an address that authenticated is exempt from the budget.
	provenFor = time.Hour
)

// reflectGuard is the process-wide reply budget table and its counters.
type reflectGuard struct {
	seed  maphash.Seed
	slots [replySlots]atomic.Uint64 // tag (32) | window (16) | count (16)
	// proven holds addresses that authenticated: tag (32) | minute (32).
	proven [replySlots]atomic.Uint64

	dropped  prometheus.Counter
	refused  *prometheus.CounterVec
	last     atomic.Int64  // when the last sampled event was published, ns
	sinceEvt atomic.Uint64 // refusals since then
}

func newReflectGuard(reg prometheus.Registerer, dropVec *prometheus.CounterVec) *reflectGuard {
	g := &reflectGuard{
		seed:    maphash.MakeSeed(),
		dropped: dropVec.WithLabelValues("reply_budget"),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sipwarden_proxy_unauthenticated_calls_total",
			Help: "INVITEs of digest trunks challenged or refused before their source authenticated (no CDR is written for them), by trunk and reason.",
		}, []string{"trunk", "reason"}),
	}
	if reg != nil {
		reg.MustRegister(g.refused)
	}
	return g
}

// hash is dst's key: an address, or the /64 of an IPv6 address when slash64.
func (g *reflectGuard) hash(dst netip.Addr, slash64 bool) uint64 {
	dst = dst.Unmap()
	if slash64 && dst.Is6() {
		p, _ := dst.Prefix(64)
		dst = p.Addr()
	}
	var h maphash.Hash
	h.SetSeed(g.seed)
	b := dst.As16()
	_, _ = h.Write(b[:])
	return h.Sum64()
}

// prove records that src authenticated now (a request with a verified account).
func (g *reflectGuard) prove(src netip.Addr, now time.Time) {
	k := g.hash(src, false)
	s := &g.proven[k&(replySlots-1)]
	v := (k>>32|1)<<32 | uint64(now.Unix()/60)&0xffffffff
	if s.Load() != v { // once a minute at most: no cache line written per request
		s.Store(v)
	}
}

// allow takes one reply from dst's budget; false: over budget, dropped and
// counted. An address that authenticated within provenFor is not budgeted.
func (g *reflectGuard) allow(dst netip.Addr, now time.Time) bool {
	k := g.hash(dst, false)
	if p := g.proven[k&(replySlots-1)].Load(); p>>32 == k>>32|1 && uint64(now.Unix()/60)-(p&0xffffffff) <= uint64(provenFor/time.Minute) {
		return true
	}
	k = g.hash(dst, true)
	s := &g.slots[k&(replySlots-1)]
	tag := k>>32 | 1
	win := uint64(now.UnixNano()/int64(replyWindow)) & 0xffff
	for {
		old := s.Load()
		n := uint64(1)
		if old>>32 == tag && (old>>16)&0xffff == win {
			if n = old&0xffff + 1; n > replyBudget {
				g.dropped.Inc()
				return false
			}
		}
		if s.CompareAndSwap(old, tag<<32|win<<16|n) {
			return true
		}
	}
}

// unauthenticated reports whether req's source has proved nothing: it is
// no configured peer, or a digest trunk whose request carries no verified
// account (a challenge, a refusal, an in-dialog request of a remembered address).
func unauthenticated(req *chain.Request) bool {
	switch req.PeerKind {
	case chain.PeerUnknown:
		return true
	case chain.PeerTrunk:
		return req.Trunk != nil && req.Trunk.Auth == config.AuthDigest && req.Account == ""
	}
	return false
}

// unauthRefused counts an INVITE refused to an unauthenticated source (in
// place of a CDR) and publishes a sampled event: at most one each
// unauthEventEvery, telling how many there were since the previous one.
func (w *worker) unauthRefused(req *chain.Request, stage, reason string, code int) {
	g := w.p.refl
	g.refused.WithLabelValues(req.PeerName(), reason).Inc()
	n := g.sinceEvt.Add(1)
	now := w.now.UnixNano()
	last := g.last.Load()
	if now-last < int64(unauthEventEvery) || !g.last.CompareAndSwap(last, now) {
		return
	}
	g.sinceEvt.Add(^(n - 1)) // minus n
	w.p.opt.Bus.Publish(events.Event{
		Kind:      events.Unauthenticated,
		Stage:     stage,
		Reason:    reason,
		Src:       req.Src,
		Transport: req.Transport.String(),
		Trunk:     req.PeerName(),
		Method:    req.Msg.Method().String(),
		Code:      code,
		Detail:    strconv.FormatUint(n, 10) + " INVITEs refused to unauthenticated sources since the last event (sampled)",
	})
}
