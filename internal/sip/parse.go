package sip

import (
	"errors"
	"fmt"
)

var (
	errNoVia        = errors.New("sip: no Via field")
	errVia          = errors.New("sip: malformed Via")
	errURI          = errors.New("sip: malformed URI")
	errNameAddr     = errors.New("sip: malformed name-addr")
	errUnterminated = errors.New("sip: unterminated quoted string")
)

// isLWS reports linear white space, including the line breaks of folding.
func isLWS(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func skipLWS(b []byte, i int) int {
	for i < len(b) && isLWS(b[i]) {
		i++
	}
	return i
}

// Via is one via-parm (RFC 3261 20.42). Its slices point into the parsed value.
type Via struct {
	// Protocol is "SIP/2.0/UDP" as written (it may contain white space).
	Protocol []byte
	// Transport is the transport token, TransportUnknown for others (SCTP, WS...).
	Transport     Transport
	TransportName []byte
	// Host is the sent-by host; an IPv6 reference without its brackets.
	Host []byte
	// Port is the sent-by port, 0 when absent.
	Port int
	// Params is the raw parameter list, with its leading ';'.
	Params   []byte
	Branch   []byte
	Received []byte
	// RPort is set when the rport parameter is present; RPortValue is its
	// value (0 when it has none).
	RPort      bool
	RPortValue int
}

// ParseVia parses the first via-parm of a Via field value. rest is what
// follows the separating comma (without leading white space), nil if nothing.
func ParseVia(b []byte) (v Via, rest []byte, err error) {
	i := skipLWS(b, 0)
	start := i
	// sent-protocol = name SLASH version SLASH transport, LWS allowed around slashes
	for part := 0; part < 3; part++ {
		j := i
		for j < len(b) && isTokenChar(b[j]) {
			j++
		}
		if j == i {
			return Via{}, nil, errVia
		}
		if part == 0 && !equalFoldASCII(b[i:j], "SIP") {
			return Via{}, nil, fmt.Errorf("%w: protocol %q", errVia, b[i:j])
		}
		if part == 2 {
			v.TransportName = b[i:j]
			v.Transport = ParseTransport(b[i:j])
			v.Protocol = b[start:j]
			i = j
			break
		}
		i = skipLWS(b, j)
		if i >= len(b) || b[i] != '/' {
			return Via{}, nil, errVia
		}
		i = skipLWS(b, i+1)
	}
	j := skipLWS(b, i)
	if j == i {
		return Via{}, nil, fmt.Errorf("%w: no space before sent-by", errVia)
	}
	i = j
	// sent-by = host [ COLON port ]
	if i < len(b) && b[i] == '[' {
		end := indexByte(b[i:], ']')
		if end < 0 {
			return Via{}, nil, errVia
		}
		v.Host = b[i+1 : i+end]
		i += end + 1
	} else {
		j := i
		for j < len(b) && isHostChar(b[j]) {
			j++
		}
		v.Host = b[i:j]
		i = j
	}
	if len(v.Host) == 0 {
		return Via{}, nil, fmt.Errorf("%w: no host", errVia)
	}
	i = skipLWS(b, i)
	if i < len(b) && b[i] == ':' {
		i = skipLWS(b, i+1)
		j := i
		for j < len(b) && isDigit(b[j]) {
			j++
		}
		p := parseSmallUint(b[i:j], 65535)
		if p <= 0 {
			return Via{}, nil, fmt.Errorf("%w: port", errVia)
		}
		v.Port = p
		i = skipLWS(b, j)
	}
	pstart := i
	for i < len(b) && b[i] == ';' {
		i = skipLWS(b, i+1)
		j := i
		for j < len(b) && isTokenChar(b[j]) {
			j++
		}
		if j == i {
			return Via{}, nil, fmt.Errorf("%w: parameter name", errVia)
		}
		name := b[i:j]
		i = skipLWS(b, j)
		var val []byte
		hasVal := false
		if i < len(b) && b[i] == '=' {
			hasVal = true
			i = skipLWS(b, i+1)
			vs := i
			switch {
			case i < len(b) && b[i] == '"':
				end, err := quotedEnd(b, i)
				if err != nil {
					return Via{}, nil, err
				}
				val = b[i+1 : end-1]
				i = end
			case i < len(b) && b[i] == '[':
				end := indexByte(b[i:], ']')
				if end < 0 {
					return Via{}, nil, errVia
				}
				i += end + 1
				val = b[vs:i]
			default:
				for i < len(b) && (isTokenChar(b[i]) || b[i] == ':') {
					i++
				}
				val = b[vs:i]
			}
			if len(val) == 0 && (vs >= len(b) || b[vs] != '"') {
				return Via{}, nil, fmt.Errorf("%w: empty value of %s", errVia, name)
			}
			i = skipLWS(b, i)
		}
		switch {
		case equalFoldASCII(name, "branch"):
			v.Branch = val
		case equalFoldASCII(name, "received"):
			v.Received = val
		case equalFoldASCII(name, "rport"):
			v.RPort = true
			if hasVal {
				p := parseSmallUint(val, 65535)
				if p < 0 {
					return Via{}, nil, fmt.Errorf("%w: rport", errVia)
				}
				v.RPortValue = p
			}
		}
	}
	v.Params = trimLWSRight(b[pstart:i])
	if i < len(b) {
		if b[i] != ',' {
			return Via{}, nil, fmt.Errorf("%w: unexpected %q", errVia, b[i])
		}
		rest = b[skipLWS(b, i+1):]
		if len(rest) == 0 {
			return Via{}, nil, fmt.Errorf("%w: empty element after comma", errVia)
		}
	}
	return v, rest, nil
}

func trimLWSRight(b []byte) []byte {
	for len(b) > 0 && isLWS(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

func isHostChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_'
}

// quotedEnd returns the offset just after the quoted string starting at b[i] == '"'.
func quotedEnd(b []byte, i int) (int, error) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, nil
		}
	}
	return 0, errUnterminated
}

// URI is a parsed SIP, SIPS or TEL URI (RFC 3261 19.1, RFC 3966), or any
// other absolute URI kept opaque. Slices point into the parsed bytes.
type URI struct {
	Scheme   []byte
	User     []byte // may contain escapes; for tel: the number
	Password []byte
	Host     []byte // an IPv6 reference without brackets
	Port     int    // 0 when absent
	Params   []byte // raw ";..." with the leading ';'
	Headers  []byte // after '?', without it
	Opaque   []byte // for other schemes: everything after "scheme:"
}

// ParseURI parses an absolute URI.
func ParseURI(b []byte) (URI, error) {
	var u URI
	colon := -1
	for i, c := range b {
		if c == ':' {
			colon = i
			break
		}
		if !(isAlpha(c) || i > 0 && (isDigit(c) || c == '+' || c == '-' || c == '.')) {
			return URI{}, fmt.Errorf("%w: scheme", errURI)
		}
	}
	if colon <= 0 {
		return URI{}, fmt.Errorf("%w: no scheme", errURI)
	}
	u.Scheme = b[:colon]
	rest := b[colon+1:]
	for _, c := range rest {
		if c <= ' ' || c >= 0x7f {
			return URI{}, fmt.Errorf("%w: character 0x%02x", errURI, c)
		}
	}
	switch {
	case equalFoldASCII(u.Scheme, "sip"), equalFoldASCII(u.Scheme, "sips"):
		return parseSIPURI(u, rest)
	case equalFoldASCII(u.Scheme, "tel"):
		end := len(rest)
		if k := indexByte(rest, ';'); k >= 0 {
			end = k
			u.Params = rest[k:]
		}
		u.User = rest[:end]
		if len(u.User) == 0 {
			return URI{}, fmt.Errorf("%w: empty tel number", errURI)
		}
		return u, nil
	}
	if len(rest) == 0 {
		return URI{}, fmt.Errorf("%w: empty", errURI)
	}
	u.Opaque = rest
	return u, nil
}

func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

func parseSIPURI(u URI, b []byte) (URI, error) {
	// The user part may hold ';' and '?' (user-unreserved) but never an
	// unescaped '@': the first '@' ends it.
	if at := indexByte(b, '@'); at >= 0 {
		userinfo := b[:at]
		if c := indexByte(userinfo, ':'); c >= 0 {
			u.User, u.Password = userinfo[:c], userinfo[c+1:]
		} else {
			u.User = userinfo
		}
		if len(u.User) == 0 {
			return URI{}, fmt.Errorf("%w: empty user", errURI)
		}
		b = b[at+1:]
	}
	if q := indexByte(b, '?'); q >= 0 {
		u.Headers = b[q+1:]
		b = b[:q]
	}
	if s := indexByte(b, ';'); s >= 0 {
		u.Params = b[s:]
		b = b[:s]
	}
	if len(b) > 0 && b[0] == '[' {
		end := indexByte(b, ']')
		if end < 0 {
			return URI{}, fmt.Errorf("%w: IPv6 reference", errURI)
		}
		u.Host = b[1:end]
		b = b[end+1:]
	} else {
		j := 0
		for j < len(b) && isHostChar(b[j]) {
			j++
		}
		u.Host = b[:j]
		b = b[j:]
	}
	if len(u.Host) == 0 {
		return URI{}, fmt.Errorf("%w: no host", errURI)
	}
	if len(b) > 0 {
		if b[0] != ':' {
			return URI{}, fmt.Errorf("%w: host", errURI)
		}
		p := parseSmallUint(b[1:], 65535)
		if p <= 0 {
			return URI{}, fmt.Errorf("%w: port", errURI)
		}
		u.Port = p
	}
	return u, nil
}

// Param returns the value of parameter name of the URI.
func (u *URI) Param(name string) ([]byte, bool) { return Param(u.Params, name) }

// Transport returns the URI's transport: the transport parameter, else TLS
// for sips and UDP for sip.
func (u *URI) Transport() Transport {
	if v, ok := u.Param("transport"); ok {
		return ParseTransport(v)
	}
	if equalFoldASCII(u.Scheme, "sips") {
		return TLS
	}
	return UDP
}

// NameAddr is a name-addr or addr-spec with its header parameters (From, To,
// Contact, Route, Record-Route...).
type NameAddr struct {
	Display []byte // without quotes
	URI     []byte
	Params  []byte // raw ";..." after the URI, with the leading ';'
}

// ParseNameAddr parses the first entry of a comma-separated list; rest is
// what follows the comma (without leading white space), nil if nothing.
func ParseNameAddr(b []byte) (na NameAddr, rest []byte, err error) {
	i := skipLWS(b, 0)
	if i >= len(b) {
		return NameAddr{}, nil, fmt.Errorf("%w: empty", errNameAddr)
	}
	switch {
	case b[i] == '"':
		end, err := quotedEnd(b, i)
		if err != nil {
			return NameAddr{}, nil, err
		}
		na.Display = b[i+1 : end-1]
		i = skipLWS(b, end)
		if i >= len(b) || b[i] != '<' {
			return NameAddr{}, nil, fmt.Errorf("%w: '<' expected after display name", errNameAddr)
		}
		fallthrough
	case b[i] == '<':
		end := indexByte(b[i:], '>')
		if end < 0 {
			return NameAddr{}, nil, fmt.Errorf("%w: no '>'", errNameAddr)
		}
		na.URI = b[i+1 : i+end]
		i += end + 1
	default:
		// Either "display tokens <uri>" or a bare addr-spec.
		lt := -1
		for j := i; j < len(b); j++ {
			c := b[j]
			if c == '<' {
				lt = j
				break
			}
			if c == ';' || c == ',' || c == '"' || c == '>' {
				break
			}
		}
		if lt >= 0 {
			na.Display = trimLWSRight(b[i:lt])
			end := indexByte(b[lt:], '>')
			if end < 0 {
				return NameAddr{}, nil, fmt.Errorf("%w: no '>'", errNameAddr)
			}
			na.URI = b[lt+1 : lt+end]
			i = lt + end + 1
		} else {
			j := i
			for j < len(b) && b[j] != ';' && b[j] != ',' && !isLWS(b[j]) {
				j++
			}
			na.URI = b[i:j]
			i = j
		}
	}
	if len(na.URI) == 0 {
		return NameAddr{}, nil, fmt.Errorf("%w: empty URI", errNameAddr)
	}
	i = skipLWS(b, i)
	pstart := i
	for i < len(b) && b[i] != ',' {
		if b[i] == '"' {
			end, err := quotedEnd(b, i)
			if err != nil {
				return NameAddr{}, nil, err
			}
			i = end
			continue
		}
		i++
	}
	na.Params = trimLWSRight(b[pstart:i])
	if len(na.Params) > 0 && na.Params[0] != ';' {
		return NameAddr{}, nil, fmt.Errorf("%w: text after the URI", errNameAddr)
	}
	if i < len(b) {
		rest = b[skipLWS(b, i+1):]
		if len(rest) == 0 {
			return NameAddr{}, nil, fmt.Errorf("%w: empty element after comma", errNameAddr)
		}
	}
	return na, rest, nil
}

// Param looks up parameter name (any case) in a ";a=b;c" list. A quoted value
// is returned without its quotes; a parameter without value gives ("", true).
func Param(params []byte, name string) (value []byte, ok bool) {
	i := 0
	for i < len(params) {
		if params[i] != ';' {
			i++
			continue
		}
		i = skipLWS(params, i+1)
		j := i
		for j < len(params) && params[j] != '=' && params[j] != ';' && !isLWS(params[j]) {
			j++
		}
		pname := params[i:j]
		k := skipLWS(params, j)
		var val []byte
		if k < len(params) && params[k] == '=' {
			k = skipLWS(params, k+1)
			if k < len(params) && params[k] == '"' {
				end, err := quotedEnd(params, k)
				if err != nil {
					return nil, false
				}
				val = params[k+1 : end-1]
				k = end
			} else {
				vs := k
				for k < len(params) && params[k] != ';' && !isLWS(params[k]) {
					k++
				}
				val = params[vs:k]
			}
		}
		if equalFoldASCII(pname, name) {
			if val == nil {
				val = params[k:k]
			}
			return val, true
		}
		i = k
	}
	return nil, false
}

// ScanCallID finds the Call-ID value in raw message bytes without parsing
// the message (the transport uses it to keep a call on one worker). It
// returns nil when there is none.
func ScanCallID(b []byte) []byte {
	i := 0
	for i < len(b) {
		// i is at a line start
		if b[i] == '\r' || b[i] == '\n' {
			if i > 0 {
				return nil // empty line: end of headers
			}
		}
		j := i
		for j < len(b) && isTokenChar(b[j]) {
			j++
		}
		name := b[i:j]
		if equalFoldASCII(name, "call-id") || equalFoldASCII(name, "i") {
			k := j
			for k < len(b) && isWSP(b[k]) {
				k++
			}
			if k < len(b) && b[k] == ':' {
				k++
				for k < len(b) && isWSP(b[k]) {
					k++
				}
				e := k
				for e < len(b) && b[e] != '\r' && b[e] != '\n' {
					e++
				}
				return trimLWSRight(b[k:e])
			}
		}
		nl := indexByte(b[j:], '\n')
		if nl < 0 {
			return nil
		}
		i = j + nl + 1
	}
	return nil
}
