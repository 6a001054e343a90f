package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/fraud/fraudsim"
)

// FraudsimCommand runs the toll-fraud simulator: `sipwarden fraudsim [flags]`.
func FraudsimCommand(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("fraudsim", "fraudsim [flags]\n       sipwarden fraudsim --summarize run.json...", stderr)
	seed := fs.Uint64("seed", 1, "random seed (a run is deterministic for a seed)")
	days := fs.Int("days", 7, "virtual days to simulate")
	tenants := fs.Int("tenants", 3, "tenants of each archetype (office, contact centre, hotel, reseller); at least 2")
	endCalls := fs.Bool("end-calls", true, "the built-in block rules that end the calls in progress of their scope do so (false: none does)")
	attackWeek := fs.Int("attack-week", 1, "week of the run in which the scenarios come (4: after the baselines learned three)")
	only := fs.String("scenarios", "", "comma-separated names of the scenarios to run (default: all; see --list)")
	rules := fs.String("rules", "builtin", "builtin (the engine's default rules and Wangiri detection) or none (the destination policy alone)")
	list := fs.Bool("list", false, "list the labelled scenarios and exit")
	summarize := fs.Bool("summarize", false, "summarize the runs in the JSON files given as arguments (one per seed, from --format json)")
	format := fs.String("format", "text", "text (Markdown tables) or json")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if *days < 1 || *tenants < 2 || *attackWeek < 1 || (*format != "text" && *format != "json") ||
		(*rules != "builtin" && *rules != "none") {
		fs.Usage()
		return 2
	}
	if *summarize {
		return summarizeRuns(fs.Args(), stdout, stderr)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "fraudsim: unexpected arguments %q (files go with --summarize)\n", fs.Args())
		return 2
	}
	scenarios := fraudsim.DefaultScenarios()
	if *list {
		for _, sc := range scenarios {
			who := sc.Tenant
			if who == "" {
				who = "customers of every tenant"
			}
			fmt.Fprintf(stdout, "%-30s %-8s %-9s day %d %s, %s: %s\n", sc.Name, sc.Kind.Label(), sc.Kind,
				int(sc.Start/(24*time.Hour))+1, time.Duration(sc.Start%(24*time.Hour)), who, sc.Description)
		}
		return 0
	}
	if *only != "" {
		var picked []fraudsim.Scenario
		for name := range strings.SplitSeq(*only, ",") {
			found := false
			for _, sc := range scenarios {
				if sc.Name == strings.TrimSpace(name) {
					picked, found = append(picked, sc), true
				}
			}
			if !found {
				fmt.Fprintf(stderr, "fraudsim: no scenario %q (see sipwarden fraudsim --list)\n", name)
				return 2
			}
		}
		scenarios = picked
	}
	var late []string
	for i := range scenarios {
		scenarios[i].Start += time.Duration(*attackWeek-1) * 7 * 24 * time.Hour
		if scenarios[i].Start+scenarios[i].Length > time.Duration(*days)*24*time.Hour {
			late = append(late, scenarios[i].Name)
		}
	}
	if len(late) > 0 {
		fmt.Fprintf(stderr, "fraudsim: --days %d ends before these scenarios are over (they are cut short or do not happen): %s\n",
			*days, strings.Join(late, ", "))
	}
	cfg := fraudsim.Config{Seed: *seed, Days: *days, Tenants: *tenants, Scenarios: scenarios, Rules: fraudsim.BuiltinRules(*endCalls)}
	if *rules == "none" {
		cfg.Rules, cfg.Wangiri = []config.FraudRule{}, &config.Wangiri{}
	}
	rep, err := fraudsim.Run(cfg)
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

// summarizeRuns reads the JSON reports in files and prints their summary.
func summarizeRuns(files []string, stdout, stderr io.Writer) int {
	if len(files) == 0 {
		fmt.Fprintln(stderr, "fraudsim: --summarize needs the JSON files of the runs (sipwarden fraudsim --format json > run.json)")
		return 2
	}
	var runs []*fraudsim.JSONReport
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintf(stderr, "fraudsim: %v\n", err)
			return 1
		}
		var r fraudsim.JSONReport
		if err := json.Unmarshal(b, &r); err != nil {
			fmt.Fprintf(stderr, "fraudsim: %s: not a fraudsim JSON report: %v\n", f, err)
			return 1
		}
		if r.Days == 0 || r.TenantDays == 0 {
			fmt.Fprintf(stderr, "fraudsim: %s: not a fraudsim JSON report (no days, no tenant-days)\n", f)
			return 1
		}
		runs = append(runs, &r)
	}
	fmt.Fprint(stdout, fraudsim.Summarize(runs))
	return 0
}
