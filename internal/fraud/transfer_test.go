package fraud

import (
	"testing"

	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/events"
)

// A transfer target meets the destination policy a new call to it would
// meet, plus the rule for forwarded calls abroad.
func TestCheckTransfer(t *testing.T) {
	f := newStageFixture(t, map[string]*config.TrunkFraud{
		"office": {Country: "US", Unrated: config.FraudAllow},
		"intl":   {Country: "US", International: true, AllowCountries: []string{"GB"}, Unrated: config.FraudAllow},
		"fwd":    {Country: "US", International: true, AllowCountries: []string{"GB"}, Unrated: config.FraudAllow, AllowDivertedInternational: true},
		"hot": {Country: "US", Unrated: config.FraudAllow, HotList: []config.HotEntry{
			{Number: config.NumberRange{Prefix: "+120155501", Digits: 2}, Action: config.FraudBlock}}},
	}, []config.FraudRule{{Name: "calls", Metric: "calls", Window: 60e9, Limit: 1000, Action: "alert"}})
	for _, tc := range []struct {
		trunk, target, reason string
	}{
		{"office", "sip:+12015550123@pbx", ""},
		{"office", "<sip:+12015550123@pbx>", ReasonInvalid}, // a URI, not a name-addr
		{"office", "sip:+19002345678@pbx", ReasonPremium},
		{"office", "tel:+881612345678", ReasonInternational},
		{"office", "sip:alice@pbx", ReasonInvalid},
		{"intl", "sip:011441212345678@pbx", ReasonDiverted}, // abroad: a transferred call is a forwarded one
		{"fwd", "sip:011441212345678@pbx", ""},
		{"fwd", "sip:+33123456789@pbx", ReasonCountry},
		{"hot", "sip:+12015550199@pbx", ReasonHotList},
		{"plain", "sip:+12015550123@pbx", ""},
	} {
		req := &chain.Request{Msg: invite(t, "sip:x@y", "c1"), PeerKind: chain.PeerTrunk, Trunk: f.trunk(tc.trunk)}
		v := f.s.CheckTransfer(req, []byte(tc.target))
		if tc.reason == "" {
			if v.Action != chain.Continue {
				t.Errorf("%s %s: %+v", tc.trunk, tc.target, v)
			}
			continue
		}
		if v.Action != chain.Reply || v.Code != 403 || v.Reason != tc.reason || v.Warning == "" {
			t.Errorf("%s %s: %+v, want 403 %s", tc.trunk, tc.target, v, tc.reason)
		}
	}
	evs := drain(f.sub)
	if len(evs) == 0 || evs[0].Kind != events.FraudBlocked || evs[0].Method != "INVITE" || evs[0].Trunk != "office" {
		t.Fatalf("events %+v", evs)
	}
}
