package media

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/pion/srtp/v3"
)

// Suite is an SRTP crypto suite that can be negotiated with SDES (RFC 4568
// section 6.2, RFC 7714 section 14.2 for AEAD_AES_128_GCM).
type Suite uint8

// The suites sipwarden negotiates, in its order of preference when it offers.
const (
	SuiteNone Suite = iota
	AES_CM_128_HMAC_SHA1_80
	AES_CM_128_HMAC_SHA1_32
	AEAD_AES_128_GCM
)

// offeredSuites is the order in which sipwarden lists suites in an offer:
// the most widely interoperable first (RFC 4568's mandatory suite).
var offeredSuites = [...]Suite{AES_CM_128_HMAC_SHA1_80, AEAD_AES_128_GCM, AES_CM_128_HMAC_SHA1_32}

// String returns the suite's SDES name.
func (s Suite) String() string {
	switch s {
	case AES_CM_128_HMAC_SHA1_80:
		return "AES_CM_128_HMAC_SHA1_80"
	case AES_CM_128_HMAC_SHA1_32:
		return "AES_CM_128_HMAC_SHA1_32"
	case AEAD_AES_128_GCM:
		return "AEAD_AES_128_GCM"
	}
	return "none"
}

// ParseSuite returns the suite named s (SDES names are case-sensitive), or SuiteNone.
func ParseSuite(s string) Suite {
	switch s {
	case "AES_CM_128_HMAC_SHA1_80":
		return AES_CM_128_HMAC_SHA1_80
	case "AES_CM_128_HMAC_SHA1_32":
		return AES_CM_128_HMAC_SHA1_32
	case "AEAD_AES_128_GCM":
		return AEAD_AES_128_GCM
	}
	return SuiteNone
}

// profile maps the suite to pion/srtp's protection profile.
func (s Suite) profile() srtp.ProtectionProfile {
	switch s {
	case AES_CM_128_HMAC_SHA1_32:
		return srtp.ProtectionProfileAes128CmHmacSha1_32
	case AEAD_AES_128_GCM:
		return srtp.ProtectionProfileAeadAes128Gcm
	}
	return srtp.ProtectionProfileAes128CmHmacSha1_80
}

// keyLen is the length of the concatenated master key and master salt:
// 16+14 for AES-CM (RFC 3711 section 8.2), 16+12 for AES-GCM (RFC 7714 section 12).
func (s Suite) keyLen() int {
	switch s {
	case AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32:
		return 30
	case AEAD_AES_128_GCM:
		return 28
	}
	return 0
}

// Key is SRTP master key material (master key followed by master salt). It
// prints as "[redacted]" whichever way it is formatted or logged, so that a
// stray log line cannot leak it.
type Key []byte

// String implements fmt.Stringer without revealing the key.
func (Key) String() string { return "[redacted]" }

// GoString implements fmt.GoStringer without revealing the key.
func (Key) GoString() string { return "[redacted]" }

// LogValue implements slog.LogValuer without revealing the key.
func (Key) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// Format implements fmt.Formatter so that even %x and %v print no key bytes.
func (Key) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte("[redacted]")) }

// Crypto is one SDES a=crypto attribute (RFC 4568 section 9.1):
//
//	a=crypto:<tag> <crypto-suite> inline:<key||salt>[|<lifetime>][|<MKI>:<length>] [<session-param>...]
//
// Only what sipwarden can use is kept: one key parameter without MKI, and no
// session parameter that weakens SRTP.
type Crypto struct {
	Tag   uint32
	Suite Suite
	Key   Key
}

// Errors of ParseCrypto. A caller skips an attribute that fails to parse with
// ErrUnsupportedCrypto and may still accept another one of the same m-line
// (RFC 4568 section 7.1.1: the answerer picks one it supports).
var (
	ErrMalformedCrypto   = errors.New("malformed a=crypto attribute")
	ErrUnsupportedCrypto = errors.New("unsupported a=crypto attribute")
)

// maxCryptoLen bounds the attribute value a parser looks at.
const maxCryptoLen = 1024

// ParseCrypto parses the value of an a=crypto attribute (the text after "crypto:").
func ParseCrypto(value string) (Crypto, error) {
	var c Crypto
	if len(value) > maxCryptoLen {
		return c, fmt.Errorf("%w: longer than %d bytes", ErrMalformedCrypto, maxCryptoLen)
	}
	fields := strings.Fields(value)
	if len(fields) < 3 {
		return c, fmt.Errorf("%w: want tag, suite and key parameters", ErrMalformedCrypto)
	}
	// tag = 1*9DIGIT
	if len(fields[0]) > 9 {
		return c, fmt.Errorf("%w: tag longer than 9 digits", ErrMalformedCrypto)
	}
	for i := 0; i < len(fields[0]); i++ {
		if fields[0][i] < '0' || fields[0][i] > '9' {
			return c, fmt.Errorf("%w: tag is not a number", ErrMalformedCrypto)
		}
	}
	tag, _ := strconv.ParseUint(fields[0], 10, 32) // 9 digits always fit
	c.Tag = uint32(tag)
	c.Suite = ParseSuite(fields[1])
	if c.Suite == SuiteNone {
		return c, fmt.Errorf("%w: suite %.40q", ErrUnsupportedCrypto, fields[1])
	}
	// Several key parameters (separated by ';') are only meaningful with
	// MKIs, which sipwarden does not use.
	kp := fields[2]
	if strings.IndexByte(kp, ';') >= 0 {
		return c, fmt.Errorf("%w: more than one key parameter", ErrUnsupportedCrypto)
	}
	key, ok := strings.CutPrefix(kp, "inline:")
	if !ok {
		return c, fmt.Errorf("%w: key method is not inline", ErrUnsupportedCrypto)
	}
	key, rest, hasRest := strings.Cut(key, "|")
	if hasRest {
		// The lifetime is allowed (we re-key long before 2^31 packets of a
		// call); an MKI is not: packets would carry it and we do not.
		lifetime, mki, hasMKI := strings.Cut(rest, "|")
		if hasMKI || strings.IndexByte(lifetime, ':') >= 0 {
			if hasMKI && mki == "" {
				return c, fmt.Errorf("%w: empty MKI", ErrMalformedCrypto)
			}
			return c, fmt.Errorf("%w: MKI", ErrUnsupportedCrypto)
		}
		if !validLifetime(lifetime) {
			return c, fmt.Errorf("%w: lifetime", ErrMalformedCrypto)
		}
	}
	raw, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		return c, fmt.Errorf("%w: key is not base64", ErrMalformedCrypto)
	}
	if len(raw) != c.Suite.keyLen() {
		return c, fmt.Errorf("%w: %s key of %d bytes, want %d", ErrMalformedCrypto, c.Suite, len(raw), c.Suite.keyLen())
	}
	c.Key = raw
	for _, p := range fields[3:] {
		if !acceptableSessionParam(p) {
			return c, fmt.Errorf("%w: session parameter %.40q", ErrUnsupportedCrypto, p)
		}
	}
	return c, nil
}

// validLifetime accepts "2^N" and decimal lifetimes (RFC 4568 section 9.2).
func validLifetime(s string) bool {
	if n, ok := strings.CutPrefix(s, "2^"); ok {
		s = n
	}
	if s == "" || len(s) > 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// acceptableSessionParam refuses the session parameters of RFC 4568 section
// 6.3 that weaken SRTP (no encryption, no authentication), that need a key
// derivation rate other than 0, or FEC keys; a window size hint and the FEC
// order are harmless and ignored. Unknown parameters make the attribute
// unacceptable (section 6.3.7: the answerer must understand them).
func acceptableSessionParam(p string) bool {
	switch {
	case strings.HasPrefix(p, "WSH="), strings.HasPrefix(p, "FEC_ORDER="):
		return true
	case p == "KDR=0":
		return true
	}
	return false
}

// attrValue formats the attribute value for an SDP body. It contains the key:
// it goes into SDP and nowhere else.
func (c Crypto) attrValue() string {
	var b strings.Builder
	b.Grow(80)
	b.WriteString(strconv.FormatUint(uint64(c.Tag), 10))
	b.WriteByte(' ')
	b.WriteString(c.Suite.String())
	b.WriteString(" inline:")
	b.WriteString(base64.StdEncoding.EncodeToString(c.Key))
	return b.String()
}

// String describes the attribute without its key.
func (c Crypto) String() string {
	return strconv.FormatUint(uint64(c.Tag), 10) + " " + c.Suite.String() + " inline:[redacted]"
}

// newKey returns fresh random key material for suite s.
func newKey(s Suite) (Key, error) {
	k := make(Key, s.keyLen())
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("generate SRTP key: %w", err)
	}
	return k, nil
}

// context creates a pion/srtp context for the key, with replay protection
// (RFC 3711 section 3.3.2) in both SRTP and SRTCP.
func (c Crypto) context() (*srtp.Context, error) {
	n := c.Suite.keyLen() - saltLen(c.Suite)
	ctx, err := srtp.CreateContext(c.Key[:n], c.Key[n:], c.Suite.profile(),
		srtp.SRTPReplayProtection(replayWindow), srtp.SRTCPReplayProtection(replayWindow))
	if err != nil {
		return nil, fmt.Errorf("create SRTP context %s: %w", c.Suite, err)
	}
	return ctx, nil
}

// replayWindow is the replay list size in packets (RFC 3711 asks for at least 64).
const replayWindow = 128

func saltLen(s Suite) int {
	if s == AEAD_AES_128_GCM {
		return 12
	}
	return 14
}
