package admin

import (
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/sipwarden/sipwarden/internal/banlist"
)

// Ban is a ban as the API shows it.
type Ban struct {
	Prefix  string `json:"prefix"`
	Reason  string `json:"reason"`
	Source  string `json:"source"`
	Created string `json:"created"`           // RFC 3339, UTC
	Expires string `json:"expires,omitempty"` // RFC 3339, UTC; absent: permanent
	Offense int    `json:"offense"`
	Feed    bool   `json:"feed,omitempty"`
}

// BanList is the body of GET /api/v1/bans.
type BanList struct {
	Bans []Ban `json:"bans"`
}

// BanRequest is the body of POST /api/v1/bans.
type BanRequest struct {
	// Prefix is an address or CIDR prefix (required).
	Prefix string `json:"prefix"`
	// For is a Go duration ("1h"); "0" bans permanently; empty: one hour.
	// Repeat offenders get longer bans (bans.factor), as with the CLI.
	For string `json:"for,omitempty"`
	// Reason is a short token (default "operator").
	Reason string `json:"reason,omitempty"`
	// By names the operator; the ban's source becomes "operator:BY".
	By string `json:"by,omitempty"`
}

func toBan(b banlist.Ban) Ban {
	out := Ban{Prefix: b.Prefix.String(), Reason: b.Reason, Source: b.Source,
		Created: b.Created.UTC().Format(time.RFC3339), Offense: b.Offense, Feed: b.Feed}
	if !b.Expires.IsZero() {
		out.Expires = b.Expires.UTC().Format(time.RFC3339)
	}
	return out
}

// listBans answers GET /api/v1/bans (?feeds=true adds reputation feed entries).
func (s *Server) listBans(w http.ResponseWriter, r *http.Request) {
	if s.hooks.Bans == nil {
		writeError(w, http.StatusNotImplemented, "the ban list is not available")
		return
	}
	feeds := r.URL.Query().Get("feeds")
	if feeds != "" && feeds != "true" && feeds != "false" {
		writeError(w, http.StatusBadRequest, "feeds must be true or false, got "+quote(feeds))
		return
	}
	list := BanList{Bans: []Ban{}}
	for _, b := range s.hooks.Bans.List(feeds == "true") {
		list.Bans = append(list.Bans, toBan(b))
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) addBan(w http.ResponseWriter, r *http.Request) {
	if s.hooks.Bans == nil {
		writeError(w, http.StatusNotImplemented, "the ban list is not available")
		return
	}
	var req BanRequest
	if !decodeBody(w, r, &req) {
		return
	}
	p, err := ParsePrefix(req.Prefix)
	if err != nil {
		writeError(w, http.StatusBadRequest, "prefix: "+err.Error())
		return
	}
	d := time.Hour
	if req.For != "" {
		if d, err = time.ParseDuration(req.For); err != nil || d < 0 {
			writeError(w, http.StatusBadRequest, "for: "+quote(req.For)+" is not a duration such as 30m or 24h (0: permanent)")
			return
		}
	}
	if d == 0 {
		d = -1 // the list's word for permanent
	}
	reason := req.Reason
	if reason == "" {
		reason = "operator"
	}
	if !isToken(reason) {
		writeError(w, http.StatusBadRequest, "reason: "+quote(reason)+" is not a short token (letters, digits, _.:-, at most 64)")
		return
	}
	if err := checkName(req.By); err != nil {
		writeError(w, http.StatusBadRequest, "by: "+err.Error())
		return
	}
	source := "operator"
	if req.By != "" {
		source += ":" + req.By
	}
	b, err := s.hooks.Bans.Add(p, reason, source, d)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.log.Info("ban added through the admin API", "prefix", b.Prefix.String(), "reason", b.Reason, "by", source, "src", peerHost(r))
	writeJSON(w, http.StatusOK, toBan(b))
}

func (s *Server) removeBan(w http.ResponseWriter, r *http.Request) {
	if s.hooks.Bans == nil {
		writeError(w, http.StatusNotImplemented, "the ban list is not available")
		return
	}
	p, err := ParsePrefix(r.PathValue("prefix"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "prefix: "+err.Error())
		return
	}
	if !s.hooks.Bans.Remove(p) {
		writeError(w, http.StatusNotFound, p.String()+" is not banned")
		return
	}
	s.log.Info("ban removed through the admin API", "prefix", p.String(), "src", peerHost(r))
	writeJSON(w, http.StatusOK, map[string]string{"removed": p.String()})
}

// ParsePrefix reads an address ("192.0.2.7", a /32 or /128) or a CIDR
// prefix ("192.0.2.0/24"), masked to its network.
func ParsePrefix(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, errEmptyPrefix
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, &prefixError{s}
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, &prefixError{s}
	}
	a = a.Unmap().WithZone("")
	return netip.PrefixFrom(a, a.BitLen()), nil
}

type prefixError struct{ s string }

func (e *prefixError) Error() string {
	return quote(e.s) + " is no IP address or CIDR prefix (192.0.2.7, 192.0.2.0/24, 2001:db8::/32)"
}

var errEmptyPrefix = &prefixError{""}

func isToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("_.:-", c)) {
			return false
		}
	}
	return true
}
