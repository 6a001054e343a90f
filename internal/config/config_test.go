package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/sip"
)

func TestGoodFiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.good.yaml")
	if len(files) == 0 {
		t.Fatal("no good files")
	}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if _, err := Parse(b, f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestFullFileValues(t *testing.T) {
	b, _ := os.ReadFile("testdata/full.good.yaml")
	c, err := Parse(b, "full")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Listen) != 2 || c.Listen[1].Transport != sip.TCP || c.Listen[1].Addr.String() != "[::1]:5060" || c.Listen[1].Advertise != "sip.example.net:5060" {
		t.Errorf("listen %+v", c.Listen)
	}
	tr := c.Trunk("acme")
	if tr == nil || tr.Auth != AuthIP || len(tr.Allow) != 2 || tr.Allow[0].String() != "198.51.100.7/32" {
		t.Fatalf("trunk %+v", tr)
	}
	if tr.Numbers[0].Prefix != "+1555123" || tr.Numbers[0].Digits != 4 || tr.Numbers[1].Digits != 0 || tr.Numbers[2].Digits != -1 {
		t.Errorf("numbers %+v", tr.Numbers)
	}
	if tr.Limits.CPS != 5 || tr.Limits.Burst != 5 || tr.Limits.Concurrent != 20 {
		t.Errorf("limits %+v (300/1m is 5 per second)", tr.Limits)
	}
	if c.SIP.MaxMessageSize != 32768 || c.SIP.Workers != 4 || c.SIP.DrainTimeout != 5*time.Second || c.CDR.FlushInterval != 500*time.Millisecond {
		t.Errorf("sip %+v cdr %+v", c.SIP, c.CDR)
	}
	if c.UnknownSources != UnknownReject || c.UpstreamByName("pbx") == nil || len(c.UpstreamByName("pbx").Targets) != 2 {
		t.Errorf("unknown_sources %q", c.UnknownSources)
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte("listen: [udp://127.0.0.1:5060]\n"), "min")
	if err != nil {
		t.Fatal(err)
	}
	if c.UnknownSources != UnknownDrop || c.Storage.Path != "./data" || c.CDR.Backend != "sqlite" || c.SIP.MaxMessageSize != 65535 ||
		c.SIP.MaxConnsPerSource != 32 || c.SIP.DialogTimeout != 2*time.Hour || c.Log.Format != "json" || c.TLS.HandshakeTimeout != 5*time.Second {
		t.Errorf("defaults: %+v", c)
	}
}

// TestBadFiles checks that every problem is reported, each with its line and a useful message.
func TestBadFiles(t *testing.T) {
	tests := []struct {
		file string
		want []string // "line: substring"
	}{
		{"errors.bad.yaml", []string{
			"6:7: log.levl: unknown key (did you mean \"level\"?); valid keys here: level, format",
			"3:5: listen[1]: unknown scheme", // and the rest, all at once
		}},
		{"syntax.bad.yaml", []string{"1: invalid YAML: did not find expected ',' or ']'"}},
	}
	for _, tc := range tests {
		b, err := os.ReadFile(filepath.Join("testdata", tc.file))
		if err != nil {
			t.Fatal(err)
		}
		_, err = Parse(b, tc.file)
		if err == nil {
			t.Fatalf("%s: accepted", tc.file)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), tc.file+":"+w) {
				t.Errorf("%s: want an error like %q, got:\n%v", tc.file, w, err)
			}
		}
	}
}

// TestValidationErrors: with the keys right, every value problem is reported at once.
func TestValidationErrors(t *testing.T) {
	b, _ := os.ReadFile("testdata/errors.bad.yaml")
	b = []byte(strings.Replace(string(b), "log: {levl: info}", "log: {level: info}", 1))
	_, err := Parse(b, "errors.bad.yaml")
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("want Errors, got %v", err)
	}
	want := []string{
		"errors.bad.yaml:3:5: listen[1]: unknown scheme \"http\"",
		"errors.bad.yaml:4:5: listen[2]: host must be an IP address",
		"errors.bad.yaml:5:18: unknown_sources: must be drop (no reply) or reject (403)",
		"errors.bad.yaml:8:26: upstreams[0].targets: at least one target is required",
		"errors.bad.yaml:11:11: trunks[0].auth: must be ip or digest, got \"kerberos\"",
		"errors.bad.yaml:12:13: trunks[0].allow[0]: \"10.0.0.1/8\" has host bits set; did you mean 10.0.0.0/8?",
		"errors.bad.yaml:13:15: trunks[0].upstream: no upstream is named \"nope\"",
		"errors.bad.yaml:14:15: trunks[0].numbers[0]: must be an E.164 number",
		"errors.bad.yaml:14:30: trunks[0].numbers[1]: range \"+1555/9\": /N must be 1 to 4",
		"errors.bad.yaml:15:19: trunks[0].limits.cps: must be a rate >= 0",
		"errors.bad.yaml:15:35: trunks[0].limits.concurrent: must be >= 0",
		"errors.bad.yaml:16:11: trunks[1].name: name \"acme\" is already used by trunks[0]",
		"errors.bad.yaml:21:13: trunks[2].allow[0]: prefix 192.0.2.0/24 is also in trunks[1] (acme)",
		"errors.bad.yaml:23:15: trunks[2].numbers[0]: +1555* is also a number of trunk acme",
	}
	got := err.Error()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("missing error %q", w)
		}
	}
	if t.Failed() {
		t.Logf("got:\n%s", got)
	}
}

// writeCert writes a self-signed certificate and key into dir under the given names.
func writeCert(t *testing.T, certPath, keyPath string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	kb, _ := x509.MarshalECPrivateKey(key)
	_ = os.MkdirAll(filepath.Dir(certPath), 0o755)
	_ = os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
}

// TestExamples loads every file in examples/ (with the certificates the
// realistic one names generated beside a copy), so the documentation cannot rot.
func TestExamples(t *testing.T) {
	files, _ := filepath.Glob("../../examples/*.yaml")
	if len(files) < 2 {
		t.Fatalf("examples: %v", files)
	}
	for _, f := range files {
		dir := t.TempDir()
		b, _ := os.ReadFile(f)
		path := filepath.Join(dir, filepath.Base(f))
		_ = os.WriteFile(path, b, 0o600)
		decks, _ := filepath.Glob("../../examples/*.csv") // the sample rate deck
		for _, d := range decks {
			b, _ := os.ReadFile(d)
			_ = os.WriteFile(filepath.Join(dir, filepath.Base(d)), b, 0o600)
		}
		writeCert(t, filepath.Join(dir, "certs/server.pem"), filepath.Join(dir, "certs/server-key.pem"))
		writeCert(t, filepath.Join(dir, "certs/clients-ca.pem"), filepath.Join(dir, "certs/clients-ca-key.pem"))
		if _, err := Load(path); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestLoadReportsMissingFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	_ = os.WriteFile(path, []byte("listen: [tls://127.0.0.1:5061]\ntls: {cert: a.pem, key: b.pem}\n"), 0o600)
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), "tls.cert: cannot read "+filepath.Join(dir, "a.pem")) {
		t.Fatalf("got %v", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"testdata/full.good.yaml", "testdata/errors.bad.yaml", "../../examples/realistic.yaml"} {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b, "fuzz.yaml")
		if err == nil && c == nil {
			t.Fatal("nil config without error")
		}
	})
}

// parseTestdata parses testdata/name, which must be valid.
func parseTestdata(t *testing.T, name string) *Config {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(b, name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
