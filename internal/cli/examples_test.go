package cli

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/fraud"
)

// TestExamplesAfterCerts is a new user's first hour: a copy of examples/,
// `sipwarden certs examples/certs`, then `sipwarden check-config` of every
// example passes, the certificates verify against the test CA, and the
// fraud example's sample rate deck prices calls.
func TestExamplesAfterCerts(t *testing.T) {
	src, _ := filepath.Glob("../../examples/*")
	dir := filepath.Join(t.TempDir(), "examples")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	var yamls []string
	for _, f := range src {
		if st, err := os.Stat(f); err != nil || st.IsDir() {
			continue // a certs/ directory of the developer's own is not copied
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, filepath.Base(f))
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f, ".yaml") {
			yamls = append(yamls, dst)
		}
	}
	if len(yamls) < 4 {
		t.Fatalf("examples: %v", yamls)
	}
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := Main(args, &out, &errb)
		return code, out.String(), errb.String()
	}
	// Without certificates the TLS examples fail, naming the file.
	if code, _, errs := run(append([]string{"check-config"}, yamls...)...); code != 1 || !strings.Contains(errs, "certs/server.pem") {
		t.Fatalf("check-config before certs: %d %s", code, errs)
	}
	certs := filepath.Join(dir, "certs")
	if code, out, errs := run("certs", certs); code != 0 || !strings.Contains(out, "server.pem") {
		t.Fatalf("certs: %d %s %s", code, out, errs)
	}
	code, out, errs := run(append([]string{"check-config"}, yamls...)...)
	if code != 0 {
		t.Fatalf("check-config after certs: %d\n%s%s", code, out, errs)
	}
	for _, y := range yamls {
		if !strings.Contains(out, y+": ok") {
			t.Errorf("%s not ok:\n%s", y, out)
		}
	}
	// A second run keeps the files; --force replaces them.
	if code, _, errs := run("certs", certs); code != 1 || !strings.Contains(errs, "exists") {
		t.Errorf("certs over existing files: %d %s", code, errs)
	}
	if code, _, errs := run("certs", "--force", "--hosts", "sip.example.test,127.0.0.1", certs); code != 0 {
		t.Errorf("certs --force: %d %s", code, errs)
	}
	if code, _, _ := run("certs"); code != 2 {
		t.Errorf("certs without a directory: %d, want 2", code)
	}
	// The server and client certificates chain to the CA, with the names asked.
	caPEM, _ := os.ReadFile(filepath.Join(certs, "ca.pem"))
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.pem holds no certificate")
	}
	for _, c := range []struct {
		name, host string
		usage      x509.ExtKeyUsage
	}{{"server", "sip.example.test", x509.ExtKeyUsageServerAuth}, {"server", "127.0.0.1", x509.ExtKeyUsageServerAuth},
		{"client", "", x509.ExtKeyUsageClientAuth}, {"admin", "sip.example.test", x509.ExtKeyUsageServerAuth}} {
		pair, err := tls.LoadX509KeyPair(filepath.Join(certs, c.name+".pem"), filepath.Join(certs, c.name+"-key.pem"))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		leaf, _ := x509.ParseCertificate(pair.Certificate[0])
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: c.host, Roots: pool, KeyUsages: []x509.ExtKeyUsage{c.usage}}); err != nil {
			t.Errorf("%s for %q: %v", c.name, c.host, err)
		}
		if st, _ := os.Stat(filepath.Join(certs, c.name+"-key.pem")); st.Mode().Perm() != 0o600 {
			t.Errorf("%s-key.pem has mode %v", c.name, st.Mode().Perm())
		}
	}
	// The sample deck prices a call to the UK and a satellite one dearer.
	deck, err := fraud.LoadDeckFile(filepath.Join(dir, "rates.csv"))
	if err != nil {
		t.Fatal(err)
	}
	uk, ok1 := deck.Lookup([]byte("442079460000"), time.Now())
	sat, ok2 := deck.Lookup([]byte("881612345678"), time.Now())
	if !ok1 || !ok2 || uk.Cost(time.Minute) <= 0 || sat.Cost(time.Minute) <= uk.Cost(time.Minute) {
		t.Errorf("sample deck: UK %+v %v, satellite %+v %v", uk, ok1, sat, ok2)
	}
}
