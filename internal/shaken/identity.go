package shaken

// The SIP Identity header of RFC 8224: the PASSporT token and its info, alg
// and ppt parameters, built and parsed. The PASSporT itself (RFC 8225, RFC
// 8588) is in passport.go.

import (
	"bytes"
	"fmt"
)

// Identity is one parsed Identity header value (RFC 8224 section 4).
type Identity struct {
	// Token is the PASSporT header.claims.signature.
	Token []byte
	// Info is the URI of the info parameter (without the angle brackets): the x5u.
	Info string
	// Alg and PPT are the parameters of the same names ("" when absent;
	// quotes removed).
	Alg, PPT string
}

// AppendIdentity appends the full-form Identity header value
// token;info=<x5u>;alg=ES256;ppt=shaken.
func AppendIdentity(dst []byte, token, x5u string) []byte {
	dst = append(dst, token...)
	dst = append(dst, ";info=<"...)
	dst = append(dst, x5u...)
	return append(dst, ">;alg=ES256;ppt=shaken"...)
}

// ParseIdentity parses one Identity header value. It is tolerant of what
// carriers send: white space around ';' and '=', any case in parameter
// names, quoted parameter values, an info URI without angle brackets,
// unknown parameters (ignored). It refuses values longer than
// MaxIdentityLen, control bytes and an unterminated '<' or quote.
func ParseIdentity(v []byte) (Identity, error) {
	var id Identity
	v = bytes.TrimSpace(v)
	if len(v) > MaxIdentityLen {
		return id, fmt.Errorf("%w: identity longer than %d bytes", ErrMalformed, MaxIdentityLen)
	}
	end := bytes.IndexByte(v, ';')
	if end < 0 {
		end = len(v)
	}
	tok := bytes.TrimSpace(v[:end])
	if len(tok) == 0 {
		return id, fmt.Errorf("%w: empty", ErrMalformed)
	}
	for _, c := range tok {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '=') {
			return id, fmt.Errorf("%w: byte 0x%02x in the token", ErrMalformed, c)
		}
	}
	id.Token = tok
	rest := v[end:]
	for len(rest) > 0 {
		// rest starts with ';'
		rest = bytes.TrimLeft(rest[1:], lws)
		eq := -1
		i := 0
		for ; i < len(rest) && rest[i] != ';' && rest[i] != '='; i++ {
		}
		name := bytes.TrimSpace(rest[:i])
		var val []byte
		if i < len(rest) && rest[i] == '=' {
			eq = i
			j := eq + 1
			for j < len(rest) && isLWS(rest[j]) {
				j++
			}
			k, err := paramValueEnd(rest, j)
			if err != nil {
				return Identity{}, err
			}
			val = bytes.TrimSpace(rest[j:k])
			i = k
			for i < len(rest) && rest[i] != ';' {
				if !isLWS(rest[i]) {
					return Identity{}, fmt.Errorf("%w: junk after parameter %q", ErrMalformed, name)
				}
				i++
			}
		}
		for _, c := range name {
			if c <= ' ' || c >= 0x7f {
				return Identity{}, fmt.Errorf("%w: byte 0x%02x in a parameter name", ErrMalformed, c)
			}
		}
		switch {
		case bytes.EqualFold(name, []byte("info")):
			u := unquote(val)
			if len(u) >= 2 && u[0] == '<' && u[len(u)-1] == '>' {
				u = u[1 : len(u)-1]
			}
			id.Info = string(u)
		case bytes.EqualFold(name, []byte("alg")):
			id.Alg = string(unquote(val))
		case bytes.EqualFold(name, []byte("ppt")):
			id.PPT = string(unquote(val))
		}
		rest = rest[i:]
	}
	return id, nil
}

// paramValueEnd returns where a parameter value starting at j ends: after a
// quoted string or an <...> URI, else at the next ';'.
func paramValueEnd(b []byte, j int) (int, error) {
	if j < len(b) && (b[j] == '"' || b[j] == '<') {
		closer := byte('"')
		if b[j] == '<' {
			closer = '>'
		}
		for k := j + 1; k < len(b); k++ {
			c := b[k]
			if c < 0x20 || c == 0x7f {
				return 0, fmt.Errorf("%w: control byte in a parameter", ErrMalformed)
			}
			if c == '\\' && closer == '"' {
				k++
				continue
			}
			if c == closer {
				return k + 1, nil
			}
		}
		return 0, fmt.Errorf("%w: unterminated %q", ErrMalformed, b[j])
	}
	k := j
	for k < len(b) && b[k] != ';' {
		if (b[k] < 0x20 && !isLWS(b[k])) || b[k] == 0x7f {
			return 0, fmt.Errorf("%w: control byte in a parameter", ErrMalformed)
		}
		k++
	}
	return k, nil
}

// lws is linear white space: a folded header value (RFC 3261 7.3.1) keeps
// its CRLF and the white space after it.
const lws = " \t\r\n"

func isLWS(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func unquote(v []byte) []byte {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		return v[1 : len(v)-1]
	}
	return v
}

// SplitIdentities calls fn for each Identity value in one header field
// value: several values may be joined with commas (RFC 3261 7.3.1); commas
// inside <...> or quotes do not split. It stops early when fn returns false.
func SplitIdentities(field []byte, fn func(v []byte) bool) {
	start, inAngle, inQuote := 0, false, false
	for i := 0; i < len(field); i++ {
		switch c := field[i]; {
		case inQuote:
			if c == '\\' {
				i++
			} else if c == '"' {
				inQuote = false
			}
		case c == '"':
			inQuote = true
		case c == '<':
			inAngle = true
		case c == '>':
			inAngle = false
		case c == ',' && !inAngle:
			if v := bytes.TrimSpace(field[start:i]); len(v) > 0 && !fn(v) {
				return
			}
			start = i + 1
		}
	}
	if v := bytes.TrimSpace(field[start:]); len(v) > 0 {
		fn(v)
	}
}
