package proxy

import (
	"net/netip"
	"testing"

	"github.com/sipwarden/sipwarden/internal/sip"
)

func TestAppendViaReceived(t *testing.T) {
	src := netip.MustParseAddrPort("192.0.2.7:40000")
	for _, tc := range []struct{ in, want string }{
		{"SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK1", ""}, // nothing to add
		{"SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK1;rport", "SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK1;rport=40000"},
		{"SIP/2.0/UDP pbx.example.com;rport;branch=z9hG4bK1", "SIP/2.0/UDP pbx.example.com;branch=z9hG4bK1;received=192.0.2.7;rport=40000"},
		{"SIP/2.0/UDP 10.0.0.1;received=1.2.3.4;branch=z9hG4bK1, SIP/2.0/UDP h2", "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1;received=192.0.2.7, SIP/2.0/UDP h2"},
	} {
		v, rest, err := sip.ParseVia([]byte(tc.in))
		if err != nil {
			t.Fatal(err)
		}
		got := string(appendViaReceived(nil, []byte(tc.in), &v, rest, src))
		if got != tc.want {
			t.Errorf("%q:\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
}
