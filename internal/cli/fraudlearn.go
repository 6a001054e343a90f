package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/sipwarden/sipwarden/internal/cdr"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/fraud"
)

const fraudUsage = `Usage: sipwarden fraud learn [flags]

  learn  seed the toll-fraud engine's hour-of-week baselines, and the
         countries and ranges each trunk calls, from its CDR history, into
         the baseline file sipwarden serve loads at start. Stop the server
         first: it saves its own baselines every hour and when it stops.

Run 'sipwarden fraud learn --help' for its flags.
`

// FraudCommand runs the toll-fraud engine's tools: `sipwarden fraud learn [flags]`.
func FraudCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "learn" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(stdout, fraudUsage)
			return 0
		}
		fmt.Fprint(stderr, fraudUsage)
		return 2
	}
	fs := newFlagSet("fraud learn", "fraud learn [flags]", stderr)
	file := fs.String("config", "sipwarden.yaml", "configuration file (trunks, dialling contexts, rate deck, CDR store)")
	db := fs.String("db", "", "an SQLite CDR file to read (default: the configuration's CDR store)")
	since := fs.String("since", "2160h", "learn from calls that started after this: a duration back from now or an RFC 3339 time; \"\" for all")
	quantile := fs.Float64("quantile", 0.95, "quantile of the weekly values of an hour of the week that becomes its baseline")
	out := fs.String("out", "", "baseline file to update (default <storage.path>/fraud-baselines.json)")
	format := fs.String("format", "text", "text or json")
	if code := parseFlags(fs, args[1:]); code >= 0 {
		return code
	}
	if *quantile <= 0 || *quantile > 1 {
		fmt.Fprintf(stderr, "sipwarden fraud learn: --quantile must be above 0 and at most 1, got %v\n", *quantile)
		return 2
	}
	if *format != "text" && *format != "json" {
		fmt.Fprintf(stderr, "sipwarden fraud learn: --format must be text or json, got %q\n", *format)
		return 2
	}
	var f cdr.Filter
	var err error
	if f.Since, err = parseWhen(*since, time.Now()); err != nil {
		fmt.Fprintf(stderr, "sipwarden fraud learn: --since: %v\n", err)
		return 2
	}
	rep, path, err := fraudLearn(*file, *db, *out, f, *quantile)
	if err != nil {
		fmt.Fprintf(stderr, "sipwarden fraud learn: %v\n", err)
		return 1
	}
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			File string `json:"file"`
			fraud.LearnReport
		}{path, rep}); err != nil {
			fmt.Fprintf(stderr, "sipwarden fraud learn: %v\n", err)
			return 1
		}
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TRUNK\tCALLS\tFROM\tTO\tWEEKS\tCOUNTRIES\tRANGES\tPEAK CALLS/H\tPEAK SPEND/H")
	for _, t := range rep.Trunks {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%.1f\t%d\t%d\t%.0f\t%.2f\n", t.Trunk, t.Calls, t.From.Format("2006-01-02"),
			t.To.Format("2006-01-02"), t.Weeks, t.Countries, t.Ranges, t.PeakCalls, t.PeakSpend)
	}
	_ = tw.Flush()
	fmt.Fprintf(stdout, "%d records read, %d skipped (not an originating call of a configured trunk, or refused); baselines written to %s\n",
		rep.Records, rep.Skipped, path)
	return 0
}

// fraudLearn learns from the CDRs of the configuration in file (or of the
// SQLite file db) and updates the baseline file; it returns what it learned
// and the file's path.
func fraudLearn(file, db, out string, f cdr.Filter, quantile float64) (fraud.LearnReport, string, error) {
	cfg, err := config.Load(file)
	if err != nil {
		return fraud.LearnReport{}, "", err
	}
	if !cfg.Fraud.Enabled {
		return fraud.LearnReport{}, "", fmt.Errorf("%s: the fraud stage is not enabled (fraud.enabled): nothing would use the baselines", file)
	}
	if out == "" {
		out = filepath.Join(cfg.Storage.Path, "fraud-baselines.json")
	}
	st := fraud.NewState(nil, nil, 0, 0)
	// The file's other trunks are kept: it is read first, then rewritten.
	if err := st.Engine.SetBaselineFile(out); err != nil {
		return fraud.LearnReport{}, "", err
	}
	stage, err := fraud.NewStage(cfg, &cfg.Fraud, st, nil)
	if err != nil {
		return fraud.LearnReport{}, "", cfg.Locate("fraud", err)
	}
	var store cdr.Store
	if db != "" {
		store, err = openCDRForReading("", db)
	} else {
		store, err = openCDRForReading(file, "")
	}
	if err != nil {
		return fraud.LearnReport{}, "", fmt.Errorf("open the CDR store: %w", err)
	}
	defer store.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	recs, err := store.List(ctx, f)
	if err != nil {
		return fraud.LearnReport{}, "", fmt.Errorf("read CDRs: %w", err)
	}
	rep, err := stage.LearnFromCDRs(slices.Values(recs), fraud.LearnOptions{Quantile: quantile})
	if err != nil {
		return fraud.LearnReport{}, "", err
	}
	if err := st.Engine.SaveBaselineFile(); err != nil {
		return fraud.LearnReport{}, "", err
	}
	return rep, out, nil
}
