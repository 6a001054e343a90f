package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestChainWithFraud(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	_ = os.WriteFile(filepath.Join(dir, "rates.csv"), []byte("# currency: USD\nprefix,rate\n44,0.01\n"), 0o600)
	_ = os.WriteFile(cfg, []byte("listen: [udp://127.0.0.1:5060]\nupstreams: [{name: pbx, targets: [udp://127.0.0.1:5080]}]\n"+
		"trunks: [{name: acme, allow: [127.0.0.2], upstream: pbx}]\n"+
		"fraud: {enabled: true, rate_deck: rates.csv, default: {country: US}}\n"), 0o600)
	code, out, errs := run("chain", "--config", cfg)
	if code != 0 || !strings.Contains(out, "7. fraud") || !strings.Contains(out, "8. route") {
		t.Fatalf("chain: %d %q %q", code, out, errs)
	}
	// A deck that does not load is a configuration error.
	_ = os.WriteFile(filepath.Join(dir, "rates.csv"), []byte("prefix,rate\n44,x\n"), 0o600)
	if code, out, errs := run("chain", "--config", cfg); code != 1 || !strings.Contains(errs, "line 1: no currency") {
		t.Fatalf("bad deck: %d %q %q", code, out, errs)
	}
}

func TestFraudsimCommand(t *testing.T) {
	// Two days: of the attacks only the slow pumping (day 2, 14:00) happens, and the command says which do not.
	code, out, errs := run("fraudsim", "--days", "2", "--tenants", "2")
	if code != 0 || !strings.Contains(out, "| slow_pumping_business | contact_centre-1 | true |") ||
		!strings.Contains(out, "| month_end_surge | reseller-2 |") || !strings.Contains(errs, "ends before these scenarios are over") {
		t.Fatalf("fraudsim: %d %q %q", code, out, errs)
	}
	// Without rules the same attack goes undetected.
	code, out, errs = run("fraudsim", "--days", "2", "--tenants", "2", "--rules", "none", "--scenarios", "slow_pumping_business")
	if code != 0 || !strings.Contains(out, "| slow_pumping_business | contact_centre-1 | false |") || strings.Contains(out, "month_end_surge") {
		t.Fatalf("fraudsim --rules none: %d %q %q", code, out, errs)
	}
	if code, out, _ := run("fraudsim", "--list"); code != 0 || !strings.Contains(out, "wangiri_callbacks") || !strings.Contains(out, "stressor") {
		t.Errorf("list: %d %q", code, out)
	}
	for _, args := range [][]string{{"--tenants", "1"}, {"--format", "xml"}, {"--rules", "some"}, {"--scenarios", "nothing"}} {
		if code, _, _ := run(append([]string{"fraudsim"}, args...)...); code != 2 {
			t.Errorf("%v: %d, want 2", args, code)
		}
	}
	if code, _, errs := run("fraudsim", "--help"); code != 0 || !strings.Contains(errs, "Usage: sipwarden fraudsim") {
		t.Errorf("help: %d %q", code, errs)
	}
}

func TestFraudsimSummarize(t *testing.T) {
	dir := t.TempDir()
	var files []string
	for _, seed := range []string{"1", "2"} {
		code, out, errs := run("fraudsim", "--days", "1", "--tenants", "2", "--seed", seed, "--format", "json", "--scenarios", "month_end_surge")
		if code != 0 {
			t.Fatalf("seed %s: %d %q", seed, code, errs)
		}
		f := filepath.Join(dir, "fs-"+seed+".json")
		_ = os.WriteFile(f, []byte(out), 0o600)
		files = append(files, f)
	}
	code, out, errs := run(append([]string{"fraudsim", "--summarize"}, files...)...)
	if code != 0 || !strings.Contains(out, "2 runs, 16 tenant-days") || !strings.Contains(out, "| month_end_surge | reseller-2 |") {
		t.Fatalf("summarize: %d %q %q", code, out, errs)
	}
	bad := filepath.Join(dir, "bad.json")
	_ = os.WriteFile(bad, []byte(`{"seed": 1}`), 0o600)
	for _, tc := range []struct {
		args []string
		code int
		errs string
	}{
		{[]string{"--summarize"}, 2, "needs the JSON files"},
		{[]string{"--summarize", bad}, 1, "not a fraudsim JSON report"},
		{[]string{"--summarize", filepath.Join(dir, "none.json")}, 1, "no such file"},
		{[]string{files[0]}, 2, "files go with --summarize"},
	} {
		if code, _, errs := run(append([]string{"fraudsim"}, tc.args...)...); code != tc.code || !strings.Contains(errs, tc.errs) {
			t.Errorf("%v: %d %q, want %d %q", tc.args, code, errs, tc.code, tc.errs)
		}
	}
}
