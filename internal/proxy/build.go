package proxy

import (
	"bytes"
	"net/netip"
	"strconv"

	"github.com/sipwarden/sipwarden/internal/sip"
	"github.com/sipwarden/sipwarden/internal/transport"
)

// retarget carries what the chain decided to change in an initial request
// beyond the routing headers and the stages' header edits (edits.go).
type retarget struct {
	// ruri replaces the Request-URI when not empty (a registered contact).
	ruri string
	// body replaces the body when not nil (an SDP rewritten by the media relay).
	body []byte
	// topo is what the request and its responses hide (topology.go).
	topo topoTx
}

// buildForward writes the copy of request m that goes downstream (RFC 3261
// 16.6): our own Route entries removed (loose routing), received/rport on
// the sender's Via (RFC 3581), our Via on top, Record-Route on dialog-creating
// initial requests (two entries when the call changes listener), Max-Forwards
// decremented. The result is in w.out.
func (w *worker) buildForward(m *sip.Msg, src netip.AddrPort, out *transport.Listener, branch string, initial bool, in *transport.Listener, rt retarget) ([]byte, bool) {
	ed := &w.ed
	ed.Reset(m)
	arena := w.tmp[:0]
	if rt.ruri != "" {
		ed.SetRequestURI([]byte(rt.ruri))
	}
	if rt.body != nil {
		ed.SetBody(rt.body)
	}

	w.popOwnRoutes(m)

	if vi := m.Find(sip.HdrVia, 0); vi >= 0 && !rt.topo.fromHidden {
		value := m.Header(vi).Value
		if v, rest, err := sip.ParseVia(value); err == nil {
			start := len(arena)
			arena = appendViaReceived(arena, value, &v, rest, src)
			if arena != nil && len(arena) > start {
				ed.SetHeaderValue(vi, arena[start:])
			}
		}
	}

	start := len(arena)
	arena = append(arena, "SIP/2.0/"...)
	arena = append(arena, out.Transport().String()...)
	arena = append(arena, ' ')
	arena = append(arena, out.Advertise()...)
	arena = append(arena, ";branch="...)
	arena = append(arena, branch...)
	if out.Transport() == sip.UDP {
		arena = append(arena, ";rport"...)
	}
	ed.InsertHeader(0, "Via", arena[start:])

	if initial && createsDialog(m.Method()) {
		start = len(arena)
		arena = appendRecordRoute(arena, out)
		ed.InsertHeader(0, "Record-Route", arena[start:])
		if in != nil && in != out {
			start = len(arena)
			arena = appendRecordRoute(arena, in)
			ed.InsertHeader(0, "Record-Route", arena[start:])
		}
	}

	w.topoRequest(m, out, &rt.topo, initial)

	mf := m.MaxForwards()
	if mf < 0 {
		mf = 70
	}
	if mf > 0 {
		mf--
	}
	ed.SetMaxForwards(mf)
	w.tmp = arena

	res, err := ed.AppendTo(w.out[:0])
	if err != nil {
		w.p.met.dropped("edit_failed")
		return nil, false
	}
	w.out = res
	return res, true
}

func createsDialog(m sip.Method) bool {
	return m == sip.INVITE || m == sip.SUBSCRIBE || m == sip.REFER
}

// appendRecordRoute appends "<sip:host:port;transport=x;lr>" for listener l.
func appendRecordRoute(dst []byte, l *transport.Listener) []byte {
	dst = append(dst, "<sip:"...)
	dst = append(dst, l.Advertise()...)
	switch l.Transport() {
	case sip.TCP:
		dst = append(dst, ";transport=tcp"...)
	case sip.TLS:
		dst = append(dst, ";transport=tls"...)
	}
	return append(dst, ";lr>"...)
}

// appendViaReceived appends the sender's top Via value with received= (when
// the source address differs from sent-by) and a filled-in rport= (when it
// asked for one), followed by the rest of the field. It returns dst unchanged
// when nothing needs to change.
func appendViaReceived(dst, value []byte, v *sip.Via, rest []byte, src netip.AddrPort) []byte {
	start := len(dst)
	srcIP := src.Addr().Unmap()
	dst = srcIP.AppendTo(dst)
	needReceived := !bytes.Equal(dst[start:], v.Host)
	dst = dst[:start]
	if !needReceived && !v.RPort {
		return dst
	}
	first := value[:len(value)-len(rest)]
	first = bytes.TrimRight(first, " \t\r\n,")
	// copy the via-parm without a bare ";rport" and without an old ";received=..."
	for len(first) > 0 {
		end := len(first)
		if k := bytes.IndexByte(first[1:], ';'); k >= 0 {
			end = k + 1
		}
		part := first[:end]
		first = first[end:]
		if part[0] == ';' {
			name := bytes.TrimSpace(part[1:])
			if eq := bytes.IndexByte(name, '='); eq >= 0 {
				if bytes.EqualFold(bytes.TrimSpace(name[:eq]), []byte("received")) {
					continue
				}
			} else if bytes.EqualFold(name, []byte("rport")) {
				continue
			}
		}
		dst = append(dst, part...)
	}
	if needReceived {
		dst = append(dst, ";received="...)
		dst = srcIP.AppendTo(dst)
	}
	if v.RPort {
		dst = append(dst, ";rport="...)
		dst = strconv.AppendUint(dst, uint64(src.Port()), 10)
	}
	if len(rest) > 0 {
		dst = append(dst, ", "...)
		dst = append(dst, rest...)
	}
	return dst
}

// popOwnRoutes removes the Route entries at the top that point at us (RFC
// 3261 16.4), recording the edits in w.ed.
func (w *worker) popOwnRoutes(m *sip.Msg) {
	for i := m.Find(sip.HdrRoute, 0); i >= 0; i = m.Find(sip.HdrRoute, i+1) {
		value := m.Header(i).Value
		changed := false
		for len(value) > 0 {
			na, rest, err := sip.ParseNameAddr(value)
			if err != nil || !w.p.isLocalURI(na.URI) {
				break
			}
			value, changed = rest, true
		}
		if len(value) == 0 {
			w.ed.DeleteHeader(i)
			continue
		}
		if changed {
			w.ed.SetHeaderValue(i, value)
		}
		return
	}
}
