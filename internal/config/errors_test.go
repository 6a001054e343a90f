package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestBadFileErrors runs each testdata/*.bad.yaml of the table and wants
// exactly the errors listed, in order, each as file:line:col: key: message
// (a want is a prefix of its error: the list of valid keys may grow).
func TestBadFileErrors(t *testing.T) {
	tests := []struct {
		file string
		load bool // through Load, which also checks the files named
		want []string
	}{
		{"four.bad.yaml", false, []string{
			`four.bad.yaml:4:10: log.level: must be debug, info, warn or error, got "verbose"`,
			`four.bad.yaml:10:13: trunks[0].allow[0]: must be an IP address or CIDR prefix, got "192.0.2.10/33"`,
			`four.bad.yaml:13:7: trunks[0].limits.concurent: unknown key (did you mean "concurrent"?); valid keys here: cps, burst, concurrent,`,
			`four.bad.yaml:14:14: trunks[0].limits.burst: must be an integer, got the string "lots"`,
		}},
		{"nested.bad.yaml", false, []string{
			`nested.bad.yaml:11:22: trunks[2].limits.concurent: unknown key (did you mean "concurrent"?); valid keys here: cps,`,
			`nested.bad.yaml:13:28: trunks[2].tls.require_client_cert: must be true or false, got the string "maybe"`,
			`nested.bad.yaml:15:15: trunks[2].flood.invite: must be a string, got a list`,
			`nested.bad.yaml:18:47: trunks[2].fraud.rules[0].scop: unknown key (did you mean "scope"?); valid keys here: name, metric,`,
			`nested.bad.yaml:22:26: fraud.wangiri.short_rings: must be an integer, got the string "three"`,
			`nested.bad.yaml:24:24: shaken.cache.max_entries: must be an integer, got the string "many"`,
			`nested.bad.yaml:26:3: sip.worker: unknown key (did you mean "workers"?); valid keys here: max_message_size,`,
		}},
		{"types.bad.yaml", false, []string{
			`types.bad.yaml:3:9: listen: must be a list ([a, b] or one "- item" a line), got the string "udp://127.0.0.1:5060"`,
			`types.bad.yaml:5:10: admin.hosts: must be a list ([a, b] or one "- item" a line), got the string "localhost"`,
			`types.bad.yaml:7:12: sip.workers: must be an integer, got the string "lots"`,
			`types.bad.yaml:8:14: sip.max_conns: must be an integer, got the number 1.5`,
			`types.bad.yaml:10:24: bans.probe_prefix_factor: must be a number, got the string "high"`,
			`types.bad.yaml:11:11: bans.factor: must be 2 or more (0: the default 4), got 1`,
			`types.bad.yaml:13:3: upstreams: must be a list ([a, b] or one "- item" a line), got a mapping`,
			`types.bad.yaml:14:6: log: must be a mapping with the keys level, format, got a list`,
			`types.bad.yaml:15:18: unknown_sources: must be drop (no reply) or reject (403), got "ignore"`,
			`types.bad.yaml:16:1: log: given twice (first at line 14): keep one`,
		}},
		{"files.bad.yaml", true, []string{
			`testdata/files.bad.yaml:5:9: tls.cert: cannot read testdata/files/missing-cert.pem: no such file or directory: give the path of a readable file`,
			`testdata/files.bad.yaml:6:8: tls.key: cannot read testdata/files/missing-key.pem: no such file`,
			`testdata/files.bad.yaml:7:14: tls.client_ca: cannot read testdata/files/missing-client-ca.pem: no such file`,
			`testdata/files.bad.yaml:8:16: tls.upstream_ca: cannot read testdata/files/missing-upstream-ca.pem: no such file`,
			`testdata/files.bad.yaml:11:15: admin.tls.cert: cannot read testdata/files/missing-admin.pem: no such file`,
			`testdata/files.bad.yaml:11:45: admin.tls.key: cannot read testdata/files/missing-admin-key.pem: no such file`,
			`testdata/files.bad.yaml:13:15: geoip.country_db: cannot read testdata/files/missing.mmdb: no such file`,
			`testdata/files.bad.yaml:16:62: notify.webhooks[0].secret_file: cannot read testdata/files/missing-webhook.key: no such file`,
			`testdata/files.bad.yaml:20:20: notify.email.password_file: cannot read testdata/files/missing-smtp.pass: no such file`,
			`testdata/files.bad.yaml:21:14: notify.email.ca_file: cannot read testdata/files/missing-mail-ca.pem: no such file`,
			`testdata/files.bad.yaml:25:24: auth.policy.extra_file: cannot read testdata/files/missing-passwords.txt: no such file`,
			`testdata/files.bad.yaml:29:14: fraud.rate_deck: testdata is a directory, not a file: give the path of a readable file`,
			`testdata/files.bad.yaml:32:27: bans.feeds[0].file: cannot read testdata/files/missing-feed.txt: no such file`,
			`testdata/files.bad.yaml:39:18: shaken.trust_anchors: cannot read testdata/files/missing-sti-ca.pem: no such file`,
			`testdata/files.bad.yaml:41:25: shaken.signers[0].key: cannot read testdata/files/missing-shaken.key: no such file`,
		}},
		{"contents.bad.yaml", true, []string{
			`testdata/contents.bad.yaml:4:9: tls.cert: testdata/contents/garbage.pem and testdata/contents/garbage.pem are not a certificate and its private key (`,
			`testdata/contents.bad.yaml:6:14: tls.client_ca: testdata/contents/garbage.pem holds no PEM certificate: give a file of PEM CA certificates`,
			`testdata/contents.bad.yaml:9:15: admin.tls.cert: testdata/contents/garbage.pem and testdata/contents/garbage.pem are not a certificate and its private key (`,
			`testdata/contents.bad.yaml:12:62: notify.webhooks[0].secret_file: testdata/contents/empty.txt is empty: write the secret in it`,
			`testdata/contents.bad.yaml:14:18: shaken.trust_anchors: testdata/contents/garbage.pem holds no PEM certificate`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			var err error
			if tc.load {
				_, err = Load(filepath.Join("testdata", tc.file))
			} else {
				b, rerr := os.ReadFile(filepath.Join("testdata", tc.file))
				if rerr != nil {
					t.Fatal(rerr)
				}
				_, err = Parse(b, tc.file)
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("want Errors, got %v", err)
			}
			for i, w := range tc.want {
				if i >= len(es) {
					t.Errorf("missing %s", w)
					continue
				}
				if !strings.HasPrefix(es[i].Error(), w) {
					t.Errorf("error %d:\n got %s\nwant %s", i, es[i], w)
				}
			}
			for _, e := range es[min(len(es), len(tc.want)):] {
				t.Errorf("unexpected %s", e)
			}
			for _, e := range es {
				if e.Line == 0 || e.Column == 0 || e.Key == "" {
					t.Errorf("%s: no line, column or key", e)
				}
			}
		})
	}
}

// TestValidatorForASection: a stage can check its own section with the
// shared validator, and its errors read like the rest of the file's.
func TestValidatorForASection(t *testing.T) {
	src := "listen: [udp://127.0.0.1:5060]\nmine:\n  port: high\n  colour: red\n  mode: fast\n"
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(src), &root); err != nil {
		t.Fatal(err)
	}
	section := root.Content[0].Content[3] // the value of "mine"
	var raw struct {
		Port  int    `yaml:"port"`
		Color string `yaml:"color"`
		Mode  string `yaml:"mode"`
	}
	v := NewValidator("x.yaml", &root)
	v.Decode([]any{"mine"}, section, &raw)
	if raw.Mode != "slow" {
		v.Fail([]any{"mine", "mode"}, "must be slow, got %q", raw.Mode)
	}
	v.Fail([]any{"mine", "port"}, "is checked only when it decoded") // suppressed: port did not decode
	want := "x.yaml:3:9: mine.port: must be an integer, got the string \"high\"\n" +
		"x.yaml:4:3: mine.colour: unknown key (did you mean \"color\"?); valid keys here: port, color, mode\n" +
		"x.yaml:5:9: mine.mode: must be slow, got \"fast\""
	if err := v.Err(); err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
}

// TestNodeOfASection: a stage finds its section's node in a parsed Config
// and checks it with the shared validator.
func TestNodeOfASection(t *testing.T) {
	b, _ := os.ReadFile("testdata/fraud.good.yaml")
	c, err := Parse(b, "fraud.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Node("trunks[9]") != nil || c.Node("nope") != nil {
		t.Error("Node of a key the file does not give")
	}
	n := c.Node("fraud.rules[1]")
	if n == nil {
		t.Fatal("no node for fraud.rules[1]")
	}
	var rule struct {
		Name   string `yaml:"name"`
		Metric string `yaml:"metric"`
	}
	v := c.NewValidator()
	v.Decode(ParseKey("fraud.rules[1]"), n, &rule)
	v.Fail(ParseKey("fraud.rules[1].metric"), "must be score")
	want := "fraud.good.yaml:13:31: fraud.rules[1].metric: must be score\n" +
		"fraud.good.yaml:13:43: fraud.rules[1].window: unknown key; valid keys here: name, metric"
	if err := v.Err(); err == nil || !strings.HasPrefix(err.Error(), want) || rule.Name != "intl_5m" {
		t.Errorf("got %v (rule %+v), want %s...", err, rule, want)
	}
}

// TestLocate: a stage constructor's error names its key; Locate gives it
// the key's line and column, once, without the stage's name in front.
func TestLocate(t *testing.T) {
	b, _ := os.ReadFile("testdata/fraud.good.yaml")
	c, err := Parse(b, "fraud.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := c.Locate("fraud", errors.Join(At("fraud.rules[1]", errors.New("bad rule")), errors.New("plain"))).Error()
	want := "fraud.good.yaml:13:7: fraud.rules[1]: bad rule\nfraud.good.yaml: fraud: plain"
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	if k := c.FirstKey("trunks[0].fraud", "fraud.default"); k != "trunks[0].fraud" {
		t.Errorf("FirstKey = %s", k)
	}
	if k := c.FirstKey("trunks[9].fraud", "fraud.default"); k != "fraud.default" {
		t.Errorf("FirstKey = %s", k)
	}
}

func TestParseKey(t *testing.T) {
	for key, want := range map[string]string{
		"trunks[2].limits.concurent": "[trunks 2 limits concurent]",
		"a.b[0][1].c":                "[a b 0 1 c]",
		"shaken":                     "[shaken]",
	} {
		if got := strings.TrimSpace(fmtPath(ParseKey(key))); got != want {
			t.Errorf("ParseKey(%q) = %s, want %s", key, got, want)
		}
		if keyString(ParseKey(key)) != key {
			t.Errorf("keyString(ParseKey(%q)) = %s", key, keyString(ParseKey(key)))
		}
	}
}

func fmtPath(p []any) string {
	parts := make([]string, len(p))
	for i, x := range p {
		switch x := x.(type) {
		case string:
			parts[i] = x
		case int:
			parts[i] = string(rune('0' + x))
		}
	}
	return "[" + strings.Join(parts, " ") + "]"
}
