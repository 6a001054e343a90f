package media

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // RFC 8122 fingerprints may still use SHA-1; the certificate is pinned, not trusted by the hash alone
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"math/big"
	"strings"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/sdp/v3"
)

// This file holds the SDP side of DTLS-SRTP (RFC 5763, RFC 5764): the
// a=fingerprint (RFC 8122) and a=setup (RFC 4145) attributes, the relay's
// own certificate, and the derivation of SRTP keys from a finished
// handshake. The handshake itself runs in dtls_endpoint.go.

// Errors of the DTLS-SRTP attributes. An offer whose only security is an
// unusable fingerprint is treated like one without a=crypto: refused with
// 488 where SRTP is required, its stream disabled otherwise.
var (
	ErrBadFingerprint = errors.New("unusable a=fingerprint")
	ErrBadSetup       = errors.New("unusable a=setup")
)

// Fingerprint is one a=fingerprint attribute (RFC 8122 section 5): the hash
// function and the digest of the certificate the peer will present in the
// DTLS handshake.
type Fingerprint struct {
	Hash   string // lower case: "sha-256"
	Digest []byte
}

// fingerprintHashes are the hash functions accepted in a=fingerprint, with
// their digest lengths. MD5 and MD2 are refused (RFC 8122 section 5).
var fingerprintHashes = map[string]struct {
	size int
	new  func() hash.Hash
}{
	"sha-1":   {sha1.Size, sha1.New},
	"sha-224": {sha256.Size224, sha256.New224},
	"sha-256": {sha256.Size, sha256.New},
	"sha-384": {sha512.Size384, sha512.New384},
	"sha-512": {sha512.Size, sha512.New},
}

// maxFingerprints bounds the fingerprints kept per m-line (RFC 8122 allows
// several, one per certificate or hash function).
const maxFingerprints = 4

// ParseFingerprint parses the value of an a=fingerprint attribute:
// "sha-256 AB:CD:...". The hash name is case-insensitive.
func ParseFingerprint(value string) (Fingerprint, error) {
	var f Fingerprint
	if len(value) > 256 {
		return f, fmt.Errorf("%w: longer than 256 bytes", ErrBadFingerprint)
	}
	name, digest, ok := strings.Cut(strings.TrimSpace(value), " ")
	if !ok {
		return f, fmt.Errorf("%w: want a hash function and a digest", ErrBadFingerprint)
	}
	name = strings.ToLower(name)
	h, ok := fingerprintHashes[name]
	if !ok {
		return f, fmt.Errorf("%w: hash function %.20q (want sha-1, sha-224, sha-256, sha-384 or sha-512)", ErrBadFingerprint, name)
	}
	digest = strings.TrimSpace(digest)
	if len(digest) != 3*h.size-1 {
		return f, fmt.Errorf("%w: %s digest of %d characters, want %d", ErrBadFingerprint, name, len(digest), 3*h.size-1)
	}
	d := make([]byte, h.size)
	for i := range d {
		if i > 0 && digest[3*i-1] != ':' {
			return f, fmt.Errorf("%w: digest bytes must be separated by ':'", ErrBadFingerprint)
		}
		if _, err := hex.Decode(d[i:i+1], []byte(digest[3*i:3*i+2])); err != nil {
			return f, fmt.Errorf("%w: digest is not hexadecimal", ErrBadFingerprint)
		}
	}
	return Fingerprint{Hash: name, Digest: d}, nil
}

// String formats the attribute value (upper-case hex, RFC 8122 section 5).
func (f Fingerprint) String() string {
	var b strings.Builder
	b.Grow(len(f.Hash) + 1 + 3*len(f.Digest))
	b.WriteString(f.Hash)
	b.WriteByte(' ')
	const hexd = "0123456789ABCDEF"
	for i, c := range f.Digest {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteByte(hexd[c>>4])
		b.WriteByte(hexd[c&15])
	}
	return b.String()
}

// matches reports, in constant time for the digest, whether the DER
// certificate cert has this fingerprint.
func (f Fingerprint) matches(cert []byte) bool {
	h, ok := fingerprintHashes[f.Hash]
	if !ok {
		return false
	}
	d := h.new()
	d.Write(cert)
	return subtle.ConstantTimeCompare(d.Sum(nil), f.Digest) == 1
}

func fingerprintOf(cert []byte) Fingerprint {
	d := sha256.Sum256(cert)
	return Fingerprint{Hash: "sha-256", Digest: d[:]}
}

func sameFingerprints(a, b []Fingerprint) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Hash != b[i].Hash || subtle.ConstantTimeCompare(a[i].Digest, b[i].Digest) != 1 {
			return false
		}
	}
	return true
}

// Setup is the a=setup attribute (RFC 4145 section 4, RFC 5763 section 5):
// which end starts the DTLS handshake.
type Setup uint8

// Values of a=setup. SetupNone is an absent attribute.
const (
	SetupNone Setup = iota
	SetupActpass
	SetupActive
	SetupPassive
	SetupHoldconn
)

// ParseSetup parses the value of an a=setup attribute.
func ParseSetup(v string) (Setup, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "actpass":
		return SetupActpass, nil
	case "active":
		return SetupActive, nil
	case "passive":
		return SetupPassive, nil
	case "holdconn":
		return SetupHoldconn, nil
	}
	return SetupNone, fmt.Errorf("%w: %.20q (want actpass, active or passive)", ErrBadSetup, v)
}

// dtlsSDP is what an m-line says about DTLS-SRTP: the peer's certificate
// fingerprints and its a=setup (media level first, then session level).
type dtlsSDP struct {
	fps   []Fingerprint
	setup Setup
}

// readDTLS returns the DTLS-SRTP attributes that apply to md. ok is false
// when md has no a=fingerprint (no DTLS-SRTP); err says why a present one
// cannot be used.
func readDTLS(sd *sdp.SessionDescription, md *sdp.MediaDescription) (d dtlsSDP, ok bool, err error) {
	var raw []string
	for _, a := range md.Attributes {
		if a.Key == "fingerprint" {
			raw = append(raw, a.Value)
		}
	}
	if len(raw) == 0 {
		for _, a := range sd.Attributes {
			if a.Key == "fingerprint" {
				raw = append(raw, a.Value)
			}
		}
	}
	if len(raw) == 0 {
		return d, false, nil
	}
	if len(raw) > maxFingerprints {
		return d, true, fmt.Errorf("%w: more than %d", ErrBadFingerprint, maxFingerprints)
	}
	for _, v := range raw {
		f, err := ParseFingerprint(v)
		if err != nil {
			return d, true, err
		}
		d.fps = append(d.fps, f)
	}
	v, has := md.Attribute("setup")
	if !has {
		for _, a := range sd.Attributes {
			if a.Key == "setup" {
				v, has = a.Value, true
				break
			}
		}
	}
	if has {
		if d.setup, err = ParseSetup(v); err != nil {
			return d, true, err
		}
		if d.setup == SetupHoldconn {
			return d, true, fmt.Errorf("%w: holdconn", ErrBadSetup)
		}
	}
	return d, true, nil
}

// isDTLSProto reports whether protos is UDP/TLS/RTP/SAVP or .../SAVPF (RFC 5764 section 8).
func isDTLSProto(protos []string) bool {
	return len(protos) == 4 && protos[0] == "UDP" && protos[1] == "TLS" && protos[2] == "RTP" &&
		(protos[3] == "SAVP" || protos[3] == "SAVPF")
}

// dtlsProtoFor returns the DTLS-SRTP transport for a leg, keeping the
// feedback flavour of the source.
func dtlsProtoFor(src []string) []string {
	if len(src) > 0 && strings.HasSuffix(src[len(src)-1], "F") {
		return []string{"UDP", "TLS", "RTP", "SAVPF"}
	}
	return []string{"UDP", "TLS", "RTP", "SAVP"}
}

// addDTLS appends the relay's fingerprint and its a=setup to md.
func (n *negotiation) addDTLS(md *sdp.MediaDescription, setup string) {
	md.Attributes = append(md.Attributes,
		sdp.Attribute{Key: "fingerprint", Value: n.fp.String()},
		sdp.Attribute{Key: "setup", Value: setup})
}

// setupValue is the a=setup the relay writes for its role.
func setupValue(client bool) string {
	if client {
		return "active"
	}
	return "passive"
}

// GenerateDTLSCertificate returns a self-signed ECDSA P-256 certificate for
// DTLS-SRTP. Peers authenticate it by the fingerprint in the SDP (RFC 5763
// section 5), not by a chain, so it needs no CA; it is valid for a year
// from an hour ago (clock skew).
func GenerateDTLSCertificate() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate DTLS key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate DTLS certificate serial: %w", err)
	}
	now := time.Now()
	tpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "sipwarden"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("create DTLS certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// dtlsProfiles are the SRTP protection profiles offered in the use_srtp
// extension (RFC 5764 section 4.1.2), in the relay's order of preference:
// the same suites SDES negotiates.
var dtlsProfiles = []dtls.SRTPProtectionProfile{
	dtls.SRTP_AES128_CM_HMAC_SHA1_80,
	dtls.SRTP_AEAD_AES_128_GCM,
	dtls.SRTP_AES128_CM_HMAC_SHA1_32,
}

// suiteOfProfile maps a negotiated protection profile to its suite.
func suiteOfProfile(p dtls.SRTPProtectionProfile) Suite {
	switch p {
	case dtls.SRTP_AES128_CM_HMAC_SHA1_80:
		return AES_CM_128_HMAC_SHA1_80
	case dtls.SRTP_AES128_CM_HMAC_SHA1_32:
		return AES_CM_128_HMAC_SHA1_32
	case dtls.SRTP_AEAD_AES_128_GCM:
		return AEAD_AES_128_GCM
	}
	return SuiteNone
}

// exporter is the part of a DTLS connection state the key derivation needs.
type exporter interface {
	ExportKeyingMaterial(label string, context []byte, length int) ([]byte, error)
}

// srtpKeys derives the SRTP master keys of a finished handshake (RFC 5764
// section 4.2): the exporter's output is client key, server key, client
// salt, server salt; each side encrypts with its own write key. recv is the
// key the peer encrypts with, send the relay's.
func srtpKeys(st exporter, s Suite, client bool) (recv, send Crypto, err error) {
	sl := saltLen(s)
	kl := s.keyLen() - sl
	if kl <= 0 {
		return recv, send, errors.New("DTLS-SRTP: no suite")
	}
	km, err := st.ExportKeyingMaterial("EXTRACTOR-dtls_srtp", nil, 2*(kl+sl))
	if err != nil {
		return recv, send, fmt.Errorf("DTLS-SRTP exporter: %w", err)
	}
	clientKey := append(append(make(Key, 0, kl+sl), km[:kl]...), km[2*kl:2*kl+sl]...)
	serverKey := append(append(make(Key, 0, kl+sl), km[kl:2*kl]...), km[2*kl+sl:]...)
	clear(km)
	if client {
		return Crypto{Suite: s, Key: serverKey}, Crypto{Suite: s, Key: clientKey}, nil
	}
	return Crypto{Suite: s, Key: clientKey}, Crypto{Suite: s, Key: serverKey}, nil
}
