package proxy

// Topology hiding: the protected side (an upstream: PBX, softswitch) stays
// hidden from trunks and their phones, per trunk (config Trunk.TopologyHiding,
// on by default), for calls both ways: from a trunk to its upstream (the
// upstream is the callee) and from an upstream to a trunk or a registered
// phone (the upstream is the caller).
//
// What a trunk would otherwise learn from the upstream's messages, and what
// happens to it:
//
//   - Contact (requests the upstream sends, initial and in-dialog, and its
//     1xx/2xx responses): replaced by sipwarden's own address on the
//     listener that faces the trunk, <sip:swt-HANDLE@edge;transport=x>.
//     Contacts of 3xx responses (redirect targets) and of REGISTER
//     responses (the phone's own bindings) are left alone.
//   - Via (requests the upstream sends): all of its entries are removed, only
//     ours goes out; the responses get them back from the server
//     transaction's copy of the request (serverTx.req), so the upstream sees
//     exactly its own Via list, as RFC 3261 requires.
//   - Record-Route: the upstream side's entries (those the upstream's
//     proxies put in an INVITE it sends, and those above ours in its
//     responses to an INVITE it receives) are removed before they reach the
//     trunk, and kept in the dialog: they are put back at the bottom of the
//     Record-Route of the trunk's responses (so the upstream learns its
//     full route set), and become the Route of requests the trunk sends
//     towards the upstream.
//   - Server, User-Agent and Warning fields of the upstream's messages are
//     removed (product, version, often a host name or address).
//
// Why a dialog handle, and why it is checked. Kamailio's topos strips every
// routing header and keeps what it needs in a database keyed by a UUID in
// the Contact user part it substitutes; OpenSIPS' topology_hiding does the
// same with its dialog module (or encodes everything into the Contact).
// sipwarden already keeps every INVITE dialog in its worker (dialog.go),
// found by Call-ID and tags, so the dialog holds what must be restored: the
// upstream's Contact (callerContact or calleeContact, refreshed by
// re-INVITE/UPDATE and their 2xx) and its route set (topoDialog.routes).
// The user part of the Contact we substitute is a handle of the dialog, an
// HMAC-SHA256 (per-worker random key, truncated to 80 bits) of its Call-ID
// and caller tag, so that it cannot be forged or guessed from what a trunk
// sees. The dialog itself is found by Call-ID and tags, as for every
// in-dialog request (the worker is chosen by Call-ID, so the handle cannot
// replace that look-up); the handle in the Request-URI is then checked
// against the dialog's in constant time, and the Request-URI is mapped back
// to the upstream's Contact, with the upstream's route set inserted as
// Route. A Request-URI that carries another handle, or that names an
// address that is not sipwarden's, gets 404 (an ACK is dropped): a trunk
// cannot steer in-dialog requests at targets of its choosing behind the
// edge (before, the Request-URI went to the upstream as the trunk wrote
// it). A Request-URI at one of our addresses without any handle is mapped
// too: user agents that keep addressing the request line to where they sent
// the INVITE (SIPp's built-in uac does) still work, and the upstream still
// gets only its own Contact. The mapping needs no state beyond the dialog,
// costs no allocation per message (the handle is computed once, when the
// dialog starts) and dies with it.
//
// What is not hidden, and why:
//
//   - The SDP (o= and c= lines, and the media the upstream sends from) is
//     the media relay's job: with media anchoring on (config media) the
//     trunk sees only the relay's address. With it off, the upstream's
//     media address reaches the trunk in the SDP and in the RTP itself.
//   - In calls the upstream makes, its Call-ID is replaced and an IP
//     address in the host of its From and P-Asserted-Identity by ours
//     (topology_ids.go). A host name there stays (the operator chose it),
//     and so does the To the upstream writes (it names the trunk's side).
//   - Other header fields the upstream adds (Diversion, History-Info,
//     Remote-Party-ID, X- headers, the Path and Service-Route of REGISTERs
//     forwarded to it) pass unchanged; configure the upstream not to put
//     addresses there.
//   - Redirects: the Contacts of a 3xx are where the caller is sent, and
//     are relayed as the upstream wrote them.
//   - Requests outside INVITE dialogs (OPTIONS, MESSAGE) get the same Via,
//     Contact and header treatment, but sipwarden keeps no dialog for
//     SUBSCRIBE or REFER, so their Contact carries no handle.

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"hash"

	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/sip"
	"github.com/sipwarden/sipwarden/internal/transport"
)

// topoSide says which party of a dialog is the hidden (protected) one.
type topoSide uint8

const (
	topoOff        topoSide = iota
	topoHideCaller          // a call from an upstream to a trunk or phone
	topoHideCallee          // a call from a trunk to its upstream
)

const (
	topoUserPrefix = "swt-"
	topoMACLen     = 10 // bytes of the HMAC kept: 80 bits
	topoUserLen    = len(topoUserPrefix) + 2*topoMACLen
)

// topoDialog is what a dialog keeps to hide its protected party.
type topoDialog struct {
	side topoSide
	// user is the Contact user part we give the trunk: the dialog's handle.
	user [topoUserLen]byte
	// routes is the Route value for requests towards the hidden party
	// (its side's Record-Route entries, in route order), "" for none; for
	// a hidden caller it is also what goes back at the bottom of the
	// Record-Route of the responses to its INVITE.
	routes    string
	routesSet bool
	// callID is the Call-ID the trunk sees of a call from the hidden
	// upstream, from its From ("" when unchanged; topology_ids.go).
	callID, from string
}

// topoTx says what one forwarded request (and its responses) must hide.
type topoTx struct {
	dlg *dialog // the INVITE dialog, when there is one
	// fromHidden: the request comes from the protected side (its Vias,
	// Contact, Record-Route and product headers go; its Vias come back in
	// the responses).
	fromHidden bool
	// toHidden: the request goes to the protected side (its responses are
	// scrubbed).
	toHidden bool
	// ruri is the hidden party's Contact that replaces the Request-URI
	// (our handle) of an in-dialog request from the trunk.
	ruri string
}

// topoWorker is a worker's topology-hiding scratch.
type topoWorker struct {
	mac   hash.Hash
	sum   [sha256.Size]byte
	buf   []byte
	uri   []byte
	route []byte
	rr    [16][]byte
	// Call-ID and From hiding (topology_ids.go)
	byCallID            map[string]*dialog
	cid, from, pai, tmp []byte
}

// hidesFor reports whether req, an initial request, is between a trunk
// that hides its upstream and that upstream.
func hidesFor(req *chain.Request) bool {
	switch req.PeerKind {
	case chain.PeerTrunk:
		return req.Trunk != nil && req.Trunk.TopologyHiding
	case chain.PeerUpstream:
		return req.DestTrunk != nil && req.DestTrunk.TopologyHiding
	}
	return false
}

// topoInitial decides what an initial request forwarded by the chain hides,
// and starts the hiding of its dialog d (nil for requests other than INVITE).
// w.msg is the request.
func (w *worker) topoInitial(req *chain.Request, d *dialog) topoTx {
	if !hidesFor(req) {
		return topoTx{}
	}
	t := topoTx{dlg: d}
	side := topoHideCallee
	if req.PeerKind == chain.PeerUpstream {
		t.fromHidden, side = true, topoHideCaller
	} else {
		t.toHidden = true
	}
	if d != nil {
		d.topo.side = side
		w.topoHandle(d, w.msg.CallID(), w.msg.FromTag())
	}
	return t
}

var nul = [1]byte{0}

// topoHandle computes d's handle from its Call-ID and caller tag.
func (w *worker) topoHandle(d *dialog, callID, fromTag []byte) {
	if w.topo.mac == nil {
		var key [32]byte
		_, _ = rand.Read(key[:])
		w.topo.mac = hmac.New(sha256.New, key[:])
	}
	mac := w.topo.mac
	mac.Reset()
	_, _ = mac.Write(callID)
	_, _ = mac.Write(nul[:])
	_, _ = mac.Write(fromTag)
	sum := mac.Sum(w.topo.sum[:0])
	copy(d.topo.user[:], topoUserPrefix)
	hex.Encode(d.topo.user[len(topoUserPrefix):], sum[:topoMACLen])
}

// topoInDialog decides what an in-dialog request (w.msg) of d hides. For a
// request from the trunk towards the hidden party it checks the handle in
// the Request-URI (ok false: refuse it) and returns the Request-URI to put
// in its place. A target refresh from the hidden party updates its Contact.
func (w *worker) topoInDialog(d *dialog, fromCaller bool) (t topoTx, ok bool) {
	if d.topo.side == topoOff {
		return topoTx{}, true
	}
	m := &w.msg
	hiddenSender := fromCaller == (d.topo.side == topoHideCaller)
	t.dlg = d
	if hiddenSender {
		t.fromHidden = true
		if meth := m.Method(); meth == sip.INVITE || meth == sip.UPDATE {
			w.topoRefresh(d, fromCaller)
		}
		return t, true
	}
	t.toHidden = true
	if !w.topoTargetOK(d, m.RequestURI()) {
		w.p.met.dropped("topology_handle_mismatch")
		return t, false
	}
	t.ruri = d.callerContact
	if fromCaller {
		t.ruri = d.calleeContact
	}
	return t, true
}

// topoTargetOK reports whether ruri, the Request-URI of an in-dialog request
// from the trunk towards the hidden party of d, may be mapped back: our
// Contact with d's handle, or (for user agents that keep addressing the
// request line to where they sent the INVITE, as SIPp's built-in scenarios
// do) one of our own addresses without any handle. A handle that is not
// d's, or an address that is not ours, is refused.
func (w *worker) topoTargetOK(d *dialog, ruri []byte) bool {
	u, err := sip.ParseURI(ruri)
	if err != nil {
		return false
	}
	if subtle.ConstantTimeCompare(u.User, d.topo.user[:]) == 1 {
		return true
	}
	return !bytes.HasPrefix(u.User, []byte(topoUserPrefix)) && w.p.isLocalURI(ruri)
}

// topoRefresh records the Contact of w.msg (a target refresh request or its
// 2xx) as the Contact of the caller or callee of d.
func (w *worker) topoRefresh(d *dialog, caller bool) {
	na, _, err := sip.ParseNameAddr(w.msg.Get(sip.HdrContact))
	if err != nil {
		return
	}
	cur := &d.calleeContact
	if caller {
		cur = &d.callerContact
	}
	if *cur != string(na.URI) {
		*cur = string(na.URI)
	}
}

// topoRequest records in w.ed what the copy of m going out on listener out
// must hide. It runs after buildForward placed our Via and Record-Route,
// so that deleting a field at the same place comes after those insertions.
func (w *worker) topoRequest(m *sip.Msg, out *transport.Listener, t *topoTx, initial bool) {
	ed := &w.ed
	if t.ruri != "" {
		w.topo.uri = append(w.topo.uri[:0], t.ruri...)
		ed.SetRequestURI(w.topo.uri)
	}
	if t.toHidden && !initial && t.dlg != nil && t.dlg.topo.routes != "" {
		w.topo.route = append(w.topo.route[:0], t.dlg.topo.routes...)
		ed.InsertHeader(m.NumHeaders(), "Route", w.topo.route)
	}
	if !t.fromHidden {
		if t.toHidden {
			w.topoIDsRequest(m, t.dlg, false, out) // topology_ids.go
		}
		return
	}
	for i := m.Find(sip.HdrVia, 0); i >= 0; i = m.Find(sip.HdrVia, i+1) {
		ed.DeleteHeader(i)
	}
	d := t.dlg
	save := initial && d != nil && d.topo.side == topoHideCaller && !d.topo.routesSet
	var saved []byte
	for i := m.Find(sip.HdrRecordRoute, 0); i >= 0; i = m.Find(sip.HdrRecordRoute, i+1) {
		if save {
			if len(saved) > 0 {
				saved = append(saved, ", "...)
			}
			saved = append(saved, m.Header(i).Value...)
		}
		ed.DeleteHeader(i)
	}
	if save {
		d.topo.routes, d.topo.routesSet = string(saved), true
	}
	if initial && d != nil && d.topo.side == topoHideCaller && d.topo.callID == "" {
		w.topoMaskCallID(m, d, out)
	}
	w.topoIDsRequest(m, d, true, out)
	w.topoScrub(m, out, d, true)
}

// topoScrub records the removal of the hidden party's product headers and
// the replacement of its Contact by ours on listener l (contact false:
// Contact left alone).
func (w *worker) topoScrub(m *sip.Msg, l *transport.Listener, d *dialog, contact bool) {
	ed := &w.ed
	for i := 0; i < m.NumHeaders(); i++ {
		switch m.Header(i).ID {
		case sip.HdrServer, sip.HdrUserAgent, sip.HdrWarning:
			ed.DeleteHeader(i)
		}
	}
	if !contact {
		return
	}
	first := m.Find(sip.HdrContact, 0)
	if first < 0 {
		return
	}
	for i := m.Find(sip.HdrContact, first+1); i >= 0; i = m.Find(sip.HdrContact, i+1) {
		ed.DeleteHeader(i)
	}
	if l == nil || string(m.Header(first).Value) == "*" {
		ed.DeleteHeader(first)
		return
	}
	b := w.topo.buf[:0]
	b = append(b, "<sip:"...)
	if d != nil && d.topo.side != topoOff {
		b = append(b, d.topo.user[:]...)
		b = append(b, '@')
	}
	b = append(b, l.Advertise()...)
	switch l.Transport() {
	case sip.TCP:
		b = append(b, ";transport=tcp"...)
	case sip.TLS:
		b = append(b, ";transport=tls"...)
	}
	b = append(b, '>')
	w.topo.buf = b
	ed.SetHeaderValue(first, b)
}

// topoResponse records in w.ed what response w.msg (code) to the request of
// st must hide or get back. vi is our Via field. It reports whether it took
// care of our Via (replaced by the hidden sender's own Via list).
func (w *worker) topoResponse(st *serverTx, code int, vi int) bool {
	t := &st.retarget.topo
	if !t.fromHidden && !t.toHidden {
		return false
	}
	m := &w.msg
	ed := &w.ed
	d := t.dlg
	initialInvite := st.dialog != nil && st.dialog == d
	if t.toHidden {
		_, meth := m.CSeq()
		contact := code > 100 && code < 300 && meth != sip.REGISTER
		if d != nil && contact {
			switch {
			case initialInvite && code < 200 && d.calleeContact == "":
				w.topoRefresh(d, false) // the remote target of an early dialog
			case !initialInvite && code >= 200 && (meth == sip.INVITE || meth == sip.UPDATE):
				w.topoRefresh(d, d.topo.side == topoHideCaller) // a target refresh answered
			}
		}
		l := st.from.listener
		if l == nil {
			l = w.p.opt.Sender.ListenerFor(st.from.transport, st.from.addr.Addr())
		}
		w.topoScrub(m, l, d, contact)
		if initialInvite && d.topo.side == topoHideCallee && code > 100 && code < 300 {
			w.topoStripRR(m, d, code >= 200)
		}
		if d != nil && d.topo.callID != "" && w.aux.Parse(st.req) == nil {
			w.topoIDsResponse(m, d, &w.aux, true) // topology_ids.go
		}
		return false
	}
	// fromHidden: the hidden sender's Vias come back in place of ours.
	if err := w.aux.Parse(st.req); err != nil {
		return false
	}
	b := w.topo.buf[:0]
	for i := w.aux.Find(sip.HdrVia, 0); i >= 0; i = w.aux.Find(sip.HdrVia, i+1) {
		if len(b) > 0 {
			b = append(b, ", "...)
		}
		b = append(b, w.aux.Header(i).Value...)
	}
	if len(b) == 0 {
		return false
	}
	w.topo.buf = b
	ed.SetHeaderValue(vi, b)
	w.topoIDsResponse(m, d, &w.aux, false) // topology_ids.go
	if initialInvite && d.topo.routes != "" && code > 100 && code < 300 && m.Find(sip.HdrRecordRoute, 0) >= 0 {
		w.topo.route = append(w.topo.route[:0], d.topo.routes...)
		ed.InsertHeader(m.NumHeaders(), "Record-Route", w.topo.route)
	}
	return true
}

// topoStripRR removes the Record-Route entries above our own from a
// response of a hidden callee (its side's proxies) and, when save is set
// or nothing was saved yet, keeps them reversed (route order from us) in d.
func (w *worker) topoStripRR(m *sip.Msg, d *dialog, save bool) {
	ed := &w.ed
	n := 0
	found := false
	for i := m.Find(sip.HdrRecordRoute, 0); i >= 0 && !found; i = m.Find(sip.HdrRecordRoute, i+1) {
		value := m.Header(i).Value
		rest := value
		for len(rest) > 0 {
			na, next, err := sip.ParseNameAddr(rest)
			if err != nil {
				rest = nil // unreadable: hidden as a whole
				break
			}
			if w.p.isLocalURI(na.URI) {
				found = true
				break
			}
			entry := rest[:len(rest)-len(next)]
			if n < len(w.topo.rr) {
				w.topo.rr[n] = trimListEntry(entry)
				n++
			}
			rest = next
		}
		switch {
		case len(rest) == 0:
			ed.DeleteHeader(i)
		case len(rest) < len(value):
			ed.SetHeaderValue(i, rest)
		}
	}
	if !save && d.topo.routesSet {
		return // the 2xx's route set is the one that counts; a 1xx's until then
	}
	var b []byte
	for k := n - 1; k >= 0; k-- {
		if len(b) > 0 {
			b = append(b, ", "...)
		}
		b = append(b, w.topo.rr[k]...)
		w.topo.rr[k] = nil
	}
	d.topo.routes, d.topo.routesSet = string(b), true
}

// trimListEntry trims the white space and the separating comma after one
// entry of a comma-separated header value.
func trimListEntry(b []byte) []byte {
	for len(b) > 0 {
		switch b[len(b)-1] {
		case ' ', '\t', '\r', '\n', ',':
			b = b[:len(b)-1]
			continue
		}
		break
	}
	return b
}
