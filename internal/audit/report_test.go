package audit

import (
	"bytes"
	"strings"
	"testing"
)

func TestReportRenderings(t *testing.T) {
	r := &Report{Kind: "config", Subject: "a.yaml", Findings: []Finding{
		{Check: "weak_credential", Severity: High, Responsibility: Credentials, File: "a.yaml", Line: 7, Key: "trunks[0].accounts[0].ha1",
			Why: "Account <script>alert(1)</script>'s HA1 is weak.", Fix: "sipwarden passwd"},
		{Check: "kernel_firewall_off", Severity: Info, Responsibility: Exposure, File: "a.yaml", Line: 1, Key: "firewall (not set)", Why: "w", Fix: "firewall: {nftables: true}"},
	}}
	r.finish()
	if r.Score != 80 || r.Findings[0].Check != "weak_credential" || !r.HasHigh() {
		t.Fatalf("score %d, order %v", r.Score, describe(r))
	}
	var table bytes.Buffer
	if err := r.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"score 80/100: 1 high", "HIGH", "a.yaml:7:trunks[0].accounts[0].ha1", "fix: sipwarden passwd"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	var page bytes.Buffer
	if err := r.WriteHTML(&page); err != nil {
		t.Fatal(err)
	}
	h := page.String()
	if strings.Contains(h, "<script>alert") || !strings.Contains(h, "&lt;script&gt;") {
		t.Error("the HTML report does not escape what it shows")
	}
	if strings.Contains(h, "http://") || strings.Contains(h, "https://") || strings.Contains(h, "<link") {
		t.Error("the HTML report refers to external resources")
	}
	// grouped by responsibility, in report order: exposure before credentials
	ex, cr := strings.Index(h, "<h2>Exposure"), strings.Index(h, "<h2>Credentials")
	if ex < 0 || cr < 0 || ex > cr || strings.Count(h, `class="finding"`) != 2 {
		t.Errorf("groups: exposure at %d, credentials at %d\n%s", ex, cr, h)
	}
}
