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
