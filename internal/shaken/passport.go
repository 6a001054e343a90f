package shaken

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Size bounds on input from the network. A real SHAKEN Identity value is
// about 500 bytes; these leave room for long x5u URLs and extra claims.
const (
	// MaxIdentityLen is the longest Identity header value parsed.
	MaxIdentityLen = 4096
	// MaxTokenPartLen is the longest base64url header or claims part of a PASSporT.
	MaxTokenPartLen = 2048
	// MaxDestTNs is the most destination numbers accepted in dest.tn.
	MaxDestTNs = 16
	// maxTNLen bounds one telephone number in a claim.
	maxTNLen = 32
)

// PASSporT types (the ppt header claim and Identity parameter).
const (
	PPTShaken = "shaken"
	AlgES256  = "ES256"
	TypPass   = "passport"
)

// Attestation levels of RFC 8588 section 4.
const (
	AttestA = "A" // full: the caller is known and entitled to the number
	AttestB = "B" // partial: the caller is known, the number is not theirs
	AttestC = "C" // gateway: the call entered the network from elsewhere
)

// Errors a caller may want to tell apart (errors.Is).
var (
	// ErrMalformed: the Identity header or the PASSporT cannot be parsed (438).
	ErrMalformed = errors.New("malformed identity")
	// ErrUnsupported: a PASSporT type or algorithm we do not handle; the
	// Identity is skipped, not failed.
	ErrUnsupported = errors.New("unsupported passport")
	// ErrSignature: the signature does not verify (438).
	ErrSignature = errors.New("invalid signature")
)

// Header is the PASSporT JOSE header (RFC 8225 section 5, RFC 8588 section 3).
type Header struct {
	Alg string // "ES256"
	PPT string // "shaken"
	Typ string // "passport"
	X5U string // where the signing certificate is
}

// Claims are the SHAKEN PASSporT claims (RFC 8225 section 5.2, RFC 8588 section 4).
// Telephone numbers are canonical: digits only, no '+' (RFC 8224 section 8.3).
type Claims struct {
	Attest string   // A, B or C
	Orig   string   // orig.tn
	Dest   []string // dest.tn
	IAT    int64    // seconds since the epoch
	OrigID string   // a UUID identifying the origination point
}

// AppendJSON appends the canonical JSON of h (keys sorted, no white space).
// An empty PPT is left out (a plain RFC 8225 PASSporT).
func (h *Header) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"alg":`...)
	dst = appendJSONString(dst, h.Alg)
	if h.PPT != "" {
		dst = append(dst, `,"ppt":`...)
		dst = appendJSONString(dst, h.PPT)
	}
	dst = append(dst, `,"typ":`...)
	dst = appendJSONString(dst, h.Typ)
	dst = append(dst, `,"x5u":`...)
	dst = appendJSONString(dst, h.X5U)
	return append(dst, '}')
}

// AppendJSON appends the canonical JSON of c (keys sorted, no white space).
func (c *Claims) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"attest":`...)
	dst = appendJSONString(dst, c.Attest)
	dst = append(dst, `,"dest":{"tn":[`...)
	for i, tn := range c.Dest {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, tn)
	}
	dst = append(dst, `]},"iat":`...)
	dst = strconv.AppendInt(dst, c.IAT, 10)
	dst = append(dst, `,"orig":{"tn":`...)
	dst = appendJSONString(dst, c.Orig)
	dst = append(dst, `},"origid":`...)
	dst = appendJSONString(dst, c.OrigID)
	return append(dst, '}')
}

// appendJSONString appends s as a JSON string: quotes, backslash and
// control characters escaped, nothing else (no HTML escaping: '&' stays '&').
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// Check reports whether c is a SHAKEN claim set we are willing to sign.
func (c *Claims) Check() error {
	switch c.Attest {
	case AttestA, AttestB, AttestC:
	default:
		return fmt.Errorf("attest %q: want A, B or C", c.Attest)
	}
	if !validTN(c.Orig) {
		return fmt.Errorf("orig %q: want 1 to 15 digits", c.Orig)
	}
	if len(c.Dest) == 0 || len(c.Dest) > MaxDestTNs {
		return fmt.Errorf("dest: want 1 to %d numbers, have %d", MaxDestTNs, len(c.Dest))
	}
	for _, tn := range c.Dest {
		if !validTN(tn) {
			return fmt.Errorf("dest %q: want 1 to 15 digits", tn)
		}
	}
	if c.IAT <= 0 {
		return fmt.Errorf("iat %d: want seconds since the epoch", c.IAT)
	}
	if !ValidUUID(c.OrigID) {
		return fmt.Errorf("origid %q: want a UUID", c.OrigID)
	}
	return nil
}

func validTN(s string) bool {
	if len(s) == 0 || len(s) > 15 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// ValidUUID reports whether s is a UUID in its 8-4-4-4-12 hex form.
func ValidUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// NewUUID returns a random (version 4) UUID from r (crypto/rand when nil).
func NewUUID(r io.Reader) (string, error) {
	if r == nil {
		r = rand.Reader
	}
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", fmt.Errorf("uuid: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	const hex = "0123456789abcdef"
	out := make([]byte, 0, 36)
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out = append(out, '-')
		}
		out = append(out, hex[c>>4], hex[c&0xf])
	}
	return string(out), nil
}

// CanonicalTN returns the RFC 8224 section 8.3 form of a telephone number:
// its digits, without '+' and visual separators. ok is false when s holds
// anything else, or no digit, or more than 15.
func CanonicalTN(s string) (string, bool) {
	var buf [maxTNLen]byte
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			if n == 15 {
				return "", false
			}
			buf[n] = c
			n++
		case c == '+' && n == 0 && i == 0:
		case c == '-' || c == '.' || c == '(' || c == ')' || c == ' ':
		default:
			return "", false
		}
	}
	if n == 0 {
		return "", false
	}
	if n == len(s) {
		return s, true
	}
	return string(buf[:n]), true
}

var b64 = base64.RawURLEncoding

// Sign builds and signs a SHAKEN PASSporT with key (a P-256 key) and
// returns its compact serialisation header.claims.signature. The header is
// {alg ES256, ppt shaken, typ passport, x5u}; claims must pass Check.
func Sign(key *ecdsa.PrivateKey, x5u string, c *Claims) (string, error) {
	buf, err := AppendSigned(nil, key, x5u, c)
	if err != nil {
		return "", err
	}
	return string(buf), nil
}

// AppendSigned is Sign appending to dst.
func AppendSigned(dst []byte, key *ecdsa.PrivateKey, x5u string, c *Claims) ([]byte, error) {
	if key == nil || key.Curve != elliptic.P256() {
		return dst, errors.New("sign: want a P-256 private key for ES256")
	}
	if err := c.Check(); err != nil {
		return dst, fmt.Errorf("sign: %w", err)
	}
	h := Header{Alg: AlgES256, PPT: PPTShaken, Typ: TypPass, X5U: x5u}
	var scratch [512]byte
	js := h.AppendJSON(scratch[:0])
	start := len(dst)
	dst = b64.AppendEncode(dst, js)
	dst = append(dst, '.')
	js = c.AppendJSON(js[:0])
	dst = b64.AppendEncode(dst, js)
	sig, err := signES256(key, dst[start:])
	if err != nil {
		return dst[:start], err
	}
	dst = append(dst, '.')
	return b64.AppendEncode(dst, sig[:]), nil
}

// signES256 signs input (the JWS signing input) and returns R||S, each left
// padded to 32 bytes (RFC 7518 section 3.4).
func signES256(key *ecdsa.PrivateKey, input []byte) ([64]byte, error) {
	var out [64]byte
	digest := sha256.Sum256(input)
	der, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err != nil {
		return out, fmt.Errorf("sign: %w", err)
	}
	if !rawFromDER(&out, der) {
		return out, errors.New("sign: unexpected signature encoding")
	}
	return out, nil
}

// rawFromDER turns a DER ECDSA P-256 signature (SEQUENCE of two INTEGERs,
// short-form lengths) into R||S, each left padded to 32 bytes.
func rawFromDER(out *[64]byte, der []byte) bool {
	if len(der) < 2 || der[0] != 0x30 || int(der[1]) != len(der)-2 || der[1] >= 0x80 {
		return false
	}
	b := der[2:]
	for i := 0; i < 2; i++ {
		if len(b) < 2 || b[0] != 0x02 || b[1] >= 0x80 || int(b[1]) > len(b)-2 {
			return false
		}
		v := b[2 : 2+int(b[1])]
		b = b[2+int(b[1]):]
		for len(v) > 0 && v[0] == 0 {
			v = v[1:]
		}
		if len(v) > 32 {
			return false
		}
		copy(out[32*i+32-len(v):32*i+32], v)
	}
	return len(b) == 0
}

// PASSporT is a parsed token. Header and Claims are decoded from the JSON
// as received (which need not be canonical); the signature covers the
// received bytes.
type PASSporT struct {
	Header Header
	Claims Claims
	// HeaderJSON and ClaimsJSON are the decoded JSON as received (for inspect).
	HeaderJSON, ClaimsJSON []byte
	// signingInput is header.claims as received; sig is the raw R||S signature.
	signingInput []byte
	sig          [64]byte
}

// ParsePASSporT parses a compact-serialised PASSporT header.claims.signature.
// It checks the shape (sizes, base64url, JSON, a 64-byte signature) and
// decodes the SHAKEN claims; it does not judge them (see Verifier) and does
// not verify the signature (see VerifySignature). A token whose ppt is not
// "shaken" or whose alg is not ES256 returns an error wrapping ErrUnsupported
// along with the parsed header.
func ParsePASSporT(tok []byte) (*PASSporT, error) {
	d1 := bytes.IndexByte(tok, '.')
	if d1 < 0 {
		return nil, fmt.Errorf("%w: passport has no '.'", ErrMalformed)
	}
	d2 := bytes.IndexByte(tok[d1+1:], '.')
	if d2 < 0 {
		return nil, fmt.Errorf("%w: passport has one '.'", ErrMalformed)
	}
	d2 += d1 + 1
	hb, cb, sb := tok[:d1], tok[d1+1:d2], tok[d2+1:]
	if len(hb) == 0 {
		return nil, fmt.Errorf("%w: compact form (empty header) is not supported", ErrUnsupported)
	}
	if len(hb) > MaxTokenPartLen || len(cb) > MaxTokenPartLen {
		return nil, fmt.Errorf("%w: passport part longer than %d bytes", ErrMalformed, MaxTokenPartLen)
	}
	if len(cb) == 0 {
		return nil, fmt.Errorf("%w: compact form (empty claims) is not supported", ErrUnsupported)
	}
	p := &PASSporT{signingInput: tok[:d2]}
	var err error
	if p.HeaderJSON, err = decodeB64(hb); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	if p.ClaimsJSON, err = decodeB64(cb); err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrMalformed, err)
	}
	sig, err := decodeB64(sb)
	if err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrMalformed, err)
	}
	var jh struct {
		Alg string `json:"alg"`
		PPT string `json:"ppt"`
		Typ string `json:"typ"`
		X5U string `json:"x5u"`
	}
	if err := json.Unmarshal(p.HeaderJSON, &jh); err != nil {
		return nil, fmt.Errorf("%w: header json: %v", ErrMalformed, err)
	}
	p.Header = Header{Alg: jh.Alg, PPT: jh.PPT, Typ: jh.Typ, X5U: jh.X5U}
	if jh.PPT != PPTShaken {
		return p, fmt.Errorf("%w: ppt %q", ErrUnsupported, jh.PPT)
	}
	if jh.Alg != AlgES256 {
		return p, fmt.Errorf("%w: alg %q", ErrUnsupported, jh.Alg)
	}
	if jh.Typ != "" && jh.Typ != TypPass {
		return nil, fmt.Errorf("%w: typ %q", ErrMalformed, jh.Typ)
	}
	if jh.X5U == "" {
		return nil, fmt.Errorf("%w: no x5u", ErrMalformed)
	}
	if len(sig) != 64 {
		return nil, fmt.Errorf("%w: ES256 signature of %d bytes, want 64", ErrMalformed, len(sig))
	}
	copy(p.sig[:], sig)
	var jc struct {
		Attest string          `json:"attest"`
		Dest   *jsonTNs        `json:"dest"`
		IAT    json.RawMessage `json:"iat"`
		Orig   *struct {
			TN string `json:"tn"`
		} `json:"orig"`
		OrigID string `json:"origid"`
	}
	if err := json.Unmarshal(p.ClaimsJSON, &jc); err != nil {
		return nil, fmt.Errorf("%w: claims json: %v", ErrMalformed, err)
	}
	if jc.Orig == nil || jc.Orig.TN == "" {
		return nil, fmt.Errorf("%w: no orig.tn", ErrMalformed)
	}
	if jc.Dest == nil || len(jc.Dest.TN) == 0 {
		return nil, fmt.Errorf("%w: no dest.tn", ErrMalformed)
	}
	iat, err := parseNumericDate(jc.IAT)
	if err != nil {
		return nil, fmt.Errorf("%w: iat: %v", ErrMalformed, err)
	}
	switch jc.Attest {
	case AttestA, AttestB, AttestC:
	default:
		return nil, fmt.Errorf("%w: attest %q", ErrMalformed, jc.Attest)
	}
	if jc.OrigID == "" {
		return nil, fmt.Errorf("%w: no origid", ErrMalformed)
	}
	p.Claims = Claims{Attest: jc.Attest, Orig: jc.Orig.TN, Dest: jc.Dest.TN, IAT: iat, OrigID: jc.OrigID}
	return p, nil
}

// jsonTNs is dest: {"tn": [...]}; a single string is accepted too (seen
// from non-conforming signers), and more than MaxDestTNs is refused.
type jsonTNs struct{ TN []string }

func (d *jsonTNs) UnmarshalJSON(b []byte) error {
	var raw struct {
		TN json.RawMessage `json:"tn"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	if len(raw.TN) == 0 {
		return nil
	}
	if raw.TN[0] == '"' {
		var one string
		if err := json.Unmarshal(raw.TN, &one); err != nil {
			return err
		}
		d.TN = []string{one}
		return nil
	}
	if err := json.Unmarshal(raw.TN, &d.TN); err != nil {
		return err
	}
	if len(d.TN) > MaxDestTNs {
		return fmt.Errorf("dest.tn has %d numbers, at most %d", len(d.TN), MaxDestTNs)
	}
	return nil
}

func parseNumericDate(raw json.RawMessage) (int64, error) {
	if len(raw) == 0 {
		return 0, errors.New("missing")
	}
	if raw[0] == '"' {
		return 0, errors.New("a string, not a number")
	}
	n := json.Number(raw)
	if v, err := n.Int64(); err == nil {
		if v <= 0 {
			return 0, fmt.Errorf("%d is not a date", v)
		}
		return v, nil
	}
	f, err := n.Float64() // RFC 7519 NumericDate may carry a fraction
	if err != nil || f <= 0 || f > 1e11 {
		return 0, fmt.Errorf("%q is not a date", string(n))
	}
	return int64(f), nil
}

func decodeB64(s []byte) ([]byte, error) {
	// Some signers pad; RFC 7515 says not to. Accept and strip the padding.
	s = bytes.TrimRight(s, "=")
	out := make([]byte, b64.DecodedLen(len(s)))
	n, err := b64.Decode(out, s)
	if err != nil {
		return nil, err
	}
	return out[:n], nil
}

// VerifySignature checks the ES256 signature of p against pub.
func (p *PASSporT) VerifySignature(pub *ecdsa.PublicKey) error {
	if pub == nil || pub.Curve != elliptic.P256() {
		return fmt.Errorf("%w: the certificate key is not P-256", ErrSignature)
	}
	digest := sha256.Sum256(p.signingInput)
	var der [72]byte
	if !ecdsa.VerifyASN1(pub, digest[:], appendDERSig(der[:0], &p.sig)) {
		return ErrSignature
	}
	return nil
}

// appendDERSig appends the ASN.1 DER form of a raw R||S signature
// (SEQUENCE of two INTEGERs), which is what crypto/ecdsa verifies; building
// it here avoids two big.Int values per verification.
func appendDERSig(dst []byte, sig *[64]byte) []byte {
	integer := func(dst, v []byte) []byte {
		for len(v) > 1 && v[0] == 0 {
			v = v[1:]
		}
		pad := v[0]&0x80 != 0
		n := len(v)
		if pad {
			n++
		}
		dst = append(dst, 0x02, byte(n))
		if pad {
			dst = append(dst, 0)
		}
		return append(dst, v...)
	}
	start := len(dst)
	dst = append(dst, 0x30, 0)
	dst = integer(dst, sig[:32])
	dst = integer(dst, sig[32:])
	dst[start+1] = byte(len(dst) - start - 2)
	return dst
}
