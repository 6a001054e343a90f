package auth

import (
	"errors"
	"fmt"
)

// Bounds of the credentials parser: a header longer than MaxCredentialsLen,
// a value longer than maxValueLen or more than maxParams parameters is refused.
const (
	MaxCredentialsLen = 4096
	maxValueLen       = 1024
	maxParams         = 24
	scratchLen        = 512
)

// Errors of ParseCredentials (wrapped with detail; test with errors.Is).
var (
	ErrNotDigest   = errors.New("auth: not Digest credentials")
	ErrCredentials = errors.New("auth: malformed digest credentials")
)

// Credentials are the parameters of a Digest Authorization or
// Proxy-Authorization header value (RFC 3261 section 25.1 digest-response,
// RFC 7616 section 3.4). Byte slices point into the parsed value, or into
// the Credentials' own scratch space for quoted strings that held escapes:
// a Credentials must not be copied after parsing, nor kept after the header
// bytes are reused.
type Credentials struct {
	Username  []byte
	Realm     []byte
	Nonce     []byte
	URI       []byte
	Response  []byte
	CNonce    []byte
	Opaque    []byte
	QOP       []byte // "auth" (quoted or not); empty when absent
	NC        []byte // the nonce-count as sent: 8 hex digits
	NonceCnt  uint32 // NC's value
	Algorithm Algorithm
	// AlgorithmSet is true when the algorithm parameter was present (absent means MD5).
	AlgorithmSet bool
	// UserHash is true when the client sent userhash=true (not supported in SIP).
	UserHash bool

	scratch [scratchLen]byte
	used    int
}

// ParseCredentials parses a header value such as
//
//	Digest username="bob", realm="sip.example.com", nonce="...", uri="sip:sip.example.com",
//	       response="...", algorithm=SHA-256, cnonce="...", qop=auth, nc=00000001
//
// into c. It allocates nothing. Unknown parameters are skipped (RFC 7616
// auth-param); a parameter given twice, an unterminated quoted string, a bad
// nonce-count or an unknown algorithm is an error.
func ParseCredentials(c *Credentials, b []byte) error {
	*c = Credentials{}
	if len(b) > MaxCredentialsLen {
		return fmt.Errorf("%w: longer than %d bytes", ErrCredentials, MaxCredentialsLen)
	}
	i := skipLWS(b, 0)
	j := i
	for j < len(b) && isToken(b[j]) {
		j++
	}
	if !equalFold(b[i:j], "Digest") {
		return ErrNotDigest
	}
	if j == len(b) || !isLWS(b[j]) {
		return fmt.Errorf("%w: no parameters", ErrCredentials)
	}
	i = j
	var seen uint16
	for n := 0; ; n++ {
		if n == maxParams {
			return fmt.Errorf("%w: more than %d parameters", ErrCredentials, maxParams)
		}
		i = skipLWS(b, i)
		// name
		j = i
		for j < len(b) && isToken(b[j]) {
			j++
		}
		if j == i {
			return fmt.Errorf("%w: parameter name expected at byte %d", ErrCredentials, i)
		}
		name := b[i:j]
		i = skipLWS(b, j)
		if i == len(b) || b[i] != '=' {
			return fmt.Errorf("%w: '=' expected after a parameter name", ErrCredentials)
		}
		i = skipLWS(b, i+1)
		// value: token or quoted-string
		var val []byte
		quoted := false
		if i < len(b) && b[i] == '"' {
			quoted = true
			var err error
			val, i, err = c.quoted(b, i)
			if err != nil {
				return err
			}
		} else {
			j = i
			for j < len(b) && isToken(b[j]) {
				j++
			}
			val, i = b[i:j], j
		}
		if len(val) > maxValueLen {
			return fmt.Errorf("%w: a value is longer than %d bytes", ErrCredentials, maxValueLen)
		}
		if err := c.set(name, val, quoted, &seen); err != nil {
			return err
		}
		i = skipLWS(b, i)
		if i == len(b) {
			break
		}
		if b[i] != ',' {
			return fmt.Errorf("%w: ',' expected between parameters at byte %d", ErrCredentials, i)
		}
		i++
	}
	if c.Algorithm == AlgUnknown {
		c.Algorithm = MD5 // RFC 7616 3.4: absent means MD5
	}
	return nil
}

// Bits of parameters seen, to refuse duplicates.
const (
	pUsername = 1 << iota
	pRealm
	pNonce
	pURI
	pResponse
	pCNonce
	pOpaque
	pQOP
	pNC
	pAlgorithm
	pUserHash
)

func (c *Credentials) set(name, val []byte, quoted bool, seen *uint16) error {
	var bit uint16
	var dst *[]byte
	switch {
	case equalFold(name, "username"):
		bit, dst = pUsername, &c.Username
	case equalFold(name, "realm"):
		bit, dst = pRealm, &c.Realm
	case equalFold(name, "nonce"):
		bit, dst = pNonce, &c.Nonce
	case equalFold(name, "uri"):
		bit, dst = pURI, &c.URI
	case equalFold(name, "response"):
		bit, dst = pResponse, &c.Response
	case equalFold(name, "cnonce"):
		bit, dst = pCNonce, &c.CNonce
	case equalFold(name, "opaque"):
		bit, dst = pOpaque, &c.Opaque
	case equalFold(name, "qop"):
		bit, dst = pQOP, &c.QOP
	case equalFold(name, "nc"):
		bit, dst = pNC, &c.NC
	case equalFold(name, "algorithm"):
		bit = pAlgorithm
	case equalFold(name, "userhash"):
		bit = pUserHash
	default:
		return nil // an auth-param of an extension
	}
	if *seen&bit != 0 {
		return fmt.Errorf("%w: parameter %s given twice", ErrCredentials, name)
	}
	*seen |= bit
	switch bit {
	case pAlgorithm:
		c.AlgorithmSet = true
		c.Algorithm = ParseAlgorithm(val)
		if c.Algorithm == AlgUnknown {
			return fmt.Errorf("%w: unsupported algorithm", ErrCredentials)
		}
		return nil
	case pUserHash:
		c.UserHash = equalFold(val, "true")
		return nil
	case pNC:
		if quoted || len(val) != 8 {
			return fmt.Errorf("%w: nc must be 8 hex digits", ErrCredentials)
		}
		var n uint32
		for _, x := range val {
			d, ok := hexVal(x)
			if !ok {
				return fmt.Errorf("%w: nc must be 8 hex digits", ErrCredentials)
			}
			n = n<<4 | uint32(d)
		}
		c.NonceCnt = n
	}
	*dst = val
	return nil
}

// quoted reads the quoted-string starting at b[i] == '"'. It returns its
// content (unescaped into the scratch space when it holds quoted-pairs) and
// the index after the closing quote.
func (c *Credentials) quoted(b []byte, i int) ([]byte, int, error) {
	start := i + 1
	esc := false
	for j := start; j < len(b); j++ {
		switch x := b[j]; {
		case x == '\\':
			esc = true
			j++
		case x == '"':
			if !esc {
				return b[start:j], j + 1, nil
			}
			return c.unescape(b[start:j], j+1)
		case x < ' ' && x != '\t' || x == 0x7f:
			return nil, 0, fmt.Errorf("%w: control byte in a quoted string", ErrCredentials)
		}
	}
	return nil, 0, fmt.Errorf("%w: unterminated quoted string", ErrCredentials)
}

func (c *Credentials) unescape(in []byte, next int) ([]byte, int, error) {
	start := c.used
	for k := 0; k < len(in); k++ {
		x := in[k]
		if x == '\\' && k+1 < len(in) {
			k++
			x = in[k]
		}
		if c.used == len(c.scratch) {
			return nil, 0, fmt.Errorf("%w: too many escaped strings", ErrCredentials)
		}
		c.scratch[c.used] = x
		c.used++
	}
	return c.scratch[start:c.used], next, nil
}

func hexVal(x byte) (byte, bool) {
	switch {
	case '0' <= x && x <= '9':
		return x - '0', true
	case 'a' <= x && x <= 'f':
		return x - 'a' + 10, true
	case 'A' <= x && x <= 'F':
		return x - 'A' + 10, true
	}
	return 0, false
}

func isLWS(x byte) bool { return x == ' ' || x == '\t' || x == '\r' || x == '\n' }

func skipLWS(b []byte, i int) int {
	for i < len(b) && isLWS(b[i]) {
		i++
	}
	return i
}

// isToken reports whether x is a token character (RFC 3261 25.1).
func isToken(x byte) bool {
	switch {
	case 'a' <= x && x <= 'z', 'A' <= x && x <= 'Z', '0' <= x && x <= '9':
		return true
	}
	switch x {
	case '-', '.', '!', '%', '*', '_', '+', '`', '\'', '~':
		return true
	}
	return false
}
