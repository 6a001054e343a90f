package audit

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sipwarden/sipwarden/internal/auth"
	"github.com/sipwarden/sipwarden/internal/config"
)

// Strong passwords of the good configuration's accounts (random, 20 characters).
const (
	alicePass = "vR7#qLm2!xT9wZp4Kd8s"
	bobPass   = "Hy3$nBc6@uJ1eQo5Wf0g"
)

func ha1s(user, realm, pw string) string {
	return "{sha-256: " + auth.HA1(auth.SHA256, user, realm, pw) + ", sha-512-256: " + auth.HA1(auth.SHA512256, user, realm, pw) + "}"
}

// goodConfig meets every check: the audit finds nothing in it.
func goodConfig() string {
	return `listen:
  - udp://127.0.0.1:5060
  - tls://127.0.0.1:5061
tls: {cert: cert.pem, key: key.pem, client_ca: ca.pem}
admin: {listen: 127.0.0.1:8080}
unknown_sources: drop
firewall: {nftables: true}
notify:
  webhooks:
    - {url: https://hooks.example.net/sipwarden, secret_file: hook.secret}
media: {enabled: true}
upstreams:
  - name: pbx
    targets: [udp://127.0.0.3:5080]
trunks:
  - name: carrier
    allow: [192.0.2.10/32]
    upstream: pbx
    targets: [tls://192.0.2.10:5061]
    tls: {require_client_cert: true}
    limits: {cps: 10, concurrent: 100}
    media: {srtp: required}
  - name: office
    auth: digest
    realm: sip.example.net
    algorithms: [SHA-512-256, SHA-256]
    require_tls: true
    upstream: pbx
    limits: {cps: 2, concurrent: 10}
    media: {srtp: required}
    accounts:
      - username: alice
        ha1: ` + ha1s("alice", "sip.example.net", alicePass) + `
        register_from: [198.51.100.0/24]
      - username: bob
        ha1: ` + ha1s("bob", "sip.example.net", bobPass) + `
        register_from: [198.51.100.0/24]
fraud:
  enabled: true
  rate_deck: rates.csv
  default: {country: GB, international: false}
shaken:
  trust_anchors: anchors.pem
  signers: [{name: main, key: sp.key, x5u: https://cert.example.net/sp.pem}]
  trunks:
    - {trunk: carrier, verify: mark}
    - {trunk: office, sign: main}
`
}

func auditText(t *testing.T, text string) *Report {
	t.Helper()
	cfg, err := config.Parse([]byte(text), "test.yaml")
	if err != nil {
		t.Fatalf("config does not parse: %v\n%s", err, text)
	}
	r, err := Config(cfg, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestGoodConfigHasNoFindings(t *testing.T) {
	r := auditText(t, goodConfig())
	for _, f := range r.Findings {
		t.Errorf("unexpected finding %s at %s: %s", f.Check, f.Where(), f.Why)
	}
	if r.Score != 100 || r.HasHigh() {
		t.Errorf("score %d, high %v; want 100, false", r.Score, r.HasHigh())
	}
}

// allChecks is every check the configuration audit has; each must be
// produced by at least one bad configuration below.
var allChecks = []string{
	"unknown_sources_answered", "registration_source_unlimited", "kernel_firewall_off",
	"policy_allows_common", "policy_short_passwords", "bruteforce_rule_off", "weak_credential", "reused_credential",
	"digest_over_plaintext", "md5_offered",
	"tls_off", "carrier_without_tls", "carrier_without_client_cert", "srtp_not_enforced", "srtp_optional",
	"fraud_off", "no_rate_deck", "fraud_report_only", "international_unbounded", "international_no_country_list",
	"international_no_price_cap", "diverted_international", "no_spend_budget", "transfers_allowed",
	"no_notification_sink", "webhook_plaintext",
	"admin_plaintext", "admin_exposed", "admin_any_host", "metrics_open",
	"trust_identity", "no_shaken",
	"flood_off", "scanner_off", "probe_bans_off", "server_header", "flood_below_limits", "topology_hiding_off", "no_call_limits",
}

type want struct {
	check string
	sev   Severity
	key   string // the key the finding must name ("" : any)
	line  int    // the line it must name (0: any)
}

func TestBadConfigs(t *testing.T) {
	weakHA1 := "{md5: " + auth.HA1(auth.MD5, "alice", "sip.example.net", "password123") + "}"
	userHA1 := "{md5: " + auth.HA1(auth.MD5, "bob", "sip.example.net", "bob") + "}"
	cases := []struct {
		name string
		edit [][2]string // old, new replacements of the good config
		want []want
	}{
		{"unknown sources answered", [][2]string{{"unknown_sources: drop", "unknown_sources: reject"}},
			[]want{{"unknown_sources_answered", Medium, "unknown_sources", 6}}},
		{"registration from anywhere", [][2]string{
			{"        register_from: [198.51.100.0/24]\n      - username: bob", "      - username: bob"}},
			[]want{{"registration_source_unlimited", Low, "trunks[1].accounts[0]", 32}}},
		{"no kernel firewall", [][2]string{{"firewall: {nftables: true}\n", ""}}, []want{{"kernel_firewall_off", Info, "firewall", 0}}},
		{"policy weakened", [][2]string{{"unknown_sources: drop\n", "unknown_sources: drop\nauth:\n  policy: {min_length: 8, reject_common: false}\n  bruteforce: {unknown_accounts: 0}\n"}},
			[]want{{"policy_allows_common", Medium, "auth.policy.reject_common", 8}, {"policy_short_passwords", Medium, "auth.policy.min_length", 8},
				{"bruteforce_rule_off", Medium, "auth.bruteforce", 9}}},
		{"weak and default credentials", [][2]string{
			{"algorithms: [SHA-512-256, SHA-256]", "algorithms: [MD5]"},
			{"ha1: " + ha1s("alice", "sip.example.net", alicePass), "ha1: " + weakHA1},
			{"ha1: " + ha1s("bob", "sip.example.net", bobPass), "ha1: " + userHA1}},
			[]want{{"weak_credential", High, "trunks[1].accounts[0].ha1", 33}, {"weak_credential", High, "trunks[1].accounts[1].ha1", 36},
				{"md5_offered", Low, "trunks[1].algorithms", 26}}},
		{"reused credential", [][2]string{{"ha1: " + ha1s("bob", "sip.example.net", bobPass), "ha1: " + ha1s("alice", "sip.example.net", alicePass)}},
			[]want{{"reused_credential", High, "trunks[1].accounts[1].ha1.sha-256", 36}}},
		{"digest over plain transports", [][2]string{{"    require_tls: true\n", ""}}, []want{{"digest_over_plaintext", Medium, "trunks[1].require_tls", 0}}},
		{"no TLS at all", [][2]string{{"  - tls://127.0.0.1:5061\n", ""}, {"    require_tls: true\n", ""}},
			[]want{{"tls_off", Medium, "listen", 2}, {"carrier_without_tls", Medium, "trunks[0].targets", 0}}},
		{"carrier on UDP without client certificate", [][2]string{{"targets: [tls://192.0.2.10:5061]", "targets: [udp://192.0.2.10:5060]"},
			{"    tls: {require_client_cert: true}\n", ""}},
			[]want{{"carrier_without_tls", Medium, "trunks[0].targets", 19}, {"carrier_without_client_cert", Medium, "trunks[0].tls.require_client_cert", 0}}},
		{"media relay off", [][2]string{{"media: {enabled: true}\n", ""}, {"    media: {srtp: required}\n", ""}, {"    media: {srtp: required}\n", ""}},
			[]want{{"srtp_not_enforced", Medium, "media", 0}}},
		{"srtp optional", [][2]string{{"    limits: {cps: 2, concurrent: 10}\n    media: {srtp: required}", "    limits: {cps: 2, concurrent: 10}\n    media: {srtp: optional}"}},
			[]want{{"srtp_optional", Low, "trunks[1].media.srtp", 30}}},
		{"fraud off", [][2]string{{"  enabled: true\n  rate_deck", "  enabled: false\n  rate_deck"}}, []want{{"fraud_off", High, "fraud", 0}}},
		{"fraud without deck, report only", [][2]string{{"  rate_deck: rates.csv\n", "  report_only: true\n"}},
			[]want{{"no_rate_deck", Medium, "fraud.rate_deck", 0}, {"fraud_report_only", Medium, "fraud.report_only", 40}}},
		{"international unbounded", [][2]string{{"international: false", "international: true"}},
			[]want{{"international_unbounded", High, "fraud.default.international", 41}}},
		{"international without country list or cap", [][2]string{
			{"    tls: {require_client_cert: true}\n", "    tls: {require_client_cert: true}\n    fraud: {international: true, max_rate: 0.5}\n"},
			{"    require_tls: true\n", "    require_tls: true\n    fraud: {international: true, allow_countries: [FR]}\n"}},
			[]want{{"international_no_country_list", Low, "trunks[0].fraud.international", 21}, {"international_no_price_cap", Low, "trunks[1].fraud.international", 0}}},
		{"diverted international, transfers, no spend rule", [][2]string{{"    require_tls: true\n",
			"    require_tls: true\n    transfers: allow\n    fraud:\n      allow_diverted_international: true\n      rules: [{name: calls, metric: calls, window: 5m, limit: 50, action: block}]\n"}},
			[]want{{"transfers_allowed", Low, "trunks[1].transfers", 0}, {"diverted_international", Low, "trunks[1].fraud.allow_diverted_international", 0},
				{"no_spend_budget", Medium, "trunks[1].fraud.rules", 0}}},
		{"no notification", [][2]string{{"notify:\n  webhooks:\n    - {url: https://hooks.example.net/sipwarden, secret_file: hook.secret}\n", ""}},
			[]want{{"no_notification_sink", Medium, "notify", 0}}},
		{"webhook over http", [][2]string{{"url: https://hooks", "url: http://hooks"}}, []want{{"webhook_plaintext", Low, "notify.webhooks[0].url", 10}}},
		{"admin in clear on the network", [][2]string{{"admin: {listen: 127.0.0.1:8080}", "admin: {listen: 192.0.2.1:8080, insecure_plaintext: true, hosts: ['*'], open_metrics: true}"}},
			[]want{{"admin_plaintext", High, "admin.listen", 5}, {"admin_any_host", Medium, "admin.hosts", 5}, {"metrics_open", Low, "admin.open_metrics", 5}}},
		{"admin on the network with TLS", [][2]string{{"admin: {listen: 127.0.0.1:8080}", "admin: {listen: 192.0.2.1:8080, tls: {cert: a.pem, key: a.key}}"}},
			[]want{{"admin_exposed", Low, "admin.listen", 5}}},
		{"identity trusted, unsigned", [][2]string{{"    require_tls: true\n", "    require_tls: true\n    trust_identity: true\n"},
			{"    - {trunk: office, sign: main}\n", ""}},
			[]want{{"trust_identity", Medium, "trunks[1].trust_identity", 28}, {"no_shaken", Low, "trunks[1]", 0}}},
		{"defences off", [][2]string{{"unknown_sources: drop\n", "unknown_sources: drop\nflood: {enabled: false}\nscanner: {enabled: false}\nbans: {unknown_source_probes: off}\nsip: {user_agent: Asterisk PBX 16.2}\n"}},
			[]want{{"flood_off", Medium, "flood.enabled", 7}, {"scanner_off", Medium, "scanner.enabled", 8}, {"probe_bans_off", Low, "bans.unknown_source_probes", 9},
				{"server_header", Low, "sip.user_agent", 10}}},
		{"flood budget below limits, topology exposed, no limits", [][2]string{
			{"    limits: {cps: 10, concurrent: 100}\n", "    limits: {cps: 10, concurrent: 100}\n    flood: {invite: 5/1s}\n    topology_hiding: false\n"},
			{"    limits: {cps: 2, concurrent: 10}\n", ""}},
			[]want{{"flood_below_limits", Low, "trunks[0].limits.cps", 21}, {"topology_hiding_off", Medium, "trunks[0].topology_hiding", 23},
				{"no_call_limits", Low, "trunks[1].limits", 0}}},
	}
	produced := map[string]bool{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			text := goodConfig()
			for _, e := range tc.edit {
				if !strings.Contains(text, e[0]) {
					t.Fatalf("edit %q: not in the good config", e[0])
				}
				text = strings.Replace(text, e[0], e[1], 1)
			}
			r := auditText(t, text)
			for _, w := range tc.want {
				i := slices.IndexFunc(r.Findings, func(f Finding) bool {
					return f.Check == w.check && (w.key == "" || strings.TrimSuffix(f.Key, " (not set)") == w.key)
				})
				if i < 0 {
					t.Errorf("no %s finding at %s; got %v", w.check, w.key, describe(r))
					continue
				}
				f := r.Findings[i]
				produced[f.Check] = true
				if f.Severity != w.sev {
					t.Errorf("%s: severity %s, want %s", w.check, f.Severity, w.sev)
				}
				if w.line != 0 && f.Line != w.line {
					t.Errorf("%s: line %d, want %d", w.check, f.Line, w.line)
				}
				if f.Line == 0 || f.File != "test.yaml" || f.Why == "" || f.Fix == "" {
					t.Errorf("%s: incomplete finding %+v", w.check, f)
				}
			}
			if high := slices.ContainsFunc(tc.want, func(w want) bool { return w.sev == High }); high != r.HasHigh() {
				t.Errorf("HasHigh = %v, want %v (%v)", r.HasHigh(), high, describe(r))
			}
		})
	}
	for _, c := range allChecks {
		if !produced[c] {
			t.Errorf("check %s is produced by no bad configuration", c)
		}
	}
}

func describe(r *Report) []string {
	var out []string
	for _, f := range r.Findings {
		out = append(out, f.Check+"@"+f.Where())
	}
	return out
}

// TestExamples audits every shipped example; their scores are logged (-v)
// and every finding must name a line of the file.
func TestExamples(t *testing.T) {
	files, _ := filepath.Glob("../../examples/*.yaml")
	if len(files) == 0 {
		t.Fatal("no examples")
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Parse(data, file)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		r, err := Config(cfg, data)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: score %d (%d high, %d medium, %d low, %d info): %v", filepath.Base(file), r.Score,
			r.Count(High), r.Count(Medium), r.Count(Low), r.Count(Info), r.Checks())
		for _, f := range r.Findings {
			if f.Line == 0 {
				t.Errorf("%s: finding %s names no line", file, f.Check)
			}
		}
	}
}
