package admin

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/sipwarden/sipwarden/internal/banlist"
	"github.com/sipwarden/sipwarden/internal/events"
	"github.com/sipwarden/sipwarden/internal/fraud"
	"github.com/sipwarden/sipwarden/internal/registrar"
	"github.com/sipwarden/sipwarden/internal/sip"
)

// TestMain checks that no test leaves a goroutine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	testToken     = "0123456789abcdef0123456789abcdef"
	testReadToken = "fedcba9876543210fedcba9876543210"
)

var t0 = time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// fixture is an admin server in front of a real fraud engine, with one
// incident open (acme:calls, a block for an hour), and a real ban list.
type fixture struct {
	srv  *httptest.Server
	eng  *fraud.Engine
	bans *banlist.List
	reg  *registrar.Registrar
	sub  *events.Subscription
}

func newFixture(t *testing.T, token string) *fixture {
	t.Helper()
	clk := &clock{now: t0}
	bus := events.NewBus()
	sub := bus.Subscribe("test", 100)
	eng := fraud.NewEngine(fraud.Options{Now: clk.Now, Bus: bus})
	err := eng.SetRules("acme", []fraud.Rule{{Name: "calls", Metric: fraud.MetricCalls, Window: time.Minute,
		Limit: 1, Action: fraud.ActionBlock, Scope: fraud.ScopeAll, For: time.Hour}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dest := fraud.Destination{Class: fraud.ClassDomestic, CountryCode: 1, Region: "US"}
	eng.Check("acme", dest, 0)
	if eng.Check("acme", dest, 0).Allowed() {
		t.Fatal("the fixture's incident did not open")
	}
	bans := banlist.New(nil, banlist.Options{Now: clk.Now})
	reg := registrar.New()
	s := New("127.0.0.1:0", prometheus.NewRegistry(), Hooks{Fraud: eng, Bans: bans, Registrar: reg, Token: token, ReadToken: readTokenFor(token),
		Reload: func() error { return errors.New("bad file") }}, nil)
	f := &fixture{srv: httptest.NewServer(s.Handler()), eng: eng, bans: bans, reg: reg, sub: sub}
	t.Cleanup(f.srv.Close)
	return f
}

// readTokenFor gives the fixture a read token when it has a full one.
func readTokenFor(token string) string {
	if token == "" {
		return ""
	}
	return testReadToken
}

func (f *fixture) do(t *testing.T, method, path, token, body string) (int, http.Header, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 400 {
		var e Error
		if err := json.Unmarshal(b, &e); err != nil || e.Error == "" {
			t.Errorf("%s %s: %d with a body that is no JSON error: %q", method, path, resp.StatusCode, b)
		}
	}
	return resp.StatusCode, resp.Header, string(b)
}

func (f *fixture) drain() []events.Event {
	var out []events.Event
	for {
		select {
		case ev := <-f.sub.C:
			out = append(out, ev)
		default:
			return out
		}
	}
}

func TestIncidentsAPI(t *testing.T) {
	f := newFixture(t, testToken)
	f.drain()

	code, _, body := f.do(t, "GET", "/api/v1/incidents", testReadToken, "")
	var list IncidentList
	if err := json.Unmarshal([]byte(body), &list); code != 200 || err != nil {
		t.Fatalf("list: %d %v %s", code, err, body)
	}
	want := Incident{ID: "acme:calls", Trunk: "acme", Rule: "calls", Action: "block", Scope: "all",
		Opened: "2026-11-30T10:00:00Z", Expires: "2026-11-30T11:00:00Z", Breaches: 1, Peak: 2}
	if len(list.Incidents) != 1 || list.Incidents[0] != want {
		t.Fatalf("incidents %+v, want [%+v]", list.Incidents, want)
	}

	steps := []struct {
		name, method, path, token, body string
		code                            int
		want                            string // in the body
	}{
		{"one incident", "GET", "/api/v1/incidents/acme:calls", testReadToken, "", 200, `"id":"acme:calls"`},
		{"unknown incident", "GET", "/api/v1/incidents/acme:other", testReadToken, "", 404, `no open incident \"acme:other\"`},
		{"malformed ID", "GET", "/api/v1/incidents/acme", testReadToken, "", 400, "TRUNK:RULE"},
		{"wrong method on the list", "DELETE", "/api/v1/incidents", testReadToken, "", 405, "allowed: GET"},
		{"GET on release", "GET", "/api/v1/incidents/acme:calls/release", testReadToken, "", 405, "allowed: POST"},
		{"release without token", "POST", "/api/v1/incidents/acme:calls/release", "", "", 401, "no bearer token"},
		{"release with a wrong token", "POST", "/api/v1/incidents/acme:calls/release", "0123456789abcdef0123456789abcdeX", "", 401, "wrong bearer token"},
		{"release with the read token", "POST", "/api/v1/incidents/acme:calls/release", testReadToken, "", 401, "wrong bearer token"},
		{"release with a prefix of the token", "POST", "/api/v1/incidents/acme:calls/release", testToken[:16], "", 401, "wrong bearer token"},
		{"release of an unknown incident", "POST", "/api/v1/incidents/acme:other/release", testToken, "", 404, "no open incident"},
		{"release with a body that is no JSON", "POST", "/api/v1/incidents/acme:calls/release", testToken, "{by:", 400, "request body"},
		{"release with an unknown field", "POST", "/api/v1/incidents/acme:calls/release", testToken, `{"who":"x"}`, 400, "unknown field"},
		{"release by a name with quotes", "POST", "/api/v1/incidents/acme:calls/release", testToken, `{"by":"a\"b"}`, 400, "by:"},
		{"release by a name of 65 characters", "POST", "/api/v1/incidents/acme:calls/release", testToken, `{"by":"` + strings.Repeat("a", 65) + `"}`, 400, "by:"},
		{"release with a body over 64 KiB", "POST", "/api/v1/incidents/acme:calls/release", testToken, `{"by":"` + strings.Repeat("a", 70000) + `"}`, 413, "64 KiB"},
		{"release", "POST", "/api/v1/incidents/acme:calls/release", testToken, `{"by":"alice"}`, 200, `"by":"alice via admin API from 127.0.0.1"`},
		{"release again", "POST", "/api/v1/incidents/acme:calls/release", testToken, "", 404, "no open incident"},
		{"the list after the release", "GET", "/api/v1/incidents", testReadToken, "", 200, `{"incidents":[]}`},
		{"unknown endpoint", "GET", "/api/v1/nothing", testReadToken, "", 404, "no API endpoint /api/v1/nothing"},
		{"reload needs the token too", "POST", "/api/v1/reload", "", "", 401, "bearer token"},
		{"reload refused", "POST", "/api/v1/reload", testToken, "", 422, "bad file"},
	}
	for _, s := range steps {
		code, hdr, body := f.do(t, s.method, s.path, s.token, s.body)
		if code != s.code || !strings.Contains(body, s.want) {
			t.Errorf("%s: %d %s, want %d with %q", s.name, code, body, s.code, s.want)
		}
		if code == 401 && hdr.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", s.name)
		}
		if code == 405 && hdr.Get("Allow") == "" {
			t.Errorf("%s: 405 without Allow", s.name)
		}
		if code == 200 && hdr.Get("Content-Type") != "application/json" {
			t.Errorf("%s: Content-Type %q", s.name, hdr.Get("Content-Type"))
		}
	}
	evs := f.drain()
	if len(evs) != 1 || evs[0].Kind != events.FraudRelease || evs[0].Trunk != "acme" || evs[0].Reason != "calls" ||
		!strings.Contains(evs[0].Detail, "released by alice via admin API from 127.0.0.1") {
		t.Fatalf("events of the release: %+v, want one fraud_release naming alice", evs)
	}
}

func TestBansAPI(t *testing.T) {
	f := newFixture(t, testToken)
	steps := []struct {
		name, method, path, token, body string
		code                            int
		want                            string
	}{
		{"empty list", "GET", "/api/v1/bans", testReadToken, "", 200, `{"bans":[]}`},
		{"bad feeds", "GET", "/api/v1/bans?feeds=yes", testReadToken, "", 400, "feeds must be"},
		{"ban without token", "POST", "/api/v1/bans", "", `{"prefix":"192.0.2.7"}`, 401, "bearer token"},
		{"ban without prefix", "POST", "/api/v1/bans", testToken, `{}`, 400, "prefix:"},
		{"ban of no address", "POST", "/api/v1/bans", testToken, `{"prefix":"192.0.2.300"}`, 400, "is no IP address"},
		{"ban for a negative time", "POST", "/api/v1/bans", testToken, `{"prefix":"192.0.2.7","for":"-1h"}`, 400, "for:"},
		{"ban for no duration", "POST", "/api/v1/bans", testToken, `{"prefix":"192.0.2.7","for":"soon"}`, 400, "for:"},
		{"ban with a reason that is no token", "POST", "/api/v1/bans", testToken, `{"prefix":"192.0.2.7","reason":"a b"}`, 400, "reason:"},
		{"ban of an address", "POST", "/api/v1/bans", testToken, `{"prefix":"192.0.2.7","by":"bob"}`, 200,
			`{"prefix":"192.0.2.7/32","reason":"operator","source":"operator:bob","created":"2026-11-30T10:00:00Z","expires":"2026-11-30T11:00:00Z","offense":1}`},
		{"permanent ban of a v6 prefix", "POST", "/api/v1/bans", testToken, `{"prefix":"2001:db8::1/32","for":"0","reason":"scanner"}`, 200,
			`{"prefix":"2001:db8::/32","reason":"scanner","source":"operator","created":"2026-11-30T10:00:00Z","offense":1}`},
		{"list", "GET", "/api/v1/bans", testReadToken, "", 200, `"prefix":"192.0.2.7/32"`},
		{"unban without token", "DELETE", "/api/v1/bans/192.0.2.7", "", "", 401, "bearer token"},
		{"unban of no address", "DELETE", "/api/v1/bans/nothing", testToken, "", 400, "is no IP address"},
		{"unban of nothing", "DELETE", "/api/v1/bans/", testToken, "", 400, "prefix:"},
		{"unban of what is not banned", "DELETE", "/api/v1/bans/198.51.100.1", testToken, "", 404, "198.51.100.1/32 is not banned"},
		{"unban", "DELETE", "/api/v1/bans/192.0.2.7", testToken, "", 200, `{"removed":"192.0.2.7/32"}`},
		{"unban of a v6 prefix", "DELETE", "/api/v1/bans/2001:db8::/32", testToken, "", 200, `{"removed":"2001:db8::/32"}`},
		{"wrong method", "PUT", "/api/v1/bans", testToken, "", 405, "allowed: GET, POST"},
		{"empty list again", "GET", "/api/v1/bans", testReadToken, "", 200, `{"bans":[]}`},
	}
	for _, s := range steps {
		code, _, body := f.do(t, s.method, s.path, s.token, s.body)
		if code != s.code || !strings.Contains(body, s.want) {
			t.Errorf("%s: %d %s, want %d with %q", s.name, code, body, s.code, s.want)
		}
	}
	if f.bans.Len() != 0 {
		t.Errorf("%d bans left", f.bans.Len())
	}
}

// TestRegistrationsAPI: GET /api/v1/registrations lists the bindings in
// force, with the read token only.
func TestRegistrationsAPI(t *testing.T) {
	f := newFixture(t, testToken)
	if code, _, body := f.do(t, "GET", "/api/v1/registrations", testReadToken, ""); code != 200 || body != `{"registrations":[]}`+"\n" {
		t.Errorf("empty list: %d %q", code, body)
	}
	now := time.Now()
	res := f.reg.Apply("phones\x001001", registrar.Options{}, &registrar.Request{
		Contacts: []registrar.Contact{{URI: "sip:1001@192.0.2.10:5062;transport=tls", Expires: 600}}, Expires: -1,
		CallID: "c1", CSeq: 1, Source: netip.MustParseAddrPort("192.0.2.10:5062"), Transport: sip.TLS, UserAgent: "Linphone/5.1"}, now)
	if res.Code != 200 {
		t.Fatalf("Apply: %+v", res)
	}
	for _, s := range []struct {
		name, token string
		code        int
		want        string
	}{
		{"no token", "", 401, "bearer token"},
		{"wrong token", "x", 401, ""},
		{"read token", testReadToken, 200, `{"registrations":[{"trunk":"phones","account":"1001","contact":"sip:1001@192.0.2.10:5062;transport=tls","source":"192.0.2.10:5062","transport":"tls","user_agent":"Linphone/5.1","expires":"` +
			now.Add(600*time.Second).UTC().Format(time.RFC3339) + `","updated":"` + now.UTC().Format(time.RFC3339) + `"}]}`},
		{"full token reads too", testToken, 200, `"account":"1001"`},
	} {
		code, _, body := f.do(t, "GET", "/api/v1/registrations", s.token, "")
		if code != s.code || !strings.Contains(body, s.want) {
			t.Errorf("%s: %d %s, want %d with %s", s.name, code, body, s.code, s.want)
		}
	}
	if code, _, _ := f.do(t, "POST", "/api/v1/registrations", testToken, "{}"); code != 405 {
		t.Errorf("POST: %d, want 405", code)
	}
}

// TestNoTokenNoChanges: a server without a token refuses every change and
// every read (403).
func TestNoTokenNoChanges(t *testing.T) {
	f := newFixture(t, "")
	for _, s := range []struct{ method, path, body string }{
		{"POST", "/api/v1/reload", ""},
		{"POST", "/api/v1/incidents/acme:calls/release", ""},
		{"POST", "/api/v1/bans", `{"prefix":"192.0.2.7"}`},
		{"DELETE", "/api/v1/bans/192.0.2.7", ""},
	} {
		// Any bearer value, the empty token's included, is refused.
		if code, _, body := f.do(t, s.method, s.path, "x", s.body); code != 403 || !strings.Contains(body, "no admin token") {
			t.Errorf("%s %s without a configured token: %d %s, want 403", s.method, s.path, code, body)
		}
	}
	if code, _, _ := f.do(t, "GET", "/api/v1/incidents", "x", ""); code != 403 {
		t.Errorf("a read from a server without tokens: %d, want 403", code)
	}
	if len(f.eng.Incidents()) != 1 {
		t.Error("the incident was released without a token")
	}
}

func TestBearer(t *testing.T) {
	for _, c := range []struct {
		header, want string
		ok           bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer  abc ", "abc", true},
		{"Basic abc", "", false},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"", "", false},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if c.header != "" {
			r.Header.Set("Authorization", c.header)
		}
		if got, ok := bearer(r); got != c.want || ok != c.ok {
			t.Errorf("bearer(%q) = %q, %v; want %q, %v", c.header, got, ok, c.want, c.ok)
		}
	}
}

func TestLoadToken(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "admin.token")
	if _, _, err := LoadToken(path, false); !errors.Is(err, ErrTokenMissing) {
		t.Fatalf("missing file without create: %v", err)
	}
	tok, created, err := LoadToken(path, true)
	if err != nil || !created || len(tok) != 64 {
		t.Fatalf("created: %q %v %v", tok, created, err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode: %v %v", st.Mode(), err)
	}
	again, created, err := LoadToken(path, true)
	if err != nil || created || again != tok {
		t.Fatalf("read again: %q %v %v, want the same token", again, created, err)
	}
	for _, c := range []struct {
		name, content string
		mode          os.FileMode
		want          string
	}{
		{"short", "abc\n", 0o600, "at least 16"},
		{"empty", "", 0o600, "at least 16"},
		{"two words", "0123456789abcdef 0123456789abcdef\n", 0o600, "one word"},
		{"world-readable", testToken + "\n", 0o644, "chmod o-rwx"},
		{"group-readable is fine", testToken + "\n", 0o640, ""},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-"))
		if err := os.WriteFile(p, []byte(c.content), c.mode); err != nil {
			t.Fatal(err)
		}
		_ = os.Chmod(p, c.mode) // past the umask
		tok, _, err := LoadToken(p, false)
		if c.want == "" {
			if err != nil || tok != testToken {
				t.Errorf("%s: %q %v", c.name, tok, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}
}

func TestParsePrefix(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"192.0.2.7", "192.0.2.7/32"},
		{"192.0.2.7/24", "192.0.2.0/24"},
		{"::ffff:192.0.2.7", "192.0.2.7/32"},
		{"2001:db8::1", "2001:db8::1/128"},
		{"fe80::1%eth0", "fe80::1/128"},
		{"", ""},
		{"192.0.2.0/33", ""},
		{"example.com", ""},
	} {
		p, err := ParsePrefix(c.in)
		got := ""
		if err == nil {
			got = p.String()
		}
		if got != c.want {
			t.Errorf("ParsePrefix(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

// FuzzAPI sends arbitrary requests to the API: no panic, no state change
// without the token, and every error is a JSON object.
func FuzzAPI(f *testing.F) {
	for _, s := range []struct{ method, path, body string }{
		{"GET", "/api/v1/incidents", ""},
		{"GET", "/api/v1/incidents/acme:calls", ""},
		{"POST", "/api/v1/incidents/acme:calls/release", `{"by":"alice"}`},
		{"POST", "/api/v1/bans", `{"prefix":"192.0.2.7","for":"1h"}`},
		{"DELETE", "/api/v1/bans/2001:db8::/32", ""},
		{"GET", "/api/v1/bans?feeds=true", ""},
		{"PATCH", "/api/v1/incidents/%3A%3A/release", "[]"},
	} {
		f.Add(s.method, s.path, s.body, false)
		f.Add(s.method, s.path, s.body, true)
	}
	clk := &clock{now: t0}
	eng := fraud.NewEngine(fraud.Options{Now: clk.Now})
	if err := eng.SetRules("acme", []fraud.Rule{{Name: "calls", Metric: fraud.MetricCalls, Window: time.Minute,
		Limit: 1, Action: fraud.ActionBlock, Scope: fraud.ScopeAll, For: time.Hour}}, nil); err != nil {
		f.Fatal(err)
	}
	bans := banlist.New(nil, banlist.Options{Now: clk.Now})
	h := New("127.0.0.1:0", prometheus.NewRegistry(), Hooks{Fraud: eng, Bans: bans, Token: testToken}, nil).Handler()
	dest := fraud.Destination{Class: fraud.ClassDomestic, CountryCode: 1}
	f.Fuzz(func(t *testing.T, method, path, body string, withToken bool) {
		req, err := http.NewRequest(method, "http://127.0.0.1"+path, strings.NewReader(body))
		if err != nil || !strings.HasPrefix(req.URL.Path, "/api/") {
			return // not a request a client can send, or not the API
		}
		if withToken {
			req.Header.Set("Authorization", "Bearer "+testToken)
		} else {
			eng.Check("acme", dest, 0) // an incident is open
			eng.Check("acme", dest, 0)
		}
		before := len(eng.Incidents()) + bans.Len()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 400 {
			var e Error
			if json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Error == "" {
				t.Fatalf("%s %s: %d with %q", method, path, rec.Code, rec.Body.String())
			}
		}
		if !withToken && len(eng.Incidents())+bans.Len() != before {
			t.Fatalf("%s %s changed state without the token: %d", method, path, rec.Code)
		}
	})
}
