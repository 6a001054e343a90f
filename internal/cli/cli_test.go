package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/cdr"
	cdrsqlite "github.com/sipwarden/sipwarden/internal/cdr/sqlite"
)

func run(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsageAndVersion(t *testing.T) {
	if code, _, errs := run(); code != 2 || !strings.Contains(errs, "Commands:") {
		t.Errorf("no args: %d %q", code, errs)
	}
	if code, _, _ := run("frobnicate"); code != 2 {
		t.Errorf("unknown command: %d", code)
	}
	if code, out, _ := run("version"); code != 0 || !strings.HasPrefix(out, "sipwarden ") {
		t.Errorf("version: %d %q", code, out)
	}
	for _, cmd := range []string{"serve", "check-config", "chain"} {
		if code, _, errs := run(cmd, "--help"); code != 0 || !strings.Contains(errs, "Usage: sipwarden "+cmd) {
			t.Errorf("%s --help: %d %q", cmd, code, errs)
		}
	}
	if code, out, _ := run("cdr", "--help"); code != 0 || !strings.Contains(out, "list") {
		t.Errorf("cdr --help: %d %q", code, out)
	}
}

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(good, []byte("listen: [udp://127.0.0.1:5060]\n"), 0o600)
	_ = os.WriteFile(bad, []byte("listen: [udp://127.0.0.1:5060]\nunknown_sources: maybe\n"), 0o600)
	if code, out, _ := run("check-config", good); code != 0 || !strings.Contains(out, "ok") {
		t.Errorf("good: %d %q", code, out)
	}
	code, _, errs := run("check-config", bad)
	if code != 1 || !strings.Contains(errs, "bad.yaml:2:18: unknown_sources: must be drop") {
		t.Errorf("bad: %d %q", code, errs)
	}
	// a flood profile below a trunk's own limits: valid, with a warning
	contra := filepath.Join(dir, "contra.yaml")
	_ = os.WriteFile(contra, []byte("listen: [udp://127.0.0.1:5060]\nupstreams: [{name: pbx, targets: [udp://127.0.0.3:5080]}]\n"+
		"flood: {trunk: {invite: 100/1s}}\ntrunks:\n  - {name: acme, allow: [192.0.2.1], upstream: pbx, limits: {cps: 300}}\n"), 0o600)
	code, out, errs := run("check-config", contra)
	if code != 0 || !strings.Contains(out, "ok") ||
		!strings.Contains(errs, "warning: "+contra+":5:67: trunks[0].limits.cps: allows 300 calls/s (burst 300), more than the flood invite budget 100/1s (flood.trunk.invite)") {
		t.Errorf("contradicting limits: %d %q %q", code, out, errs)
	}
	if code, out, _ := run("chain", "--config", good); code != 0 || !strings.Contains(out, "1. acl") || !strings.Contains(out, "2. flood") || !strings.Contains(out, "4. scanner") || !strings.Contains(out, "5. identity") || !strings.Contains(out, "7. route") {
		t.Errorf("chain: %d %q", code, out)
	}
}

func TestCDRCommand(t *testing.T) {
	db := filepath.Join(t.TempDir(), "cdr.db")
	st, err := cdrsqlite.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	_ = st.Insert(context.Background(), []cdr.Record{
		{CallID: "old", Trunk: "acme", Start: now.Add(-48 * time.Hour), End: now.Add(-48 * time.Hour), FinalCode: 486, Disposition: cdr.Busy},
		{CallID: "new", Trunk: "acme", From: "+15550001000", To: "+15551230001", Start: now.Add(-time.Minute), Answer: now.Add(-50 * time.Second),
			End: now, Duration: 50 * time.Second, FinalCode: 200, Disposition: cdr.Answered},
		{CallID: "other", Trunk: "globex", Start: now.Add(-time.Minute), End: now, FinalCode: 503, Disposition: cdr.Blocked, Stage: "limits", Reason: "cps_limit"},
	})
	st.Close()
	code, out, errs := run("cdr", "list", "--db", db, "--since", "24h")
	if code != 0 || !strings.Contains(out, "new") || strings.Contains(out, "old") || !strings.Contains(out, "limits/cps_limit") || !strings.Contains(out, "(2 calls)") {
		t.Errorf("list: %d %q %q", code, out, errs)
	}
	code, out, _ = run("cdr", "export", "--db", db, "--trunk", "acme")
	if code != 0 || strings.Count(out, "\n") != 3 || !strings.HasPrefix(out, "start,call_id,trunk") {
		t.Errorf("csv export: %d %q", code, out)
	}
	code, out, _ = run("cdr", "export", "--db", db, "--format", "json", "--limit", "1")
	var recs []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &recs) != nil || len(recs) != 1 || recs[0]["call_id"] != "old" {
		t.Errorf("json export: %d %q", code, out)
	}
	if code, _, _ := run("cdr", "list", "--db", db, "--since", "yesterday"); code != 2 {
		t.Errorf("bad --since: %d, want 2", code)
	}
	if code, _, _ := run("cdr", "list", "--db", db, "--format", "xml"); code != 2 {
		t.Errorf("bad --format: %d, want 2", code)
	}
}

func TestBanCommand(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	_ = os.WriteFile(cfg, []byte("listen: [udp://127.0.0.1:5060]\nstorage: {path: data}\n"), 0o600)
	if code, out, errs := run("ban", "add", "--config", cfg, "--for", "2h", "--reason", "abuse", "192.0.2.0/24"); code != 0 || !strings.Contains(out, "banned 192.0.2.0/24 (abuse) until") {
		t.Fatalf("add: %d %q %q", code, out, errs)
	}
	if code, out, _ := run("ban", "add", "--config", cfg, "--for", "0", "2001:db8::1"); code != 0 || !strings.Contains(out, "permanently") {
		t.Fatalf("add permanent: %d %q", code, out)
	}
	code, out, _ := run("ban", "list", "--config", cfg)
	if code != 0 || !strings.Contains(out, "192.0.2.0/24") || !strings.Contains(out, "2001:db8::1/128") || !strings.Contains(out, "(2 bans)") {
		t.Fatalf("list: %d %q", code, out)
	}
	if code, _, _ := run("ban", "remove", "--config", cfg, "192.0.2.0/24"); code != 0 {
		t.Fatalf("remove: %d", code)
	}
	if code, _, _ := run("ban", "remove", "--config", cfg, "192.0.2.0/24"); code != 1 {
		t.Fatalf("second remove: %d, want 1", code)
	}
	if code, _, _ := run("ban", "add", "--config", cfg, "not-an-ip"); code != 2 {
		t.Fatalf("bad address: %d, want 2", code)
	}
	if code, out, _ := run("ban", "list", "--config", cfg, "--format", "json"); code != 0 || !strings.Contains(out, `"prefix": "2001:db8::1/128"`) || strings.Contains(out, "192.0.2.0") {
		t.Fatalf("json list: %d %q", code, out)
	}
}

// Operators type the address first and the flags after it; both orders work.
func TestBanFlagsAfterTheAddress(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	_ = os.WriteFile(cfg, []byte("listen: [udp://127.0.0.1:5060]\nstorage: {path: data}\n"), 0o600)
	if code, out, errs := run("ban", "add", "198.51.100.7", "--for", "0", "--config", cfg, "--reason", "abuse"); code != 0 || !strings.Contains(out, "banned 198.51.100.7/32 (abuse) permanently") {
		t.Fatalf("add: %d %q %q", code, out, errs)
	}
	if code, _, errs := run("ban", "add", "198.51.100.8", "198.51.100.9", "--config", cfg); code != 2 {
		t.Fatalf("two addresses: %d %q, want usage error 2", code, errs)
	}
}

func TestFirewallNft(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	_ = os.WriteFile(cfg, []byte(`listen: [udp://127.0.0.1:5060, tls://127.0.0.1:5061]
tls: {cert: c.pem, key: k.pem}
upstreams: [{name: pbx, targets: [udp://10.0.0.5:5060]}]
trunks: [{name: acme, auth: ip, allow: [192.0.2.0/24], upstream: pbx, targets: [udp://192.0.2.1:5060]}]
`), 0o600)
	writeTestCert(t, filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")) // the files are checked as serve would
	code, out, errs := run("firewall", "nft", "--config", cfg, "--rtp-ports", "10000-20000")
	if code != 0 {
		t.Fatalf("firewall nft: %d %q", code, errs)
	}
	for _, want := range []string{"elements = { 10.0.0.5,\n", "192.0.2.0/24 }", "udp dport 5060 ip saddr @peers4 accept", "tcp dport 5061 counter drop", "udp dport 10000-20000"} {
		if !strings.Contains(out, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, out)
		}
	}
	for _, bad := range [][]string{{"firewall"}, {"firewall", "iptables"}, {"firewall", "nft", "--config", cfg, "--rtp-ports", "20000-10000"}} {
		if code, _, _ := run(bad...); code != 2 {
			t.Errorf("%v: exit %d, want 2", bad, code)
		}
	}
}

// TestVersionOf: the stamped version and commit win; without them the
// module version and the revision go build recorded in a git checkout.
func TestVersionOf(t *testing.T) {
	vcs := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0ff07ea1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7"}, {Key: "vcs.modified", Value: "true"}}}
	for _, tc := range []struct {
		version, commit string
		bi              *debug.BuildInfo
		ok              bool
		want            string
	}{
		{"", "", nil, false, "devel"},
		{"", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, true, "devel"},
		{"", "", vcs, true, "devel (commit 0ff07ea1c2d3+dirty)"},
		{"", "", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, true, "v1.2.3"},
		{"v1.3.0", "abc123", vcs, true, "v1.3.0 (commit abc123)"},
		{"0ff07ea", "0ff07ea", vcs, true, "0ff07ea"}, // git describe without tags is the commit
	} {
		if got := versionOf(tc.version, tc.commit, tc.bi, tc.ok); got != tc.want {
			t.Errorf("versionOf(%q, %q, %+v): %q, want %q", tc.version, tc.commit, tc.bi, got, tc.want)
		}
	}
}

// TestHelpAndUsage: no command prints an empty Flags heading, each
// subcommand shows only its own flags, and serve takes its file with or
// without --config, refusing two files and explaining a missing default.
func TestHelpAndUsage(t *testing.T) {
	dir := t.TempDir()
	wd, _ := os.Getwd()
	t.Chdir(dir) // no sipwarden.yaml here
	quick := filepath.Join(wd, "..", "..", "examples", "quickstart.yaml")
	for _, tc := range []struct {
		args       []string
		code       int
		want, not  []string
		wantStderr bool
	}{
		{[]string{"check-config", "--help"}, 0, []string{"Usage: sipwarden check-config FILE..."}, []string{"Flags:"}, true},
		{[]string{"cdr", "--help"}, 0, []string{"sipwarden cdr list --help"}, []string{"Flags:"}, false},
		{[]string{"ban", "--help"}, 0, []string{"sipwarden ban add|remove|list --help"}, []string{"Flags:"}, false},
		{[]string{"incidents", "--help"}, 0, []string{"sipwarden incidents list --help"}, []string{"Flags:"}, false},
		{[]string{"firewall", "--help"}, 0, []string{"sipwarden firewall nft --help"}, []string{"Flags:"}, false},
		{[]string{"ban", "list", "--help"}, 0, []string{"-format", "-config"}, []string{"-for duration", "-reason"}, true},
		{[]string{"ban", "add", "--help"}, 0, []string{"-for", "-reason", "ADDRESS|PREFIX"}, []string{"-format"}, true},
		{[]string{"ban", "remove", "--help"}, 0, []string{"-config"}, []string{"-for duration", "-format"}, true},
		{[]string{"serve"}, 2, []string{"no configuration file: sipwarden.yaml is not in this directory", "--config FILE"}, []string{"open sipwarden.yaml"}, true},
		{[]string{"serve", "a.yaml", "b.yaml"}, 2, []string{"one configuration file expected, got 2"}, nil, true},
		{[]string{"serve", "--config", "a.yaml", "b.yaml"}, 2, []string{"two configuration files"}, nil, true},
		{[]string{"serve", "missing.yaml"}, 1, []string{"missing.yaml"}, nil, true},
		{[]string{"chain", quick}, 0, []string{"chain of " + quick}, nil, false},
		{[]string{"chain", "--config", quick, quick}, 0, []string{"chain of " + quick}, nil, false},
		{[]string{"version"}, 0, []string{"sipwarden "}, nil, false},
	} {
		var out, errb bytes.Buffer
		code := Main(tc.args, &out, &errb)
		text := out.String()
		if tc.wantStderr {
			text = errb.String()
		}
		bad := code != tc.code
		for _, w := range tc.want {
			bad = bad || !strings.Contains(text, w)
		}
		for _, n := range tc.not {
			bad = bad || strings.Contains(text, n)
		}
		if bad {
			t.Errorf("sipwarden %s: %d\nstdout: %s\nstderr: %s\nwant %d with %q and without %q", strings.Join(tc.args, " "), code, out.String(), errb.String(), tc.code, tc.want, tc.not)
		}
	}
}
