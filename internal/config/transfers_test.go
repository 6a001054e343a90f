package config

import (
	"strings"
	"testing"
)

// transfers is a per-trunk key: deny by default, allow, anything else an
// error at its file:line.
func TestTrunkTransfers(t *testing.T) {
	const tmpl = `listen: [udp://127.0.0.1:5060]
upstreams: [{name: pbx, targets: [udp://127.0.0.3:5080]}]
trunks:
  - name: acme
    allow: [127.0.0.2/32]
    upstream: pbx
    TRANSFERS
`
	for _, tc := range []struct {
		line  string
		allow bool
		err   string
	}{
		{"", false, ""},
		{"transfers: deny", false, ""},
		{"transfers: allow", true, ""},
		{"transfers: yes", false, `t.yaml:7:16: trunks[0].transfers: must be allow or deny, got "yes"`},
		{"transfer: allow", false, `t.yaml:7:5: trunks[0].transfer: unknown key (did you mean "transfers"?)`},
	} {
		cfg, err := Parse([]byte(strings.Replace(tmpl, "TRANSFERS", tc.line, 1)), "t.yaml")
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.line, err, tc.err)
			}
		case err != nil:
			t.Errorf("%q: %v", tc.line, err)
		case cfg.Trunks[0].AllowTransfers != tc.allow:
			t.Errorf("%q: AllowTransfers %v", tc.line, cfg.Trunks[0].AllowTransfers)
		}
	}
}
