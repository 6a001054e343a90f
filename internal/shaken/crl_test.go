package shaken

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"
	"time"
)

// crlLab is a lab whose leaf names a CRL served over HTTPS, and a second
// leaf (same key) that the CRL revokes.
type crlLab struct {
	*lab
	crlSrv     *certServer
	revoked    *x509.Certificate
	revokedX5U string
}

func newCRLLab(t *testing.T, mode string) *crlLab {
	t.Helper()
	l := &crlLab{lab: newLab(t)}
	l.crlSrv = newCertServer(t, nil)
	dp := func(c *x509.Certificate) { c.CRLDistributionPoints = []string{l.crlSrv.URL + "/sti.crl"} }
	good, err := l.pki.IssueLeaf("709J", &l.pki.LeafKey.PublicKey, dp)
	if err != nil {
		t.Fatal(err)
	}
	if l.revoked, err = l.pki.IssueLeaf("709J", &l.pki.LeafKey.PublicKey, dp); err != nil {
		t.Fatal(err)
	}
	crl, err := l.pki.CRL(l.revoked)
	if err != nil {
		t.Fatal(err)
	}
	l.crlSrv.set(func(s *certServer) { s.body = crl })
	l.srv.set(func(s *certServer) { s.body = append(CertPEM(good), CertPEM(l.pki.Inter)...) })
	revSrv := newCertServer(t, append(CertPEM(l.revoked), CertPEM(l.pki.Inter)...))
	l.revokedX5U = revSrv.URL + "/revoked.pem"
	// both servers' certificates must be trusted by the cache
	pool := l.srv.serverPool()
	pool.AddCert(l.crlSrv.Certificate())
	pool.AddCert(revSrv.Certificate())
	l.cache = NewCache(CacheConfig{Relaxed: true, RootCAs: pool, Now: l.clk.Now})
	t.Cleanup(l.cache.Close)
	if l.v, err = NewVerifier(VerifierConfig{Roots: l.pki.Roots(), Certs: l.cache, Now: l.clk.Now, Budget: 5 * time.Second, CRL: mode}); err != nil {
		t.Fatal(err)
	}
	return l
}

func TestVerifyCRL(t *testing.T) {
	l := newCRLLab(t, CRLSoft)
	if r := l.v.VerifyMsg(invite(t, l.identity(t, l.pki.LeafKey, l.x5u, l.claims()))); !r.Passed() {
		t.Fatalf("good certificate: %+v", r)
	}
	r := l.v.VerifyMsg(invite(t, l.identity(t, l.pki.LeafKey, l.revokedX5U, l.claims())))
	if r.Code != 437 || r.Reason != ReasonRevoked || !errors.Is(r.Err, ErrRevoked) {
		t.Fatalf("revoked certificate: %+v", r)
	}
	if n := l.crlSrv.hits.Load(); n != 1 {
		t.Fatalf("CRL fetched %d times, want 1 (cached)", n)
	}
}

func TestVerifyCRLUnavailable(t *testing.T) {
	for _, mode := range []string{CRLSoft, CRLHard, CRLOff} {
		l := newCRLLab(t, mode)
		l.crlSrv.set(func(s *certServer) { s.code = 500 })
		r := l.v.VerifyMsg(invite(t, l.identity(t, l.pki.LeafKey, l.revokedX5U, l.claims())))
		switch mode {
		case CRLHard:
			if r.Code != 437 || r.Reason != ReasonCertificate {
				t.Errorf("hard, CRL unavailable: %+v", r)
			}
		default:
			if !r.Passed() {
				t.Errorf("%s, CRL unavailable: %+v", mode, r)
			}
		}
	}
}

func TestCRLChecks(t *testing.T) {
	p := newPKI(t)
	der, err := p.CRL(p.Leaf)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := ParseCRL(der)
	if err != nil || !crl.Revoked(p.Leaf.SerialNumber) || crl.Revoked(p.Inter.SerialNumber) {
		t.Fatalf("crl: %v", err)
	}
	if c2, err := ParseCRL(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})); err != nil || !c2.Revoked(p.Leaf.SerialNumber) {
		t.Fatalf("pem crl: %v", err)
	}
	chain := []*x509.Certificate{p.Leaf, p.Inter, p.Root}
	if err := crlUsable(crl, chain, time.Now()); err != nil {
		t.Fatalf("usable: %v", err)
	}
	if err := crlUsable(crl, chain, time.Now().Add(8*24*time.Hour)); err == nil {
		t.Fatal("expired CRL usable")
	}
	other := newPKI(t)
	if err := crlUsable(crl, []*x509.Certificate{other.Leaf, other.Inter, other.Root}, time.Now()); err == nil {
		t.Fatal("CRL of another CA usable")
	}
	for _, bad := range []string{"", "garbage", "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"} {
		if _, err := ParseCRL([]byte(bad)); err == nil {
			t.Errorf("ParseCRL(%q) accepted", bad)
		}
	}
	for u, ok := range map[string]bool{"http://crl.example.org/sti.crl": true, "https://crl.example.org:8443/x": true,
		"http://crl.example.org:8080/x": false, "ftp://crl.example.org/x": false, "http://10.0.0.1/x": false, "http://u@h/x": false} {
		if _, err := CheckCRLURL(u, false); (err == nil) != ok {
			t.Errorf("CheckCRLURL(%q) = %v", u, err)
		}
	}
	if _, err := NewVerifier(VerifierConfig{Roots: p.Roots(), Certs: StaticCerts{}, CRL: "maybe"}); err == nil {
		t.Error("crl mode maybe accepted")
	}
}

func FuzzParseCRL(f *testing.F) {
	p, err := NewTestPKI(TestPKIOptions{})
	if err != nil {
		f.Fatal(err)
	}
	der, _ := p.CRL(p.Leaf)
	f.Add(der)
	f.Fuzz(func(t *testing.T, b []byte) {
		if c, err := ParseCRL(b); err == nil && c.List == nil {
			t.Fatal("nil list")
		}
	})
}
