package proxy

import (
	"strconv"

	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/sip"
)

// Transfers of trunks' calls. A call from a trunk was checked against the
// trunk's destination policy when it started; a REFER from the trunk, or a
// 3xx from the upstream, would send it somewhere else that no stage saw.

// transferRefused answers a REFER from a trunk without transfers: allow.
var transferRefused = chain.Verdict{Action: chain.Reply, Code: 403, Reason: "transfer_refused",
	Warning: "call transfer (REFER) is not enabled for this trunk"}

// referVerdict decides on the REFER in w.msg from w.req.Trunk (inside one of
// its dialogs): Reply refuses it, anything else lets it through.
func (w *worker) referVerdict() chain.Verdict {
	req := &w.req
	if req.Trunk == nil || !req.Trunk.AllowTransfers {
		return transferRefused
	}
	m := &w.msg
	na, _, err := sip.ParseNameAddr(m.Get(sip.HdrReferTo))
	if m.Count(sip.HdrReferTo) != 1 || err != nil {
		return chain.Verdict{Action: chain.Reply, Code: 400, Reason: "bad_refer_to",
			Warning: "a REFER needs exactly one valid Refer-To"} // RFC 3515 2.4.1
	}
	rt := w.p.runtime.Load()
	if rt.Transfers == nil {
		return chain.Next()
	}
	return rt.Transfers.CheckTransfer(req, na.URI)
}

// redirectVerdict decides on the 3xx in w.msg, the answer of the upstream
// to the INVITE of d: a call from a trunk is redirected only to targets that
// the trunk's destination policy accepts, every Contact of the 3xx. Reply
// refuses it.
func (w *worker) redirectVerdict(d *dialog) chain.Verdict {
	if d.direction != "originating" || d.trunk == "" {
		return chain.Next()
	}
	rt := w.p.runtime.Load()
	if rt.Transfers == nil {
		return chain.Next()
	}
	var t *config.Trunk
	for i := range rt.Config.Trunks {
		if rt.Config.Trunks[i].Name == d.trunk {
			t = &rt.Config.Trunks[i]
			break
		}
	}
	if t == nil {
		return chain.Verdict{Action: chain.Reply, Code: 403, Reason: "transfer_refused",
			Warning: "the call's trunk is no longer configured"}
	}
	m := &w.msg
	req := &w.req
	req.Reset()
	req.Msg, req.Src, req.Transport, req.Config = m, d.caller.addr, d.caller.transport, rt.Config
	req.PeerKind, req.Trunk = chain.PeerTrunk, t
	for i := m.Find(sip.HdrContact, 0); i >= 0; i = m.Find(sip.HdrContact, i+1) {
		for v := m.Header(i).Value; len(v) > 0; {
			na, rest, err := sip.ParseNameAddr(v)
			if err != nil {
				return chain.Verdict{Action: chain.Reply, Code: 403, Reason: "bad_redirect",
					Warning: "the redirection target cannot be checked"}
			}
			if verdict := rt.Transfers.CheckTransfer(req, na.URI); verdict.Action == chain.Reply {
				return verdict
			}
			v = rest
		}
	}
	return chain.Next()
}

// serverRefuse answers the INVITE of st with a refusal of our own (v's code
// and Warning) in place of the response the target gave.
func (w *worker) serverRefuse(st *serverTx, v chain.Verdict) {
	if st.state >= stateCompleted || st.req == nil {
		return
	}
	if err := w.aux.Parse(st.req); err != nil {
		return
	}
	extra := w.extra[:0]
	if v.Warning != "" {
		extra = append(extra, `Warning: 399 sipwarden "`...)
		extra = appendQuotedSafe(extra, v.Warning)
		extra = append(extra, "\"\r\n"...)
	}
	w.extra = extra
	code := int(v.Code)
	out := sip.AppendResponse(w.out[:0], &w.aux, code, sip.ReasonText(code), w.localTag(&w.aux), w.p.opt.ServerHeader, extra)
	w.out = out
	w.p.met.replies.WithLabelValues(strconv.Itoa(code)).Inc()
	w.serverRespond(st, code, out)
}
