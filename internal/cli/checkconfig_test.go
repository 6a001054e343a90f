package cli

import (
	"crypto/md5"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckConfigErrors: check-config prints every error of a file, each as
// file:line:col: key: message, from every pass: decoding, validation, the
// files the configuration names and the stages' construction.
func TestCheckConfigErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	const base = "listen: [udp://127.0.0.1:5060]\nupstreams: [{name: pbx, targets: [udp://127.0.0.1:5080]}]\n" +
		"trunks:\n  - {name: acme, allow: [192.0.2.1], upstream: pbx}\n"
	write("garbage.pem", "not a key\n")
	sum := md5.Sum([]byte("alice:office:password")) // a common password: the auth stage refuses it
	weakHA1 := hex.EncodeToString(sum[:])
	write("deck.csv", "this,is\nnot,a,rate,deck,at,all\n")
	tests := []struct {
		name, file string
		want       []string // the lines of stderr, each a prefix of its line
	}{
		{"four mistakes", "../config/testdata/four.bad.yaml", []string{
			`../config/testdata/four.bad.yaml:4:10: log.level: must be debug, info, warn or error, got "verbose"`,
			`../config/testdata/four.bad.yaml:10:13: trunks[0].allow[0]: must be an IP address or CIDR prefix, got "192.0.2.10/33"`,
			`../config/testdata/four.bad.yaml:13:7: trunks[0].limits.concurent: unknown key (did you mean "concurrent"?); valid keys here: `,
			`../config/testdata/four.bad.yaml:14:14: trunks[0].limits.burst: must be an integer, got the string "lots"`,
		}},
		{"missing feed file", write("feed.yaml", base+"bans:\n  feeds:\n    - {name: local, file: missing.txt}\n"), []string{
			filepath.Join(dir, "feed.yaml") + ":7:27: bans.feeds[0].file: cannot read " + filepath.Join(dir, "missing.txt") + ": no such file or directory: give the path of a readable file",
		}},
		{"signing key", write("signer.yaml", base+"shaken:\n  signers:\n    - {name: main, key: garbage.pem, x5u: \"https://cert.example.com/sp.pem\"}\n"+
			"  trunks:\n    - {trunk: acme, sign: main}\n"), []string{
			filepath.Join(dir, "signer.yaml") + ":7:25: shaken.signers[0].key: signing key " + filepath.Join(dir, "garbage.pem") + ": no PEM private key",
		}},
		{"three stages at once", write("two.yaml", base+"  - name: office\n    auth: digest\n    realm: office\n    algorithms: [MD5]\n    upstream: pbx\n"+
			"    accounts:\n      - {username: alice, ha1: {md5: "+weakHA1+"}}\n"+
			"shaken:\n  signers:\n    - {name: main, key: garbage.pem, x5u: \"https://cert.example.com/sp.pem\"}\n"+
			"  trunks:\n    - {trunk: acme, sign: main}\n"+
			"fraud:\n  enabled: true\n  rate_deck: deck.csv\n  default: {country: US}\n"), []string{
			filepath.Join(dir, "two.yaml") + ":11:9: trunks[1].accounts[0]: account \"alice\": its HA1 is that of a weak password",
			filepath.Join(dir, "two.yaml") + ":14:25: shaken.signers[0].key: signing key " + filepath.Join(dir, "garbage.pem") + ": no PEM private key",
			filepath.Join(dir, "two.yaml") + ":19:14: fraud.rate_deck: load rate deck " + filepath.Join(dir, "deck.csv") + ": line 1: no currency",
		}},
		{"rate deck", write("deck.yaml", base+"fraud:\n  enabled: true\n  rate_deck: deck.csv\n  default: {country: US}\n"), []string{
			filepath.Join(dir, "deck.yaml") + ":7:14: fraud.rate_deck: load rate deck " + filepath.Join(dir, "deck.csv") + ": line 1: no currency",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := run("check-config", tc.file)
			lines := strings.Split(strings.TrimRight(errs, "\n"), "\n")
			if code != 1 || out != "" || len(lines) != len(tc.want) {
				t.Fatalf("code %d, stdout %q, stderr:\n%s", code, out, errs)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(lines[i], w) {
					t.Errorf("line %d:\n got %s\nwant %s", i, lines[i], w)
				}
				// the key once, not the stage's name before it
				if rest := strings.TrimPrefix(lines[i], w); strings.Contains(rest, "shaken:") || strings.Contains(rest, "fraud:") {
					t.Errorf("stutter: %s", lines[i])
				}
			}
		})
	}
}
