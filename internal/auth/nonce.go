package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"net/netip"
	"sync/atomic"
	"time"
)

// Nonce layout, before base64url: version (1) | issue time, Unix ns (8) |
// counter (8) | HMAC-SHA-256 truncated to 16 bytes (16) = 33 bytes, 44 characters.
const (
	nonceVersion = 1
	nonceRawLen  = 1 + 8 + 8 + macLen
	macLen       = 16
	// NonceLen is the length of a nonce as sent.
	NonceLen = (nonceRawLen*8 + 5) / 6
)

// NonceKey identifies one nonce (its MAC) for replay tracking.
type NonceKey [macLen]byte

// Nonces issues and checks stateless nonces. They bind the realm, the issue
// time, a unique counter and the source address of the challenged request,
// authenticated by HMAC-SHA-256 with a secret. A Nonces is safe for
// concurrent use; keep one per process (and the same secret across nodes
// that share clients).
type Nonces struct {
	ipad, opad [sha256.BlockSize]byte
	ctr        atomic.Uint64
}

// NewNonces returns a nonce maker keyed with secret (nil: 32 random bytes).
func NewNonces(secret []byte) *Nonces {
	if secret == nil {
		secret = make([]byte, 32)
		_, _ = rand.Read(secret) // crypto/rand.Read never fails (Go 1.24+)
	}
	n := &Nonces{}
	key := secret
	if len(key) > sha256.BlockSize {
		s := sha256.Sum256(key)
		key = s[:]
	}
	for i := range n.ipad {
		var k byte
		if i < len(key) {
			k = key[i]
		}
		n.ipad[i] = k ^ 0x36
		n.opad[i] = k ^ 0x5c
	}
	var c [8]byte
	_, _ = rand.Read(c[:])
	n.ctr.Store(binary.BigEndian.Uint64(c[:]))
	return n
}

// macBuf is the stack buffer of an HMAC computation: the inner key block
// followed by the message.
type macBuf [sha256.BlockSize + 640]byte

// begin starts an HMAC-SHA-256 message (RFC 2104) in buf.
func (n *Nonces) begin(buf *macBuf, label string) []byte {
	in := append(buf[:0], n.ipad[:]...)
	in = append(in, label...)
	return append(in, 0)
}

// finish completes the HMAC of in (from begin, with the message appended).
func (n *Nonces) finish(in []byte) [sha256.Size]byte {
	inner := sha256.Sum256(in)
	var buf [sha256.BlockSize + sha256.Size]byte
	copy(buf[:], n.opad[:])
	copy(buf[sha256.BlockSize:], inner[:])
	return sha256.Sum256(buf[:])
}

// macNonce authenticates the nonce body (version, time, counter) for realm and src.
func (n *Nonces) macNonce(body []byte, realm string, src netip.Addr) [sha256.Size]byte {
	var buf macBuf
	a := src.Unmap().As16()
	in := n.begin(&buf, "sipwarden-nonce")
	in = append(in, body...)
	in = append(in, a[:]...)
	in = append(in, realm...)
	return n.finish(in)
}

// Append appends a new nonce for a challenge to a request from src in realm.
func (n *Nonces) Append(dst []byte, realm string, src netip.Addr, now time.Time) []byte {
	var raw [nonceRawLen]byte
	raw[0] = nonceVersion
	binary.BigEndian.PutUint64(raw[1:9], uint64(now.UnixNano()))
	binary.BigEndian.PutUint64(raw[9:17], n.ctr.Add(1))
	m := n.macNonce(raw[:17], realm, src)
	copy(raw[17:], m[:macLen])
	return base64.RawURLEncoding.AppendEncode(dst, raw[:])
}

// NonceStatus is the result of checking a nonce.
type NonceStatus uint8

// Results of Check.
const (
	// NonceValid: issued by us, for this realm and source, within its lifetime.
	NonceValid NonceStatus = iota
	// NonceExpired: issued by us for this realm and source, but too old.
	NonceExpired
	// NonceInvalid: not ours, for another realm or source, or from another secret.
	NonceInvalid
)

// Check verifies a nonce received from src for realm, valid for lifetime
// after its issue. It returns its key (for the replay guard) and issue time
// when it verifies. It allocates nothing.
func (n *Nonces) Check(nonce []byte, realm string, src netip.Addr, now time.Time, lifetime time.Duration) (NonceStatus, NonceKey, time.Time) {
	var raw [nonceRawLen + 3]byte
	if len(nonce) != NonceLen {
		return NonceInvalid, NonceKey{}, time.Time{}
	}
	k, err := base64.RawURLEncoding.Decode(raw[:], nonce)
	if err != nil || k != nonceRawLen || raw[0] != nonceVersion {
		return NonceInvalid, NonceKey{}, time.Time{}
	}
	m := n.macNonce(raw[:17], realm, src)
	if subtle.ConstantTimeCompare(m[:macLen], raw[17:nonceRawLen]) != 1 {
		return NonceInvalid, NonceKey{}, time.Time{}
	}
	var key NonceKey
	copy(key[:], raw[17:nonceRawLen])
	issued := time.Unix(0, int64(binary.BigEndian.Uint64(raw[1:9])))
	age := now.Sub(issued)
	if age < -time.Second || age > lifetime {
		return NonceExpired, key, issued
	}
	return NonceValid, key, issued
}

// pseudoHA1 appends a stand-in HA1 for a username that has no HA1 for alg
// (an unknown account): derived from the secret, so that verifying against
// it costs the same as for a real account and always fails.
func (n *Nonces) pseudoHA1(dst []byte, alg Algorithm, username, realm []byte) []byte {
	var buf macBuf
	in := n.begin(&buf, "sipwarden-pseudo-ha1")
	in = append(in, byte(alg))
	in = append(in, realm...)
	in = append(in, 0)
	in = append(in, username...)
	m := n.finish(in)
	var h [2 * sha256.Size]byte
	hexEncode(h[:], m[:])
	return append(dst, h[:alg.HexLen()]...)
}

func hexEncode(dst, src []byte) {
	const digits = "0123456789abcdef"
	for i, x := range src {
		dst[2*i] = digits[x>>4]
		dst[2*i+1] = digits[x&15]
	}
}

// Pick returns a value in [0, 1) derived from the secret and b: a stable
// pseudo-random choice per username that an outsider cannot predict.
func (n *Nonces) Pick(b []byte) float64 {
	var buf macBuf
	m := n.finish(append(n.begin(&buf, "sipwarden-pick"), b...))
	return float64(binary.BigEndian.Uint64(m[:8])>>11) / (1 << 53)
}
