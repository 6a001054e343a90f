package firewall

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sipwarden/sipwarden/internal/config"
)

const rulesetConfig = `
listen:
  - udp://127.0.0.1:5060
  - tcp://127.0.0.1:5060
  - udp://[::1]:5060
upstreams:
  - name: pbx
    targets: [udp://10.0.10.11:5060, udp://10.0.10.12:5060]
    allow: [10.0.10.0/29]
trunks:
  - name: acme
    auth: ip
    allow: [198.51.100.0/29, "2001:db8:100::/64", 198.51.100.8/29]
    upstream: pbx
    targets: [udp://198.51.100.2:5060]
`

func TestRuleset(t *testing.T) {
	cfg, err := config.Parse([]byte(rulesetConfig), "sipwarden.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := Ruleset(cfg, RulesetOptions{RTPFrom: 10000, RTPTo: 20000})
	for _, want := range []string{
		"table inet sipwarden {",
		// the two /29s merge into a /28; the upstream's targets join (.11, .12 are adjacent)
		"elements = { 10.0.10.0/29,\n\t\t\t     10.0.10.11-10.0.10.12,\n\t\t\t     198.51.100.0/28 }",
		"elements = { 2001:db8:100::/64 }",
		"udp dport 5060 ip saddr @peers4 accept",
		"udp dport 5060 ip6 saddr @peers6 accept",
		`udp dport 5060 counter drop comment "SIP over UDP from strangers"`,
		"tcp dport 5060 ip saddr @peers4 accept",
		`udp dport 10000-20000 counter drop comment "RTP from strangers"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, got)
		}
	}
	checkWithNft(t, got)
}

func TestRulesetTrunkWithoutAllowListLeavesThePortsOpen(t *testing.T) {
	cfg, err := config.Parse([]byte(rulesetConfig), "sipwarden.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Trunks = append(cfg.Trunks, config.Trunk{Name: "phones"}) // a trunk that may send from anywhere
	got := Ruleset(cfg, RulesetOptions{})
	if strings.Contains(got, "drop") {
		t.Errorf("a ruleset that drops SIP from strangers would lock out trunk phones:\n%s", got)
	}
	if !strings.Contains(got, `# trunk "phones" has no allow list: SIP over UDP stays open to every source`) {
		t.Errorf("the ruleset does not say why the ports stay open:\n%s", got)
	}
	checkWithNft(t, got)
}

// checkWithNft has nft check the ruleset (nft -c: parsed and validated by
// the kernel, nothing committed). CI installs nftables.
func checkWithNft(t *testing.T, ruleset string) {
	t.Helper()
	nft, err := exec.LookPath("nft")
	if err != nil || os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("nft (Debian package nftables) and root are needed to check the ruleset")
		}
		t.Log("nft or root missing: ruleset not checked by nft")
		return
	}
	f := filepath.Join(t.TempDir(), "ruleset.nft")
	if err := os.WriteFile(f, []byte(ruleset), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(nft, "-c", "-f", f).CombinedOutput(); err != nil {
		t.Fatalf("nft -c refuses the ruleset: %v\n%s\n%s", err, out, ruleset)
	}
}
