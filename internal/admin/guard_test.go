package admin

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestAdminPlaneClosed: every read but the health checks needs a token,
// the read token changes nothing, and a Host that is not allowed (DNS
// rebinding) is answered 421 whatever the token.
func TestAdminPlaneClosed(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "sipwarden_test_total", Help: "x"}))
	status := func() any { return map[string]string{"config": "/etc/sipwarden.yaml"} }
	closed := New("127.0.0.1:8080", reg, Hooks{Token: testToken, ReadToken: testReadToken, Status: status,
		Reload: func() error { return nil }}, nil).Handler()
	open := New("127.0.0.1:8080", reg, Hooks{Token: testToken, ReadToken: testReadToken, Status: status, OpenMetrics: true}, nil).Handler()
	named := New("0.0.0.0:8443", reg, Hooks{Token: testToken, ReadToken: testReadToken, Status: status,
		Hosts: []string{"sipwarden.example.net"}}, nil).Handler()
	any := New("0.0.0.0:8443", reg, Hooks{Token: testToken, Status: status, Hosts: []string{"*"}}, nil).Handler()
	tests := []struct {
		name         string
		h            http.Handler
		method, path string
		host, token  string
		code         int
		want         string
	}{
		{"metrics without token", closed, "GET", "/metrics", "127.0.0.1:8080", "", 401, "no bearer token"},
		{"metrics with a wrong token", closed, "GET", "/metrics", "127.0.0.1:8080", "nope", 401, "wrong bearer token"},
		{"metrics with the read token", closed, "GET", "/metrics", "127.0.0.1:8080", testReadToken, 200, "sipwarden_test_total"},
		{"metrics with the full token", closed, "GET", "/metrics", "localhost:8080", testToken, 200, "sipwarden_test_total"},
		{"status without token", closed, "GET", "/api/v1/status", "127.0.0.1:8080", "", 401, "bearer token"},
		{"status with the read token", closed, "GET", "/api/v1/status", "[::1]:8080", testReadToken, 200, "sipwarden.yaml"},
		{"HEAD without token", closed, "HEAD", "/api/v1/status", "127.0.0.1:8080", "", 401, ""},
		{"reload with the read token", closed, "POST", "/api/v1/reload", "127.0.0.1:8080", testReadToken, 401, "wrong bearer token"},
		{"reload with the full token", closed, "POST", "/api/v1/reload", "127.0.0.1:8080", testToken, 200, "reloaded"},
		{"healthz needs nothing", closed, "GET", "/healthz", "evil.example", "", 200, "ok"},
		{"readyz needs nothing", closed, "GET", "/readyz", "evil.example:8080", "", 200, "ready"},
		{"rebinding with the token", closed, "GET", "/metrics", "evil.example:8080", testToken, 421, "Host"},
		{"rebinding of the status", closed, "GET", "/api/v1/status", "evil.example", "", 421, "Host"},
		{"rebinding of a change", closed, "POST", "/api/v1/reload", "evil.example", testToken, 421, "Host"},
		{"no Host", closed, "GET", "/api/v1/status", "", testToken, 421, "Host"},
		{"a name that ends in an allowed one", closed, "GET", "/api/v1/status", "localhost.evil.example", testToken, 421, "Host"},
		{"open metrics", open, "GET", "/metrics", "127.0.0.1:8080", "", 200, "sipwarden_test_total"},
		{"open metrics, closed API", open, "GET", "/api/v1/status", "127.0.0.1:8080", "", 401, "bearer token"},
		{"open metrics still checks Host", open, "GET", "/metrics", "evil.example", "", 421, "Host"},
		{"configured host", named, "GET", "/api/v1/status", "SipWarden.Example.NET.:8443", testReadToken, 200, "sipwarden.yaml"},
		{"loopback not in a configured list", named, "GET", "/api/v1/status", "127.0.0.1:8443", testReadToken, 421, "Host"},
		{"any host", any, "GET", "/api/v1/status", "whatever.example", testToken, 200, "sipwarden.yaml"},
		{"no read token configured", any, "GET", "/api/v1/status", "whatever.example", testReadToken, 401, "wrong bearer token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tc.path, nil)
			r.Host = tc.host
			if tc.token != "" {
				r.Header.Set("Authorization", "Bearer "+tc.token)
			}
			rec := httptest.NewRecorder()
			tc.h.ServeHTTP(rec, r)
			if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.want) {
				t.Fatalf("%d %q, want %d with %q", rec.Code, rec.Body.String(), tc.code, tc.want)
			}
			if rec.Code == 401 && rec.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}
