package fraudsim

import (
	"encoding/json"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/fraud"
)

// TestLoudIRSF: two days of benign traffic and a 30-channel IRSF burst at
// night; with the built-in rules it is detected within 2 minutes, costs
// under 25 USD, and no benign call is refused.
func TestLoudIRSF(t *testing.T) {
	burst := DefaultAttacks()[0]
	burst.Start, burst.Length, burst.RetryDelay = 24*time.Hour+2*time.Hour, 2*time.Hour, 10*time.Second
	rep, err := Run(Config{Seed: 7, Days: 2, Tenants: 1, Attacks: []Attack{burst}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", rep)
	a := rep.Attacks[0]
	if !a.Detected || !a.Blocked || a.TimeToDetect > 2*time.Minute || a.LostTotal >= 25*fraud.MoneyUnit {
		t.Errorf("burst: %+v", a)
	}
	if n := sum(rep.BenignRefused); n != 0 || rep.FalseIncidents["block"] != 0 || rep.FalseIncidents["throttle"] != 0 {
		t.Errorf("benign refused %v, false incidents %v", rep.BenignRefused, rep.FalseIncidents)
	}
	if rep.BenignCalls < 1000 {
		t.Errorf("only %d benign calls", rep.BenignCalls)
	}
}

func TestDeterministic(t *testing.T) {
	cfg := Config{Seed: 3, Days: 1, Tenants: 1, Attacks: []Attack{{Name: "x", Tenant: "hotel-1", Start: 2 * time.Hour,
		Length: time.Hour, Channels: 12, RetryDelay: 10 * time.Second, Regions: []string{"CU", "SO", "GN"}, MinDuration: time.Minute, MaxDuration: 10 * time.Minute}}}
	r1, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r2, _ := Run(cfg)
	r1.Elapsed, r2.Elapsed = 0, 0
	if r1.String() != r2.String() {
		t.Fatalf("two runs of one seed differ:\n%s\n%s", r1, r2)
	}
}

func TestConfigErrors(t *testing.T) {
	if _, err := Run(Config{Days: 1, Attacks: []Attack{{Name: "x", Tenant: "nobody"}}}); err == nil {
		t.Error("unknown tenant accepted")
	}
}

// TestStandardWeek runs the standard week with the default attacks, with
// and without end_calls on the block rules, and prints the reports (the
// figures in FRAUD.md). With 28 days or more the attacks come in the fourth
// week, after the baselines have learned. It runs when FRAUDSIM_DAYS is set:
//
//	FRAUDSIM_DAYS=7 go test -run TestStandardWeek -v ./internal/fraud/fraudsim/
func TestStandardWeek(t *testing.T) {
	days, _ := strconv.Atoi(os.Getenv("FRAUDSIM_DAYS"))
	if days <= 0 {
		t.Skip("set FRAUDSIM_DAYS (7 for the standard week)")
	}
	attacks := DefaultAttacks()
	if days >= 28 { // attack in the fourth week, when the baselines have learned three
		for i := range attacks {
			attacks[i].Start += 21 * 24 * time.Hour
		}
	}
	for _, end := range []bool{true, false} {
		rep, err := Run(Config{Seed: 1, Days: days, Attacks: attacks, Rules: BuiltinRules(end)})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("built-in rules, end_calls=%v:\n%s", end, rep)
	}
}

func TestReportJSON(t *testing.T) {
	rep, err := Run(Config{Seed: 3, Days: 1, Tenants: 1, Attacks: []Attack{{Name: "x", Tenant: "hotel-1", Start: time.Hour,
		Length: time.Hour, Channels: 10, RetryDelay: 10 * time.Second, Regions: []string{"CU"}, MinDuration: 10 * time.Minute, MaxDuration: 20 * time.Minute}}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Attacks []struct {
			Name      string  `json:"name"`
			Detected  bool    `json:"detected"`
			LostTotal float64 `json:"lost_total"`
		} `json:"attacks"`
		TenantDays float64 `json:"tenant_days"`
	}
	if err := json.Unmarshal(b, &back); err != nil || len(back.Attacks) != 1 || back.Attacks[0].Name != "x" ||
		!back.Attacks[0].Detected || back.TenantDays != 4 || back.Attacks[0].LostTotal != rep.Attacks[0].LostTotal.Float() {
		t.Fatalf("%v %s", err, b)
	}
}
