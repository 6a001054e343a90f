package shaken

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestTNAuthList(t *testing.T) {
	good, err := MarshalTNAuthList("709J")
	if err != nil {
		t.Fatal(err)
	}
	// SEQUENCE { [0] { IA5String "709J" } }
	if want := []byte{0x30, 0x08, 0xa0, 0x06, 0x16, 0x04, '7', '0', '9', 'J'}; string(good) != string(want) {
		t.Fatalf("marshal: % x, want % x", good, want)
	}
	tl, err := ParseTNAuthList(good)
	if err != nil || tl.SPC != "709J" {
		t.Fatalf("parse: %+v %v", tl, err)
	}
	bad := map[string][]byte{
		"implicit tag":     {0x30, 0x06, 0x80, 0x04, '7', '0', '9', 'J'},
		"bare IA5String":   {0x30, 0x06, 0x16, 0x04, '7', '0', '9', 'J'},
		"not a sequence":   {0x16, 0x04, '7', '0', '9', 'J'},
		"two SPCs":         {0x30, 0x10, 0xa0, 0x06, 0x16, 0x04, '7', '0', '9', 'J', 0xa0, 0x06, 0x16, 0x04, '1', '2', '3', '4'},
		"one TN entry":     {0x30, 0x0a, 0xa2, 0x08, 0x16, 0x06, '1', '2', '3', '4', '5', '6'},
		"UTF8String SPC":   {0x30, 0x08, 0xa0, 0x06, 0x0c, 0x04, '7', '0', '9', 'J'},
		"empty list":       {0x30, 0x00},
		"empty SPC":        {0x30, 0x04, 0xa0, 0x02, 0x16, 0x00},
		"trailing bytes":   append(append([]byte{}, good...), 0),
		"truncated":        good[:len(good)-1],
		"control byte SPC": {0x30, 0x08, 0xa0, 0x06, 0x16, 0x04, '7', 0x01, '9', 'J'},
		"extra in [0]":     {0x30, 0x0a, 0xa0, 0x08, 0x16, 0x04, '7', '0', '9', 'J', 0x05, 0x00},
	}
	for name, der := range bad {
		if tl, err := ParseTNAuthList(der); err == nil {
			t.Errorf("%s: accepted %+v", name, tl)
		}
	}
}

func FuzzParseTNAuthList(f *testing.F) {
	good, _ := MarshalTNAuthList("709J")
	f.Add(good)
	f.Add([]byte{0x30, 0x06, 0x80, 0x04, '7', '0', '9', 'J'})
	f.Fuzz(func(t *testing.T, der []byte) {
		if tl, err := ParseTNAuthList(der); err == nil && (tl.SPC == "" || len(tl.SPC) > maxSPCLen) {
			t.Fatalf("SPC %q", tl.SPC)
		}
	})
}

func newPKI(t testing.TB) *TestPKI {
	t.Helper()
	p, err := NewTestPKI(TestPKIOptions{SPC: "709J"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckChain(t *testing.T) {
	p := newPKI(t)
	now := time.Now()
	certs, err := ParseCertificates(p.ChainPEM())
	if err != nil || len(certs) != 2 {
		t.Fatalf("parse chain: %d %v", len(certs), err)
	}
	ch, err := CheckChain(certs, p.Roots(), now)
	if err != nil {
		t.Fatal(err)
	}
	if ch.SPC != "709J" || !ch.Key.Equal(&p.LeafKey.PublicKey) {
		t.Fatalf("checked %+v", ch)
	}
	// a DER leaf alone does not chain without its intermediate
	if leaf, err := ParseCertificates(p.Leaf.Raw); err != nil {
		t.Fatal(err)
	} else if _, err := CheckChain(leaf, p.Roots(), now); !errors.Is(err, ErrCertificate) {
		t.Fatalf("leaf without intermediate: %v", err)
	}

	other := newPKI(t)
	leafWith := func(mod func(*x509.Certificate)) []*x509.Certificate {
		t.Helper()
		c, err := p.IssueLeaf("709J", &p.LeafKey.PublicKey, mod)
		if err != nil {
			t.Fatal(err)
		}
		certs, err := ParseCertificates(append(CertPEM(c), CertPEM(p.Inter)...))
		if err != nil {
			t.Fatal(err)
		}
		return certs
	}
	rsaless := newPKI(t)
	cases := map[string]struct {
		certs []*x509.Certificate
		roots *x509.CertPool
		now   time.Time
	}{
		"untrusted root": {certs, other.Roots(), now},
		"no roots":       {certs, nil, now},
		"expired":        {certs, p.Roots(), now.Add(2 * 365 * 24 * time.Hour)},
		"not yet valid":  {certs, p.Roots(), now.Add(-2 * time.Hour)},
		"no TNAuthList":  {leafWith(func(c *x509.Certificate) { c.ExtraExtensions = nil }), p.Roots(), now},
		"two SPCs": {leafWith(func(c *x509.Certificate) {
			c.ExtraExtensions[0].Value = []byte{0x30, 0x10, 0xa0, 0x06, 0x16, 0x04, '7', '0', '9', 'J', 0xa0, 0x06, 0x16, 0x04, '1', '2', '3', '4'}
		}), p.Roots(), now},
		"keyCertSign only": {leafWith(func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageCertSign }), p.Roots(), now},
		"leaf is a CA":     {leafWith(func(c *x509.Certificate) { c.IsCA = true; c.KeyUsage |= x509.KeyUsageCertSign }), p.Roots(), now},
		"wrong issuer":     {[]*x509.Certificate{certs[0], rsaless.Inter}, p.Roots(), now},
		"empty":            {nil, p.Roots(), now},
	}
	for name, tc := range cases {
		if _, err := CheckChain(tc.certs, tc.roots, tc.now); !errors.Is(err, ErrCertificate) {
			t.Errorf("%s: %v, want ErrCertificate", name, err)
		}
	}
	// a critical TNAuthList is handled, not an unknown critical extension
	crit := leafWith(func(c *x509.Certificate) { c.ExtraExtensions[0].Critical = true })
	if _, err := CheckChain(crit, p.Roots(), now); err != nil {
		t.Errorf("critical TNAuthList: %v", err)
	}
	// another unknown critical extension still fails
	unk := leafWith(func(c *x509.Certificate) {
		c.ExtraExtensions = append(c.ExtraExtensions, pkix.Extension{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Critical: true, Value: []byte{5, 0}})
	})
	if _, err := CheckChain(unk, p.Roots(), now); err == nil {
		t.Error("unknown critical extension accepted")
	}
}

func TestParseCertificates(t *testing.T) {
	for _, bad := range []string{"", "garbage", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
		"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"} {
		if _, err := ParseCertificates([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	p := newPKI(t)
	if _, err := ParseCertificates([]byte(strings.Repeat(string(CertPEM(p.Leaf)), MaxChainCerts+1))); err == nil {
		t.Error("too many certificates accepted")
	}
}

func TestCheckX5U(t *testing.T) {
	tests := []struct {
		url     string
		ok      bool
		relaxed bool
	}{
		{"https://cert.example.org/sp.pem", true, false},
		{"https://cert.example.org:443/sp.pem", true, false},
		{"https://cert.example.org:8443/sp.pem", true, false},
		{"https://8.8.8.8/sp.pem", true, false},
		{"http://cert.example.org/sp.pem", false, false},
		{"https://cert.example.org:8080/sp.pem", false, false},
		{"https://cert.example.org/sp.pem?x=1", false, false},
		{"https://cert.example.org/sp.pem?", false, false},
		{"https://cert.example.org/sp.pem#f", false, false},
		{"https://user:pw@cert.example.org/sp.pem", false, false},
		{"https://127.0.0.1/sp.pem", false, false},
		{"https://10.1.2.3/sp.pem", false, false},
		{"https://[::1]/sp.pem", false, false},
		{"https://[::ffff:127.0.0.1]/sp.pem", false, false},
		{"https://169.254.169.254/latest", false, false},
		{"https://[fe80::1%25eth0]/x", false, false},
		{"https://localhost/sp.pem", false, false},
		{"https:///sp.pem", false, false},
		{"https:opaque", false, false},
		{"https://cert.example.org/a b", false, false},
		{"", false, false},
		{"https://127.0.0.1:43121/sp.pem", true, true},
		{"http://127.0.0.1:43121/sp.pem", false, true},
		{"https://127.0.0.1:43121/sp.pem?x", false, true},
	}
	for _, tc := range tests {
		_, err := CheckX5U(tc.url, tc.relaxed)
		if (err == nil) != tc.ok {
			t.Errorf("CheckX5U(%q, %v) = %v", tc.url, tc.relaxed, err)
		}
		if err != nil && !errors.Is(err, ErrX5U) {
			t.Errorf("CheckX5U(%q): %v does not wrap ErrX5U", tc.url, err)
		}
	}
}

func TestSpecialPurpose(t *testing.T) {
	for a, want := range map[string]bool{"8.8.8.8": false, "2606:4700::1": false, "192.168.1.1": true,
		"100.64.0.1": true, "::ffff:10.0.0.1": true, "224.0.0.1": true, "0.0.0.0": true, "2001:db8::1": true} {
		if got := SpecialPurpose(netip.MustParseAddr(a)); got != want {
			t.Errorf("SpecialPurpose(%s) = %v", a, got)
		}
	}
	if err := dialControl("tcp", "127.0.0.1:443", nil); !errors.Is(err, ErrX5U) {
		t.Errorf("dial to loopback allowed: %v", err)
	}
	if err := dialControl("tcp", "8.8.8.8:443", nil); err != nil {
		t.Errorf("dial to a public address refused: %v", err)
	}
}

type x509CertPool = x509.CertPool

func newX509Pool() *x509.CertPool { return x509.NewCertPool() }
