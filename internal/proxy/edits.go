package proxy

import (
	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/sip"
)

// applyEdits applies the header edits stages asked for (chain.HeaderEdit)
// to m, whose bytes are raw, and returns the edited message, with m parsed
// over it. The edited copy is what the server transaction keeps, so a
// failover to another target sends the same edited request. When the edits
// cannot be applied (too many, or the result does not parse) it reports
// false and the failure is counted: the caller refuses the request
// (editFailedVerdict) rather than forward the original, whose headers a
// stage meant to remove (a forged identity) or replace.
func (w *worker) applyEdits(m *sip.Msg, raw []byte, edits []chain.HeaderEdit) ([]byte, bool) {
	ed := &w.ed
	ed.Reset(m)
	// new fields go before Content-Length, where people look for them (any place is valid)
	at := m.Find(sip.HdrContentLength, 0)
	if at < 0 {
		at = m.NumHeaders()
	}
	for _, e := range edits {
		switch e.Kind {
		case chain.EditAdd:
			ed.InsertHeader(at, e.Name, e.Value)
		case chain.EditSet:
			ed.SetHeaderValue(e.Index, e.Value)
		case chain.EditDelete:
			ed.DeleteHeader(e.Index)
		}
	}
	out, err := ed.AppendTo(make([]byte, 0, len(raw)+512))
	if err == nil {
		err = w.aux.Parse(out)
	}
	if err != nil {
		w.p.met.dropped("edit_failed")
		return raw, false
	}
	if err := m.Parse(out); err != nil { // cannot fail: w.aux parsed the same bytes
		w.p.met.dropped("edit_failed")
		_ = m.Parse(raw)
		return raw, false
	}
	return out, true
}

// editFailedVerdict refuses a request whose edits could not be applied.
var editFailedVerdict = chain.Verdict{Action: chain.Reply, Code: 500, Reason: "edit_failed",
	Warning: "the request could not be rewritten for forwarding"}
