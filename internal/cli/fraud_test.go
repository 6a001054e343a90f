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
	if code != 0 || !strings.Contains(out, "6. fraud") || !strings.Contains(out, "7. route") {
		t.Fatalf("chain: %d %q %q", code, out, errs)
	}
	// A deck that does not load is a configuration error.
	_ = os.WriteFile(filepath.Join(dir, "rates.csv"), []byte("prefix,rate\n44,x\n"), 0o600)
	if code, out, errs := run("chain", "--config", cfg); code != 1 || !strings.Contains(errs, "line 1: no currency") {
		t.Fatalf("bad deck: %d %q %q", code, out, errs)
	}
}

func TestFraudsimCommand(t *testing.T) {
	// Two days: only the slow pumping (day 2, 14:00) happens, and the command says so.
	code, out, errs := run("fraudsim", "--days", "2", "--tenants", "2")
	if code != 0 || !strings.Contains(out, "| slow_pumping_business | contact_centre-1 | 2 | true |") ||
		!strings.Contains(errs, "the later attacks do not happen") {
		t.Fatalf("fraudsim: %d %q %q", code, out, errs)
	}
	if code, _, _ := run("fraudsim", "--tenants", "1"); code != 2 {
		t.Errorf("one tenant of each kind: %d", code)
	}
	if code, _, _ := run("fraudsim", "--format", "xml"); code != 2 {
		t.Errorf("bad format: %d", code)
	}
	if code, _, errs := run("fraudsim", "--help"); code != 0 || !strings.Contains(errs, "Usage: sipwarden fraudsim") {
		t.Errorf("help: %d %q", code, errs)
	}
}
