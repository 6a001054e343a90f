package proxy

import (
	"bytes"

	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/sip"
	"github.com/sipwarden/sipwarden/internal/transport"
)

// onResponse relays a response from downstream to the sender of the request
// (RFC 3261 16.7), through the client transaction its top Via names.
func (w *worker) onResponse(pkt *transport.Packet) {
	m := &w.msg
	code := m.StatusCode()
	w.p.met.response(code)
	vi := m.Find(sip.HdrVia, 0)
	if vi < 0 {
		w.p.met.dropped(reasonStrayResponse)
		return
	}
	via, rest, err := sip.ParseVia(m.Header(vi).Value)
	if err != nil || !bytes.HasPrefix(via.Branch, []byte(branchPrefix)) {
		w.p.met.dropped(reasonStrayResponse)
		return
	}
	_, cseqMethod := m.CSeq()
	ct := w.ctx[string(clientKey(w.key[:0], via.Branch, cseqMethod))]
	if ct == nil {
		w.p.met.dropped(reasonStrayResponse)
		return
	}
	// Responses must come from where the request went.
	if ct.to.addr.Addr() != pkt.Src.Addr() {
		w.p.met.dropped(reasonStrayResponse)
		return
	}
	if pkt.Conn != nil && ct.to.conn == nil {
		ct.to.conn = pkt.Conn
	}
	w.clientResponse(ct, code, vi, rest)
}

// clientResponse runs the client transaction state machine for one response
// and relays what must be relayed.
func (w *worker) clientResponse(ct *clientTx, code int, vi int, rest []byte) {
	m := &w.msg
	st := ct.server
	if ct.method == sip.CANCEL {
		if code >= 200 {
			w.clientCompleted(ct)
		}
		return // responses to our own CANCEL stay here
	}
	switch {
	case code < 200:
		if ct.state == stateTrying {
			ct.state = stateProceeding
		}
		ct.gotProvisional = true
		if ct.method == sip.INVITE {
			w.clientTimer(ct, &ct.life, timerC, w.p.opt.TimerC) // replaces B, or restarts C
			if ct.cancelPending {
				w.sendCancel(ct)
			}
			if st != nil && st.dialog != nil && len(m.ToTag()) > 0 && st.dialog.calleeTag == "" {
				st.dialog.calleeTag = string(m.ToTag())
			}
		}
		if code == 100 || st == nil {
			return // our own 100 Trying went out already (RFC 3261 16.7 step 5)
		}
		w.relayResponse(st, code, vi, rest)
	case code < 300:
		if ct.method == sip.INVITE {
			first := ct.state != stateAccepted
			ct.state = stateAccepted
			if first {
				w.timers.cancel(&ct.retr)
				w.clientTimer(ct, &ct.life, timerL, 64*w.p.opt.T1)
				ct.sent = nil // no retransmission, CANCEL or hop-by-hop ACK after a 2xx
			}
			if st != nil && st.dialog != nil {
				d := st.dialog
				if !d.confirmed && st.client == ct {
					d.confirmed = true
					d.calleeTag = string(m.ToTag())
					d.answer = w.now
					d.answered(w.now)
					d.calleeTo = string(m.Get(sip.HdrTo))
					if na, _, err := sip.ParseNameAddr(m.Get(sip.HdrContact)); err == nil && d.calleeContact != string(na.URI) {
						d.calleeContact = string(na.URI)
					}
					w.routeSets(d, m)
					d.idle.dlg = d
					w.schedule(&d.idle, timerDialog, w.p.opt.DialogTimeout)
				}
				d.lastSeen = w.now
			}
		} else if ct.state >= stateCompleted {
			return // retransmission of a non-INVITE final response
		} else {
			w.clientCompleted(ct)
		}
		if st != nil {
			w.relayResponse(st, code, vi, rest)
			// A hangup came while the call rang and the callee answered
			// before our CANCEL reached it: end the call now.
			if d := st.dialog; d != nil && ct.method == sip.INVITE && d.confirmed && d.endReason != "" {
				w.hangup(d.key, d.endStage, d.endReason)
			}
		}
	default:
		if ct.state == stateCompleted || ct.state == stateAccepted {
			if ct.method == sip.INVITE && ct.state == stateCompleted {
				w.sendAck(ct) // the final response was retransmitted: our ACK was lost
			}
			return
		}
		if ct.method == sip.INVITE {
			w.sendAck(ct)
		}
		w.clientCompleted(ct)
		if st == nil {
			return
		}
		if code == 503 && w.failover(st) {
			return
		}
		if code < 400 && st.method == sip.INVITE && st.dialog != nil {
			if v := w.redirectVerdict(st.dialog); v.Action == chain.Reply {
				w.serverRefuse(st, v)
				w.endDialog(st.dialog, int(v.Code), dispBlocked, "fraud", v.Reason)
				return
			}
		}
		w.relayResponse(st, code, vi, rest)
		if st.method == sip.INVITE && st.dialog != nil {
			w.endDialog(st.dialog, code, "", "", "")
		}
	}
}

// clientCompleted moves a client transaction to completed and schedules its end.
func (w *worker) clientCompleted(ct *clientTx) {
	ct.state = stateCompleted
	w.byeDone(ct)
	if ct.to.transport.Reliable() {
		w.removeClientTx(ct)
		return
	}
	w.timers.cancel(&ct.retr)
	if ct.method == sip.INVITE {
		// timer D: >= 32 s; the request stays for the ACK of a retransmitted final response
		w.clientTimer(ct, &ct.life, timerD, 64*w.p.opt.T1)
		return
	}
	ct.sent = nil // timer K only absorbs retransmitted responses
	w.clientTimer(ct, &ct.life, timerK, w.p.opt.T4)
}

// sendAck acknowledges a non-2xx final response hop by hop (RFC 3261 17.1.1.3).
func (w *worker) sendAck(ct *clientTx) {
	if err := w.aux.Parse(ct.sent); err != nil {
		return
	}
	out := sip.AppendAck(w.out[:0], &w.aux, &w.msg)
	w.out = out
	w.send(ct.to, out, "ack")
}

// relayResponse removes our Via (field vi; rest is what the field held after
// our value) and sends the response to the server transaction's sender.
func (w *worker) relayResponse(st *serverTx, code int, vi int, rest []byte) {
	m := &w.msg
	body, strip := w.mediaResponse(st, code) // media.go: before the editor is reset
	w.ed.Reset(m)
	switch {
	case strip:
		w.ed.SetBody([]byte{})
		if i := m.Find(sip.HdrContentType, 0); i >= 0 {
			w.ed.DeleteHeader(i)
		}
	case body != nil:
		w.ed.SetBody(body)
	}
	switch {
	case w.topoResponse(st, code, vi): // topology.go: the sender's Vias back in place of ours
	case len(rest) == 0:
		w.ed.DeleteHeader(vi)
	default:
		w.ed.SetHeaderValue(vi, rest)
	}
	out, err := w.ed.AppendTo(w.out[:0])
	if err != nil {
		w.p.met.dropped("edit_failed")
		return
	}
	w.out = out
	w.serverRespond(st, code, out)
}

// failover retries the request of st on its next target, if any. It reports
// whether a new attempt was made.
func (w *worker) failover(st *serverTx) bool {
	if st.cancelled || len(st.alternates) == 0 || st.state >= stateCompleted || st.req == nil {
		return false
	}
	next := st.alternates[0]
	st.alternates = st.alternates[1:]
	if err := w.msg.Parse(st.req); err != nil {
		return false
	}
	w.p.met.failovers.Inc()
	target := flow{transport: next.Transport, addr: next.Addr}
	if st.dialog != nil {
		st.dialog.callee = target
	}
	w.sendClient(st, &w.msg, target, true)
	return true
}
