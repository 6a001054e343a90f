package fraud

import (
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/sip"
)

// A call that came in from the upstream and goes straight back out through
// a trunk to another country, with the original caller as its caller ID and
// no Diversion, is a hairpin: refused unless the trunk allows forwarded
// calls abroad. Other callers, domestic destinations and the same caller
// calling out later are not.
func TestStageHairpin(t *testing.T) {
	f := newStageFixture(t, map[string]*config.TrunkFraud{
		"pbx":     {Country: "US", International: true, Unrated: config.FraudAllow},
		"forward": {Country: "US", International: true, AllowDivertedInternational: true, Unrated: config.FraudAllow},
	}, nil)
	n := 0
	out := func(trunk, caller, ruri string) chain.Verdict {
		t.Helper()
		n++
		var m sip.Msg
		raw := "INVITE " + ruri + " SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:" + caller + "@pbx>;tag=1\r\n" +
			"To: <sip:c@d>\r\nCall-ID: out-" + string(rune('a'+n)) + "\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
		if err := m.Parse([]byte(raw)); err != nil {
			t.Fatal(err)
		}
		req := &chain.Request{Msg: &m, PeerKind: chain.PeerTrunk, Trunk: f.trunk(trunk)}
		v := f.s.Handle(req)
		req.ReleaseHolds()
		return v
	}
	in := func(caller string) {
		t.Helper()
		req := &chain.Request{Msg: inboundFrom(t, caller, "in-"+caller), PeerKind: chain.PeerUpstream, Upstream: &config.Upstream{Name: "carrier"}}
		if v := f.s.Handle(req); v.Action != chain.Continue {
			t.Fatalf("inbound call: %+v", v)
		}
		req.ReleaseHolds()
	}
	const abroad = "sip:011441212345678@x"

	in("+447700900123")
	f.clk.t = f.clk.t.Add(25 * time.Second) // forwarded on no answer
	tests := []struct {
		name, trunk, caller, ruri string
		refused                   bool
	}{
		{"hairpin abroad", "pbx", "+447700900123", abroad, true},
		{"the caller in the trunk's own dialling", "pbx", "011447700900123", abroad, true},
		{"another caller", "pbx", "+447700900124", abroad, false},
		{"hairpin at home", "pbx", "+447700900123", "sip:12015550199@x", false},
		{"trunk allows forwarding abroad", "forward", "+447700900123", abroad, false},
	}
	for _, tc := range tests {
		v := out(tc.trunk, tc.caller, tc.ruri)
		if refused := v.Action != chain.Continue; refused != tc.refused || (refused && (v.Code != 403 || v.Reason != ReasonHairpin)) {
			t.Errorf("%s: %+v", tc.name, v)
		}
	}
	f.clk.t = f.clk.t.Add(HairpinWindow)
	if v := out("pbx", "+447700900123", abroad); v.Action != chain.Continue {
		t.Errorf("the same caller after the window: %+v", v)
	}
}
