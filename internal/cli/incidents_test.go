package cli

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipwarden/sipwarden/internal/admin"
	"github.com/sipwarden/sipwarden/internal/events"
	"github.com/sipwarden/sipwarden/internal/fraud"
)

// incidentsFixture is a real admin server on loopback in front of a real
// fraud engine with one incident open (acme:calls), and a configuration
// whose admin.listen and storage.path lead to it.
type incidentsFixture struct {
	cfg, addr, tokenFile, readTokenFile string
	eng                                 *fraud.Engine
	sub                                 *events.Subscription
}

func newIncidentsFixture(t *testing.T) *incidentsFixture {
	t.Helper()
	return newIncidentsFixtureTLS(t, nil, "")
}

// newIncidentsFixtureTLS is newIncidentsFixture with the server speaking
// tlsConf (nil: plain HTTP) and adminExtra added to the admin section.
func newIncidentsFixtureTLS(t *testing.T, tlsConf *tls.Config, adminExtra string) *incidentsFixture {
	t.Helper()
	dir := t.TempDir()
	storage := filepath.Join(dir, "data")
	if err := os.MkdirAll(storage, 0o750); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(storage, AdminTokenFile)
	token, created, err := admin.LoadToken(tokenFile, true)
	if err != nil || !created {
		t.Fatal(created, err)
	}
	readTokenFile := filepath.Join(storage, AdminReadTokenFile)
	readToken, _, err := admin.LoadToken(readTokenFile, true)
	if err != nil {
		t.Fatal(err)
	}
	bus := events.NewBus()
	sub := bus.Subscribe("test", 100)
	eng := fraud.NewEngine(fraud.Options{Bus: bus})
	if err := eng.SetRules("acme", []fraud.Rule{{Name: "calls", Metric: fraud.MetricCalls, Window: time.Minute,
		Limit: 1, Action: fraud.ActionBlock, Scope: fraud.ScopeAll, For: time.Hour}}, nil); err != nil {
		t.Fatal(err)
	}
	dest := fraud.Destination{Class: fraud.ClassDomestic, CountryCode: 1}
	eng.Check("acme", dest, 0)
	eng.Check("acme", dest, 0)
	srv := admin.New("127.0.0.1:0", prometheus.NewRegistry(), admin.Hooks{Fraud: eng, Token: token, ReadToken: readToken, TLS: tlsConf}, nil)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	_, port, _ := net.SplitHostPort(srv.Addr())
	cfg := filepath.Join(dir, "sipwarden.yaml")
	// A wildcard listener: the command connects on loopback.
	if adminExtra == "" {
		adminExtra = "insecure_plaintext: true"
	}
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("listen: [udp://127.0.0.1:5060]\nadmin: {listen: \"0.0.0.0:%s\", %s}\nstorage: {path: %q}\n", port, adminExtra, storage)), 0o600); err != nil {
		t.Fatal(err)
	}
	return &incidentsFixture{cfg: cfg, addr: srv.Addr(), tokenFile: tokenFile, readTokenFile: readTokenFile, eng: eng, sub: sub}
}

func runIncidents(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := IncidentsCommand(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestIncidentsCommand(t *testing.T) {
	f := newIncidentsFixture(t)
	wrongToken := filepath.Join(t.TempDir(), "wrong.token")
	if err := os.WriteFile(wrongToken, []byte("not-the-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noAdmin := filepath.Join(t.TempDir(), "noadmin.yaml")
	_ = os.WriteFile(noAdmin, []byte("listen: [udp://127.0.0.1:5060]\n"), 0o600)
	steps := []struct {
		name string
		args []string
		code int
		out  string // in stdout
		err  string // in stderr
	}{
		{"help", []string{"--help"}, 0, "release ID", ""},
		{"no subcommand", nil, 2, "", "Usage: sipwarden incidents"},
		{"unknown subcommand", []string{"drop"}, 2, "", "Usage: sipwarden incidents"},
		{"list --help", []string{"list", "--help"}, 0, "", "Usage: sipwarden incidents list"},
		{"bad format", []string{"list", "--config", f.cfg, "--format", "xml"}, 2, "", "--format must be table or json"},
		{"list with an argument", []string{"list", "--config", f.cfg, "acme"}, 2, "", "takes no arguments"},
		{"release without ID", []string{"release", "--config", f.cfg}, 2, "", "one incident ID"},
		{"config without admin", []string{"list", "--config", noAdmin}, 1, "", "has no admin.listen"},
		{"missing config", []string{"list", "--config", filepath.Join(t.TempDir(), "none.yaml")}, 1, "", "none.yaml"},
		{"nobody listening", []string{"list", "--admin", "127.0.0.1:1", "--token-file", f.readTokenFile}, 1, "", "is sipwarden running"},
		{"list from the config", []string{"list", "--config", f.cfg}, 0, "acme:calls  block", ""},
		{"list as JSON", []string{"list", "--admin", f.addr, "--token-file", f.readTokenFile, "--format", "json"}, 0, `"id": "acme:calls"`, ""},
		{"list with a wrong token", []string{"list", "--admin", f.addr, "--token-file", wrongToken}, 1, "", "wrong bearer token"},
		{"list without a token file", []string{"list", "--admin", f.addr, "--token-file", wrongToken + ".none"}, 1, "", "admin token file does not exist"},
		{"release with the read token", []string{"release", "acme:calls", "--admin", f.addr, "--token-file", f.readTokenFile}, 1, "", "wrong bearer token"},
		{"release with a wrong token", []string{"release", "acme:calls", "--admin", f.addr, "--token-file", wrongToken}, 1, "", "wrong bearer token"},
		{"release with a missing token file", []string{"release", "acme:calls", "--admin", f.addr, "--token-file", wrongToken + ".none"}, 1, "", "admin token file does not exist"},
		{"release of a malformed ID", []string{"release", "acme", "--config", f.cfg}, 2, "", "TRUNK:RULE (HTTP 400)"},
		{"release of an unknown incident", []string{"release", "acme:other", "--config", f.cfg}, 1, "", `no open incident "acme:other" (HTTP 404)`},
		{"release by a bad name", []string{"release", "acme:calls", "--config", f.cfg, "--by", "a;b"}, 2, "", "by: at most 64"},
		{"release", []string{"release", "acme:calls", "--config", f.cfg, "--by", "alice"}, 0, "released acme:calls (block, opened", ""},
		{"release again", []string{"release", "acme:calls", "--config", f.cfg}, 1, "", "no open incident"},
		{"empty list", []string{"list", "--config", f.cfg}, 0, "(0 incidents)", ""},
	}
	for _, s := range steps {
		code, out, errs := runIncidents(s.args...)
		if code != s.code || !strings.Contains(out, s.out) || !strings.Contains(errs, s.err) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want %d, %q, %q", s.name, code, out, errs, s.code, s.out, s.err)
		}
	}
	var ev events.Event
	for ev.Kind != events.FraudRelease && len(f.sub.C) > 0 {
		ev = <-f.sub.C
	}
	if ev.Kind != events.FraudRelease || !strings.Contains(ev.Detail, "released by alice via admin API from 127.0.0.1") {
		t.Fatalf("release event %+v", ev)
	}
	if len(f.eng.Incidents()) != 0 {
		t.Fatal("incident still open")
	}
}

// TestIncidentsReleaseJSON: --format json prints the API's answer, and
// without --by the operator is the login name.
func TestIncidentsReleaseJSON(t *testing.T) {
	f := newIncidentsFixture(t)
	code, out, errs := runIncidents("release", "acme:calls", "--admin", f.addr, "--token-file", f.tokenFile, "--format", "json")
	var res admin.ReleaseResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Released.ID != "acme:calls" || !strings.HasSuffix(res.By, "via admin API from 127.0.0.1") {
		t.Fatalf("release: %d %q %q", code, out, errs)
	}
}

func TestDialAddr(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:8080": "127.0.0.1:8080",
		"0.0.0.0:8080":   "127.0.0.1:8080",
		"[::]:8080":      "[::1]:8080",
		"192.0.2.1:80":   "192.0.2.1:80",
	} {
		if got := dialAddr(in); got != want {
			t.Errorf("dialAddr(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestIncidentsOverTLS: with admin.tls the command speaks HTTPS and
// accepts only the server's own certificate (admin.tls.cert).
func TestIncidentsOverTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "admin.pem"), filepath.Join(dir, "admin-key.pem")
	cert := writeTestCert(t, certFile, keyFile)
	f := newIncidentsFixtureTLS(t, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		fmt.Sprintf("tls: {cert: %q, key: %q}", certFile, keyFile))
	if code, out, errs := runIncidents("list", "--config", f.cfg); code != 0 || !strings.Contains(out, "acme:calls") {
		t.Fatalf("list over TLS: %d %q %q", code, out, errs)
	}
	// another certificate in the configuration: the pin refuses the server
	other := filepath.Join(dir, "other.pem")
	otherKey := filepath.Join(dir, "other-key.pem")
	writeTestCert(t, other, otherKey)
	b, _ := os.ReadFile(f.cfg)
	// a pair that matches (check-config refuses a certificate with another's key)
	_ = os.WriteFile(f.cfg, []byte(strings.NewReplacer(certFile, other, keyFile, otherKey).Replace(string(b))), 0o600)
	if code, _, errs := runIncidents("list", "--config", f.cfg); code != 1 || !strings.Contains(errs, "not the one of admin.tls.cert") {
		t.Fatalf("list against another certificate: %d %q", code, errs)
	}
}

// writeTestCert writes a self-signed certificate for 127.0.0.1 and its key.
func writeTestCert(t *testing.T, certFile, keyFile string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sipwarden admin"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	cp := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	kp := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	if err := os.WriteFile(certFile, cp, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, kp, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(cp, kp)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
