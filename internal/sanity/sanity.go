// Package sanity checks that a request is well-formed enough for a proxy to
// act on (RFC 3261 section 16.3, and the messages of RFC 4475): the start
// line, the mandatory and single-valued header fields, CSeq, Max-Forwards,
// every Via, From and To, the Request-URI scheme and Proxy-Require.
//
// Check is the library; Stage runs it in the chain. A request that fails is
// answered with the status the RFCs ask for (400, 416, 420, 483, 505) — the
// acl stage has already silenced unknown sources, so only known peers get
// these answers.
package sanity

import (
	"errors"

	"github.com/sipwarden/sipwarden/internal/sip"
)

// Result is the outcome of Check. Code 0 means the request is acceptable.
type Result struct {
	Code int
	// Reason is a stable token (metric label, event reason).
	Reason string
	// Warning explains the problem to the sender (no message contents).
	Warning string
	// Unsupported lists the Proxy-Require options we refuse (for a 420).
	Unsupported []byte
}

// OK reports whether the request passed.
func (r Result) OK() bool { return r.Code == 0 }

func bad(reason, warning string) Result { return Result{Code: 400, Reason: reason, Warning: warning} }

// Check validates request m; parseErr is what Msg.Parse returned.
func Check(m *sip.Msg, parseErr error) Result {
	if parseErr != nil {
		switch {
		case errors.Is(parseErr, sip.ErrVersion):
			return Result{Code: 505, Reason: "bad_version", Warning: "only SIP/2.0 is supported"}
		case errors.Is(parseErr, sip.ErrStartLine):
			return bad("bad_start_line", "malformed request line")
		case errors.Is(parseErr, sip.ErrContentLength):
			return bad("bad_content_length", "invalid Content-Length")
		case errors.Is(parseErr, sip.ErrTruncated):
			return bad("truncated", "message shorter than its Content-Length")
		case errors.Is(parseErr, sip.ErrTooManyHeaders):
			return bad("too_many_headers", "too many header fields")
		default:
			return bad("bad_header", "malformed header field")
		}
	}
	for _, h := range [...]struct {
		id   sip.HeaderID
		name string
	}{{sip.HdrVia, "Via"}, {sip.HdrFrom, "From"}, {sip.HdrTo, "To"}, {sip.HdrCallID, "Call-ID"}, {sip.HdrCSeq, "CSeq"}} {
		if m.Find(h.id, 0) < 0 {
			return bad("missing_header", "missing "+h.name)
		}
	}
	for _, h := range [...]struct {
		id   sip.HeaderID
		name string
	}{{sip.HdrFrom, "From"}, {sip.HdrTo, "To"}, {sip.HdrCallID, "Call-ID"}, {sip.HdrCSeq, "CSeq"}, {sip.HdrMaxForwards, "Max-Forwards"}, {sip.HdrContentLength, "Content-Length"}} {
		if m.Count(h.id) > 1 {
			return bad("duplicate_header", "more than one "+h.name)
		}
	}
	if !m.CSeqValid() {
		return bad("bad_cseq", "malformed CSeq")
	}
	if string(m.MethodName()) != string(m.CSeqMethodName()) {
		return bad("cseq_method_mismatch", "CSeq method differs from the request method")
	}
	if len(m.CallID()) == 0 {
		return bad("missing_header", "empty Call-ID")
	}
	if i := m.Find(sip.HdrMaxForwards, 0); i >= 0 {
		mf := m.MaxForwards()
		if mf < 0 || mf > 255 {
			return bad("bad_max_forwards", "Max-Forwards must be 0 to 255")
		}
	}
	for i := m.Find(sip.HdrVia, 0); i >= 0; i = m.Find(sip.HdrVia, i+1) {
		v := m.Header(i).Value
		for {
			_, rest, err := sip.ParseVia(v)
			if err != nil {
				return bad("bad_via", "malformed Via")
			}
			if rest == nil {
				break
			}
			v = rest
		}
	}
	if r := checkAddress(m.Get(sip.HdrFrom), "From"); !r.OK() {
		return r
	}
	if r := checkAddress(m.Get(sip.HdrTo), "To"); !r.OK() {
		return r
	}
	for i := m.Find(sip.HdrContact, 0); i >= 0; i = m.Find(sip.HdrContact, i+1) {
		if r := checkContacts(m.Header(i).Value, m.Method() == sip.REGISTER); !r.OK() {
			return r
		}
	}
	uri, err := sip.ParseURI(m.RequestURI())
	if err != nil {
		return bad("bad_request_uri", "malformed Request-URI")
	}
	if !supportedScheme(uri.Scheme) {
		return Result{Code: 416, Reason: "unsupported_uri_scheme", Warning: "only sip, sips and tel URIs are supported"}
	}
	if len(uri.Headers) > 0 {
		return bad("bad_request_uri", "header fields in the Request-URI")
	}
	if m.MaxForwards() == 0 {
		return Result{Code: 483, Reason: "too_many_hops", Warning: "Max-Forwards reached zero"}
	}
	if v := m.Get(sip.HdrProxyRequire); len(v) > 0 {
		// sipwarden supports no option-tag a client may require of proxies.
		return Result{Code: 420, Reason: "bad_extension", Warning: "Proxy-Require option not supported", Unsupported: v}
	}
	return Result{}
}

func supportedScheme(s []byte) bool {
	switch string(s) {
	case "sip", "sips", "tel", "SIP", "SIPS", "TEL":
		return true
	}
	return len(s) <= 4 && (eqFold(s, "sip") || eqFold(s, "sips") || eqFold(s, "tel"))
}

func eqFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		if b[i]|0x20 != s[i] {
			return false
		}
	}
	return true
}

// checkAddress validates a From or To value: one name-addr or addr-spec with
// a valid URI; an addr-spec (without <>) may not carry '?' or ','.
func checkAddress(v []byte, name string) Result {
	na, rest, err := sip.ParseNameAddr(v)
	if err != nil || rest != nil {
		return bad("bad_"+lower(name), "malformed "+name)
	}
	if _, err := sip.ParseURI(na.URI); err != nil {
		return bad("bad_"+lower(name), "malformed URI in "+name)
	}
	if !enclosed(v) && containsAny(na.URI, "?,") {
		return bad("bad_"+lower(name), name+" URI with '?' must be enclosed in <>")
	}
	return Result{}
}

func checkContacts(v []byte, register bool) Result {
	if register && len(v) == 1 && v[0] == '*' {
		return Result{}
	}
	for {
		na, rest, err := sip.ParseNameAddr(v)
		if err != nil {
			return bad("bad_contact", "malformed Contact")
		}
		if _, err := sip.ParseURI(na.URI); err != nil {
			return bad("bad_contact", "malformed URI in Contact")
		}
		if !enclosed(v) && containsAny(na.URI, "?") {
			return bad("bad_contact", "Contact URI with '?' must be enclosed in <>")
		}
		if rest == nil {
			return Result{}
		}
		v = rest
	}
}

func enclosed(v []byte) bool {
	for _, c := range v {
		if c == '<' {
			return true
		}
		if c == ';' || c == ',' {
			return false
		}
	}
	return false
}

func containsAny(b []byte, chars string) bool {
	for _, c := range b {
		for i := 0; i < len(chars); i++ {
			if c == chars[i] {
				return true
			}
		}
	}
	return false
}

func lower(s string) string {
	switch s {
	case "From":
		return "from"
	case "To":
		return "to"
	}
	return s
}
