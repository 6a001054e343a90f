package cli

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/sipwarden/sipwarden/internal/cdr"
	cdrpostgres "github.com/sipwarden/sipwarden/internal/cdr/postgres"
	cdrsqlite "github.com/sipwarden/sipwarden/internal/cdr/sqlite"
	"github.com/sipwarden/sipwarden/internal/config"
)

const cdrUsage = `Usage: sipwarden cdr list|export [flags]

  list    print records for humans (default format: table)
  export  write records for machines (default format: csv)

Run 'sipwarden cdr list --help' or 'sipwarden cdr export --help' for the flags.
`

// CDRCommand lists or exports CDRs: `sipwarden cdr list|export [flags]`.
func CDRCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "list" && args[0] != "export") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(stdout, cdrUsage)
			return 0
		}
		fmt.Fprint(stderr, cdrUsage)
		return 2
	}
	sub := args[0]
	fs := newFlagSet("cdr "+sub, "cdr "+sub+" [flags]", stderr)
	file := fs.String("config", "sipwarden.yaml", "configuration file (finds the CDR store)")
	db := fs.String("db", "", "an SQLite CDR file to read directly (overrides --config)")
	since := fs.String("since", "", "only calls that started at or after this: a duration back from now (24h) or RFC 3339 time")
	until := fs.String("until", "", "only calls that started before this (same forms as --since)")
	trunk := fs.String("trunk", "", "only calls of this trunk")
	limit := fs.Int("limit", 0, "at most this many records (0: all)")
	defFormat := "table"
	if sub == "export" {
		defFormat = "csv"
	}
	format := fs.String("format", defFormat, "table, csv, json (one array) or jsonl (one object per line)")
	if code := parseFlags(fs, args[1:]); code >= 0 {
		return code
	}
	now := time.Now()
	var f cdr.Filter
	var err error
	if f.Since, err = parseWhen(*since, now); err != nil {
		fmt.Fprintf(stderr, "sipwarden cdr: --since: %v\n", err)
		return 2
	}
	if f.Until, err = parseWhen(*until, now); err != nil {
		fmt.Fprintf(stderr, "sipwarden cdr: --until: %v\n", err)
		return 2
	}
	f.Trunk, f.Limit = *trunk, *limit
	switch *format {
	case "table", "csv", "json", "jsonl":
	default:
		fmt.Fprintf(stderr, "sipwarden cdr: --format must be table, csv, json or jsonl, got %q\n", *format)
		return 2
	}
	store, err := openCDRForReading(*file, *db)
	if err != nil {
		fmt.Fprintf(stderr, "sipwarden cdr: %v\n", err)
		return 1
	}
	defer store.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	recs, err := store.List(ctx, f)
	if err != nil {
		fmt.Fprintf(stderr, "sipwarden cdr: %v\n", err)
		return 1
	}
	if err := writeCDRs(stdout, *format, recs); err != nil {
		fmt.Fprintf(stderr, "sipwarden cdr: %v\n", err)
		return 1
	}
	return 0
}

func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("want a duration (24h) or an RFC 3339 time (2026-11-24T10:00:00Z), got %q", s)
	}
	return t, nil
}

func openCDRForReading(file, db string) (cdr.Store, error) {
	if db != "" {
		return cdrsqlite.Open(db)
	}
	cfg, err := config.Load(file)
	if err != nil {
		return nil, err
	}
	if cfg.CDR.Backend == "postgres" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return cdrpostgres.Open(ctx, cfg.CDR.DSN)
	}
	return cdrsqlite.Open(filepath.Join(cfg.Storage.Path, "cdr.db"))
}

var cdrColumns = []string{"start", "call_id", "trunk", "upstream", "direction", "from", "to", "src", "transport",
	"answer", "end", "duration_s", "code", "disposition", "stage", "reason", "caller_media", "callee_media", "identity"}

func cdrFields(r cdr.Record) []string {
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	return []string{ts(r.Start), r.CallID, r.Trunk, r.Upstream, r.Direction, r.From, r.To, r.SrcAddr, r.Transport,
		ts(r.Answer), ts(r.End), strconv.FormatFloat(r.Duration.Seconds(), 'f', 3, 64), strconv.Itoa(r.FinalCode),
		string(r.Disposition), r.Stage, r.Reason, r.CallerMedia, r.CalleeMedia, r.Identity}
}

type cdrJSON struct {
	ID          int64      `json:"id"`
	CallID      string     `json:"call_id"`
	Trunk       string     `json:"trunk"`
	Upstream    string     `json:"upstream"`
	Direction   string     `json:"direction"`
	Src         string     `json:"src"`
	Transport   string     `json:"transport"`
	From        string     `json:"from"`
	To          string     `json:"to"`
	Start       time.Time  `json:"start"`
	Answer      *time.Time `json:"answer,omitempty"`
	End         time.Time  `json:"end"`
	DurationS   float64    `json:"duration_s"`
	Code        int        `json:"code"`
	Disposition string     `json:"disposition"`
	Stage       string     `json:"stage,omitempty"`
	Reason      string     `json:"reason,omitempty"`
	CallerMedia string     `json:"caller_media,omitempty"`
	CalleeMedia string     `json:"callee_media,omitempty"`
	Identity    string     `json:"identity,omitempty"`
}

func toJSON(r cdr.Record) cdrJSON {
	j := cdrJSON{ID: r.ID, CallID: r.CallID, Trunk: r.Trunk, Upstream: r.Upstream, Direction: r.Direction, Src: r.SrcAddr,
		Transport: r.Transport, From: r.From, To: r.To, Start: r.Start.UTC(), End: r.End.UTC(), DurationS: r.Duration.Seconds(),
		Code: r.FinalCode, Disposition: string(r.Disposition), Stage: r.Stage, Reason: r.Reason,
		CallerMedia: r.CallerMedia, CalleeMedia: r.CalleeMedia, Identity: r.Identity}
	if !r.Answer.IsZero() {
		a := r.Answer.UTC()
		j.Answer = &a
	}
	return j
}

func writeCDRs(w io.Writer, format string, recs []cdr.Record) error {
	switch format {
	case "csv":
		cw := csv.NewWriter(w)
		_ = cw.Write(cdrColumns)
		for _, r := range recs {
			_ = cw.Write(cdrFields(r))
		}
		cw.Flush()
		return cw.Error()
	case "json":
		out := make([]cdrJSON, len(recs))
		for i, r := range recs {
			out[i] = toJSON(r)
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	case "jsonl":
		enc := json.NewEncoder(w)
		for _, r := range recs {
			if err := enc.Encode(toJSON(r)); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "START\tTRUNK\tDIRECTION\tFROM\tTO\tDURATION\tCODE\tDISPOSITION\tREASON\tCALL-ID")
	for _, r := range recs {
		reason := r.Reason
		if r.Stage != "" {
			reason = r.Stage + "/" + r.Reason
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.Start.Local().Format("2006-01-02 15:04:05"),
			r.Trunk, r.Direction, r.From, r.To, r.Duration.Round(time.Second), r.FinalCode, r.Disposition, reason, r.CallID)
	}
	fmt.Fprintf(tw, "(%d calls)\n", len(recs))
	return tw.Flush()
}
