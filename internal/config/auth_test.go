package config

import (
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestAuthGood(t *testing.T) {
	c := parseTestdata(t, "auth.good.yaml")
	a := c.Auth
	if a.NonceLifetime != 2*time.Minute || a.NonceTableSize != 100000 || a.RememberSources != 2*time.Hour ||
		a.Policy.MinLength != 20 || a.Policy.MinClasses != 3 || a.Policy.RejectCommon ||
		a.BruteForce.Window != 5*time.Minute || a.BruteForce.SourceAccount != 3 || a.BruteForce.Unknown != 0 ||
		a.BruteForce.Source != 20 || a.BruteForce.Account != 50 || a.BruteForce.LockoutMode != "lock" ||
		a.BruteForce.BanDuration != 30*time.Minute || a.BruteForce.Lockout != 15*time.Minute {
		t.Fatalf("auth: %+v", a)
	}
	ph := c.Trunk("phones")
	d := ph.Digest
	if ph.Auth != AuthDigest || d.Realm != "sip.example.com" || !slices.Equal(d.Domains, []string{"sip.example.com", "192.0.2.1"}) ||
		!slices.Equal(d.Algorithms, []string{"MD5", "SHA-256"}) /* the order written */ || !d.RequireTLS || len(d.Accounts) != 2 || len(ph.Allow) != 0 {
		t.Fatalf("phones: %+v", d)
	}
	a0 := d.Accounts[0]
	if a0.Username != "1001" || a0.HA1["sha-256"] != strings.Repeat("a", 64) || a0.Line != 19 ||
		!slices.Equal(a0.RegisterFrom, []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8::/32")}) {
		t.Fatalf("account: %+v", a0)
	}
	if g := d.Registrar; !g.Enabled || g.MinExpires != 2*time.Minute || g.MaxExpires != time.Hour || g.DefaultExpires != time.Hour || g.MaxContacts != 3 {
		t.Fatalf("registrar: %+v", g)
	}
	if g := c.Trunk("office").Digest.Registrar; g.Enabled || g.MaxContacts != 5 || g.MinExpires != time.Minute {
		t.Fatalf("registrar defaults: %+v", g)
	}
	if !d.Accounts[1].SHAOnly {
		t.Fatal("sha_only lost")
	}
	of := c.Trunk("office").Digest
	if !slices.Equal(of.Algorithms, []string{"SHA-256"}) || !slices.Equal(of.Domains, []string{"office.example.com"}) {
		t.Fatalf("defaults: %+v", of)
	}
}

func TestAuthBad(t *testing.T) {
	b, err := os.ReadFile("testdata/auth.bad.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse(b, "auth.bad.yaml")
	if err == nil {
		t.Fatal("accepted")
	}
	want := []string{
		"auth.bad.yaml:5:25: auth.policy.min_classes: must be 0 (default 3) to 4, got 5",
		"auth.bad.yaml:6:30: auth.bruteforce.lockout_mode: must be restrict",
		"auth.bad.yaml:6:56: auth.bruteforce.source_failures: must be >= 0",
		"auth.bad.yaml:10:12: trunks[0].realm: may hold letters",
		"auth.bad.yaml:11:18: trunks[0].algorithms[0]: must be SHA-512-256, SHA-256 or MD5, got \"SHA-1\"",
		"auth.bad.yaml:12:18: trunks[0].require_tls: needs a tls:// listener",
		"auth.bad.yaml:16:20: trunks[0].accounts[0].ha1.md5: must be 32 hex digits",
		"auth.bad.yaml:16:106: trunks[0].accounts[0].ha1.sha3: unknown algorithm",
		"auth.bad.yaml:18:19: trunks[0].accounts[1].sha_only: the trunk offers no SHA algorithm",
		"auth.bad.yaml:17:19: trunks[0].accounts[1].username: account \"1001\" is already accounts[0]",
		"auth.bad.yaml:19:20: trunks[0].accounts[1].ha1.md5: a sha_only account must not have an MD5 HA1",
		"auth.bad.yaml:20:25: trunks[0].accounts[1].register_from[0]: \"10.0.0.1/8\" has host bits set",
		"auth.bad.yaml:25:15: trunks[1].domains[0]: must be a host name or IP address, got \"BAD/ONE\"",
		"trunks[1].accounts: a digest trunk needs at least one account",
		"trunks[1].registrar.min_expires: must not exceed max_expires (1h0m0s)",
		"trunks[1].registrar.max_contacts: must be 0 (default 5) to 100, got 101",
		"trunks[2]: realm, domains, algorithms, require_tls, accounts and registrar need auth: digest",
	}
	got := err.Error()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("missing error %q", w)
		}
	}
	if t.Failed() {
		t.Logf("got:\n%s", got)
	}
}

func TestAuthUnknownKey(t *testing.T) {
	_, err := Parse([]byte("listen: [udp://127.0.0.1:5060]\nauth: {bruteforce: {windw: 1m}}\n"), "k.yaml")
	if err == nil || !strings.Contains(err.Error(), `did you mean "window"`) {
		t.Fatalf("got %v", err)
	}
	_, err = Parse([]byte("listen: [udp://127.0.0.1:5060]\ntrunks: [{name: a, realmm: x}]\n"), "k.yaml")
	if err == nil || !strings.Contains(err.Error(), `did you mean "realm"`) {
		t.Fatalf("got %v", err)
	}
}

// TestAccountAlgorithms: an account may have its own challenge order, some
// of the trunk's algorithms in the order written; anything else is refused
// with the account's key.
func TestAccountAlgorithms(t *testing.T) {
	ha1 := "{md5: " + strings.Repeat("a", 32) + ", sha-256: " + strings.Repeat("b", 64) + "}"
	trunk := func(acct string) string {
		return "listen: [udp://127.0.0.1:5060]\nupstreams: [{name: pbx, targets: [udp://127.0.0.3:5080]}]\n" +
			"trunks:\n  - name: phones\n    auth: digest\n    realm: r.example\n    algorithms: [SHA-256, MD5]\n    upstream: pbx\n    accounts:\n      - " + acct + "\n"
	}
	for _, tc := range []struct {
		acct, want string
		algs       []string
	}{
		{"{username: a, ha1: " + ha1 + "}", "", nil},
		{"{username: a, ha1: " + ha1 + ", algorithms: [md5]}", "", []string{"MD5"}},
		{"{username: a, ha1: {md5: " + strings.Repeat("a", 32) + "}, algorithms: [MD5]}", "", []string{"MD5"}},
		{"{username: a, ha1: " + ha1 + ", algorithms: [MD5, SHA-256]}", "", []string{"MD5", "SHA-256"}},
		{"{username: a, ha1: " + ha1 + ", algorithms: [SHA-512-256]}", "trunks[0].accounts[0].algorithms[0]: SHA-512-256 is not one of the trunk's algorithms", nil},
		{"{username: a, ha1: " + ha1 + ", algorithms: [SHA-1]}", `trunks[0].accounts[0].algorithms[0]: must be SHA-512-256, SHA-256 or MD5, got "SHA-1"`, nil},
		{"{username: a, ha1: " + ha1 + ", algorithms: [MD5, md5]}", "trunks[0].accounts[0].algorithms[1]: MD5 is listed twice", nil},
		{"{username: a, ha1: {sha-256: " + strings.Repeat("b", 64) + "}, sha_only: true, algorithms: [MD5]}", "trunks[0].accounts[0].algorithms[0]: a sha_only account is never offered MD5", nil},
		{"{username: a, ha1: {md5: " + strings.Repeat("a", 32) + "}, algorithms: [SHA-256]}", "trunks[0].accounts[0].ha1: needs an HA1 for SHA-256, which the account is offered", nil},
	} {
		c, err := Parse([]byte(trunk(tc.acct)), "a.yaml")
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.acct, err)
				continue
			}
			if got := c.Trunk("phones").Digest.Accounts[0].Algorithms; !slices.Equal(got, tc.algs) {
				t.Errorf("%s: algorithms %v, want %v", tc.acct, got, tc.algs)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.acct, err, tc.want)
		}
	}
}
