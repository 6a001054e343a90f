package admin

import (
	"net/http"
	"strings"
	"time"
)

// Registration is one binding in force as the API shows it.
type Registration struct {
	Trunk     string `json:"trunk"`
	Account   string `json:"account"`
	Contact   string `json:"contact"`
	Instance  string `json:"instance,omitempty"`
	Source    string `json:"source"`    // address:port the REGISTER came from
	Transport string `json:"transport"` // udp, tcp or tls
	UserAgent string `json:"user_agent,omitempty"`
	Expires   string `json:"expires"` // RFC 3339, UTC
	Updated   string `json:"updated"` // RFC 3339, UTC
}

// RegistrationList is the body of GET /api/v1/registrations.
type RegistrationList struct {
	Registrations []Registration `json:"registrations"`
}

// listRegistrations answers GET /api/v1/registrations: every binding the
// registrar holds in force (trunks with registrar.enabled).
func (s *Server) listRegistrations(w http.ResponseWriter, _ *http.Request) {
	if s.hooks.Registrar == nil {
		writeError(w, http.StatusNotImplemented, "the registrar is not available")
		return
	}
	list := RegistrationList{Registrations: []Registration{}}
	for _, g := range s.hooks.Registrar.List(time.Now()) {
		list.Registrations = append(list.Registrations, Registration{
			Trunk: g.Trunk, Account: g.Account, Contact: g.Contact, Instance: g.Instance,
			Source: g.Source.String(), Transport: strings.ToLower(g.Transport.String()), UserAgent: g.UserAgent,
			Expires: g.Expires.UTC().Format(time.RFC3339), Updated: g.Updated.UTC().Format(time.RFC3339),
		})
	}
	writeJSON(w, http.StatusOK, list)
}
