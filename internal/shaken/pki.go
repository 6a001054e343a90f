package shaken

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"
)

// TestPKI is a small STI-CA hierarchy for tests and labs: a root (the
// trust anchor), an intermediate, and a service-provider certificate with a
// TNAuthList. It is never meant for production signing.
type TestPKI struct {
	RootKey, InterKey, LeafKey *ecdsa.PrivateKey
	Root, Inter, Leaf          *x509.Certificate
}

// TestPKIOptions shape a TestPKI. Zero values: SPC "1234", valid from an hour
// ago for a year.
type TestPKIOptions struct {
	SPC                 string
	NotBefore, NotAfter time.Time
	// CRLURL, when set, is the leaf's CRL distribution point.
	CRLURL string
}

// NewTestPKI creates a root, an intermediate and a leaf.
func NewTestPKI(o TestPKIOptions) (*TestPKI, error) {
	if o.SPC == "" {
		o.SPC = "1234"
	}
	if o.NotBefore.IsZero() {
		o.NotBefore = time.Now().Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = o.NotBefore.Add(365 * 24 * time.Hour)
	}
	p := &TestPKI{}
	var err error
	if p.RootKey, err = NewKey(); err != nil {
		return nil, err
	}
	if p.InterKey, err = NewKey(); err != nil {
		return nil, err
	}
	if p.LeafKey, err = NewKey(); err != nil {
		return nil, err
	}
	root := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "sipwarden test STI-CA root", Organization: []string{"sipwarden lab"}},
		NotBefore:             o.NotBefore,
		NotAfter:              o.NotAfter.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	if p.Root, err = issue(root, root, &p.RootKey.PublicKey, p.RootKey); err != nil {
		return nil, err
	}
	inter := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "sipwarden test STI-CA intermediate", Organization: []string{"sipwarden lab"}},
		NotBefore:             o.NotBefore,
		NotAfter:              o.NotAfter.Add(12 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	if p.Inter, err = issue(inter, p.Root, &p.InterKey.PublicKey, p.RootKey); err != nil {
		return nil, err
	}
	p.Leaf, err = p.IssueLeaf(o.SPC, &p.LeafKey.PublicKey, func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = o.NotBefore, o.NotAfter
		if o.CRLURL != "" {
			c.CRLDistributionPoints = []string{o.CRLURL}
		}
	})
	return p, err
}

// IssueLeaf issues a service-provider certificate for pub with one SPC,
// signed by the intermediate; mod, when not nil, adjusts the template.
func (p *TestPKI) IssueLeaf(spc string, pub *ecdsa.PublicKey, mod func(*x509.Certificate)) (*x509.Certificate, error) {
	tnal, err := MarshalTNAuthList(spc)
	if err != nil {
		return nil, err
	}
	leaf := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "SHAKEN " + spc, Organization: []string{"sipwarden lab"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(365 * 24 * time.Hour),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtraExtensions:       []pkix.Extension{{Id: OIDTNAuthList, Value: tnal}},
	}
	if mod != nil {
		mod(leaf)
	}
	return issue(leaf, p.Inter, pub, p.InterKey)
}

// CRL returns a DER CRL signed by the intermediate that revokes certs,
// valid from an hour ago for a week.
func (p *TestPKI) CRL(certs ...*x509.Certificate) ([]byte, error) {
	var entries []x509.RevocationListEntry
	for _, c := range certs {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: time.Now().Add(-time.Hour)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(time.Now().Unix()),
		ThisUpdate:                time.Now().Add(-time.Hour),
		NextUpdate:                time.Now().Add(7 * 24 * time.Hour),
		RevokedCertificateEntries: entries,
	}, p.Inter, p.InterKey)
	if err != nil {
		return nil, fmt.Errorf("create crl: %w", err)
	}
	return der, nil
}

// ChainPEM returns leaf then intermediate, as an x5u server publishes them.
func (p *TestPKI) ChainPEM() []byte { return append(CertPEM(p.Leaf), CertPEM(p.Inter)...) }

// Roots returns a pool holding the test root.
func (p *TestPKI) Roots() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.Root)
	return pool
}

// CertPEM encodes one certificate as PEM.
func CertPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// NewKey generates a P-256 key (ES256).
func NewKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return k, nil
}

// KeyPEM encodes a private key as a PKCS #8 "PRIVATE KEY" PEM block.
func KeyPEM(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func issue(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, signer *ecdsa.PrivateKey) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	tmpl.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("create certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	return x509.ParseCertificate(der)
}
