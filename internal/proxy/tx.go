package proxy

import (
	"bytes"
	"net/netip"
	"strconv"
	"time"

	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/sip"
	"github.com/sipwarden/sipwarden/internal/transport"
)

// flow is one side of a call as the transport sees it: where to send, and how.
type flow struct {
	transport sip.Transport
	addr      netip.AddrPort
	conn      *transport.Conn     // stream connection, when known
	listener  *transport.Listener // the listener to send from (nil: the transport picks)
}

type txState uint8

const (
	stateTrying     txState = iota // client: Calling/Trying; server: Proceeding before any response but our 100
	stateProceeding                // a provisional response was seen (client) / relayed (server)
	stateCompleted                 // a final non-2xx (INVITE) or any final (non-INVITE)
	stateAccepted                  // INVITE with a 2xx (RFC 6026)
	stateConfirmed                 // server INVITE: ACK received for the non-2xx
	stateTerminated
)

// serverTx is a request we received and answer for (RFC 3261 17.2).
type serverTx struct {
	key      string
	method   sip.Method
	req      []byte // a copy of the request as received (to build our own responses)
	from     flow   // where responses go
	state    txState
	lastResp []byte // the last response sent (for retransmissions); nil before any but 100
	trying   []byte // our 100 Trying, resent for INVITE retransmissions before any other response
	client   *clientTx
	dialog   *dialog
	// interval is timer G's current value.
	interval time.Duration
	// cancelled is set when the caller CANCELled this INVITE.
	cancelled bool
	// for failover: the remaining targets after the current one.
	alternates []config.Target
	created    time.Time
	// retarget is applied to every forwarded copy (failover included).
	retarget retarget
	// mediaDlg is the anchored dialog whose session descriptions this
	// transaction carries (media.go); fromCaller says who sent the request,
	// offered whether it carried an offer.
	mediaDlg   *dialog
	fromCaller bool
	offered    bool
	// retr is timer G; life is timer H, I, J or the RFC 6026 wait.
	retr, life timer
	// unauth: a reply of ours to a source that had not authenticated
	// (reflect.go): never retransmitted by timer G, resent only within
	// the destination's reply budget.
	unauth bool
}

// clientTx is a request we sent (RFC 3261 17.1).
type clientTx struct {
	key      string
	branch   string
	method   sip.Method
	sent     []byte // the request as sent (retransmissions, CANCEL, ACK)
	to       flow
	state    txState
	server   *serverTx // the transaction this one forwards (nil for our own CANCEL)
	interval time.Duration
	// gotProvisional is set once any provisional response arrived (CANCEL may go now).
	gotProvisional bool
	// cancelPending: a CANCEL is due as soon as a provisional response arrives (RFC 3261 9.1).
	cancelPending bool
	// retr is timer A or E; life is timer B, C (restarted by each
	// provisional response), D, F, K or L.
	retr, life timer
	// hangup marks a BYE of our own (hangup.go), counted in
	// Proxy.pendingByes until it is answered or times out.
	hangup bool
}

// serverKey builds the server transaction key of the request in w.msg into
// w.key (RFC 3261 17.2.3): branch, sent-by and meth. A caller looking for the
// INVITE transaction an ACK or CANCEL belongs to passes sip.INVITE as meth.
func (w *worker) serverKey(via *sip.Via, meth sip.Method) []byte {
	k := w.key[:0]
	k = append(k, via.Branch...)
	if len(via.Branch) == 0 || !bytes.HasPrefix(via.Branch, []byte("z9hG4bK")) {
		// RFC 2543 peer: no unique branch; fall back to Call-ID and CSeq number.
		k = append(k, w.msg.CallID()...)
		n, _ := w.msg.CSeq()
		k = strconv.AppendUint(k, uint64(n), 10)
		k = append(k, w.msg.FromTag()...)
	}
	k = append(k, 0)
	k = append(k, via.Host...)
	k = strconv.AppendInt(k, int64(via.Port), 10)
	k = append(k, 0, byte(meth))
	w.key = k
	return k
}

func (w *worker) addServerTx(st *serverTx) {
	w.stx[st.key] = st
	w.stxPeak = max(w.stxPeak, len(w.stx))
	w.p.met.transactions.Inc()
}

func (w *worker) removeServerTx(st *serverTx) {
	if st.state == stateTerminated {
		return
	}
	st.state = stateTerminated
	if d := st.dialog; d != nil && d.inviteTx == st {
		d.inviteTx = nil // a hangup no longer cancels; the transaction's memory goes
	}
	if w.stx[st.key] == st {
		delete(w.stx, st.key)
		w.p.met.transactions.Dec()
		w.stx = shrink(w.stx, &w.stxPeak)
	}
	// Nothing of a terminated transaction stays reachable from the timer
	// heap, and its copies of messages go now: a late response that still
	// finds it through its client transaction is relayed without them.
	w.timers.cancel(&st.retr)
	w.timers.cancel(&st.life)
	st.req, st.lastResp, st.trying, st.alternates = nil, nil, nil, nil
}

// serverRetransmit answers a retransmitted request with the last response.
func (w *worker) serverRetransmit(st *serverTx) {
	if st.unauth && !w.p.refl.allow(st.from.addr.Addr(), w.now) {
		return
	}
	switch {
	case st.lastResp != nil && st.state != stateAccepted:
		w.send(st.from, st.lastResp, "retransmission")
	case st.trying != nil && st.state == stateTrying:
		w.send(st.from, st.trying, "retransmission")
	}
}

// serverAck handles the ACK of a non-2xx final response (RFC 3261 17.2.1).
func (w *worker) serverAck(st *serverTx) {
	if st.state != stateCompleted {
		return
	}
	st.state = stateConfirmed
	if st.from.transport.Reliable() {
		w.removeServerTx(st)
		return
	}
	w.timers.cancel(&st.retr)
	w.serverTimer(st, &st.life, timerI, w.p.opt.T4)
}

// serverRespond sends a response on a server transaction and moves it on.
func (w *worker) serverRespond(st *serverTx, code int, resp []byte) {
	w.send(st.from, resp, "response")
	switch {
	case code < 200:
		if st.state == stateTrying {
			st.state = stateProceeding
		}
		st.lastResp = append(st.lastResp[:0], resp...)
	case st.method == sip.INVITE && code < 300:
		st.state = stateAccepted
		st.lastResp = nil
		w.serverTimer(st, &st.life, timerSL, 64*w.p.opt.T1)
	case st.method == sip.INVITE:
		st.state = stateCompleted
		st.lastResp = append(st.lastResp[:0], resp...)
		if !st.from.transport.Reliable() {
			st.interval = w.p.opt.T1
			w.serverTimer(st, &st.retr, timerG, st.interval)
		}
		w.serverTimer(st, &st.life, timerH, 64*w.p.opt.T1)
	default:
		st.state = stateCompleted
		st.lastResp = append(st.lastResp[:0], resp...)
		if st.from.transport.Reliable() {
			w.removeServerTx(st)
		} else {
			w.serverTimer(st, &st.life, timerJ, 64*w.p.opt.T1)
		}
	}
	if code >= 200 {
		// The request's copy served our own answers and failover, both
		// over now; only the final response stays for retransmissions.
		st.req, st.trying, st.alternates = nil, nil, nil
	}
}

// serverReply generates a response of our own on a server transaction
// (timeouts, failures to forward).
func (w *worker) serverReply(st *serverTx, code int) {
	if st.state >= stateCompleted || st.req == nil {
		return
	}
	if err := w.aux.Parse(st.req); err != nil {
		return
	}
	out := sip.AppendResponse(w.out[:0], &w.aux, code, sip.ReasonText(code), w.localTag(&w.aux), w.p.opt.ServerHeader, nil)
	w.out = out
	w.p.met.replies.WithLabelValues(strconv.Itoa(code)).Inc()
	w.serverRespond(st, code, out)
	if st.dialog != nil && st.method == sip.INVITE {
		w.endDialog(st.dialog, code, "", "proxy", "no_answer_from_target")
	}
}

func clientKey(dst, branch []byte, meth sip.Method) []byte {
	dst = append(dst, branch...)
	return append(dst, 0, byte(meth))
}

func (w *worker) addClientTx(ct *clientTx) {
	w.ctx[ct.key] = ct
	w.ctxPeak = max(w.ctxPeak, len(w.ctx))
	w.p.met.transactions.Inc()
}

func (w *worker) removeClientTx(ct *clientTx) {
	if ct.state == stateTerminated {
		return
	}
	ct.state = stateTerminated
	w.byeDone(ct)
	if w.ctx[ct.key] == ct {
		delete(w.ctx, ct.key)
		w.p.met.transactions.Dec()
		w.ctx = shrink(w.ctx, &w.ctxPeak)
	}
	w.timers.cancel(&ct.retr)
	w.timers.cancel(&ct.life)
	ct.sent = nil
}

// byeDone stops counting ct as a pending BYE of our own.
func (w *worker) byeDone(ct *clientTx) {
	if ct.hangup {
		ct.hangup = false
		w.p.pendingByes.Add(-1)
	}
}

func (w *worker) startClientTimers(ct *clientTx) {
	reliable := ct.to.transport.Reliable()
	if ct.method == sip.INVITE {
		if !reliable {
			ct.interval = w.p.opt.T1
			w.clientTimer(ct, &ct.retr, timerA, ct.interval)
		}
		w.clientTimer(ct, &ct.life, timerB, 64*w.p.opt.T1)
		return
	}
	if !reliable {
		ct.interval = w.p.opt.T1
		w.clientTimer(ct, &ct.retr, timerE, ct.interval)
	}
	w.clientTimer(ct, &ct.life, timerF, 64*w.p.opt.T1)
}

// sendCancel sends the CANCEL for client INVITE transaction ct.
func (w *worker) sendCancel(ct *clientTx) {
	ct.cancelPending = false
	if err := w.aux.Parse(ct.sent); err != nil {
		return
	}
	out := sip.AppendCancel(w.out[:0], &w.aux)
	w.out = out
	cc := &clientTx{
		branch: ct.branch,
		method: sip.CANCEL,
		sent:   bytes.Clone(out),
		to:     ct.to,
	}
	cc.key = string(clientKey(w.key[:0], []byte(cc.branch), sip.CANCEL))
	if old := w.ctx[cc.key]; old != nil {
		return // already cancelling
	}
	w.addClientTx(cc)
	w.send(cc.to, cc.sent, "request")
	w.startClientTimers(cc)
}
