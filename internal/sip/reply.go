package sip

import "strconv"

var reasonTexts = map[int]string{
	100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued", 183: "Session Progress",
	200: "OK", 202: "Accepted",
	300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily", 305: "Use Proxy", 380: "Alternative Service",
	400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden", 404: "Not Found",
	405: "Method Not Allowed", 406: "Not Acceptable", 407: "Proxy Authentication Required", 408: "Request Timeout",
	410: "Gone", 413: "Request Entity Too Large", 414: "Request-URI Too Long", 415: "Unsupported Media Type",
	416: "Unsupported URI Scheme", 420: "Bad Extension", 421: "Extension Required", 423: "Interval Too Brief",
	428: "Use Identity Header", 429: "Too Many Requests", 433: "Anonymity Disallowed", 436: "Bad Identity Info",
	437: "Unsupported Credential", 438: "Invalid Identity Header", 480: "Temporarily Unavailable",
	481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete",
	485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here", 491: "Request Pending",
	493: "Undecipherable",
	500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
	504: "Server Time-out", 505: "Version Not Supported", 513: "Message Too Large",
	600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}

// ReasonText returns the standard reason phrase of a status code.
func ReasonText(code int) string {
	if s, ok := reasonTexts[code]; ok {
		return s
	}
	switch code / 100 {
	case 1:
		return "Session Progress"
	case 2:
		return "OK"
	case 3:
		return "Redirected"
	case 4:
		return "Request Failed"
	case 5:
		return "Server Error"
	}
	return "Global Failure"
}

// CanReply reports whether req has what a response must copy: Via, From,
// To, Call-ID and CSeq (RFC 3261 8.2.6.2).
func CanReply(req *Msg) bool {
	if !req.isRequest {
		return false
	}
	return req.Find(HdrVia, 0) >= 0 && req.Find(HdrFrom, 0) >= 0 && req.Find(HdrTo, 0) >= 0 &&
		req.callID >= 0 && req.Find(HdrCSeq, 0) >= 0
}

// appendRaw copies field i as received (with its CRLF; Parse accepts no other line end).
func appendRaw(dst []byte, m *Msg, i int) []byte {
	raw := m.hdrs[i].raw.of(m.buf)
	dst = append(dst, raw...)
	if n := len(raw); n == 0 || raw[n-1] != '\n' {
		dst = append(dst, "\r\n"...) // the last field of a datagram without its empty line
	}
	return dst
}

// AppendResponse appends a response to req (RFC 3261 8.2.6): the status
// line, every Via of req in order, From, To (with ";tag=toTag" added when
// To has none, toTag is not empty and code > 100), Call-ID, CSeq, the
// pre-formatted header lines of extra (each ending in CRLF), Server when
// server is not empty, and Content-Length: 0.
func AppendResponse(dst []byte, req *Msg, code int, reason string, toTag []byte, server string, extra []byte) []byte {
	dst = append(dst, "SIP/2.0 "...)
	dst = strconv.AppendInt(dst, int64(code), 10)
	dst = append(dst, ' ')
	dst = append(dst, reason...)
	dst = append(dst, "\r\n"...)
	for i := 0; i < req.n; i++ {
		switch req.hdrs[i].id {
		case HdrVia, HdrFrom, HdrCallID, HdrCSeq:
			dst = appendRaw(dst, req, i)
		case HdrTo:
			if code > 100 && len(toTag) > 0 && len(tagOf(req.hdrs[i].value.of(req.buf))) == 0 {
				dst = append(dst, "To: "...)
				dst = append(dst, req.hdrs[i].value.of(req.buf)...)
				dst = append(dst, ";tag="...)
				dst = append(dst, toTag...)
				dst = append(dst, "\r\n"...)
			} else {
				dst = appendRaw(dst, req, i)
			}
		}
	}
	dst = append(dst, extra...)
	if server != "" {
		dst = append(dst, "Server: "...)
		dst = append(dst, server...)
		dst = append(dst, "\r\n"...)
	}
	return append(dst, "Content-Length: 0\r\n\r\n"...)
}

// appendHopRequest writes the common part of CANCEL and ACK (RFC 3261 9.1,
// 17.1.1.3): Request-URI and top Via of inv, its Route fields, From, the To
// field given, Call-ID, the CSeq number of inv with method.
func appendHopRequest(dst []byte, inv *Msg, method string, to []byte) []byte {
	dst = append(dst, method...)
	dst = append(dst, ' ')
	dst = append(dst, inv.RequestURI()...)
	dst = append(dst, " SIP/2.0\r\n"...)
	if vi := inv.Find(HdrVia, 0); vi >= 0 {
		value := inv.hdrs[vi].value.of(inv.buf)
		if _, rest, err := ParseVia(value); err == nil && len(rest) > 0 {
			value = trimLWSRight(value[:len(value)-len(rest)])
			value = value[:len(value)-1] // the comma
			value = trimLWSRight(value)
		}
		dst = append(dst, "Via: "...)
		dst = append(dst, value...)
		dst = append(dst, "\r\n"...)
	}
	for i := 0; i < inv.n; i++ {
		switch inv.hdrs[i].id {
		case HdrRoute, HdrFrom, HdrCallID:
			dst = appendRaw(dst, inv, i)
		}
	}
	dst = append(dst, "To: "...)
	dst = append(dst, to...)
	dst = append(dst, "\r\nCSeq: "...)
	dst = strconv.AppendUint(dst, uint64(inv.cseqNum), 10)
	dst = append(dst, ' ')
	dst = append(dst, method...)
	return append(dst, "\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"...)
}

// AppendCancel appends the CANCEL of an INVITE that sipwarden sent (inv is
// the INVITE as sent).
func AppendCancel(dst []byte, inv *Msg) []byte {
	return appendHopRequest(dst, inv, "CANCEL", inv.Get(HdrTo))
}

// AppendAck appends the ACK for the non-2xx final response resp to inv (the
// INVITE as sent): To comes from the response, with its tag.
func AppendAck(dst []byte, inv *Msg, resp *Msg) []byte {
	to := resp.Get(HdrTo)
	if to == nil {
		to = inv.Get(HdrTo)
	}
	return appendHopRequest(dst, inv, "ACK", to)
}
