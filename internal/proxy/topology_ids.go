package proxy

// Call-ID and From of calls the upstream makes (topology hiding, continued).
//
// An upstream that calls a trunk chose the Call-ID and the From of the
// dialog, and many write their own address there: SIPp's Call-ID is
// "1-4242@10.0.0.5" and its From "sip:sipp@10.0.0.5:5060", Asterisk's From
// host is its own address unless from_domain is set. For a call from a
// hidden upstream (topoHideCaller):
//
//   - the trunk sees another Call-ID, "swc" + an HMAC of the upstream's
//     and of its From tag (hex) + "-" + a small counter. The counter is chosen so that the new
//     Call-ID hashes to the worker that owns the call (Proxy.HandlePacket
//     picks the worker by a hash of the Call-ID): the trunk's requests and
//     responses then reach the dialog without any change to the worker
//     choice. Messages from the trunk get the upstream's Call-ID back; the
//     dialog is also found under the masked one (topo.byCallID).
//   - a From or P-Asserted-Identity whose host is an IP address has that
//     host and port replaced by sipwarden's address on the trunk's side;
//     the user part, display name, parameters and tag stay. The upstream
//     gets its own From back in the responses (from the server
//     transaction's copy of its request) and as the To of the trunk's
//     requests (the dialog's callerFrom). A host name is the operator's
//     choice and stays.
//
// Calls from a trunk to its upstream need neither: their Call-ID and From
// are the trunk's, and the upstream's To tag is all it adds.

import (
	"bytes"
	"encoding/hex"
	"hash/maphash"
	"strconv"

	"github.com/sipwarden/sipwarden/internal/sip"
	"github.com/sipwarden/sipwarden/internal/transport"
)

const topoCallIDPrefix = "swc"

var one = [1]byte{1}

// topoMaskCallID gives d (a call from a hidden upstream, m its INVITE) the
// Call-ID the trunk will see, and the From it will see.
func (w *worker) topoMaskCallID(m *sip.Msg, d *dialog, out *transport.Listener) {
	mac := w.topo.mac // set by topoHandle, which ran first
	mac.Reset()
	_, _ = mac.Write(one[:])
	_, _ = mac.Write(m.CallID())
	_, _ = mac.Write(nul[:])
	_, _ = mac.Write(m.FromTag()) // one masked Call-ID per dialog
	sum := mac.Sum(w.topo.sum[:0])
	b := append(w.topo.buf[:0], topoCallIDPrefix...)
	b = hex.AppendEncode(b, sum[:12])
	b = append(b, '-')
	n := len(b)
	workers := uint64(len(w.p.workers))
	for k := uint64(0); ; k++ {
		b = strconv.AppendUint(b[:n], k, 36)
		if workers <= 1 || maphash.Bytes(w.p.seed, b)%workers == uint64(w.id) || k > 1<<16 {
			break
		}
	}
	w.topo.buf = b
	d.topo.callID = string(b)
	if w.topo.byCallID == nil {
		w.topo.byCallID = make(map[string]*dialog)
	}
	w.topo.byCallID[d.topo.callID] = d
	if from, ok := w.topoHostRewrite(m.Get(sip.HdrFrom), out); ok {
		d.topo.from = string(from)
	}
}

// topoEnd forgets what d registered for topology hiding.
func (w *worker) topoEnd(d *dialog) {
	if d.topo.callID != "" && w.topo.byCallID[d.topo.callID] == d {
		delete(w.topo.byCallID, d.topo.callID)
	}
}

// topoFindDialog finds the dialog of an in-dialog request from a trunk that
// carries the masked Call-ID of a call from a hidden upstream (the trunk is
// that call's callee). It reports whether the request comes from the
// caller (never: the trunk is the callee).
func (w *worker) topoFindDialog(m *sip.Msg) (*dialog, bool) {
	d := w.topo.byCallID[string(m.CallID())]
	if d == nil || w.dialogs[d.key] != d || d.calleeTag != string(m.FromTag()) || d.callerTag != string(m.ToTag()) {
		return nil, false
	}
	return d, false
}

// topoIDsRequest records the Call-ID, From and To edits of a request of d
// (m): from the hidden upstream (toTrunk), the masked Call-ID and From; from
// the trunk, the upstream's own Call-ID, and its own From as the To.
func (w *worker) topoIDsRequest(m *sip.Msg, d *dialog, toTrunk bool, out *transport.Listener) {
	if d == nil || d.topo.callID == "" {
		return
	}
	ed := &w.ed
	if i := m.Find(sip.HdrCallID, 0); i >= 0 {
		id := d.topo.callID
		if !toTrunk {
			id = d.callID
		}
		w.topo.cid = append(w.topo.cid[:0], id...)
		ed.SetHeaderValue(i, w.topo.cid)
	}
	if !toTrunk {
		// the trunk's To is the upstream's From as the trunk saw it
		if i := m.Find(sip.HdrTo, 0); i >= 0 && d.topo.from != "" && d.callerFrom != "" {
			w.topo.from = append(w.topo.from[:0], d.callerFrom...)
			ed.SetHeaderValue(i, w.topo.from)
		}
		return
	}
	if i := m.Find(sip.HdrFrom, 0); i >= 0 {
		if v, ok := w.topoHostRewrite(m.Header(i).Value, out); ok {
			w.topo.from = append(w.topo.from[:0], v...)
			ed.SetHeaderValue(i, w.topo.from)
		}
	}
	if i := m.Find(sip.HdrPAssertedIdentity, 0); i >= 0 {
		if v, ok := w.topoHostRewrite(m.Header(i).Value, out); ok {
			w.topo.pai = append(w.topo.pai[:0], v...)
			ed.SetHeaderValue(i, w.topo.pai)
		}
	}
}

// topoIDsResponse records the Call-ID and From (and, for a response from
// the upstream to the trunk, the To) of the response m of d: those of the
// request it answers, req (RFC 3261 8.2.6.2), which the server transaction
// kept as its sender wrote them. The To of a response to the upstream's own
// request keeps the trunk's tag, so it is left as it is.
func (w *worker) topoIDsResponse(m *sip.Msg, d *dialog, req *sip.Msg, toHidden bool) {
	if d == nil || d.topo.callID == "" {
		return
	}
	ed := &w.ed
	if i, j := m.Find(sip.HdrCallID, 0), req.Find(sip.HdrCallID, 0); i >= 0 && j >= 0 {
		ed.SetHeaderValue(i, req.Header(j).Value)
	}
	if i, j := m.Find(sip.HdrFrom, 0), req.Find(sip.HdrFrom, 0); i >= 0 && j >= 0 {
		ed.SetHeaderValue(i, req.Header(j).Value)
	}
	if i, j := m.Find(sip.HdrTo, 0), req.Find(sip.HdrTo, 0); toHidden && i >= 0 && j >= 0 {
		ed.SetHeaderValue(i, req.Header(j).Value)
	}
}

// topoHostRewrite returns value (a From-style name-addr with parameters)
// with the host and port of its URI replaced by out's address when the host
// is an IP address; ok is false when nothing is to change. The result is in
// w.topo.tmp.
func (w *worker) topoHostRewrite(value []byte, out *transport.Listener) ([]byte, bool) {
	if out == nil {
		return nil, false
	}
	na, _, err := sip.ParseNameAddr(value)
	if err != nil {
		return nil, false
	}
	u, err := sip.ParseURI(na.URI)
	if err != nil || len(u.Host) == 0 || !isIPLiteral(u.Host) {
		return nil, false
	}
	// u.Host is a subslice of value: its offset is the difference of capacities.
	start := cap(value) - cap(u.Host)
	end := start + len(u.Host)
	if start < 0 || end > len(value) || !bytes.Equal(value[start:end], u.Host) {
		return nil, false
	}
	if start > 0 && value[start-1] == '[' {
		start--
		if end < len(value) && value[end] == ']' {
			end++
		}
	}
	if end < len(value) && value[end] == ':' {
		end++
		for end < len(value) && value[end] >= '0' && value[end] <= '9' {
			end++
		}
	}
	b := append(w.topo.tmp[:0], value[:start]...)
	b = append(b, out.Advertise()...)
	b = append(b, value[end:]...)
	w.topo.tmp = b
	return b, true
}

// isIPLiteral reports whether host (as sip.ParseURI gives it: an IPv6
// reference without brackets) is an IPv4 or IPv6 address rather than a name.
func isIPLiteral(host []byte) bool {
	if bytes.IndexByte(host, ':') >= 0 {
		return true // a host name has no colon
	}
	for _, c := range host {
		if (c < '0' || c > '9') && c != '.' {
			return false
		}
	}
	return true
}
