package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/sipwarden/sipwarden/internal/audit"
)

func TestAuditCommandExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
		out  string // in stdout or stderr
	}{
		{"no subcommand", []string{"audit"}, 2, "Usage"},
		{"unknown subcommand", []string{"audit", "scan"}, 2, "unknown subcommand"},
		{"probe without ownership", []string{"audit", "probe", "sip:127.0.0.1:5999"}, 2, "--i-own-this"},
		{"probe of a bad target", []string{"audit", "probe", "http://x", "--i-own-this"}, 2, "sip:HOST"},
		{"config without file", []string{"audit", "config"}, 2, "Usage"},
		{"config with a bad format", []string{"audit", "config", "../../examples/quickstart.yaml", "--format", "xml"}, 2, "Usage"},
		{"config that does not load", []string{"audit", "config", "../config/testdata/errors.bad.yaml"}, 1, "does not load"},
		{"config with a high finding", []string{"audit", "config", "../../examples/quickstart.yaml"}, 1, "fraud_off"},
		{"html report", []string{"audit", "config", "../../examples/quickstart.yaml", "--format", "html"}, 1, "<!DOCTYPE html>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Main(tc.args, &out, &errb)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out.String(), errb.String())
			}
			if !strings.Contains(out.String()+errb.String(), tc.out) {
				t.Errorf("output lacks %q\nstdout: %s\nstderr: %s", tc.out, out.String(), errb.String())
			}
		})
	}
}

func TestAuditConfigJSON(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main([]string{"audit", "config", "--format", "json", "../../examples/quickstart.yaml"}, &out, &errb); code != 1 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var r audit.Report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if r.Kind != "config" || r.Score <= 0 || r.Score >= 100 || !r.HasHigh() || r.Findings[0].Line == 0 {
		t.Errorf("report %+v", r)
	}
}
