package proxy

import (
	"bytes"
	"hash/maphash"
	"strconv"
	"time"

	"github.com/sipwarden/sipwarden/internal/cdr"
	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/e164"
	"github.com/sipwarden/sipwarden/internal/sip"
	"github.com/sipwarden/sipwarden/internal/transport"
)

const (
	dispAnswered    = cdr.Answered
	dispFailed      = cdr.Failed
	dispBlocked     = cdr.Blocked
	dispInterrupted = cdr.Interrupted
)

// endDialog ends d: its CDR is written, what its call held is released and it
// is forgotten. disp "" derives the disposition from code.
func (w *worker) endDialog(d *dialog, code int, disp cdr.Disposition, stage, reason string) {
	if w.dialogs[d.key] != d {
		return
	}
	delete(w.dialogs, d.key)
	w.topoEnd(d) // topology_ids.go
	w.dialogs = shrink(w.dialogs, &w.dialogsPeak)
	w.timers.cancel(&d.idle) // the heap no longer keeps the ended call
	w.activeCalls.Add(-1)
	w.p.met.activeCalls.Dec()
	w.p.met.dialogs.Dec()
	d.release()
	var callerMedia, calleeMedia string
	if d.media != nil {
		callerMedia, calleeMedia = d.media.Close()
		d.media = nil
	}
	if stage == "" && reason == "" && d.endReason != "" {
		stage, reason = d.endStage, d.endReason // a hangup of a ringing call
		if d.interrupted {
			disp = dispInterrupted
		}
	}
	if d.confirmed && disp == "" {
		disp = dispAnswered
	}
	if disp == "" {
		disp = cdr.DispositionFor(code, d.cancelled)
	}
	if d.confirmed && code == 0 {
		code = 200
	}
	if w.p.opt.CDR == nil {
		return
	}
	rec := d.record(w.now, code, disp, stage, reason)
	rec.CallerMedia, rec.CalleeMedia = callerMedia, calleeMedia
	rec.Identity = d.identity
	if d.confirmed {
		end := w.now
		if reason == "dialog_timeout" {
			end = d.lastSeen
			rec.End = end
		}
		rec.Duration = end.Sub(d.answer)
	}
	w.p.opt.CDR.Write(rec)
}

// record is the CDR of d, ended at end.
func (d *dialog) record(end time.Time, code int, disp cdr.Disposition, stage, reason string) cdr.Record {
	return cdr.Record{
		CallID:      d.callID,
		Trunk:       d.trunk,
		Upstream:    d.upstream,
		Direction:   d.direction,
		SrcAddr:     d.src,
		Transport:   d.transport,
		From:        d.from,
		To:          d.to,
		Start:       d.start,
		Answer:      d.answer,
		End:         end,
		FinalCode:   code,
		Disposition: disp,
		Stage:       stage,
		Reason:      reason,
	}
}

// blockedCDR records an initial INVITE from a known peer that a stage refused
// (one that did not authenticate is only counted: reflect.go).
// Unknown sources get no CDR: a flood must not fill the database.
func (w *worker) blockedCDR(pkt *transport.Packet, req *chain.Request, stage, reason string, code int) {
	if req.PeerKind == chain.PeerUnknown || req.ParseErr != nil || req.Msg.Method() != sip.INVITE || req.InDialog {
		return
	}
	if unauthenticated(req) {
		// A digest trunk's INVITE that did not authenticate (a challenge,
		// a refusal): anyone can send those, from any address, so they
		// are counted and sampled, never one CDR each.
		w.unauthRefused(req, stage, reason, code)
		return
	}
	if w.p.opt.CDR == nil {
		return
	}
	d := dialog{start: pkt.Received, src: pkt.Src.String(), transport: pkt.Transport.String()}
	if d.start.IsZero() {
		d.start = w.now
	}
	d.callID = string(req.Msg.CallID())
	w.fillCallParties(&d, req)
	rec := d.record(w.now, code, dispBlocked, stage, reason)
	rec.Identity = req.Identity
	w.p.opt.CDR.Write(rec)
}

// partyNumber turns a URI user part into the number a CDR shows: E.164 when
// it can be made so, else the user part as written.
func partyNumber(scratch, user []byte) string {
	if len(user) == 0 {
		return ""
	}
	if n, ok := e164.Normalize(user, scratch); ok {
		return string(n)
	}
	return string(user)
}

// headerURIUser returns the user part of the URI in a From/To-style value.
func headerURIUser(value []byte) []byte {
	na, _, err := sip.ParseNameAddr(value)
	if err != nil {
		return nil
	}
	return requestURIUser(na.URI)
}

// requestURIUser returns the user part of a sip:, sips: or tel: URI.
func requestURIUser(uri []byte) []byte {
	u, err := sip.ParseURI(uri)
	if err != nil {
		return nil
	}
	return u.User
}

func hashBytes(seed maphash.Seed, a, b []byte) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	_, _ = h.Write(a)
	_ = h.WriteByte(0)
	_, _ = h.Write(b)
	return h.Sum64()
}

// localAddr is one address sipwarden answers to, for recognising our own
// Route entries.
type localAddr struct {
	host string
	port int
}

// SetListeners tells the proxy which addresses are its own (bound and
// advertised), so that Route entries pointing at them are consumed.
func (p *Proxy) SetListeners(ls []*transport.Listener) {
	var locals []localAddr
	for _, l := range ls {
		a := l.Addr()
		locals = append(locals, localAddr{host: a.Addr().Unmap().String(), port: int(a.Port())})
		host, port := splitHostPort(l.Advertise())
		if port == 0 {
			port = int(a.Port())
		}
		locals = append(locals, localAddr{host: host, port: port})
	}
	p.locals.Store(&locals)
}

// isLocalURI reports whether uri (sip: or sips:) names one of our addresses.
func (p *Proxy) isLocalURI(uri []byte) bool {
	u, err := sip.ParseURI(uri)
	if err != nil {
		return false
	}
	port := u.Port
	if port == 0 {
		port = 5060
		if len(u.Scheme) == 4 {
			port = 5061
		}
	}
	ls := p.locals.Load()
	if ls == nil {
		return false
	}
	for _, l := range *ls {
		if l.port == port && l.host == string(u.Host) {
			return true
		}
	}
	return false
}

// splitHostPort splits "host:port", "[v6]:port" or "host".
func splitHostPort(s string) (string, int) {
	if len(s) > 0 && s[0] == '[' {
		end := -1
		for i := range s {
			if s[i] == ']' {
				end = i
				break
			}
		}
		if end < 0 {
			return s, 0
		}
		host := s[1:end]
		if end+1 < len(s) && s[end+1] == ':' {
			p, _ := strconv.Atoi(s[end+2:])
			return host, p
		}
		return host, 0
	}
	last := -1
	for i := range s {
		if s[i] == ':' {
			if last >= 0 {
				return s, 0 // bare IPv6
			}
			last = i
		}
	}
	if last < 0 {
		return s, 0
	}
	p, _ := strconv.Atoi(s[last+1:])
	return s[:last], p
}

// routeSets records, from the 2xx that confirms d (m, as the callee side
// sent it), the Route values of a BYE of our own towards each side (RFC
// 3261 12.1 and 16.12): the Record-Route list runs from the callee's side
// to the caller's, with our own entries somewhere in it. The entries before
// ours, nearest first, lead to the callee; the entries after ours, in order,
// lead to the caller. Nothing is allocated when we are the only proxy that
// recorded a route.
func (w *worker) routeSets(d *dialog, m *sip.Msg) {
	first, last := -1, -1 // our entries: the first and the last index
	n := 0
	w.eachRecordRoute(m, func(uri []byte, _ []byte) {
		if w.p.isLocalURI(uri) {
			if first < 0 {
				first = n
			}
			last = n
		}
		n++
	})
	if first < 0 || (first == 0 && last == n-1) {
		return
	}
	var callee [][]byte
	var caller []byte
	i := 0
	w.eachRecordRoute(m, func(_ []byte, raw []byte) {
		switch {
		case i < first:
			callee = append(callee, raw)
		case i > last:
			if len(caller) > 0 {
				caller = append(caller, ", "...)
			}
			caller = append(caller, raw...)
		}
		i++
	})
	var b []byte
	for k := len(callee) - 1; k >= 0; k-- {
		if len(b) > 0 {
			b = append(b, ", "...)
		}
		b = append(b, callee[k]...)
	}
	d.calleeRoute, d.callerRoute = string(b), string(caller)
}

// eachRecordRoute calls f with the URI and the whole text of each entry of
// m's Record-Route fields, in order; it stops at an entry it cannot parse.
func (w *worker) eachRecordRoute(m *sip.Msg, f func(uri, raw []byte)) {
	for i := m.Find(sip.HdrRecordRoute, 0); i >= 0; i = m.Find(sip.HdrRecordRoute, i+1) {
		value := m.Header(i).Value
		for len(value) > 0 {
			na, rest, err := sip.ParseNameAddr(value)
			if err != nil {
				return
			}
			raw := bytes.TrimRight(value[:len(value)-len(rest)], " \t\r\n,")
			f(na.URI, bytes.TrimLeft(raw, " \t"))
			value = rest
		}
	}
}

// dialog is an INVITE dialog from the initial INVITE to its end.
type dialog struct {
	key       string // callID + "\x00" + caller tag
	callID    string
	callerTag string
	calleeTag string
	confirmed bool
	caller    flow // where the caller is (requests from the callee go there)
	callee    flow // where the callee is (requests from the caller go there)
	lastSeen  time.Time

	holds  [chain.MaxHolds]chain.Releaser
	nholds int

	// CDR fields
	trunk, upstream, direction string
	src                        string
	transport                  string
	from, to                   string
	start, answer              time.Time
	cancelled                  bool

	// media is the call's media session (nil: not anchored). ackAnswer is
	// set when a 2xx carried an offer (offerless INVITE): the ACK from the
	// INVITE's sender (ackFromCaller) carries the answer.
	media    chain.MediaSession
	identity string // the STIR/SHAKEN outcome, for the CDR

	// For Hangup (hangup.go): the caller's From and Contact (from the
	// INVITE), the callee's To and Contact (from the 2xx), the INVITE's
	// server transaction while it lasts, the highest CSeq seen from each
	// side, and the stage and reason a hangup of a ringing call leaves for
	// the CDR.
	callerFrom, callerContact string
	calleeTo, calleeContact   string
	inviteTx                  *serverTx
	callerCSeq, calleeCSeq    uint32
	endStage, endReason       string
	ackAnswer, ackFromCaller  bool
	// idle is the inactivity timer of a confirmed dialog.
	idle timer
	// interrupted: the call was ended by a stop (hangup.go), so its CDR
	// says interrupted.
	interrupted bool
	// callerRoute and calleeRoute are the Route values of a BYE of our own
	// towards each side: the dialog's Record-Route entries on that side of
	// us, nearest first ("" when we are the last proxy on that side).
	callerRoute, calleeRoute string
	// topo hides the protected party of the call (topology.go).
	topo topoDialog
}

// answered tells the call's holds that implement chain.Answerer.
func (d *dialog) answered(at time.Time) {
	for _, h := range d.holds[:d.nholds] {
		if a, ok := h.(chain.Answerer); ok {
			a.Answered(at)
		}
	}
}

func (d *dialog) release() {
	for i := range d.holds[:d.nholds] {
		d.holds[i].Release()
		d.holds[i] = nil
	}
	d.nholds = 0
}

// dialogKey builds the key of the dialog of callID and the caller's tag in
// w.key (the layout of chain.CallKey).
func (w *worker) dialogKey(callID, callerTag []byte) []byte {
	k := append(w.key[:0], callID...)
	k = append(k, 0)
	k = append(k, callerTag...)
	w.key = k
	return k
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
