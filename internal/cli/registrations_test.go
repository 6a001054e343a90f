package cli

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipwarden/sipwarden/internal/admin"
	"github.com/sipwarden/sipwarden/internal/registrar"
	"github.com/sipwarden/sipwarden/internal/sip"
)

// TestRegistrationsCommand: `sipwarden registrations list` shows the
// bindings of a running registrar through the admin API, with the read
// token that --config's storage.path holds.
func TestRegistrationsCommand(t *testing.T) {
	dir := t.TempDir()
	storage := filepath.Join(dir, "data")
	if err := os.MkdirAll(storage, 0o750); err != nil {
		t.Fatal(err)
	}
	readToken, _, err := admin.LoadToken(filepath.Join(storage, AdminReadTokenFile), true)
	if err != nil {
		t.Fatal(err)
	}
	reg := registrar.New()
	now := time.Now()
	for i, user := range []string{"1002", "1001"} {
		res := reg.Apply("phones\x00"+user, registrar.Options{}, &registrar.Request{
			Contacts: []registrar.Contact{{URI: fmt.Sprintf("sip:%s@192.0.2.%d:5062;transport=tls", user, 10+i), Expires: 600}}, Expires: -1,
			CallID: "c" + user, CSeq: 1, Source: netip.MustParseAddrPort(fmt.Sprintf("192.0.2.%d:5062", 10+i)), Transport: sip.TLS, UserAgent: "Linphone/5.1"}, now)
		if res.Code != 200 {
			t.Fatal(res)
		}
	}
	srv := admin.New("127.0.0.1:0", prometheus.NewRegistry(), admin.Hooks{Registrar: reg, Token: "0123456789abcdef0123456789abcdef", ReadToken: readToken}, nil)
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
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("listen: [udp://127.0.0.1:5060]\nadmin: {listen: \"127.0.0.1:%s\"}\nstorage: {path: %q}\n", port, storage)), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := Main(args, &out, &errb)
		return code, out.String(), errb.String()
	}
	for _, s := range []struct {
		name     string
		args     []string
		code     int
		out, err string
	}{
		{"table", []string{"registrations", "list", "--config", cfg}, 0,
			"phones  1001     sip:1001@192.0.2.11:5062;transport=tls  192.0.2.11:5062  tls", ""},
		{"table counts", []string{"registrations", "list", "--config", cfg}, 0, "(2 registrations)", ""},
		{"json", []string{"registrations", "list", "--config", cfg, "--format", "json"}, 0, `"user_agent": "Linphone/5.1"`, ""},
		{"help", []string{"registrations", "--help"}, 0, "-token-file", ""},
		{"list help", []string{"registrations", "list", "--help"}, 0, "", "-format"},
		{"no subcommand", []string{"registrations"}, 2, "", "Usage: sipwarden registrations list"},
		{"argument", []string{"registrations", "list", "--config", cfg, "x"}, 2, "", "takes no arguments"},
		{"bad format", []string{"registrations", "list", "--config", cfg, "--format", "xml"}, 2, "", "--format must be"},
		{"no config", []string{"registrations", "list", "--config", filepath.Join(dir, "none.yaml")}, 1, "", "none.yaml"},
	} {
		code, out, errs := run(s.args...)
		if code != s.code || !strings.Contains(out, s.out) || !strings.Contains(errs, s.err) {
			t.Errorf("%s: %d\nstdout: %s\nstderr: %s\nwant %d, stdout with %q, stderr with %q", s.name, code, out, errs, s.code, s.out, s.err)
		}
	}
}
