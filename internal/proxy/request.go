package proxy

import (
	"bytes"
	"net/netip"
	"strconv"

	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/events"
	"github.com/sipwarden/sipwarden/internal/sip"
	"github.com/sipwarden/sipwarden/internal/transport"
)

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

// flowFrom is where responses to a request received in pkt go (RFC 3261
// 18.2.2 and RFC 3581): the same connection for streams; for UDP the source
// address, and the source port when the Via asks for rport.
func flowFrom(pkt *transport.Packet, via *sip.Via) flow {
	f := flow{transport: pkt.Transport, addr: pkt.Src, conn: pkt.Conn, listener: pkt.Listener}
	if pkt.Transport == sip.UDP && via != nil && !via.RPort {
		port := via.Port
		if port == 0 {
			port = 5060
		}
		f.addr = netip.AddrPortFrom(pkt.Src.Addr(), uint16(port))
	}
	return f
}

func (w *worker) onRequest(pkt *transport.Packet, perr error) {
	m := &w.msg
	meth := m.Method()
	w.p.met.request(meth)

	// A message that failed to parse still has the fields indexed before the
	// error: enough, often, to answer a peer with 400 or 505.
	var via sip.Via
	viaOK := false
	if v, err := m.TopVia(); err == nil {
		via, viaOK = v, true
	}
	// Retransmissions and the ACK of a non-2xx answer belong to a server
	// transaction we already have: they go no further.
	if perr == nil && viaOK && meth != sip.CANCEL {
		lookup := meth
		if meth == sip.ACK {
			lookup = sip.INVITE
		}
		if st := w.stx[string(w.serverKey(&via, lookup))]; st != nil {
			if meth == sip.ACK {
				w.serverAck(st)
			} else {
				w.p.met.retrans.Inc()
				w.serverRetransmit(st)
			}
			return
		}
	}

	rt := w.p.runtime.Load()
	req := &w.req
	req.Reset()
	req.Msg = m
	req.Src = pkt.Src
	req.Local = pkt.Local
	req.Transport = pkt.Transport
	req.Config = rt.Config
	req.ParseErr = perr
	req.InDialog = perr == nil && len(m.ToTag()) > 0
	if pkt.Conn != nil {
		req.TLSVerified = pkt.Conn.ClientVerified()
	}

	v, stage := rt.Chain.Run(req)
	if w.p.draining.Load() && drainRefuses(req, v) {
		// A graceful stop: a new request that would be accepted, answered
		// 2xx or challenged goes to another node instead (refusals and
		// silence stay as they are).
		v, stage = chain.ReplyRetry(503, drainRetryAfter, "shutting_down"), "proxy"
	}
	if req.Account != "" && pkt.Transport == sip.UDP {
		w.p.refl.prove(pkt.Src.Addr(), w.now) // reflect.go: it answered our nonce there
	}
	switch v.Action {
	case chain.Drop:
		req.ReleaseHolds()
		if stage == "sanity" {
			w.publishMalformed(pkt, v, 0)
		}
		w.blockedCDR(pkt, req, stage, v.Reason, 0)
		return
	case chain.Reply:
		req.ReleaseHolds()
		if stage == "sanity" {
			w.publishMalformed(pkt, v, int(v.Code))
		}
		if meth != sip.ACK {
			w.replyVerdict(pkt, viaOK, &via, v)
		}
		w.blockedCDR(pkt, req, stage, v.Reason, int(v.Code))
		return
	case chain.Forward:
		w.forwardInitial(pkt, rt, &via)
		return
	case chain.Continue:
	}
	// The chain let the request through without routing it: it is not an
	// initial request (the route stage places those).
	if perr != nil || !viaOK {
		req.ReleaseHolds()
		return
	}
	switch {
	case meth == sip.CANCEL:
		w.onCancel(pkt, &via)
	case req.InDialog:
		w.onInDialog(pkt, &via)
	case meth == sip.ACK:
		// An ACK outside any transaction or dialog: nothing to acknowledge.
		w.p.met.dropped(reasonNoDialog)
	default:
		req.ReleaseHolds()
		w.replyVerdict(pkt, viaOK, &via, chain.ReplyWith(404, "no_route"))
	}
}

// drainRetryAfter is the Retry-After of the 503 a draining node answers.
const drainRetryAfter = 30

// drainRefuses reports whether a draining node answers v's request with 503
// instead: a new request (not in a dialog, not ACK or CANCEL) that the chain
// would forward (INVITE, OPTIONS pings, ...), or that a stage would answer
// itself with a success, a redirect or a challenge (REGISTER). Drops and
// refusals stay as they are: a stranger still gets silence. Requests inside
// the calls in progress go on.
func drainRefuses(req *chain.Request, v chain.Verdict) bool {
	meth := req.Msg.Method()
	if req.InDialog || req.ParseErr != nil || meth == sip.ACK || meth == sip.CANCEL {
		return false
	}
	switch v.Action {
	case chain.Forward:
		return true
	case chain.Reply:
		return v.Code < 400 || v.Code == 401 || v.Code == 407
	}
	return false
}

func (w *worker) publishMalformed(pkt *transport.Packet, v chain.Verdict, code int) {
	w.p.opt.Bus.Publish(events.Event{
		Kind:      events.Malformed,
		Stage:     "sanity",
		Reason:    v.Reason,
		Src:       pkt.Src,
		Transport: pkt.Transport.String(),
		Trunk:     w.req.PeerName(),
		Method:    w.msg.Method().String(),
		Code:      code,
		Detail:    v.Warning,
	})
}

// replyVerdict answers a request with the verdict's code. For an INVITE over
// UDP it keeps a server transaction in the completed state, so that the
// INVITE's retransmissions get the same answer and its ACK is absorbed.
func (w *worker) replyVerdict(pkt *transport.Packet, viaOK bool, via *sip.Via, v chain.Verdict) {
	m := &w.msg
	if !viaOK || !sip.CanReply(m) {
		w.p.met.dropped("unanswerable")
		return
	}
	extra := w.extra[:0]
	if v.RetryAfter > 0 {
		extra = append(extra, "Retry-After: "...)
		extra = strconv.AppendUint(extra, uint64(v.RetryAfter), 10)
		extra = append(extra, "\r\n"...)
	}
	if v.Warning != "" {
		extra = append(extra, `Warning: 399 sipwarden "`...)
		extra = appendQuotedSafe(extra, v.Warning)
		extra = append(extra, "\"\r\n"...)
	}
	if v.Header != "" {
		extra = append(extra, v.Header...)
		extra = append(extra, "\r\n"...)
	}
	w.extra = extra
	f := flowFrom(pkt, via)
	// A UDP source that proved nothing may be a forged one: the reply goes
	// once, within its destination's budget (reflect.go).
	unauth := pkt.Transport == sip.UDP && unauthenticated(&w.req)
	if unauth && !w.p.refl.allow(f.addr.Addr(), w.now) {
		return
	}
	out := sip.AppendResponse(w.out[:0], m, int(v.Code), sip.ReasonText(int(v.Code)), w.localTag(m), w.p.opt.ServerHeader, extra)
	w.out = out
	w.send(f, out, "reply")
	w.p.met.replies.WithLabelValues(strconv.Itoa(int(v.Code))).Inc()
	if m.Method() == sip.INVITE && pkt.Transport == sip.UDP && len(w.stx) < maxServerTx {
		st := &serverTx{
			key:      string(w.serverKey(via, sip.INVITE)),
			method:   sip.INVITE,
			from:     f,
			state:    stateCompleted,
			lastResp: bytes.Clone(out),
			created:  w.now,
			unauth:   unauth,
		}
		st.interval = w.p.opt.T1
		w.addServerTx(st)
		if !unauth {
			w.serverTimer(st, &st.retr, timerG, st.interval)
		}
		w.serverTimer(st, &st.life, timerH, 64*w.p.opt.T1)
	}
}

// appendQuotedSafe appends s with quotes and backslashes and control bytes removed.
func appendQuotedSafe(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '"' || c == '\\' || c < 0x20 || c == 0x7f {
			continue
		}
		dst = append(dst, c)
	}
	return dst
}

// localTag is the To tag for responses sipwarden generates itself: derived
// from the request, so that a retransmission gets the same tag.
func (w *worker) localTag(m *sip.Msg) []byte {
	if len(m.ToTag()) > 0 {
		return nil
	}
	h := hashBytes(w.p.seed, m.CallID(), m.FromTag())
	t := w.tmp[:0]
	t = append(t, "sw"...)
	t = strconv.AppendUint(t, h, 36)
	w.tmp = t
	return t
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

// send hands a message to the transport, counting failures.
func (w *worker) send(f flow, b []byte, kind string) {
	if err := w.p.opt.Sender.Send(f.transport, f.listener, f.addr, f.conn, b); err != nil {
		w.p.met.dropped(reasonSendFailed)
		w.p.log.Debug("send failed", "dst", f.addr.String(), "transport", f.transport.String(), "kind", kind, "err", err)
		return
	}
	w.p.met.forwarded.WithLabelValues(kind, f.transport.String()).Inc()
}

// mergedVerdict answers an INVITE without To tag whose Call-ID and From tag
// are those of a call in progress. RFC 3261 8.2.2.2 names 482 (Loop
// Detected) for a request without To tag that matches an ongoing
// transaction by From tag, Call-ID and CSeq but not by branch: the same
// request arriving a second time (a merge). A reuse with another CSeq is the
// same collision with the call's identity (a UAC must not start a second
// call under it), so it gets the same answer; 400 would say the message is
// malformed, which it is not, and tell a caller nothing more.
var mergedVerdict = chain.Verdict{Action: chain.Reply, Code: 482, Reason: "merged_request",
	Warning: "Call-ID and From tag belong to a call in progress"}

// dialogKey builds the key of the dialog of callID and the caller's tag in
// w.key (the layout of chain.CallKey).
func (w *worker) dialogKey(callID, callerTag []byte) []byte {
	k := append(w.key[:0], callID...)
	k = append(k, 0)
	k = append(k, callerTag...)
	w.key = k
	return k
}

// forwardInitial forwards a request the chain has routed (req.Target): a
// server transaction towards the sender, a client transaction towards the
// target and, for INVITE, a dialog.
func (w *worker) forwardInitial(pkt *transport.Packet, rt *Runtime, via *sip.Via) {
	m := &w.msg
	req := &w.req
	meth := m.Method()
	if meth == sip.INVITE && w.dialogs[string(w.dialogKey(m.CallID(), m.FromTag()))] != nil {
		// A new INVITE (no To tag) with the Call-ID and From tag of a call
		// in progress is refused, never taken as a replacement: the first
		// call goes on at the far end, so it keeps its slot, its meter and
		// its media. What the stages took for this request is given back.
		req.ReleaseHolds()
		w.replyVerdict(pkt, true, via, mergedVerdict)
		w.blockedCDR(pkt, req, "proxy", mergedVerdict.Reason, int(mergedVerdict.Code))
		return
	}
	if meth == sip.REFER && req.PeerKind == chain.PeerTrunk {
		// A REFER outside any dialog (RFC 3515 allows it) asks the far end
		// to place a call just as well as one inside a call does.
		if v := w.referVerdict(); v.Action == chain.Reply {
			req.ReleaseHolds()
			w.replyVerdict(pkt, true, via, v)
			return
		}
	}
	raw := bytes.Clone(pkt.Buf)
	if edits := req.HeaderEdits(); len(edits) > 0 {
		var ok bool
		if raw, ok = w.applyEdits(m, raw, edits); !ok { // edits.go
			req.ReleaseHolds()
			w.replyVerdict(pkt, true, via, editFailedVerdict)
			w.blockedCDR(pkt, req, "proxy", editFailedVerdict.Reason, int(editFailedVerdict.Code))
			return
		}
	}
	// The call's media session, and its offer (media.go).
	var sess chain.MediaSession
	var offer []byte
	if meth == sip.INVITE && rt.Media != nil {
		if sess = rt.Media.Open(req); sess != nil {
			if b := sdpBody(m); b != nil {
				var err error
				if offer, err = sess.Offer(true, b); err != nil {
					sess.Close()
					v := mediaVerdict(err)
					req.ReleaseHolds()
					w.replyVerdict(pkt, true, via, v)
					w.blockedCDR(pkt, req, "media", v.Reason, int(v.Code))
					return
				}
			}
		}
	}
	st := &serverTx{
		key:     string(w.serverKey(via, meth)),
		method:  meth,
		req:     raw,
		from:    flowFrom(pkt, via),
		created: w.now,
	}
	if rt.Alternates != nil {
		st.alternates = rt.Alternates(req)
	}
	st.retarget = retarget{ruri: req.RequestURI, body: offer}
	w.addServerTx(st)
	if meth == sip.INVITE {
		out := sip.AppendResponse(w.out[:0], m, 100, "Trying", nil, "", nil)
		w.out = out
		st.trying = bytes.Clone(out)
		w.send(st.from, st.trying, "response")

		d := w.newDialog(pkt, req, st)
		st.dialog = d
		if sess != nil {
			d.media = sess
			st.mediaDlg, st.fromCaller, st.offered = d, true, offer != nil
		}
	}
	st.retarget.topo = w.topoInitial(req, st.dialog)
	// Only an INVITE dialog keeps what stages held for the request; anything
	// held for another request is given back now.
	req.ReleaseHolds()
	target := flow{transport: req.Target.Transport, addr: req.Target.Addr}
	if st.dialog != nil {
		st.dialog.callee = target
	}
	w.sendClient(st, m, target, true)
}

// sendClient builds the outgoing copy of m (the request of st) for target and
// starts a client transaction for it.
func (w *worker) sendClient(st *serverTx, m *sip.Msg, target flow, initial bool) {
	l := w.p.opt.Sender.ListenerFor(target.transport, target.addr.Addr())
	if l == nil {
		w.p.log.Warn("no listener for target transport", "transport", target.transport.String(), "dst", target.addr.String())
		w.serverReply(st, 503)
		w.removeServerTx(st)
		return
	}
	target.listener = l
	branch := w.nextBranch()
	out, ok := w.buildForward(m, st.from.addr, l, branch, initial, st.from.listener, st.retarget)
	if !ok {
		w.serverReply(st, 500)
		return
	}
	ct := &clientTx{
		branch: branch,
		method: m.Method(),
		sent:   bytes.Clone(out),
		to:     target,
		server: st,
	}
	ct.key = string(clientKey(w.key[:0], []byte(branch), ct.method))
	st.client = ct
	if st.dialog != nil && initial {
		st.dialog.callee = target
	}
	w.addClientTx(ct)
	w.send(target, ct.sent, "request")
	w.startClientTimers(ct)
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

// onCancel answers a CANCEL hop by hop and cancels the INVITE it names
// (RFC 3261 16.10).
func (w *worker) onCancel(pkt *transport.Packet, via *sip.Via) {
	st := w.stx[string(w.serverKey(via, sip.INVITE))]
	if st == nil || st.method != sip.INVITE {
		w.replyVerdict(pkt, true, via, chain.ReplyWith(481, "no_transaction"))
		return
	}
	// A CANCEL must come from where the INVITE came from.
	if st.from.addr.Addr() != pkt.Src.Addr() {
		w.replyVerdict(pkt, true, via, chain.ReplyWith(481, "cancel_source_mismatch"))
		return
	}
	out := sip.AppendResponse(w.out[:0], &w.msg, 200, "OK", w.localTag(&w.msg), w.p.opt.ServerHeader, nil)
	w.out = out
	w.send(flowFrom(pkt, via), out, "response")
	if st.state >= stateCompleted || st.state == stateAccepted {
		return
	}
	st.cancelled = true
	st.alternates = nil
	if st.dialog != nil {
		st.dialog.cancelled = true
	}
	if ct := st.client; ct != nil && ct.state < stateCompleted {
		if ct.gotProvisional {
			w.sendCancel(ct)
		} else {
			ct.cancelPending = true
		}
	}
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

// onInDialog relays a request inside a dialog to the other party.
func (w *worker) onInDialog(pkt *transport.Packet, via *sip.Via) {
	m := &w.msg
	d, fromCaller := w.findDialog(m)
	if d == nil {
		d, fromCaller = w.topoFindDialog(m) // a masked Call-ID (topology_ids.go)
	}
	if d == nil {
		w.p.met.dropped(reasonNoDialog)
		if m.Method() != sip.ACK {
			w.replyVerdict(pkt, true, via, chain.ReplyWith(481, "no_dialog"))
		}
		return
	}
	if !w.fromDialogFlow(d, fromCaller, pkt) {
		// The right tags from the wrong place: Call-ID and tags travel in
		// every message of the call, so they prove nothing. A known peer
		// gets 481 (this dialog does not exist for it), a stranger silence;
		// the call goes on.
		w.p.met.dropped(reasonForeignDialog)
		if m.Method() != sip.ACK && w.req.PeerKind != chain.PeerUnknown {
			w.replyVerdict(pkt, true, via, chain.ReplyWith(481, reasonForeignDialog))
		}
		return
	}
	if meth := m.Method(); meth == sip.REFER && w.req.PeerKind == chain.PeerTrunk {
		if v := w.referVerdict(); v.Action == chain.Reply {
			w.replyVerdict(pkt, true, via, v)
			return
		}
	}
	var target flow
	if fromCaller {
		target = d.callee
		// the caller may have moved to another connection (TCP reconnect)
		if pkt.Conn != nil {
			d.caller.conn = pkt.Conn
		}
	} else {
		target = d.caller
	}
	meth := m.Method()
	topo, ok := w.topoInDialog(d, fromCaller) // topology.go
	if !ok {
		if meth != sip.ACK {
			w.replyVerdict(pkt, true, via, chain.ReplyWith(404, "topology_handle_mismatch"))
		}
		return
	}
	d.lastSeen = w.now
	if n, _ := m.CSeq(); fromCaller && n > d.callerCSeq {
		d.callerCSeq = n
	} else if !fromCaller && n > d.calleeCSeq && meth != sip.ACK {
		d.calleeCSeq = n
	}
	if meth == sip.ACK {
		// ACK for a 2xx: end to end, no transaction (RFC 3261 16.7 step 10).
		l := w.p.opt.Sender.ListenerFor(target.transport, target.addr.Addr())
		if l == nil {
			return
		}
		if target.listener == nil {
			target.listener = l
		}
		rt := retarget{topo: topo}
		if d.media != nil && d.ackAnswer && d.ackFromCaller == fromCaller {
			if b := sdpBody(m); b != nil {
				d.ackAnswer = false
				body, err := d.media.Answer(fromCaller, b)
				if err != nil {
					w.p.met.dropped("media_answer_refused")
					w.p.log.Warn("media: answer in ACK refused; ACK relayed without it", "call_id", d.callID, "err", err)
					body = []byte{}
				}
				rt.body = body
			}
		}
		out, ok := w.buildForward(m, pkt.Src, l, w.nextBranch(), false, pkt.Listener, rt)
		if ok {
			w.send(target, out, "request")
		}
		return
	}
	// A re-INVITE or UPDATE of an anchored call: its offer goes through the
	// session; a refused offer is answered here and goes no further.
	rt := retarget{topo: topo}
	anchored := d.media != nil && (meth == sip.INVITE || meth == sip.UPDATE)
	if anchored {
		if b := sdpBody(m); b != nil {
			body, err := d.media.Offer(fromCaller, b)
			if err != nil {
				w.replyVerdict(pkt, true, via, mediaVerdict(err))
				return
			}
			rt.body = body
		}
	}
	raw := bytes.Clone(pkt.Buf)
	if edits := w.req.HeaderEdits(); len(edits) > 0 {
		var ok bool
		if raw, ok = w.applyEdits(m, raw, edits); !ok { // edits.go (identities of an untrusted trunk)
			w.replyVerdict(pkt, true, via, editFailedVerdict)
			return
		}
	}
	st := &serverTx{
		key:     string(w.serverKey(via, meth)),
		method:  meth,
		req:     raw,
		from:    flowFrom(pkt, via),
		created: w.now,
	}
	st.retarget = rt
	if anchored {
		st.mediaDlg, st.fromCaller, st.offered = d, fromCaller, rt.body != nil
	}
	w.addServerTx(st)
	if meth == sip.BYE {
		// The call ends when the BYE is seen: the CDR's end time.
		w.endDialog(d, 200, "", "", "")
	}
	w.sendClient(st, m, target, false)
}

// newDialog starts tracking the INVITE dialog of a forwarded initial INVITE.
func (w *worker) newDialog(pkt *transport.Packet, req *chain.Request, st *serverTx) *dialog {
	m := &w.msg
	d := &dialog{
		callID:    string(m.CallID()),
		callerTag: string(m.FromTag()),
		caller:    st.from,
		lastSeen:  w.now,
		start:     pkt.Received,
		src:       pkt.Src.String(),
		transport: pkt.Transport.String(),
	}
	if d.start.IsZero() {
		d.start = w.now
	}
	d.key = d.callID + "\x00" + d.callerTag
	d.nholds = req.TakeHolds(&d.holds)
	d.inviteTx = st
	d.callerCSeq, _ = m.CSeq()
	d.callerFrom = string(m.Get(sip.HdrFrom))
	if na, _, err := sip.ParseNameAddr(m.Get(sip.HdrContact)); err == nil {
		d.callerContact = string(na.URI)
	}
	w.fillCallParties(d, req)
	d.identity = req.Identity
	// forwardInitial refused an INVITE with a live dialog's key (482), so
	// the key is free here.
	w.dialogs[d.key] = d
	w.dialogsPeak = max(w.dialogsPeak, len(w.dialogs))
	w.activeCalls.Add(1)
	w.p.met.activeCalls.Inc()
	w.p.met.dialogs.Inc()
	return d
}

func (w *worker) fillCallParties(d *dialog, req *chain.Request) {
	m := req.Msg
	switch req.PeerKind {
	case chain.PeerTrunk:
		d.trunk = req.Trunk.Name
		d.upstream = req.Trunk.Upstream
		d.direction = "originating"
	case chain.PeerUpstream:
		d.upstream = req.Upstream.Name
		d.direction = "terminating"
		if req.DestTrunk != nil {
			d.trunk = req.DestTrunk.Name
		}
	}
	d.from = partyNumber(w.tmp[:0], headerURIUser(m.Get(sip.HdrFrom)))
	d.to = partyNumber(w.tmp[:0], requestURIUser(m.RequestURI()))
}

// findDialog finds the dialog of an in-dialog request and tells whether it
// comes from the caller. The dialog is the full triple of RFC 3261 12: once
// the call is answered, the request's other tag must be the callee's (the
// callee's tag is not known for sure before: early dialogs of a forked
// INVITE each have their own).
func (w *worker) findDialog(m *sip.Msg) (*dialog, bool) {
	from, to := m.FromTag(), m.ToTag()
	if d := w.dialogs[string(w.dialogKey(m.CallID(), from))]; d != nil {
		if d.confirmed && d.calleeTag != string(to) {
			return nil, false
		}
		return d, true
	}
	if d := w.dialogs[string(w.dialogKey(m.CallID(), to))]; d != nil && d.calleeTag == string(from) {
		return d, false
	}
	return nil, false
}

// fromDialogFlow reports whether an in-dialog request received in pkt comes
// from the flow of its side of dialog d: the address the caller's INVITE
// came from, or the address the INVITE was sent to. The upstream's side
// also accepts any address of the same upstream (a PBX cluster sends its
// BYE from another node); a trunk's side is held to its one address, since
// a trunk with many addresses (digest phones) may share them with others.
func (w *worker) fromDialogFlow(d *dialog, fromCaller bool, pkt *transport.Packet) bool {
	side := d.callee
	if fromCaller {
		side = d.caller
	}
	if pkt.Src.Addr().Unmap() == side.addr.Addr().Unmap() {
		return true
	}
	upstreamSide := fromCaller == (d.direction == "terminating")
	req := &w.req
	return upstreamSide && d.upstream != "" && req.PeerKind == chain.PeerUpstream && req.Upstream.Name == d.upstream
}
