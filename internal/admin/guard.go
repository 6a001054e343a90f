package admin

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// guard closes the admin plane: /healthz and /readyz answer anyone (they
// tell nothing but up or draining, and orchestrators probe them by pod
// address); every other request must name an allowed host (against DNS
// rebinding: 421) and carry the read or the full token (401). /metrics is
// open when Hooks.OpenMetrics says so. Requests that change state are
// checked again for the full token by auth.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz", "/readyz":
			next.ServeHTTP(w, r)
			return
		}
		if !s.hosts.allowed(r.Host) {
			s.log.Warn("admin API request refused", "src", peerHost(r), "method", r.Method, "path", r.URL.Path, "reason", "host not allowed")
			writeError(w, http.StatusMisdirectedRequest, "this server does not answer for that Host (admin.hosts)")
			return
		}
		if r.URL.Path == "/metrics" && s.hooks.OpenMetrics {
			next.ServeHTTP(w, r)
			return
		}
		if !s.token.set && !s.read.set {
			writeError(w, http.StatusForbidden, "the admin API is off: no admin token is configured")
			return
		}
		tok, ok := bearer(r)
		if !ok || !(s.token.matches(tok) || s.read.matches(tok)) {
			why := "no bearer token"
			if ok {
				why = "wrong bearer token"
			}
			s.log.Warn("admin API request refused", "src", peerHost(r), "method", r.Method, "path", r.URL.Path, "reason", why)
			w.Header().Set("WWW-Authenticate", `Bearer realm="sipwarden admin"`)
			writeError(w, http.StatusUnauthorized, why+": send Authorization: Bearer <the admin read token or admin token>")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// hostCheck is the Host allow-list.
type hostCheck struct {
	any   bool
	names map[string]bool
}

// newHostCheck allows hosts, or by default the IP of addr (unless it is a
// wildcard), localhost, 127.0.0.1 and ::1.
func newHostCheck(addr string, hosts []string) hostCheck {
	c := hostCheck{names: map[string]bool{}}
	if len(hosts) == 0 {
		if ap, err := netip.ParseAddrPort(addr); err == nil && !ap.Addr().IsUnspecified() {
			c.names[ap.Addr().Unmap().String()] = true
		}
		hosts = []string{"localhost", "127.0.0.1", "::1"}
	}
	for _, h := range hosts {
		if h == "*" {
			c.any = true
		}
		c.names[normalHost(h)] = true
	}
	return c
}

// allowed reports whether the Host header hostport names an allowed host.
func (c hostCheck) allowed(hostport string) bool {
	if c.any {
		return true
	}
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	}
	h = normalHost(h)
	return h != "" && c.names[h]
}

// normalHost lower-cases a host name, drops a final '.' and IPv6 brackets,
// and writes an IP address in its canonical form.
func normalHost(h string) string {
	h = strings.ToLower(strings.TrimSuffix(strings.Trim(h, "[]"), "."))
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Unmap().String()
	}
	return h
}
