package proxy

import (
	"github.com/sipwarden/sipwarden/internal/sip"
)

// onTimer runs one due timer. Each case first checks that its transaction or
// dialog is still in the state the timer was set for.
func (w *worker) onTimer(e *timer) {
	switch e.kind {
	case timerA, timerE:
		ct := e.ct
		if ct.state == stateTerminated || ct.state == stateCompleted || ct.state == stateAccepted {
			return
		}
		if e.kind == timerA && ct.state != stateTrying {
			return // a provisional stops INVITE retransmissions
		}
		w.send(ct.to, ct.sent, "retransmission")
		ct.interval *= 2
		if e.kind == timerE && (ct.interval > w.p.opt.T2 || ct.state == stateProceeding) {
			ct.interval = w.p.opt.T2
		}
		w.clientTimer(ct, &ct.retr, e.kind, ct.interval)
	case timerB, timerF:
		ct := e.ct
		if ct.state != stateTrying && !(e.kind == timerF && ct.state == stateProceeding) {
			return
		}
		w.clientTimeout(ct)
	case timerC:
		ct := e.ct
		if ct.state != stateProceeding {
			return // answered
		}
		// Timer C (RFC 3261 16.8): cancel the branch and answer 408 ourselves.
		w.sendCancel(ct)
		w.clientTimeout(ct)
	case timerD, timerK, timerL:
		w.removeClientTx(e.ct)
	case timerG:
		st := e.st
		if st.state != stateCompleted || st.lastResp == nil {
			return
		}
		w.send(st.from, st.lastResp, "retransmission")
		st.interval *= 2
		if st.interval > w.p.opt.T2 {
			st.interval = w.p.opt.T2
		}
		w.serverTimer(st, &st.retr, timerG, st.interval)
	case timerH, timerI, timerJ, timerSL:
		w.removeServerTx(e.st)
	case timerDialog:
		d := e.dlg
		if w.dialogs[d.key] != d {
			return
		}
		idle := w.now.Sub(d.lastSeen)
		if idle >= w.p.opt.DialogTimeout {
			w.endDialog(d, 0, dispAnswered, "proxy", "dialog_timeout")
			return
		}
		w.schedule(&d.idle, timerDialog, w.p.opt.DialogTimeout-idle)
	}
}

// clientTimeout handles a client transaction that got no final response: the
// next target when the route has one, else 408 to the sender.
func (w *worker) clientTimeout(ct *clientTx) {
	w.p.met.timeouts.Inc()
	w.removeClientTx(ct)
	st := ct.server
	if st == nil || st.client != ct {
		return
	}
	if ct.method == sip.INVITE && !ct.gotProvisional && w.failover(st) {
		return
	}
	if ct.method != sip.INVITE && ct.method != sip.ACK && w.failover(st) {
		return
	}
	w.serverReply(st, 408)
}
