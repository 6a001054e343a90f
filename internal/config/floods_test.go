package config

import (
	"strings"
	"testing"
)

// A trunk's own limits set the floor of its flood budgets (a customer within
// its limits is never shed by the flood stage), and a profile below them is
// a warning with file, line and key.
func TestFloodFloorsFromLimits(t *testing.T) {
	const src = `listen: [udp://127.0.0.1:5060]
upstreams: [{name: pbx, targets: [udp://127.0.0.3:5080]}]
flood:
  trunk: {invite: 100/1s}
trunks:
  - {name: big, allow: [192.0.2.1], upstream: pbx, limits: {cps: 300}}
  - {name: regs, allow: [192.0.2.2], upstream: pbx, limits: {registrations: 6000/1m}, flood: {register: 20/1s}}
  - {name: fits, allow: [192.0.2.3], upstream: pbx, limits: {cps: 50}}
  - {name: nolimit, allow: [192.0.2.4], upstream: pbx}
  - {name: off, allow: [192.0.2.5], upstream: pbx, limits: {cps: 300}, flood: {invite: "off", other: 1000/1s}}
  - {name: burst, allow: [192.0.2.6], upstream: pbx, limits: {cps: 50, burst: 200}}
`
	cfg, err := Parse([]byte(src), "f.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		trunk                 int
		invite, other, regist Budget
	}{
		{0, Budget{Rate: 300, Burst: 300}, Budget{Rate: 900, Burst: 900}, Budget{Rate: 50, Burst: 50}},
		{1, Budget{Rate: 100, Burst: 100}, Budget{Rate: 300, Burst: 300}, Budget{Rate: 100, Burst: 6000}},
		{2, Budget{Rate: 100, Burst: 100}, Budget{Rate: 300, Burst: 300}, Budget{Rate: 50, Burst: 50}},
		{3, Budget{Rate: 100, Burst: 100}, Budget{Rate: 300, Burst: 300}, Budget{Rate: 50, Burst: 50}},
		{4, Budget{}, Budget{Rate: 1000, Burst: 1000}, Budget{Rate: 50, Burst: 50}},
		{5, Budget{Rate: 100, Burst: 200}, Budget{Rate: 300, Burst: 600}, Budget{Rate: 50, Burst: 50}},
	} {
		f := cfg.Trunks[tc.trunk].Flood
		for _, c := range []struct {
			name      string
			got, want Budget
		}{{"invite", f.Invite, tc.invite}, {"other", f.Other, tc.other}, {"register", f.Register, tc.regist}} {
			if c.got.Rate != c.want.Rate || c.got.Burst != c.want.Burst {
				t.Errorf("trunk %s %s budget %g/s burst %g, want %g/s burst %g", cfg.Trunks[tc.trunk].Name, c.name,
					c.got.Rate, c.got.Burst, c.want.Rate, c.want.Burst)
			}
		}
	}
	want := []string{
		"f.yaml:6:66: trunks[0].limits.cps: allows 300 calls/s (burst 300), more than the flood invite budget 100/1s (flood.trunk.invite)",
		"f.yaml:6:66: trunks[0].limits.cps: allows 300 calls/s, 3 in-dialog requests each (ACK, BYE, ...), more than the flood other budget 300/1s (the default flood.trunk.other)",
		"f.yaml:7:77: trunks[1].limits.registrations: allows REGISTER at 6000/1m, more than the flood register budget 20/1s (trunks[1].flood.register)",
		"f.yaml:11:79: trunks[5].limits.burst: allows 50 calls/s (burst 200), more than the flood invite budget 100/1s",
		"f.yaml:11:79: trunks[5].limits.burst: allows 50 calls/s, 3 in-dialog requests each",
	}
	if len(cfg.Warnings) != len(want) {
		t.Errorf("%d warnings, want %d:\n%v", len(cfg.Warnings), len(want), cfg.Warnings)
	}
	for i, w := range want {
		if i < len(cfg.Warnings) && !strings.HasPrefix(cfg.Warnings[i].Error(), w) {
			t.Errorf("warning %d:\n %s\nwant prefix\n %s", i, cfg.Warnings[i].Error(), w)
		}
	}
}

// An allow prefix wider than a /8 (IPv4) or a /32 (IPv6) makes a whole
// swathe of the internet a configured peer, which no rule bans: a warning
// with file, line and key.
func TestWideAllowWarns(t *testing.T) {
	const src = `listen: [udp://127.0.0.1:5060]
upstreams: [{name: pbx, targets: [udp://127.0.0.3:5080]}]
trunks:
  - {name: world, allow: [0.0.0.0/0], upstream: pbx}
  - {name: isp, allow: [10.0.0.0/8, "2001:db8::/32"], upstream: pbx}
  - {name: v6, allow: ["2001::/16"], upstream: pbx}
`
	cfg, err := Parse([]byte(src), "w.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range cfg.Warnings {
		got = append(got, w.Error())
	}
	want := []string{"w.yaml:4:", "trunks[0].allow[0]", "0.0.0.0/0 makes every address", "w.yaml:6:", "trunks[2].allow[0]", "2001::/16"}
	all := strings.Join(got, "\n")
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("warnings lack %q:\n%s", w, all)
		}
	}
	if len(got) != 2 {
		t.Errorf("%d warnings, want 2 (a /8 and a /32 are fine):\n%s", len(got), all)
	}
}
