package proxy

import (
	"bytes"
	"errors"

	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/sip"
)

// Media anchoring: when the runtime has a chain.MediaAnchor, every INVITE
// dialog it opens a session for has its session descriptions run through
// the session (the media relay) in the offer/answer model of RFC 3264 as
// RFC 3261 section 13.2.1 carries it:
//
//   - an INVITE (initial or re-INVITE) or UPDATE with SDP carries an offer,
//     and the 18x/2xx responses to it carry the answer;
//   - an INVITE without SDP gets the offer in its 2xx, and the answer comes in
//     the ACK.
//
// A refused offer is answered with the session's verdict (488 with a
// Warning when SRTP is required and missing); a refused answer is relayed
// without its body (the other side then ends the call), never with the
// unanchored SDP.

// sdpBody returns m's body when it is a session description, else nil.
func sdpBody(m *sip.Msg) []byte {
	b := m.Body()
	if len(b) == 0 {
		return nil
	}
	ct := m.Get(sip.HdrContentType)
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	if !bytes.EqualFold(bytes.TrimSpace(ct), []byte("application/sdp")) {
		return nil
	}
	return b
}

// mediaVerdict is the answer to a request whose offer the session refused.
func mediaVerdict(err error) chain.Verdict {
	var ve *chain.VerdictError
	if errors.As(err, &ve) {
		return ve.Verdict
	}
	return chain.ReplyWith(500, "media_failed")
}

// mediaResponse runs the SDP of a response (18x, 2xx) to a request of an
// anchored dialog through its session; it returns the body to relay (nil:
// unchanged) and whether the body must be removed instead.
func (w *worker) mediaResponse(st *serverTx, code int) (body []byte, strip bool) {
	d := st.mediaDlg
	if d == nil || d.media == nil || code <= 100 || code >= 300 {
		return nil, false
	}
	b := sdpBody(&w.msg)
	if b == nil {
		return nil, false
	}
	from := !st.fromCaller // the response comes from the side the request went to
	var out []byte
	var err error
	if st.offered {
		out, err = d.media.Answer(from, b)
	} else {
		out, err = d.media.Offer(from, b)
		if err == nil && st.method == sip.INVITE && code >= 200 {
			// offerless INVITE: the answer comes in the ACK, from the INVITE's sender
			d.ackAnswer, d.ackFromCaller = true, st.fromCaller
		}
	}
	if err != nil {
		w.p.met.dropped("media_answer_refused")
		w.p.log.Warn("media: session description refused; relayed without it", "call_id", d.callID, "code", code, "err", err)
		return nil, true
	}
	return out, false
}
