package audit

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/sipwarden/sipwarden/internal/auth"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/sip"
)

// ConfigFile reads, validates and audits a configuration file. A file that
// is not valid is an error (check-config says why), not a finding; the
// files it names are not opened.
func ConfigFile(path string) (*Report, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	// Parse, not Load: the files the configuration names (certificates,
	// rate deck) are check-config's concern, and an audit is often run
	// away from the machine that has them.
	cfg, err := config.Parse(data, path)
	if err != nil {
		return nil, err
	}
	return Config(cfg, data)
}

// Config audits cfg, whose file held data (read for the lines of the keys).
func Config(cfg *config.Config, data []byte) (*Report, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("parse %s: %w", cfg.File, err)
	}
	a := &configAudit{cfg: cfg, root: &root}
	a.exposure()
	a.credentials()
	a.encryption()
	a.tollFraud()
	a.monitoring()
	a.admin()
	a.identity()
	a.hardening()
	r := &Report{Kind: "config", Subject: cfg.File, Findings: a.out}
	r.finish()
	return r, nil
}

type configAudit struct {
	cfg  *config.Config
	root *yaml.Node
	out  []Finding
}

// add records a finding at the key path.
func (a *configAudit) add(check string, sev Severity, resp Responsibility, path []any, why, fix string) {
	line, _, key := config.Locate(a.root, path...)
	if !config.Has(a.root, path...) {
		key += " (not set)"
	}
	a.out = append(a.out, Finding{Check: check, Severity: sev, Responsibility: resp,
		File: a.cfg.File, Line: line, Key: key, Why: why, Fix: fix})
}

func at(parts ...any) []any { return parts }

func trunkAt(i int, parts ...any) []any { return append([]any{"trunks", i}, parts...) }

func (a *configAudit) exposure() {
	c := a.cfg
	if c.UnknownSources == config.UnknownReject {
		a.add("unknown_sources_answered", Medium, Exposure, at("unknown_sources"),
			"Sources that are no trunk and no upstream get a 403, which tells a scanner that a SIP service lives here and what it runs.",
			"unknown_sources: drop")
	}
	for i, t := range c.Trunks {
		if t.Auth != config.AuthDigest {
			continue
		}
		for j, acct := range t.Digest.Accounts {
			if len(acct.RegisterFrom) == 0 && len(t.Allow) == 0 {
				a.add("registration_source_unlimited", Low, Exposure, trunkAt(i, "accounts", j),
					fmt.Sprintf("Account %q may register from any address on the internet; a stolen password works from anywhere.", acct.Username),
					"register_from: [203.0.113.0/24]   # the networks the phone registers from")
			}
		}
	}
	if !c.Firewall.Nftables {
		a.add("kernel_firewall_off", Info, Exposure, at("firewall"),
			"Bans stay in user space; mirrored into nftables, banned traffic is dropped before it reaches a socket (and `sipwarden firewall nft` prints a ruleset that opens SIP only to the peers).",
			"firewall: {nftables: true}")
	}
}

func (a *configAudit) credentials() {
	c := a.cfg
	if !c.Auth.Policy.RejectCommon {
		a.add("policy_allows_common", Medium, Credentials, at("auth", "policy", "reject_common"),
			"The credential policy lets common and default passwords through, the first ones a guesser tries.",
			"auth: {policy: {reject_common: true}}")
	}
	if c.Auth.Policy.MinLength < 16 {
		a.add("policy_short_passwords", Medium, Credentials, at("auth", "policy", "min_length"),
			fmt.Sprintf("Passwords of %d characters are accepted; the carrier's guide asks for 16 or more.", c.Auth.Policy.MinLength),
			"auth: {policy: {min_length: 16}}")
	}
	bf := c.Auth.BruteForce
	if hasDigest(c) && (bf.SourceAccount == 0 || bf.Source == 0 || bf.Unknown == 0 || bf.Account == 0) {
		a.add("bruteforce_rule_off", Medium, Credentials, at("auth", "bruteforce"),
			"A brute-force rule is turned off (0): password guessing or account enumeration from one source is not banned.",
			"auth:\n  bruteforce: {source_account_failures: 5, source_failures: 20, unknown_accounts: 10, account_failures: 50}")
	}
	type owner struct {
		i, j int
		user string
	}
	seen := map[string]owner{}
	for i, t := range c.Trunks {
		if t.Auth != config.AuthDigest {
			continue
		}
		for j, ca := range t.Digest.Accounts {
			acct := auth.Account{Username: ca.Username, SHAOnly: ca.SHAOnly}
			for _, alg := range auth.Algorithms {
				acct.HA1[alg] = ca.HA1[alg.Key()]
			}
			if rule, weak := auth.WeakHA1(&acct, t.Digest.Realm, nil); weak {
				what := "a common or default password"
				if rule == auth.RuleUsername {
					what = "the username (or a variant of it)"
				}
				a.add("weak_credential", High, Credentials, trunkAt(i, "accounts", j, "ha1"),
					fmt.Sprintf("Account %q's HA1 is that of %s: a guesser needs a handful of tries.", ca.Username, what),
					"Give it a random password of 16+ characters: `sipwarden passwd --username "+ca.Username+" --realm "+t.Digest.Realm+"` prints the new ha1 entry.")
			}
			keys := make([]string, 0, len(ca.HA1))
			for k := range ca.HA1 {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				h := ca.HA1[k]
				if o, dup := seen[h]; dup {
					a.add("reused_credential", High, Credentials, trunkAt(i, "accounts", j, "ha1", k),
						fmt.Sprintf("Account %q has the same %s HA1 as account %q (%s): whoever holds one secret holds both, and the hash alone authenticates.", ca.Username, k, o.user, config.AccountKey(o.i, o.j)),
						"Give each account its own password: `sipwarden passwd` prints a new ha1 entry.")
					break
				}
				seen[h] = owner{i, j, ca.Username}
			}
		}
		if !t.Digest.RequireTLS {
			a.add("digest_over_plaintext", Medium, Credentials, trunkAt(i, "require_tls"),
				fmt.Sprintf("Trunk %q accepts digest authentication over UDP and TCP, where anyone on the path can capture responses and guess the password offline.", t.Name),
				"require_tls: true   # and a tls:// listener")
		}
		if slices.Contains(t.Digest.Algorithms, "MD5") {
			a.add("md5_offered", Low, Credentials, trunkAt(i, "algorithms"),
				fmt.Sprintf("Trunk %q offers MD5 digest, the cheapest hash to guess offline; keep it only for phones that know nothing else.", t.Name),
				"algorithms: [SHA-512-256, SHA-256]   # or sha_only: true on the accounts of SHA-capable phones")
		}
	}
}

func hasDigest(c *config.Config) bool {
	return slices.ContainsFunc(c.Trunks, func(t config.Trunk) bool { return t.Auth == config.AuthDigest })
}

func (a *configAudit) encryption() {
	c := a.cfg
	hasTLS := slices.ContainsFunc(c.Listen, func(l config.Listen) bool { return l.Transport == sip.TLS })
	if !hasTLS {
		a.add("tls_off", Medium, Encryption, at("listen"),
			"No tls:// listener: signalling, and with it credentials, numbers and SRTP keys, crosses the network in clear.",
			"listen: [udp://192.0.2.1:5060, tls://192.0.2.1:5061]\ntls: {cert: /etc/sipwarden/cert.pem, key: /etc/sipwarden/key.pem}")
	}
	carriers := map[string]bool{}
	for _, st := range c.Shaken.Trunks {
		if st.Verify != "" || st.Gateway {
			carriers[st.Trunk] = true
		}
	}
	for i, t := range c.Trunks {
		if !carriers[t.Name] {
			continue
		}
		tlsTarget := slices.ContainsFunc(t.Targets, func(tg config.Target) bool { return tg.Transport == sip.TLS })
		if !tlsTarget || !hasTLS {
			a.add("carrier_without_tls", Medium, Encryption, trunkAt(i, "targets"),
				fmt.Sprintf("Trunk %q is a carrier (its calls carry STIR/SHAKEN from another network) but its signalling is not on TLS.", t.Name),
				"targets: [tls://198.51.100.10:5061]")
		}
		if !t.TLS.RequireClientCert {
			a.add("carrier_without_client_cert", Medium, Encryption, trunkAt(i, "tls", "require_client_cert"),
				fmt.Sprintf("Carrier trunk %q is recognised by source address alone; a client certificate proves it is the carrier on the other end of the TLS connection.", t.Name),
				"tls: {require_client_cert: true}   # and tls.client_ca")
		}
	}
	if !c.Media.Enabled {
		if len(c.Trunks) > 0 {
			a.add("srtp_not_enforced", Medium, Encryption, at("media"),
				"The media relay is off: SDP passes untouched, so nothing requires SRTP and plain RTP can be listened to or injected.",
				"media: {enabled: true}\n# and per trunk: media: {srtp: required}")
		}
		return
	}
	for i, t := range c.Trunks {
		if t.Media.SRTP == config.SRTPOptional || t.Media.SRTP == "" {
			a.add("srtp_optional", Low, Encryption, trunkAt(i, "media", "srtp"),
				fmt.Sprintf("Trunk %q may send and receive plain RTP: SRTP is optional.", t.Name),
				"media: {srtp: required}   # or bridge, for a PBX that cannot do SRTP")
		}
	}
}

// spendMetrics are the fraud rule metrics that bound money spent.
var spendMetrics = []string{"spend", "burn", "call_cost", "spend_24h", "new_country_spend", "spend_spike"}

func (a *configAudit) tollFraud() {
	c := a.cfg
	f := c.Fraud
	if !f.Enabled {
		if len(c.Trunks) > 0 {
			a.add("fraud_off", High, TollFraud, at("fraud"),
				"The toll-fraud stage is off: a trunk's calls abroad are neither limited by destination nor watched for spend, the carrier's most expensive attack.",
				"fraud:\n  enabled: true\n  rate_deck: rates.csv\n  default: {country: GB, international: false}")
		}
	} else {
		if f.RateDeck == "" {
			a.add("no_rate_deck", Medium, TollFraud, at("fraud", "rate_deck"),
				"Without a rate deck every call costs zero to the fraud rules: spend and price caps never trip.",
				"fraud: {rate_deck: rates.csv}")
		}
		if f.ReportOnly {
			a.add("fraud_report_only", Medium, TollFraud, at("fraud", "report_only"),
				"The fraud rules only report: an attack in progress is noticed but never stopped.",
				"fraud: {report_only: false}")
		}
	}
	for i, t := range c.Trunks {
		tf := f.Trunks[t.Name]
		if tf == nil {
			continue
		}
		if f.Enabled && tf.International {
			path := a.fraudKey(i, "international")
			switch {
			case len(tf.AllowCountries) == 0 && tf.MaxRate == 0:
				a.add("international_unbounded", High, TollFraud, path,
					fmt.Sprintf("Trunk %q may call any country at any price: one stolen account pays premium numbers abroad.", t.Name),
					"fraud:\n  international: true\n  allow_countries: [FR, DE]   # where the customer really calls\n  max_rate: 0.50             # per minute")
			case len(tf.AllowCountries) == 0:
				a.add("international_no_country_list", Low, TollFraud, path,
					fmt.Sprintf("Trunk %q may call every country under its price cap.", t.Name),
					"fraud: {allow_countries: [FR, DE]}")
			case tf.MaxRate == 0:
				a.add("international_no_price_cap", Low, TollFraud, path,
					fmt.Sprintf("Trunk %q has no price cap: the dearest ranges of its allowed countries are open.", t.Name),
					"fraud: {max_rate: 0.50}")
			}
		}
		if f.Enabled && tf.AllowDivertedInternational {
			a.add("diverted_international", Low, TollFraud, a.fraudKey(i, "allow_diverted_international"),
				fmt.Sprintf("Trunk %q lets forwarded calls go abroad, the path of call-forward abuse.", t.Name),
				"fraud: {allow_diverted_international: false}")
		}
		if f.Enabled {
			rules := tf.Rules
			if rules == nil {
				rules = f.Rules
			}
			if rules != nil && !slices.ContainsFunc(rules, func(r config.FraudRule) bool {
				return slices.Contains(spendMetrics, r.Metric) && r.Action != "alert" && !r.ReportOnly
			}) {
				a.add("no_spend_budget", Medium, TollFraud, a.fraudKey(i, "rules"),
					fmt.Sprintf("No rule of trunk %q stops a call on money spent (spend, burn, call_cost): an attack is stopped only if it also looks odd.", t.Name),
					"rules:\n  - {name: burn, metric: burn, limit: 10, action: block, end_calls: true}")
			}
		}
		if t.AllowTransfers {
			a.add("transfers_allowed", Low, TollFraud, trunkAt(i, "transfers"),
				fmt.Sprintf("Trunk %q may transfer calls with REFER, which can turn an inbound call into one the operator pays for.", t.Name),
				"transfers: deny")
		}
	}
}

// fraudKey is the trunk's own fraud key when it has one, fraud.default's otherwise.
func (a *configAudit) fraudKey(i int, key string) []any {
	own := trunkAt(i, "fraud", key)
	if config.Has(a.root, own...) {
		return own
	}
	if config.Has(a.root, at("fraud", "default", key)...) {
		return at("fraud", "default", key)
	}
	return own
}

func (a *configAudit) monitoring() {
	n := a.cfg.Notify
	if len(n.Webhooks) == 0 && n.Email == nil {
		a.add("no_notification_sink", Medium, Monitoring, at("notify"),
			"Security events (bans, fraud incidents, brute force) go only to the log: nobody is told while an attack runs.",
			"notify:\n  webhooks:\n    - {url: https://hooks.example.net/sipwarden, secret_file: webhook.secret}")
	}
	for i, w := range n.Webhooks {
		if strings.HasPrefix(w.URL, "http://") {
			a.add("webhook_plaintext", Low, Monitoring, at("notify", "webhooks", i, "url"),
				"Events, with addresses and numbers, go to the webhook over plain HTTP.",
				"url: https://...")
		}
	}
}

func (a *configAudit) admin() {
	ad := a.cfg.Admin
	if ad.Listen == "" {
		return
	}
	loopback := false
	if i := strings.LastIndexByte(ad.Listen, ':'); i > 0 {
		h := strings.Trim(ad.Listen[:i], "[]")
		loopback = h == "localhost" || strings.HasPrefix(h, "127.") || h == "::1"
	}
	switch {
	case !loopback && ad.TLS.Cert == "":
		a.add("admin_plaintext", High, Admin, at("admin", "listen"),
			fmt.Sprintf("The admin API listens on %s without TLS: its tokens and the ban, incident and CDR data cross the network in clear.", ad.Listen),
			"admin: {listen: 127.0.0.1:8080}   # or admin.tls: {cert: ..., key: ...}")
	case !loopback:
		a.add("admin_exposed", Low, Admin, at("admin", "listen"),
			fmt.Sprintf("The admin API is reachable beyond this machine (%s); keep it on loopback or a management network only.", ad.Listen),
			"admin: {listen: 127.0.0.1:8080}")
	}
	if slices.Contains(ad.Hosts, "*") {
		a.add("admin_any_host", Medium, Admin, at("admin", "hosts"),
			"The admin API answers any Host name, so a web page can reach it through DNS rebinding.",
			"admin: {hosts: [sipwarden.example.net]}")
	}
	if ad.OpenMetrics && !loopback {
		a.add("metrics_open", Low, Admin, at("admin", "open_metrics"),
			"/metrics is served without a token beyond loopback: anyone may read trunk names and traffic volumes.",
			"admin: {open_metrics: false}")
	}
}

func (a *configAudit) identity() {
	c := a.cfg
	signed := map[string]bool{}
	for _, st := range c.Shaken.Trunks {
		if st.Signer != "" || st.Verify != "" || st.Gateway {
			signed[st.Trunk] = true
		}
	}
	for i, t := range c.Trunks {
		if t.TrustIdentity {
			a.add("trust_identity", Medium, Identity, trunkAt(i, "trust_identity"),
				fmt.Sprintf("Trunk %q's P-Asserted-Identity, Diversion and Remote-Party-ID reach the upstream as if true: a customer can present any caller ID.", t.Name),
				"trust_identity: false")
		}
		if !signed[t.Name] {
			a.add("no_shaken", Low, Identity, trunkAt(i),
				fmt.Sprintf("Calls of trunk %q are neither signed nor verified with STIR/SHAKEN: the far end cannot tell them from spoofed ones.", t.Name),
				"shaken:\n  signers: [{name: main, key: sp.key, x5u: https://cert.example.net/sp.pem}]\n  trunks: [{trunk: "+t.Name+", sign: main}]")
		}
	}
}

func (a *configAudit) hardening() {
	c := a.cfg
	if c.Flood.Disabled {
		a.add("flood_off", Medium, Hardening, at("flood", "enabled"),
			"Flood detection is off: a request flood reaches the protected side at full rate.", "flood: {enabled: true}")
	}
	if c.Scanner.Disabled {
		a.add("scanner_off", Medium, Hardening, at("scanner", "enabled"),
			"Scanner detection is off: SIPVicious-style tools are answered and never banned.", "scanner: {enabled: true}")
	}
	if c.Bans.ProbeRate == 0 {
		a.add("probe_bans_off", Low, Hardening, at("bans", "unknown_source_probes"),
			"Unknown sources that keep probing are never banned.", "bans: {unknown_source_probes: 20/1m}")
	}
	if c.SIP.UserAgent != "" {
		a.add("server_header", Low, Exposure, at("sip", "user_agent"),
			fmt.Sprintf("Replies name the software (Server: %s), which tells an attacker which exploits to try.", c.SIP.UserAgent),
			`sip: {user_agent: ""}`)
	}
	for _, w := range c.Warnings {
		check, resp := "config_warning", Hardening
		if strings.Contains(w.Msg, "flood") {
			check = "flood_below_limits"
		}
		a.out = append(a.out, Finding{Check: check, Severity: Low, Responsibility: resp, File: w.File, Line: w.Line, Key: w.Key,
			Why: w.Msg, Fix: "See the message: make the two settings agree."})
	}
	for i, t := range c.Trunks {
		if !t.TopologyHiding {
			a.add("topology_hiding_off", Medium, Hardening, trunkAt(i, "topology_hiding"),
				fmt.Sprintf("Trunk %q sees the protected side's addresses and software (Contact, Via, Server), a map for a direct attack.", t.Name),
				"topology_hiding: true")
		}
		if t.Limits.CPS == 0 && t.Limits.Concurrent == 0 {
			a.add("no_call_limits", Low, Hardening, trunkAt(i, "limits"),
				fmt.Sprintf("Trunk %q has no call rate or concurrency limit: a compromised customer can run as many calls as the carrier allows.", t.Name),
				"limits: {cps: 5, concurrent: 30}")
		}
	}
}
