package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/sipwarden/sipwarden/internal/fraud/fraudsim"
)

// FraudsimCommand runs the toll-fraud simulator: `sipwarden fraudsim [flags]`.
func FraudsimCommand(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("fraudsim", "fraudsim [flags]", stderr)
	seed := fs.Uint64("seed", 1, "random seed (a run is deterministic for a seed)")
	days := fs.Int("days", 7, "virtual days to simulate")
	tenants := fs.Int("tenants", 3, "tenants of each archetype (office, contact centre, hotel, reseller); at least 2")
	endCalls := fs.Bool("end-calls", true, "the built-in block rules end the risky calls in progress")
	attackWeek := fs.Int("attack-week", 1, "week of the run in which the standard attacks come (4: after the baselines learned three)")
	format := fs.String("format", "text", "text (Markdown tables) or json")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if *days < 1 || *tenants < 2 || *attackWeek < 1 || (*format != "text" && *format != "json") {
		fs.Usage()
		return 2
	}
	attacks := fraudsim.DefaultAttacks()
	for i := range attacks {
		attacks[i].Start += time.Duration(*attackWeek-1) * 7 * 24 * time.Hour
	}
	if *days < 7**attackWeek {
		fmt.Fprintf(stderr, "fraudsim: --days %d ends before the attack week %d is over: the later attacks do not happen\n", *days, *attackWeek)
	}
	rep, err := fraudsim.Run(fraudsim.Config{Seed: *seed, Days: *days, Tenants: *tenants, Attacks: attacks,
		Rules: fraudsim.BuiltinRules(*endCalls)})
	if err != nil {
		fmt.Fprintf(stderr, "fraudsim: %v\n", err)
		return 1
	}
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintf(stderr, "fraudsim: %v\n", err)
			return 1
		}
		return 0
	}
	fmt.Fprint(stdout, rep)
	return 0
}
