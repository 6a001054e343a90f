package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/cdr"
	cdrsqlite "github.com/sipwarden/sipwarden/internal/cdr/sqlite"
)

func TestFraudLearnCommand(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	_ = os.WriteFile(filepath.Join(dir, "rates.csv"), []byte("# currency: USD\nprefix,rate\n1,0.01\n44,0.06\n"), 0o600)
	_ = os.WriteFile(cfg, []byte("listen: [udp://127.0.0.1:5060]\nupstreams: [{name: pbx, targets: [udp://127.0.0.1:5080]}]\n"+
		"storage: {path: "+dir+"}\n"+
		"trunks: [{name: acme, allow: [127.0.0.2], upstream: pbx, fraud: {international: true}}]\n"+
		"fraud: {enabled: true, rate_deck: rates.csv, default: {country: US}}\n"), 0o600)
	db := filepath.Join(dir, "history.db")
	store, err := cdrsqlite.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	// Three weeks of a call to London every Monday at 10:00, recent enough for --since's default.
	now := time.Now().UTC().Truncate(time.Hour)
	var recs []cdr.Record
	for w := range 3 {
		start := now.Add(-time.Duration(w+1) * 7 * 24 * time.Hour)
		ans := start.Add(10 * time.Second)
		recs = append(recs, cdr.Record{CallID: "c" + string(rune('0'+w)), Trunk: "acme", Direction: "originating", From: "+12015550100",
			To: "+442079460000", Start: start, Answer: ans, End: ans.Add(10 * time.Minute), Duration: 10 * time.Minute,
			FinalCode: 200, Disposition: cdr.Answered})
	}
	if err := store.Insert(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	_ = store.Close()

	code, out, errs := run("fraud", "learn", "--config", cfg, "--db", db)
	if code != 0 || !strings.Contains(out, "acme") || !strings.Contains(out, "3 records read, 0 skipped") {
		t.Fatalf("learn: %d %q %q", code, out, errs)
	}
	b, err := os.ReadFile(filepath.Join(dir, "fraud-baselines.json"))
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Version  int `json:"version"`
		Accounts map[string]struct {
			Countries map[string]int64 `json:"countries"`
		} `json:"accounts"`
	}
	if err := json.Unmarshal(b, &file); err != nil || file.Version != 2 || file.Accounts["acme"].Countries["GB"] == 0 {
		t.Fatalf("baseline file %s: %v", b, err)
	}
	code, out, _ = run("fraud", "learn", "--config", cfg, "--db", db, "--format", "json", "--quantile", "0.5")
	if code != 0 || !strings.Contains(out, `"Trunk": "acme"`) || !strings.Contains(out, `"file": "`) {
		t.Fatalf("json: %d %q", code, out)
	}
	for _, bad := range [][]string{
		{"fraud"}, {"fraud", "forget"}, {"fraud", "learn", "--quantile", "2"}, {"fraud", "learn", "--format", "xml"},
		{"fraud", "learn", "--since", "yesterday"},
	} {
		if code, _, _ := run(bad...); code != 2 {
			t.Errorf("%v: exit %d, want 2", bad, code)
		}
	}
	if code, _, errs := run("fraud", "learn", "--config", filepath.Join(dir, "missing.yaml")); code != 1 || errs == "" {
		t.Errorf("missing config: %d %q", code, errs)
	}
	off := filepath.Join(dir, "off.yaml")
	_ = os.WriteFile(off, []byte("listen: [udp://127.0.0.1:5060]\n"), 0o600)
	if code, _, errs := run("fraud", "learn", "--config", off, "--db", db); code != 1 || !strings.Contains(errs, "not enabled") {
		t.Errorf("fraud stage off: %d %q", code, errs)
	}
	if code, out, _ := run("fraud", "--help"); code != 0 || !strings.Contains(out, "fraud learn") {
		t.Errorf("help: %d %q", code, out)
	}
}
