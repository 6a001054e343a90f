package shaken

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"net/url"
	"time"
)

// ErrRevoked: the signing certificate is on its CRL (437; wraps with ErrCertificate).
var ErrRevoked = errors.New("certificate revoked")

// CRL is a parsed certificate revocation list with its revoked serial
// numbers indexed.
type CRL struct {
	List    *x509.RevocationList
	revoked map[string]struct{}
}

// MaxCRLEntries bounds the revoked certificates read from one CRL.
const MaxCRLEntries = 1 << 20

// ParseCRL reads a CRL in DER or PEM ("X509 CRL").
func ParseCRL(data []byte) (*CRL, error) {
	if bytes.Contains(data, []byte("-----BEGIN")) {
		b, _ := pem.Decode(data)
		if b == nil || b.Type != "X509 CRL" {
			return nil, errors.New("crl: no X509 CRL PEM block")
		}
		data = b.Bytes
	}
	l, err := x509.ParseRevocationList(data)
	if err != nil {
		return nil, fmt.Errorf("crl: %w", err)
	}
	if len(l.RevokedCertificateEntries) > MaxCRLEntries {
		return nil, fmt.Errorf("crl: %d entries, at most %d", len(l.RevokedCertificateEntries), MaxCRLEntries)
	}
	c := &CRL{List: l, revoked: make(map[string]struct{}, len(l.RevokedCertificateEntries))}
	for _, e := range l.RevokedCertificateEntries {
		if e.SerialNumber != nil {
			c.revoked[string(e.SerialNumber.Bytes())] = struct{}{}
		}
	}
	return c, nil
}

// Revoked reports whether serial is on the list.
func (c *CRL) Revoked(serial *big.Int) bool {
	_, ok := c.revoked[string(serial.Bytes())]
	return ok
}

// CheckCRLURL applies the rules for CRL distribution points: http or https
// (a CRL is signed, so TLS adds nothing to its integrity), the default port
// or 443/8443 for https, no user information or fragment, and no literal
// special-purpose address. relaxed lifts the port and address rules.
func CheckCRLURL(raw string, relaxed bool) (*url.URL, error) {
	if raw == "" || len(raw) > MaxX5ULen {
		return nil, fmt.Errorf("%w: crl url of %d bytes", ErrX5U, len(raw))
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: crl url: %v", ErrX5U, err)
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, fmt.Errorf("%w: crl url scheme %q", ErrX5U, u.Scheme)
	case u.User != nil || u.Fragment != "" || u.Hostname() == "" || u.Opaque != "":
		return nil, fmt.Errorf("%w: crl url %q", ErrX5U, raw)
	}
	if relaxed {
		return u, nil
	}
	if p := u.Port(); p != "" && !(u.Scheme == "http" && p == "80") && !(u.Scheme == "https" && (p == "443" || p == "8443")) {
		return nil, fmt.Errorf("%w: crl url port %s", ErrX5U, p)
	}
	if a, err := netip.ParseAddr(u.Hostname()); err == nil && SpecialPurpose(a) {
		return nil, fmt.Errorf("%w: crl host %s is a special-purpose address", ErrX5U, a)
	}
	return u, nil
}

// CRLSource gives the CRL at a distribution point, waiting at most budget.
// *Cache is one.
type CRLSource interface {
	GetCRL(url string, budget time.Duration) (*CRL, error)
}

// Values of VerifierConfig.CRL.
const (
	CRLOff  = "off"  // revocation is not checked
	CRLSoft = "soft" // checked when the CRL can be had; a CRL that cannot is ignored
	CRLHard = "hard" // a certificate whose CRL cannot be had fails (437)
)

// checkRevocation checks the signing certificate of certs (a verified
// chain, leaf first, root last) against the CRL
// of its distribution point: the CRL must be signed by a certificate of the
// verified chain (or a trust anchor) and current; a revoked leaf is an
// error wrapping ErrCertificate. With no distribution point there is
// nothing to check.
func checkRevocation(src CRLSource, mode string, certs []*x509.Certificate, now time.Time, budget time.Duration) error {
	if mode == CRLOff || mode == "" || src == nil || len(certs) == 0 || len(certs[0].CRLDistributionPoints) == 0 {
		return nil
	}
	leaf := certs[0]
	var firstErr error
	for _, dp := range leaf.CRLDistributionPoints[:min(len(leaf.CRLDistributionPoints), 2)] {
		crl, err := src.GetCRL(dp, budget)
		if err == nil {
			err = crlUsable(crl, certs, now)
		}
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if crl.Revoked(leaf.SerialNumber) {
			return fmt.Errorf("%w: %w: serial %s", ErrCertificate, ErrRevoked, leaf.SerialNumber.Text(16))
		}
		return nil
	}
	if mode == CRLHard {
		return fmt.Errorf("%w: no usable CRL: %v", ErrCertificate, firstErr)
	}
	return nil
}

// crlUsable checks that crl is current and signed by one of the verified
// chain's certificates above the leaf (its issuer, usually, or the root).
func crlUsable(crl *CRL, certs []*x509.Certificate, now time.Time) error {
	l := crl.List
	if !l.NextUpdate.IsZero() && now.After(l.NextUpdate) {
		return fmt.Errorf("crl expired at %s", l.NextUpdate.UTC().Format(time.RFC3339))
	}
	for _, c := range certs[1:] {
		if bytes.Equal(c.RawSubject, l.RawIssuer) && l.CheckSignatureFrom(c) == nil {
			return nil
		}
	}
	return errors.New("crl is not signed by a certificate of the chain")
}
