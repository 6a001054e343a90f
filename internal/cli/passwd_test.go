package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sipwarden/sipwarden/internal/auth"
	"github.com/sipwarden/sipwarden/internal/config"
)

func passwd(stdin string, args ...string) (int, string, string) {
	var out, errs bytes.Buffer
	code := PasswdCommand(args, strings.NewReader(stdin), &out, &errs)
	return code, out.String(), errs.String()
}

func TestPasswd(t *testing.T) {
	const pw = "gR8%xk2Lq!vT9#mZ"
	code, out, errs := passwd(pw+"\n", "--realm", "sip.example.com", "--username", "1001", "--register-from", "198.51.100.7,10.0.0.0/8")
	if code != 0 {
		t.Fatalf("%d %s", code, errs)
	}
	if strings.Contains(out, pw) || strings.Contains(errs, pw) {
		t.Fatal("the password was printed")
	}
	for _, want := range []string{
		`- username: "1001"`,
		"md5: " + auth.HA1(auth.MD5, "1001", "sip.example.com", pw),
		"sha-256: " + auth.HA1(auth.SHA256, "1001", "sip.example.com", pw),
		"sha-512-256: " + auth.HA1(auth.SHA512256, "1001", "sip.example.com", pw),
		"register_from: [198.51.100.7/32, 10.0.0.0/8]",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// The entry drops into a configuration as is.
	var entry strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		entry.WriteString("      " + l + "\n")
	}
	y := "listen: [udp://127.0.0.1:5060]\nupstreams: [{name: pbx, targets: [udp://127.0.0.1:5080]}]\n" +
		"trunks:\n  - name: phones\n    auth: digest\n    realm: sip.example.com\n    upstream: pbx\n    accounts:\n" + entry.String()
	cfg, err := config.Parse([]byte(y), "p.yaml")
	if err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	if a := cfg.Trunks[0].Digest.Accounts[0]; a.HA1["md5"] == "" || len(a.RegisterFrom) != 2 {
		t.Fatalf("%+v", a)
	}

	code, out, _ = passwd(pw, "--realm", "r", "--username", "u", "--sha-only", "--format", "json")
	var js struct {
		HA1     map[string]string `json:"ha1"`
		SHAOnly bool              `json:"sha_only"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &js) != nil || !js.SHAOnly || js.HA1["md5"] != "" || js.HA1["sha-256"] == "" {
		t.Fatalf("json: %d %s", code, out)
	}
}

func TestPasswdRefusals(t *testing.T) {
	tests := []struct {
		stdin string
		args  []string
		code  int
		want  string
	}{
		{"short\n", []string{"--realm", "r", "--username", "u"}, 1, "(min_length)"},
		{"Password1234567890\n", []string{"--realm", "r", "--username", "u"}, 1, "(common_password)"},
		{"xx-1001-Long-Enough!\n", []string{"--realm", "r", "--username", "1001"}, 1, "(contains_username)"},
		{"", []string{"--realm", "r", "--username", "u"}, 1, "no password"},
		{"gR8%xk2Lq!vT9#mZ", []string{"--username", "u"}, 2, "--realm and --username are required"},
		{"gR8%xk2Lq!vT9#mZ", []string{"--realm", "r", "--username", "u", "--algorithms", "SHA-1"}, 2, "unknown algorithm"},
		{"gR8%xk2Lq!vT9#mZ", []string{"--realm", "r", "--username", "u", "--register-from", "nope"}, 2, "not an address"},
		{"gR8%xk2Lq!vT9#mZ", []string{"--realm", "r", "--username", "u", "--trunk", "x"}, 2, "--trunk needs --config"},
	}
	for _, tc := range tests {
		code, out, errs := passwd(tc.stdin, tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.want) || out != "" {
			t.Errorf("%v: %d %q %q, want %d %q", tc.args, code, out, errs, tc.code, tc.want)
		}
	}
}

// TestPasswdConfigPolicy: --config takes the policy, --trunk the realm and algorithms.
func TestPasswdConfigPolicy(t *testing.T) {
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "weak.txt"), []byte("# ours\nacme-Office-2026!\n"), 0o600)
	ha := auth.HA1(auth.SHA256, "x", "office", "Qm4!zR7#uK2$wE9x")
	y := "listen: [udp://127.0.0.1:5060]\nupstreams: [{name: pbx, targets: [udp://127.0.0.1:5080]}]\n" +
		"auth: {policy: {min_length: 12, extra_file: weak.txt}}\n" +
		"trunks:\n  - {name: office, auth: digest, realm: office, algorithms: [SHA-256], upstream: pbx, accounts: [{username: x, ha1: {sha-256: " + ha + "}}]}\n"
	file := filepath.Join(dir, "c.yaml")
	_ = os.WriteFile(file, []byte(y), 0o600)
	if code, _, errs := passwd("acme-Office-2026!", "--config", file, "--trunk", "office", "--username", "u"); code != 1 || !strings.Contains(errs, "common_password") {
		t.Fatalf("extra list: %d %s", code, errs)
	}
	code, out, errs := passwd("Short-but-12", "--config", file, "--trunk", "office", "--username", "u")
	if code != 0 || !strings.Contains(out, `realm "office"`) || strings.Contains(out, "md5") || !strings.Contains(out, "sha-256: "+auth.HA1(auth.SHA256, "u", "office", "Short-but-12")) {
		t.Fatalf("%d %s %s", code, out, errs)
	}
}
