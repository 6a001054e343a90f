package proxy

import (
	"bytes"
	"context"
	"hash/maphash"
	"strconv"
	"time"

	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/sip"
)

// Hangup ends the call whose key is key (chain.CallKey: Call-ID and From
// tag, as the fraud engine and the media relay know it; a bare Call-ID ends
// every call with that Call-ID) on behalf of a security decision (a
// toll-fraud rule): an answered call gets a BYE towards each side, a
// ringing one a CANCEL towards the callee (the caller then gets 487). Its
// CDR records stage and reason. It never blocks: the request is queued to
// the worker that owns the call and dropped (counted) when that queue is full.
func (p *Proxy) Hangup(key, stage, reason string) {
	w := p.workers[0]
	if n := len(p.workers); n > 1 {
		w = p.workers[maphash.Bytes(p.seed, []byte(chain.CallIDOf(key)))%uint64(n)]
	}
	select {
	case w.ctl <- func() { w.hangup(key, stage, reason) }:
	default:
		p.met.dropped("hangup_overload")
	}
}

// hangup ends the dialog of key, or every dialog of a bare Call-ID.
func (w *worker) hangup(key, stage, reason string) {
	var found []*dialog
	if d := w.dialogs[key]; d != nil {
		found = append(found, d)
	} else if chain.CallIDOf(key) == key {
		for _, d := range w.dialogs {
			if d.callID == key {
				found = append(found, d)
			}
		}
	}
	for _, d := range found {
		w.p.met.hangups.Inc()
		w.endCall(d, stage, reason, d.interrupted)
	}
}

// endCall ends d on sipwarden's own decision: an answered call gets a BYE
// towards each side and its CDR now; a ringing one a CANCEL towards the
// callee, whose 487 reaches the caller and ends the dialog with stage and
// reason on the CDR. interrupted records the call as interrupted (a
// shutdown) rather than as an answered call that was ended.
func (w *worker) endCall(d *dialog, stage, reason string, interrupted bool) {
	if !d.confirmed {
		d.endStage, d.endReason, d.interrupted = stage, reason, interrupted
		if st := d.inviteTx; st != nil && st.client != nil && !st.cancelled {
			st.cancelled = true
			if st.client.gotProvisional {
				w.sendCancel(st.client)
			} else {
				st.client.cancelPending = true
			}
		}
		return
	}
	cause := 403
	disp := dispAnswered
	if interrupted {
		cause, disp = 503, dispInterrupted
	}
	w.sendBye(d, true, cause, reason)
	w.sendBye(d, false, cause, reason)
	w.endDialog(d, 0, disp, stage, reason)
}

// EndCalls ends every call still up, as a stop does once the drain is
// over: an answered call gets a BYE both ways (Reason: SIP ;cause=503 with
// reason as text), a ringing one a CANCEL towards the callee (the caller
// then gets 487); each CDR says interrupted, with reason. It then waits
// until the calls are gone and the BYEs answered or timed out, or until
// ctx ends; with ctx already done it sends and does not wait. It returns
// the number of calls it ended.
func (p *Proxy) EndCalls(ctx context.Context, reason string) int {
	ended := make(chan int, len(p.workers))
	queued := 0
	for _, w := range p.workers {
		select {
		case w.ctl <- func() { ended <- w.endAll(reason) }:
			queued++
		case <-p.stop: // stopped already: Close recorded the calls
		}
	}
	n := 0
	for range queued {
		select {
		case k := <-ended:
			n += k
		case <-p.stop: // a worker that stops runs no more work
			return n
		}
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for p.ActiveCalls() > 0 || p.pendingByes.Load() > 0 {
		select {
		case <-ctx.Done():
			return n
		case <-t.C:
		}
	}
	return n
}

// endAll ends every call of the worker (EndCalls).
func (w *worker) endAll(reason string) int {
	found := make([]*dialog, 0, len(w.dialogs))
	for _, d := range w.dialogs {
		found = append(found, d)
	}
	for _, d := range found {
		w.endCall(d, "proxy", reason, true)
	}
	return len(found)
}

// sendBye sends a BYE for d towards the callee (toCallee) as if from the
// caller, or towards the caller as if from the callee, straight to the flow
// the dialog uses on that side (the adjacent peer), with that side's
// Contact as Request-URI and the part of the dialog's route set beyond us
// (the Record-Route entries of that side's proxies) as Route. It runs as a
// client transaction of its own, so it is retransmitted over UDP until
// answered.
func (w *worker) sendBye(d *dialog, toCallee bool, cause int, reason string) {
	target, uri, route := d.caller, d.callerContact, d.callerRoute
	from, to := d.calleeTo, d.callerFrom
	cseq := d.calleeCSeq + 1
	if toCallee {
		target, uri, route = d.callee, d.calleeContact, d.calleeRoute
		from, to = d.callerFrom, d.calleeTo
		cseq = d.callerCSeq + 1
	}
	// The protected party's route set is the one topology hiding kept: its
	// side's Record-Route entries never reach the other side's messages.
	if hidden := d.topo.side == topoHideCallee && toCallee || d.topo.side == topoHideCaller && !toCallee; hidden && d.topo.routesSet {
		route = d.topo.routes
	}
	// The next BYE on this side (another hangup) must not reuse the CSeq.
	if toCallee {
		d.callerCSeq = cseq
	} else {
		d.calleeCSeq = cseq
	}
	if uri == "" || from == "" || to == "" {
		w.p.log.Warn("hangup: the dialog lacks a Contact to send a BYE to", "call_id", d.callID, "to_callee", toCallee)
		return
	}
	l := w.p.opt.Sender.ListenerFor(target.transport, target.addr.Addr())
	if l == nil {
		return
	}
	target.listener = l
	callID := d.callID
	if toCallee && d.topo.callID != "" { // towards a trunk called by a hidden upstream (topology_ids.go)
		callID = d.topo.callID
		if d.topo.from != "" {
			from = d.topo.from
		}
	}
	branch := w.nextBranch()
	b := w.out[:0]
	b = append(b, "BYE "...)
	b = append(b, uri...)
	b = append(b, " SIP/2.0\r\nVia: SIP/2.0/"...)
	b = append(b, l.Transport().String()...)
	b = append(b, ' ')
	b = append(b, l.Advertise()...)
	b = append(b, ";branch="...)
	b = append(b, branch...)
	if l.Transport() == sip.UDP {
		b = append(b, ";rport"...)
	}
	if route != "" {
		b = append(b, "\r\nRoute: "...)
		b = append(b, route...)
	}
	b = append(b, "\r\nMax-Forwards: 70\r\nFrom: "...)
	b = append(b, from...)
	b = append(b, "\r\nTo: "...)
	b = append(b, to...)
	b = append(b, "\r\nCall-ID: "...)
	b = append(b, callID...)
	b = append(b, "\r\nCSeq: "...)
	b = strconv.AppendUint(b, uint64(cseq), 10)
	b = append(b, " BYE\r\nReason: SIP ;cause="...)
	b = strconv.AppendUint(b, uint64(cause), 10)
	b = append(b, " ;text=\""...)
	b = appendQuotedSafe(b, reason)
	b = append(b, "\"\r\nContent-Length: 0\r\n\r\n"...)
	w.out = b
	ct := &clientTx{branch: branch, method: sip.BYE, sent: bytes.Clone(b), to: target, hangup: true}
	ct.key = string(clientKey(w.key[:0], []byte(branch), sip.BYE))
	w.p.pendingByes.Add(1)
	w.addClientTx(ct)
	w.send(target, ct.sent, "request")
	w.startClientTimers(ct)
}
