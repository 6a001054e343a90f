package sip

// HeaderID identifies a header field sipwarden knows by name. Fields with
// other names are HdrOther; Msg.GetName finds them.
type HeaderID uint8

// Known header fields (RFC 3261 section 20 and extensions).
const (
	HdrOther HeaderID = iota
	HdrVia
	HdrFrom
	HdrTo
	HdrCallID
	HdrCSeq
	HdrContact
	HdrMaxForwards
	HdrRoute
	HdrRecordRoute
	HdrContentLength
	HdrContentType
	HdrContentEncoding
	HdrUserAgent
	HdrServer
	HdrExpires
	HdrMinExpires
	HdrAuthorization
	HdrProxyAuthorization
	HdrWWWAuthenticate
	HdrProxyAuthenticate
	HdrPAssertedIdentity
	HdrPPreferredIdentity
	HdrIdentity
	HdrDate
	HdrSupported
	HdrRequire
	HdrProxyRequire
	HdrUnsupported
	HdrAllow
	HdrAllowEvents
	HdrAccept
	HdrRetryAfter
	HdrWarning
	HdrReason
	HdrDiversion
	HdrEvent
	HdrSubject
	HdrReferTo
	HdrReferredBy
	HdrSessionExpires
	HdrOrganization
	HdrPriority
	HdrTimestamp
	HdrRSeq
	HdrRAck
	numHeaderIDs
)

var headerNames = [numHeaderIDs]string{
	HdrOther:              "",
	HdrVia:                "Via",
	HdrFrom:               "From",
	HdrTo:                 "To",
	HdrCallID:             "Call-ID",
	HdrCSeq:               "CSeq",
	HdrContact:            "Contact",
	HdrMaxForwards:        "Max-Forwards",
	HdrRoute:              "Route",
	HdrRecordRoute:        "Record-Route",
	HdrContentLength:      "Content-Length",
	HdrContentType:        "Content-Type",
	HdrContentEncoding:    "Content-Encoding",
	HdrUserAgent:          "User-Agent",
	HdrServer:             "Server",
	HdrExpires:            "Expires",
	HdrMinExpires:         "Min-Expires",
	HdrAuthorization:      "Authorization",
	HdrProxyAuthorization: "Proxy-Authorization",
	HdrWWWAuthenticate:    "WWW-Authenticate",
	HdrProxyAuthenticate:  "Proxy-Authenticate",
	HdrPAssertedIdentity:  "P-Asserted-Identity",
	HdrPPreferredIdentity: "P-Preferred-Identity",
	HdrIdentity:           "Identity",
	HdrDate:               "Date",
	HdrSupported:          "Supported",
	HdrRequire:            "Require",
	HdrProxyRequire:       "Proxy-Require",
	HdrUnsupported:        "Unsupported",
	HdrAllow:              "Allow",
	HdrAllowEvents:        "Allow-Events",
	HdrAccept:             "Accept",
	HdrRetryAfter:         "Retry-After",
	HdrWarning:            "Warning",
	HdrReason:             "Reason",
	HdrDiversion:          "Diversion",
	HdrEvent:              "Event",
	HdrSubject:            "Subject",
	HdrReferTo:            "Refer-To",
	HdrReferredBy:         "Referred-By",
	HdrSessionExpires:     "Session-Expires",
	HdrOrganization:       "Organization",
	HdrPriority:           "Priority",
	HdrTimestamp:          "Timestamp",
	HdrRSeq:               "RSeq",
	HdrRAck:               "RAck",
}

// String returns the canonical long name ("Call-ID"); "" for HdrOther.
func (h HeaderID) String() string {
	if h < numHeaderIDs {
		return headerNames[h]
	}
	return ""
}

// compactForms maps the single-letter forms (RFC 3261 7.3.3, RFC 3515,
// RFC 3892, RFC 4028, RFC 8224, RFC 6665) to their fields.
var compactForms = [26]HeaderID{
	'v' - 'a': HdrVia,
	'f' - 'a': HdrFrom,
	't' - 'a': HdrTo,
	'i' - 'a': HdrCallID,
	'm' - 'a': HdrContact,
	'l' - 'a': HdrContentLength,
	'c' - 'a': HdrContentType,
	'e' - 'a': HdrContentEncoding,
	's' - 'a': HdrSubject,
	'k' - 'a': HdrSupported,
	'r' - 'a': HdrReferTo,
	'u' - 'a': HdrAllowEvents,
	'b' - 'a': HdrReferredBy,
	'x' - 'a': HdrSessionExpires,
	'y' - 'a': HdrIdentity,
	'o' - 'a': HdrEvent,
}

// headersByLen lists the long names by length, so that a lookup compares a
// name with the two or three known names of its length only.
var headersByLen = func() [25][]HeaderID {
	var t [25][]HeaderID
	for id := HdrVia; id < numHeaderIDs; id++ {
		n := len(headerNames[id])
		t[n] = append(t[n], id)
	}
	return t
}()

// lookupHeader returns the ID of a header name (any case, long or compact).
func lookupHeader(name []byte) HeaderID {
	if len(name) == 1 {
		c := name[0] | 0x20
		if 'a' <= c && c <= 'z' {
			return compactForms[c-'a']
		}
		return HdrOther
	}
	if len(name) >= len(headersByLen) {
		return HdrOther
	}
	first := name[0] | 0x20
	for _, id := range headersByLen[len(name)] {
		h := headerNames[id]
		if h[0]|0x20 == first && equalFoldASCII(name, h) {
			return id
		}
	}
	return HdrOther
}

// equalFoldASCII compares b and s ignoring ASCII case.
func equalFoldASCII(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 32
		}
		if 'A' <= y && y <= 'Z' {
			y += 32
		}
		if x != y {
			return false
		}
	}
	return true
}
