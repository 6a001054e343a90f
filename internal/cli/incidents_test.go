package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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
	cfg, addr, tokenFile string
	eng                  *fraud.Engine
	sub                  *events.Subscription
}

func newIncidentsFixture(t *testing.T) *incidentsFixture {
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
	srv := admin.New("127.0.0.1:0", prometheus.NewRegistry(), admin.Hooks{Fraud: eng, Token: token}, nil)
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
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("listen: [udp://127.0.0.1:5060]\nadmin: {listen: \"0.0.0.0:%s\"}\nstorage: {path: %q}\n", port, storage)), 0o600); err != nil {
		t.Fatal(err)
	}
	return &incidentsFixture{cfg: cfg, addr: srv.Addr(), tokenFile: tokenFile, eng: eng, sub: sub}
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
		{"nobody listening", []string{"list", "--admin", "127.0.0.1:1"}, 1, "", "is sipwarden running"},
		{"list from the config", []string{"list", "--config", f.cfg}, 0, "acme:calls  block", ""},
		{"list as JSON", []string{"list", "--admin", f.addr, "--format", "json"}, 0, `"id": "acme:calls"`, ""},
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
