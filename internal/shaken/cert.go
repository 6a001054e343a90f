package shaken

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"
)

// OIDTNAuthList is the TNAuthList certificate extension (RFC 8226 section 9).
var OIDTNAuthList = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 26}

// ErrCertificate: the signing certificate is unusable (437 Unsupported Credential).
var ErrCertificate = errors.New("unsupported credential")

// Bounds on certificate input.
const (
	// MaxChainCerts is the most certificates read from one x5u response or file.
	MaxChainCerts = 8
	// maxSPCLen bounds a Service Provider Code (an OCN is 4 characters).
	maxSPCLen = 64
)

// TNAuthList is the decoded extension: a SHAKEN certificate carries exactly
// one Service Provider Code (ATIS-1000080 section 5.3.1).
type TNAuthList struct {
	SPC string
}

// ParseTNAuthList decodes a TNAuthList extension value (RFC 8226 section 9):
//
//	TNAuthorizationList ::= SEQUENCE SIZE (1..MAX) OF TNEntry
//	TNEntry ::= CHOICE { spc [0] ServiceProviderCode, range [1] ..., one [2] ... }
//	ServiceProviderCode ::= IA5String
//
// The ASN.1 module uses EXPLICIT tags, so an SPC is [0] constructed around an
// IA5String. An implicitly tagged SPC, a bare IA5String, telephone-number
// entries, more than one entry and trailing bytes are refused.
func ParseTNAuthList(der []byte) (TNAuthList, error) {
	var entries []asn1.RawValue
	rest, err := asn1.Unmarshal(der, &entries)
	if err != nil {
		return TNAuthList{}, fmt.Errorf("tnauthlist: %w", err)
	}
	if len(rest) != 0 {
		return TNAuthList{}, errors.New("tnauthlist: trailing bytes")
	}
	if len(entries) != 1 {
		return TNAuthList{}, fmt.Errorf("tnauthlist: %d entries, want exactly one SPC", len(entries))
	}
	e := entries[0]
	if e.Class != asn1.ClassContextSpecific || e.Tag != 0 {
		return TNAuthList{}, fmt.Errorf("tnauthlist: entry is class %d tag %d, want an SPC [0]", e.Class, e.Tag)
	}
	if !e.IsCompound {
		return TNAuthList{}, errors.New("tnauthlist: SPC is implicitly tagged, want [0] EXPLICIT IA5String")
	}
	var inner asn1.RawValue
	rest, err = asn1.Unmarshal(e.Bytes, &inner)
	if err != nil {
		return TNAuthList{}, fmt.Errorf("tnauthlist: spc: %w", err)
	}
	if len(rest) != 0 || inner.Class != asn1.ClassUniversal || inner.Tag != asn1.TagIA5String || inner.IsCompound {
		return TNAuthList{}, errors.New("tnauthlist: SPC is not an IA5String")
	}
	spc := inner.Bytes
	if len(spc) == 0 || len(spc) > maxSPCLen {
		return TNAuthList{}, fmt.Errorf("tnauthlist: SPC of %d bytes", len(spc))
	}
	for _, c := range spc {
		if c <= ' ' || c >= 0x7f {
			return TNAuthList{}, fmt.Errorf("tnauthlist: byte 0x%02x in the SPC", c)
		}
	}
	return TNAuthList{SPC: string(spc)}, nil
}

// MarshalTNAuthList encodes a TNAuthList with one SPC, explicitly tagged.
func MarshalTNAuthList(spc string) ([]byte, error) {
	if spc == "" || len(spc) > maxSPCLen {
		return nil, fmt.Errorf("tnauthlist: SPC of %d bytes", len(spc))
	}
	for i := 0; i < len(spc); i++ {
		if spc[i] <= ' ' || spc[i] >= 0x7f {
			return nil, fmt.Errorf("tnauthlist: SPC %q is not printable ASCII", spc)
		}
	}
	ia5, err := asn1.MarshalWithParams(spc, "ia5")
	if err != nil {
		return nil, fmt.Errorf("tnauthlist: %w", err)
	}
	return asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: ia5}})
}

// CertTNAuthList returns the TNAuthList of cert.
func CertTNAuthList(cert *x509.Certificate) (TNAuthList, error) {
	for _, ext := range cert.Extensions {
		if ext.Id.Equal(OIDTNAuthList) {
			return ParseTNAuthList(ext.Value)
		}
	}
	return TNAuthList{}, errors.New("no TNAuthList extension")
}

// ParseCertificates reads certificates from PEM (any number of CERTIFICATE
// blocks, other blocks skipped) or from one DER certificate. The first one is
// the signing (leaf) certificate. A TNAuthList extension marked critical is
// taken off the unhandled list: this package handles it.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	if bytes.Contains(data, []byte("-----BEGIN")) {
		rest := data
		for {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			if b.Type != "CERTIFICATE" {
				continue
			}
			if len(certs) == MaxChainCerts {
				return nil, fmt.Errorf("more than %d certificates", MaxChainCerts)
			}
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
			}
			certs = append(certs, c)
		}
	} else {
		c, err := x509.ParseCertificate(data)
		if err != nil {
			return nil, fmt.Errorf("certificate: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no certificate")
	}
	for _, c := range certs {
		c.UnhandledCriticalExtensions = slices.DeleteFunc(c.UnhandledCriticalExtensions,
			func(id asn1.ObjectIdentifier) bool { return id.Equal(OIDTNAuthList) })
	}
	return certs, nil
}

// LoadTrustAnchors reads a PEM bundle of STI-CA root certificates.
func LoadTrustAnchors(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("trust anchors: %w", err)
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("trust anchors %s: certificate %d: %w", path, n+1, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("trust anchors %s: no PEM certificate: give a PEM bundle of STI-CA root certificates", path)
	}
	return pool, nil
}

// Checked is a signing certificate that verified: its key and its SPC.
type Checked struct {
	Key *ecdsa.PublicKey
	SPC string
	// NotAfter is the earliest expiry in the verified chain.
	NotAfter time.Time
	// NotBefore is the latest start of validity in the verified chain.
	NotBefore time.Time
	// Chain is the verified chain, leaf first, trust anchor last.
	Chain []*x509.Certificate
}

// CheckChain verifies certs (leaf first, then intermediates) against the
// STI-CA roots at time now, the way a SHAKEN verifier must
// (ATIS-1000080 section 5.3, ATIS-1000074 section 5.3.1): a chain to a
// trust anchor, every certificate valid at now, a leaf that is no CA, has
// the digitalSignature key usage and a P-256 ECDSA key, and exactly one SPC
// in its TNAuthList. Errors wrap ErrCertificate.
func CheckChain(certs []*x509.Certificate, roots *x509.CertPool, now time.Time) (*Checked, error) {
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: no certificate", ErrCertificate)
	}
	if roots == nil {
		return nil, fmt.Errorf("%w: no trust anchors configured", ErrCertificate)
	}
	leaf := certs[0]
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: leaf key is not ECDSA P-256", ErrCertificate)
	}
	if leaf.IsCA {
		return nil, fmt.Errorf("%w: leaf is a CA certificate", ErrCertificate)
	}
	if leaf.KeyUsage != 0 && leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return nil, fmt.Errorf("%w: leaf key usage lacks digitalSignature", ErrCertificate)
	}
	tnal, err := CertTNAuthList(leaf)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCertificate, err)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCertificate, err)
	}
	ch := &Checked{Key: pub, SPC: tnal.SPC, NotAfter: leaf.NotAfter, NotBefore: leaf.NotBefore, Chain: chains[0]}
	for _, c := range chains[0] {
		if c.NotAfter.Before(ch.NotAfter) {
			ch.NotAfter = c.NotAfter
		}
		if c.NotBefore.After(ch.NotBefore) {
			ch.NotBefore = c.NotBefore
		}
	}
	return ch, nil
}
