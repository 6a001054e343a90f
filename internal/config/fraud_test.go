package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFraudValues(t *testing.T) {
	c := parseTestdata(t, "fraud.good.yaml")
	f := c.Fraud
	if !f.Enabled || f.Default.Country != "US" || f.Default.Unrated != FraudBlock || len(f.Rules) != 7 {
		t.Fatalf("fraud %+v", f)
	}
	if !f.Rules[0].EndCalls {
		t.Errorf("end_calls %+v", f.Rules[0])
	}
	if r := f.Rules[1]; r.Action != "throttle" || r.Scope != "risky" || r.For != 10*time.Minute || r.ThrottlePerMinute != 3 || r.Window != 5*time.Minute {
		t.Errorf("rule %+v", r)
	}
	if r := f.Rules[2]; r.Action != "alert" || r.For != 15*time.Minute || r.Floor != 50 || r.MinSamples != 2 {
		t.Errorf("spike rule defaults %+v", r)
	}
	if r := f.Rules[3]; r.Metric != "new_country_score" || r.Scope != "new" || !r.EndCalls || r.Limit != 5 {
		t.Errorf("new_country rule %+v", r)
	}
	if r := f.Rules[4]; r.Metric != "low_asr" || r.Limit != 0.15 || r.Floor != 20 || r.Window != 15*time.Minute {
		t.Errorf("low_asr rule %+v", r)
	}
	if r := f.Rules[6]; r.Metric != "spend_24h" || r.Action != "block" || r.Limit != 500 {
		t.Errorf("daily budget %+v", r)
	}
	o := f.Trunks["office"]
	if o.Country != "GB" || o.NationalPrefix != "0" || o.InternationalPrefix != "00" || o.Location.String() != "Europe/London" ||
		!o.International || strings.Join(o.AllowCountries, ",") != "FR,DE" || o.MaxRate != 0.5 || o.MaxCallCost != 20 ||
		o.Unrated != FraudBlock || len(o.HotList) != 2 || o.HotList[0].Number.Prefix != "+4420" || o.HotList[0].Number.Digits != -1 ||
		o.HotList[1].Action != FraudAllow || o.Rules != nil {
		t.Errorf("office %+v", o)
	}
	if bh := o.BusinessHours; bh == nil || len(bh[time.Sunday]) != 0 || bh[time.Monday][0] != [2]int{480, 1080} ||
		bh[time.Friday][0] != [2]int{480, 1080} || bh[time.Saturday][0] != [2]int{570, 780} {
		t.Errorf("business hours %+v", o.BusinessHours)
	}
	cr := f.Trunks["carrier"]
	if cr.Country != "US" || len(cr.AllowClasses) != 3 || !cr.AllowInvalid || !cr.AllowDivertedInternational || o.AllowDivertedInternational || !cr.ReportOnly || len(cr.Rules) != 1 || cr.Rules[0].Scope != "all" {
		t.Errorf("carrier %+v", cr)
	}
	if want := time.Date(2026, 12, 14, 0, 0, 0, 0, time.UTC); !f.ReportOnlyUntil.Equal(want) {
		t.Errorf("report_only_until %v, want %v", f.ReportOnlyUntil, want)
	}
	if want := time.Date(2026, 12, 20, 8, 0, 0, 0, time.UTC); !cr.Rules[0].ReportOnlyUntil.Equal(want) {
		t.Errorf("rule report_only_until %v, want %v", cr.Rules[0].ReportOnlyUntil, want)
	}
	if p := f.Trunks["plain"]; p.Country != "US" || p.International || p.Location != time.UTC {
		t.Errorf("plain %+v", p)
	}
	// No fraud section: the stage is off and needs nothing.
	c, err := Parse([]byte("listen: [udp://127.0.0.1:5060]\n"), "min")
	if err != nil || c.Fraud.Enabled {
		t.Fatalf("%v %+v", err, c.Fraud)
	}
}

func TestFraudErrors(t *testing.T) {
	b, _ := os.ReadFile("testdata/fraud.bad.yaml")
	_, err := Parse(b, "fraud.bad.yaml")
	if err == nil {
		t.Fatal("accepted")
	}
	want := []string{
		"fraud.bad.yaml:7:40: fraud.rules[0].window: must be whole minutes from 1m to 60m",
		"fraud.bad.yaml:8:14: fraud.rules[1].name: rule \"a\" is also rule [0]",
		"fraud.bad.yaml:8:25: fraud.rules[1].metric: must be one of calls, intl_calls",
		"fraud.bad.yaml:8:50: fraud.rules[1].action: must be alert, throttle or block, got \"kill\"",
		"fraud.bad.yaml:8:63: fraud.rules[1].scope: must be risky",
		"fraud.bad.yaml:9:39: fraud.rules[2].limit: must be above 0",
		"fraud.bad.yaml:10:41: fraud.rules[3].limit: a low_asr limit is an answer ratio from 0 to 1",
		"fraud.bad.yaml:10:52: fraud.rules[3].scope: must be risky (every call that is not domestic), all, or new",
		"fraud.bad.yaml:11:44: fraud.rules[4].limit: a sequential limit must be below 128",
		"fraud.bad.yaml:11:68: fraud.rules[4].report_only_until: must be a date (2026-12-14) or an RFC 3339 time",
		"fraud.bad.yaml:17:16: trunks[0].fraud.country: must be an ISO 3166 country code",
		"fraud.bad.yaml:18:24: trunks[0].fraud.national_prefix: must be up to 4 digits",
		"fraud.bad.yaml:19:17: trunks[0].fraud.timezone: must be an IANA time zone",
		"fraud.bad.yaml:20:24: trunks[0].fraud.business_hours[0]: must be days and hours such as",
		"fraud.bad.yaml:20:47: trunks[0].fraud.business_hours[1]: must be days and hours",
		"fraud.bad.yaml:21:29: trunks[0].fraud.allow_countries[1]: must be an ISO 3166 country code such as FR, got \"ZZ\"",
		"fraud.bad.yaml:22:23: trunks[0].fraud.allow_classes[0]: must be one of premium, satellite, nanp_foreign",
		"fraud.bad.yaml:23:17: trunks[0].fraud.max_rate: must be an amount >= 0",
		"fraud.bad.yaml:24:16: trunks[0].fraud.unrated: must be allow or block",
		"fraud.bad.yaml:26:20: trunks[0].fraud.hot_list[0].number: must be an E.164 number",
		"fraud.bad.yaml:27:38: trunks[0].fraud.hot_list[1].action: must be allow or block, got \"drop\"",
		"fraud.bad.yaml:28:5: trunks[1].fraud.country: the fraud stage needs the trunk's country",
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
	_, err = Parse([]byte("listen: [udp://127.0.0.1:5060]\nfraud: {enabeld: true}\n"), "typo")
	if err == nil || !strings.Contains(err.Error(), `unknown key (did you mean "enabled"?)`) {
		t.Fatalf("typo: %v", err)
	}
}

func TestFraudRateDeckPath(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	_ = os.WriteFile(path, []byte("listen: [udp://127.0.0.1:5060]\nfraud: {enabled: true, rate_deck: rates.csv, default: {country: GB}}\n"), 0o600)
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), "fraud.rate_deck: cannot read "+filepath.Join(dir, "rates.csv")) {
		t.Fatalf("got %v", err)
	}
	_ = os.WriteFile(filepath.Join(dir, "rates.csv"), []byte("# currency: GBP\nprefix,rate\n44,0.01\n"), 0o600)
	c, err := Load(path)
	if err != nil || c.Fraud.RateDeck != filepath.Join(dir, "rates.csv") {
		t.Fatalf("%v %+v", err, c)
	}
}

func TestFraudWangiriRanges(t *testing.T) {
	const head = "listen: [udp://127.0.0.1:5060]\nfraud:\n  enabled: true\n  default: {country: US}\n"
	for _, tc := range []struct {
		yaml    string
		want    int
		wantErr string
	}{
		{"", 5, ""},
		{"  wangiri: {range_short_rings: 0}\n", 0, ""},
		{"  wangiri: {range_short_rings: 32}\n", 32, ""},
		{"  wangiri: {range_short_rings: -1}\n", 0, "fraud.wangiri.range_short_rings: must be from 0 (off) to 32 distinct numbers, got -1"},
		{"  wangiri: {range_short_rings: 33}\n", 0, "fraud.wangiri.range_short_rings: must be from 0 (off) to 32 distinct numbers, got 33"},
	} {
		c, err := Parse([]byte(head+tc.yaml), "w.yaml")
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: %v, want %q", tc.yaml, err, tc.wantErr)
			}
			continue
		}
		if err != nil || c.Fraud.Wangiri.RangeShortRings != tc.want || c.Fraud.Wangiri.ShortRings != 3 {
			t.Errorf("%q: %v %+v, want range_short_rings %d", tc.yaml, err, c.Fraud.Wangiri, tc.want)
		}
	}
}
