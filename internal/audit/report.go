package audit

import (
	"fmt"
	"html/template"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteTable prints the report for a terminal: the score, then one row per
// finding (severity, place, check, why) with its fix indented below.
func (r *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "sipwarden audit %s %s\n", r.Kind, r.Subject)
	fmt.Fprintf(w, "score %d/100: %d high, %d medium, %d low, %d info\n\n", r.Score, r.Count(High), r.Count(Medium), r.Count(Low), r.Count(Info))
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	if len(r.Notes) > 0 {
		fmt.Fprintln(w)
	}
	if len(r.Findings) == 0 {
		_, err := fmt.Fprintln(w, "no findings")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEVERITY\tWHERE\tCHECK\tWHY")
	for _, f := range r.Findings {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", strings.ToUpper(f.Severity.String()), f.Where(), f.Check, f.Why)
		if f.Evidence != "" {
			fmt.Fprintf(tw, "\t\t\tseen: %s\n", oneLine(f.Evidence))
		}
		if f.Fix != "" {
			for i, l := range strings.Split(f.Fix, "\n") {
				lead := "fix: "
				if i > 0 {
					lead = "     "
				}
				fmt.Fprintf(tw, "\t\t\t%s%s\n", lead, l)
			}
		}
	}
	return tw.Flush()
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\r", "")
	s = strings.ReplaceAll(s, "\n", " | ")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

type htmlGroup struct {
	Title    string
	Findings []Finding
}

// WriteHTML writes a self-contained HTML page (no external resources):
// the score and the findings grouped by responsibility.
func (r *Report) WriteHTML(w io.Writer) error {
	var groups []htmlGroup
	for _, resp := range Responsibilities {
		g := htmlGroup{Title: resp.Title}
		for _, f := range r.Findings {
			if f.Responsibility == resp.ID {
				g.Findings = append(g.Findings, f)
			}
		}
		groups = append(groups, g)
	}
	return htmlReport.Execute(w, struct {
		*Report
		High, Medium, Low, Info int
		Groups                  []htmlGroup
	}{r, r.Count(High), r.Count(Medium), r.Count(Low), r.Count(Info), groups})
}

var htmlReport = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sipwarden audit: {{.Subject}}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 70em; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
.score { font-size: 2.2em; font-weight: bold; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: .35em .6em; border-bottom: 1px solid #eee; }
.sev { font-weight: bold; text-transform: uppercase; font-size: .85em; }
.high { color: #b00020; } .medium { color: #c25e00; } .low { color: #5a6b00; } .info { color: #555; }
pre { background: #f5f5f5; padding: .4em .6em; margin: .3em 0 0; white-space: pre-wrap; }
code { font-size: .9em; } .ok { color: #2e7d32; }
</style>
</head>
<body>
<h1>sipwarden audit ({{.Kind}}): <code>{{.Subject}}</code></h1>
<p><span class="score" id="score">{{.Score}}/100</span>
&nbsp; <span class="high">{{.High}} high</span>, <span class="medium">{{.Medium}} medium</span>,
<span class="low">{{.Low}} low</span>, <span class="info">{{.Info}} info</span></p>
{{range .Notes}}<p class="info">{{.}}</p>
{{end}}{{range .Groups}}<section>
<h2>{{.Title}}</h2>
{{if .Findings}}<table>
<tr><th>Severity</th><th>Where</th><th>Finding</th></tr>
{{range .Findings}}<tr class="finding" data-check="{{.Check}}" data-severity="{{.Severity}}">
<td class="sev {{.Severity}}">{{.Severity}}</td>
<td><code>{{.Where}}</code></td>
<td><strong>{{.Check}}</strong>: {{.Why}}{{if .Evidence}}<pre>{{.Evidence}}</pre>{{end}}{{if .Fix}}<pre>{{.Fix}}</pre>{{end}}</td>
</tr>
{{end}}</table>
{{else}}<p class="ok">No findings.</p>
{{end}}</section>
{{end}}</body>
</html>
`))
