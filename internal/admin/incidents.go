package admin

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/sipwarden/sipwarden/internal/fraud"
)

// Incident is an open fraud incident as the API shows it. Its ID is
// "TRUNK:RULE": the engine keeps at most one open incident per trunk and
// rule, and neither trunk nor rule names may contain a colon.
type Incident struct {
	ID         string  `json:"id"`
	Trunk      string  `json:"trunk"`
	Rule       string  `json:"rule"`
	Action     string  `json:"action"`
	Scope      string  `json:"scope"`
	ReportOnly bool    `json:"report_only"`
	Opened     string  `json:"opened"`  // RFC 3339, UTC
	Expires    string  `json:"expires"` // RFC 3339, UTC: the action window ends by itself
	Breaches   int     `json:"breaches"`
	Peak       float64 `json:"peak"`
	// Escalation counts the incidents of the rule that came just before it
	// (each doubles the action window); 0 for a first one.
	Escalation int `json:"escalation"`
}

// IncidentList is the body of GET /api/v1/incidents.
type IncidentList struct {
	Incidents []Incident `json:"incidents"`
}

// ReleaseRequest is the optional body of POST /api/v1/incidents/{id}/release.
type ReleaseRequest struct {
	// By names who releases (an operator's login, a ticket); it goes into the
	// fraud_release event with the peer's address.
	By string `json:"by,omitempty"`
}

// ReleaseResult is the body of a successful release.
type ReleaseResult struct {
	Released Incident `json:"released"`
	By       string   `json:"by"`
}

// IncidentID is the API's ID of trunk's incident of rule.
func IncidentID(trunk, rule string) string { return trunk + ":" + rule }

func toIncident(in fraud.Incident) Incident {
	return Incident{
		ID: IncidentID(in.Account, in.Rule), Trunk: in.Account, Rule: in.Rule,
		Action: in.Action.String(), Scope: in.Scope.String(), ReportOnly: in.ReportOnly,
		Opened: in.Opened.UTC().Format(time.RFC3339), Expires: in.Until.UTC().Format(time.RFC3339),
		Breaches: in.Breaches, Peak: in.Peak, Escalation: in.Escalation,
	}
}

func (s *Server) listIncidents(w http.ResponseWriter, _ *http.Request) {
	if s.hooks.Fraud == nil {
		writeError(w, http.StatusNotImplemented, "the fraud engine is not running")
		return
	}
	list := IncidentList{Incidents: []Incident{}}
	for _, in := range s.hooks.Fraud.Incidents() {
		list.Incidents = append(list.Incidents, toIncident(in))
	}
	writeJSON(w, http.StatusOK, list)
}

// findIncident resolves the {id} of r to an open incident, or writes the
// error response (400 malformed, 404 unknown, 501 no engine).
func (s *Server) findIncident(w http.ResponseWriter, r *http.Request) (fraud.Incident, bool) {
	if s.hooks.Fraud == nil {
		writeError(w, http.StatusNotImplemented, "the fraud engine is not running")
		return fraud.Incident{}, false
	}
	id := r.PathValue("id")
	trunk, rule, ok := strings.Cut(id, ":")
	if !ok || trunk == "" || rule == "" || strings.Contains(rule, ":") {
		writeError(w, http.StatusBadRequest, "incident ID "+quote(id)+" is not of the form TRUNK:RULE")
		return fraud.Incident{}, false
	}
	for _, in := range s.hooks.Fraud.Incidents() {
		if in.Account == trunk && in.Rule == rule {
			return in, true
		}
	}
	writeError(w, http.StatusNotFound, "no open incident "+quote(id))
	return fraud.Incident{}, false
}

func (s *Server) getIncident(w http.ResponseWriter, r *http.Request) {
	if in, ok := s.findIncident(w, r); ok {
		writeJSON(w, http.StatusOK, toIncident(in))
	}
}

func (s *Server) releaseIncident(w http.ResponseWriter, r *http.Request) {
	var req ReleaseRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if err := checkName(req.By); err != nil {
		writeError(w, http.StatusBadRequest, "by: "+err.Error())
		return
	}
	in, ok := s.findIncident(w, r)
	if !ok {
		return
	}
	by := "admin API from " + peerHost(r)
	if req.By != "" {
		by = req.By + " via " + by
	}
	// The incident may expire between the look-up and the release: then
	// there is nothing left to release, as if it had not been found.
	if !s.hooks.Fraud.ReleaseBy(in.Account, in.Rule, by) {
		writeError(w, http.StatusNotFound, "no open incident "+quote(IncidentID(in.Account, in.Rule))+" (it has just expired)")
		return
	}
	s.log.Info("fraud incident released", "trunk", in.Account, "rule", in.Rule, "by", by)
	writeJSON(w, http.StatusOK, ReleaseResult{Released: toIncident(in), By: by})
}

// checkName accepts what may name an operator in events and logs: up to 64
// characters among letters, digits and " _.@+-" (no control characters, no
// quotes that would confuse a log reader).
func checkName(s string) error {
	if len(s) > 64 {
		return errBadName
	}
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.ContainsRune(" _.@+-", c):
		default:
			return errBadName
		}
	}
	return nil
}

var errBadName = errors.New("at most 64 characters among letters, digits, space and _.@+-")

// quote shows a value from a request in an error message, bounded.
func quote(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return `"` + strings.Map(func(r rune) rune {
		if r < ' ' || r == '"' || r == 0x7f {
			return '?'
		}
		return r
	}, s) + `"`
}
