package proxy

import (
	"bytes"
	"hash/maphash"
	"strconv"

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
		if !d.confirmed {
			// Ringing: cancel the callee's INVITE; its 487 reaches the
			// caller and ends the dialog, with our reason on the CDR.
			d.endStage, d.endReason = stage, reason
			if st := d.inviteTx; st != nil && st.client != nil && !st.cancelled {
				st.cancelled = true
				if st.client.gotProvisional {
					w.sendCancel(st.client)
				} else {
					st.client.cancelPending = true
				}
			}
			continue
		}
		w.sendBye(d, true, reason)
		w.sendBye(d, false, reason)
		w.endDialog(d, 0, dispAnswered, stage, reason)
	}
}

// sendBye sends a BYE for d towards the callee (toCallee) as if from the
// caller, or towards the caller as if from the callee, straight to the flow
// the dialog uses on that side (the adjacent peer), with that side's
// Contact as Request-URI. It runs as a client transaction of its own, so
// it is retransmitted over UDP until answered.
func (w *worker) sendBye(d *dialog, toCallee bool, reason string) {
	target, uri := d.caller, d.callerContact
	from, to := d.calleeTo, d.callerFrom
	cseq := d.calleeCSeq + 1
	if toCallee {
		target, uri = d.callee, d.calleeContact
		from, to = d.callerFrom, d.calleeTo
		cseq = d.callerCSeq + 1
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
	b = append(b, "\r\nMax-Forwards: 70\r\nFrom: "...)
	b = append(b, from...)
	b = append(b, "\r\nTo: "...)
	b = append(b, to...)
	b = append(b, "\r\nCall-ID: "...)
	b = append(b, callID...)
	b = append(b, "\r\nCSeq: "...)
	b = strconv.AppendUint(b, uint64(cseq), 10)
	b = append(b, " BYE\r\nReason: SIP ;cause=403 ;text=\""...)
	b = appendQuotedSafe(b, reason)
	b = append(b, "\"\r\nContent-Length: 0\r\n\r\n"...)
	w.out = b
	ct := &clientTx{branch: branch, method: sip.BYE, sent: bytes.Clone(b), to: target}
	ct.key = string(clientKey(w.key[:0], []byte(branch), sip.BYE))
	w.addClientTx(ct)
	w.send(target, ct.sent, "request")
	w.startClientTimers(ct)
}
