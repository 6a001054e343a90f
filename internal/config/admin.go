package config

import (
	"net/netip"
	"strings"
)

// DefaultAdminHosts are the Host names the admin server answers besides
// its own listen address when admin.hosts is not set.
var DefaultAdminHosts = []string{"localhost", "127.0.0.1", "::1"}

// admin validates the admin section. A listener that other machines can
// reach must speak TLS, or the operator must say that plain HTTP is meant
// (insecure_plaintext): the tokens would otherwise cross the network in
// clear.
func (v *validator) admin(c *Config, raw *rawAdmin) {
	a := Admin{Listen: raw.Listen, OpenMetrics: raw.OpenMetrics, InsecurePlaintext: raw.InsecurePlaintext,
		TLS: AdminTLS{Cert: raw.TLS.Cert, Key: raw.TLS.Key}}
	if (a.TLS.Cert == "") != (a.TLS.Key == "") {
		v.fail(p("admin", "tls"), "admin.tls.cert and admin.tls.key go together")
	}
	var ap netip.AddrPort
	if a.Listen != "" {
		var err error
		if ap, err = netip.ParseAddrPort(a.Listen); err != nil {
			v.fail(p("admin", "listen"), "must be an IP address and port such as 127.0.0.1:8080, got %q", a.Listen)
		} else if !ap.Addr().Unmap().IsLoopback() && a.TLS.Cert == "" && !a.InsecurePlaintext {
			v.fail(p("admin", "listen"), "%s is not a loopback address: the admin API would send its tokens and data in clear; "+
				"set admin.tls {cert, key}, listen on 127.0.0.1, or set admin.insecure_plaintext: true if a private network protects it", a.Listen)
		}
	}
	for i, h := range raw.Hosts {
		h = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(h), "."))
		switch {
		case h == "*":
			if len(raw.Hosts) > 1 {
				v.fail(p("admin", "hosts", i), `"*" (any Host) stands alone`)
			}
		case !validHostName(strings.Trim(h, "[]")):
			v.fail(p("admin", "hosts", i), "must be a host name or IP address without a port (e.g. sipwarden.example.net, 192.0.2.1), got %q", raw.Hosts[i])
		}
		a.Hosts = append(a.Hosts, strings.Trim(h, "[]"))
	}
	if len(a.Hosts) == 0 && a.Listen != "" {
		if ap.IsValid() && !ap.Addr().IsUnspecified() {
			a.Hosts = append(a.Hosts, ap.Addr().Unmap().String())
		}
		for _, h := range DefaultAdminHosts {
			if !containsString(a.Hosts, h) {
				a.Hosts = append(a.Hosts, h)
			}
		}
	}
	c.Admin = a
}

// validHostName accepts an IP address or a DNS name of letters, digits,
// '-' and '.' (no port, no wildcard).
func validHostName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return !strings.HasPrefix(h, ".") && !strings.Contains(h, "..")
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
