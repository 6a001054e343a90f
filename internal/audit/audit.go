package audit

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Severity ranks a finding. High findings make `sipwarden audit` exit 1.
type Severity int

// Severities, weakest first.
const (
	Info Severity = iota
	Low
	Medium
	High
)

var severityNames = []string{"info", "low", "medium", "high"}

func (s Severity) String() string {
	if s < Info || s > High {
		return "unknown"
	}
	return severityNames[s]
}

// MarshalText writes the severity's name.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a severity's name.
func (s *Severity) UnmarshalText(b []byte) error {
	i := slices.Index(severityNames, string(b))
	if i < 0 {
		return fmt.Errorf("unknown severity %q", b)
	}
	*s = Severity(i)
	return nil
}

// weight is what a finding of the severity takes off the score.
func (s Severity) weight() int {
	switch s {
	case High:
		return 20
	case Medium:
		return 8
	case Low:
		return 2
	}
	return 0
}

// Responsibility groups findings by the part of the security guide they belong to.
type Responsibility string

// The responsibilities, in report order.
const (
	Exposure    Responsibility = "exposure"    // who can reach the endpoint, and what it tells them
	Credentials Responsibility = "credentials" // strong unique credentials, brute-force defence
	Encryption  Responsibility = "encryption"  // TLS and SRTP
	TollFraud   Responsibility = "toll_fraud"  // international dialling, spend, transfers
	Monitoring  Responsibility = "monitoring"  // someone hears about an attack
	Admin       Responsibility = "admin"       // the management interface
	Identity    Responsibility = "identity"    // caller identity and STIR/SHAKEN
	Hardening   Responsibility = "hardening"   // the edge's own defences
)

// Responsibilities lists them in report order, with a title each.
var Responsibilities = []struct {
	ID    Responsibility
	Title string
}{
	{Exposure, "Exposure to unknown sources"},
	{Credentials, "Credentials"},
	{Encryption, "Encryption (TLS and SRTP)"},
	{TollFraud, "International dialling and spend"},
	{Monitoring, "Monitoring and notification"},
	{Admin, "Administration interface"},
	{Identity, "Caller identity"},
	{Hardening, "Edge hardening"},
}

// Finding is one judgement.
type Finding struct {
	// Check is a stable identifier of the check ("weak_credential").
	Check          string         `json:"check"`
	Severity       Severity       `json:"severity"`
	Responsibility Responsibility `json:"responsibility"`
	// File, Line and Key locate a configuration finding ("trunks[0].accounts[1]");
	// a probe finding has Target instead.
	File   string `json:"file,omitempty"`
	Line   int    `json:"line,omitempty"`
	Key    string `json:"key,omitempty"`
	Target string `json:"target,omitempty"`
	// Why is one sentence of why it matters; Fix says what to do, with a YAML
	// snippet where one fits; Evidence is what a probe saw.
	Why      string `json:"why"`
	Fix      string `json:"fix,omitempty"`
	Evidence string `json:"evidence,omitempty"`
}

// Where is "file:line:key" for a configuration finding, the target otherwise.
func (f *Finding) Where() string {
	if f.File == "" {
		return f.Target
	}
	var b strings.Builder
	b.WriteString(f.File)
	if f.Line > 0 {
		fmt.Fprintf(&b, ":%d", f.Line)
	}
	if f.Key != "" {
		b.WriteString(":" + f.Key)
	}
	return b.String()
}

// Report is the outcome of an audit.
type Report struct {
	// Kind is "config" or "probe"; Subject the file or the URI audited.
	Kind     string    `json:"kind"`
	Subject  string    `json:"subject"`
	Findings []Finding `json:"findings"`
	Score    int       `json:"score"`
	// Notes are facts that are no finding (what was probed, what was skipped).
	Notes []string `json:"notes,omitempty"`
}

// finish sorts the findings (most severe first, then by place) and scores them.
func (r *Report) finish() {
	if r.Findings == nil {
		r.Findings = []Finding{}
	}
	slices.SortStableFunc(r.Findings, func(a, b Finding) int {
		if a.Severity != b.Severity {
			return int(b.Severity - a.Severity)
		}
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return strings.Compare(a.Check, b.Check)
	})
	r.Score = 100
	for _, f := range r.Findings {
		r.Score -= f.Severity.weight()
	}
	r.Score = max(r.Score, 0)
}

// HasHigh reports whether a high-severity finding exists.
func (r *Report) HasHigh() bool {
	return slices.ContainsFunc(r.Findings, func(f Finding) bool { return f.Severity == High })
}

// Count returns the number of findings of severity s.
func (r *Report) Count(s Severity) int {
	n := 0
	for _, f := range r.Findings {
		if f.Severity == s {
			n++
		}
	}
	return n
}

// Checks returns the distinct check identifiers of the findings.
func (r *Report) Checks() []string {
	var out []string
	for _, f := range r.Findings {
		if !slices.Contains(out, f.Check) {
			out = append(out, f.Check)
		}
	}
	return out
}

// JSON renders the report as indented JSON.
func (r *Report) JSON() ([]byte, error) { return json.MarshalIndent(r, "", "  ") }
