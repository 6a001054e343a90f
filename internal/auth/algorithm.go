package auth

import (
	"crypto/md5" //nolint:gosec // MD5 is a digest algorithm SIP phones still need; it is offered last, never to SHA-only accounts.
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"strings"
)

// Algorithm is a digest algorithm (RFC 7616 section 3.3, RFC 8760).
type Algorithm uint8

// The algorithms sipwarden speaks, weakest first. The zero value is not an algorithm.
const (
	AlgUnknown Algorithm = iota
	MD5
	SHA256
	SHA512256
	numAlgorithms
)

var algNames = [numAlgorithms]string{"", "MD5", "SHA-256", "SHA-512-256"}

// Algorithms lists every algorithm, strongest first.
var Algorithms = []Algorithm{SHA512256, SHA256, MD5}

// DefaultOffer is the offer of a realm that names none: SHA-256 alone.
// Linphone and Debian's baresip answer only the first challenge of a 401
// (and give up when they cannot compute it), so the first one must be an
// algorithm the common softphones know: SHA-256 (Linphone, MicroSIP,
// Zoiper, Grandstream, pjsip) rather than SHA-512-256 (few do). MD5 and
// SHA-512-256 are offered only where a trunk lists them.
var DefaultOffer = []Algorithm{SHA256}

// String returns the algorithm token as written in a challenge ("SHA-256").
func (a Algorithm) String() string {
	if a < numAlgorithms {
		return algNames[a]
	}
	return ""
}

// Key returns the lower-case name used as a configuration key ("sha-256").
func (a Algorithm) Key() string { return strings.ToLower(a.String()) }

// ParseAlgorithm maps a token (any case) to an Algorithm; AlgUnknown when it
// is none that sipwarden accepts (the "-sess" variants included).
func ParseAlgorithm(b []byte) Algorithm {
	for a := MD5; a < numAlgorithms; a++ {
		if equalFold(b, algNames[a]) {
			return a
		}
	}
	return AlgUnknown
}

// HexLen is the length of a hex digest of the algorithm (32 for MD5, 64 otherwise).
func (a Algorithm) HexLen() int {
	if a == MD5 {
		return 2 * md5.Size
	}
	return 2 * sha256.Size
}

// appendSum appends the lower-case hex digest of in to dst.
func (a Algorithm) appendSum(dst, in []byte) []byte {
	var sum [sha256.Size]byte
	n := 0
	switch a {
	case MD5:
		s := md5.Sum(in) //nolint:gosec // see the import
		n = copy(sum[:], s[:])
	case SHA256:
		sum = sha256.Sum256(in)
		n = sha256.Size
	case SHA512256:
		sum = sha512.Sum512_256(in)
		n = sha512.Size256
	}
	var h [2 * sha256.Size]byte
	hex.Encode(h[:], sum[:n])
	return append(dst, h[:2*n]...)
}

// HA1 returns H(username ":" realm ":" password) in lower-case hex: what an
// account stores instead of its password (RFC 7616 section 3.4.2).
func HA1(a Algorithm, username, realm, password string) string {
	in := make([]byte, 0, len(username)+len(realm)+len(password)+2)
	in = append(in, username...)
	in = append(in, ':')
	in = append(in, realm...)
	in = append(in, ':')
	in = append(in, password...)
	return string(a.appendSum(nil, in))
}

// equalFold compares b with the ASCII string s, ignoring case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
