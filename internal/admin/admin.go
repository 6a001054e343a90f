// Package admin serves sipwarden's admin HTTP endpoints: Prometheus metrics
// (/metrics), liveness (/healthz), readiness (/readyz, failing while the
// process drains) and the operations API under /api/v1: status, reload, the
// open fraud incidents and their early release, and the ban list.
//
// The API speaks JSON both ways; every error is a JSON object
// {"error": "..."} with a status that says what went wrong (400 bad input,
// 401 no or wrong token, 404 unknown incident or ban, 405 wrong method with
// an Allow header, 413 body too large, 501 feature not wired).
//
// The plane is closed by default (guard.go): every request but /healthz and
// /readyz needs a bearer token, the read-only Hooks.ReadToken or the full
// Hooks.Token, and requests that change state (POST, DELETE) need the full
// one (auth.go). A browser on the operator's machine can reach loopback,
// and a web page can point its own host name at 127.0.0.1 (DNS rebinding)
// to read the answers: a token in a header is something such a page cannot
// send, and the Host allow-list (Hooks.Hosts) refuses its host name with
// 421. /metrics can be opened with Hooks.OpenMetrics.
package admin

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sipwarden/sipwarden/internal/banlist"
	"github.com/sipwarden/sipwarden/internal/fraud"
	"github.com/sipwarden/sipwarden/internal/registrar"
)

// Hooks connect the admin server to the running process. A nil hook turns
// its endpoints into 501 Not Implemented.
type Hooks struct {
	// Ready reports whether the process accepts new calls.
	Ready func() bool
	// Reload re-reads the configuration; an error means the old one stays.
	Reload func() error
	// Status returns a JSON-serialisable summary (active calls, config file...).
	Status func() any
	// Fraud is the toll-fraud engine whose incidents the API lists and releases.
	Fraud *fraud.Engine
	// Bans is the ban list the API reads and changes (it persists to its store).
	Bans *banlist.List
	// Registrar holds the bindings GET /api/v1/registrations lists.
	Registrar *registrar.Registrar
	// Token is the bearer token that requests changing state must carry
	// (it reads too). Empty refuses every such request (403): nothing is
	// open by accident.
	Token string
	// ReadToken is a bearer token that reads (GET) and changes nothing.
	ReadToken string
	// OpenMetrics serves /metrics without a token.
	OpenMetrics bool
	// Hosts are the host names (without port) a request's Host header may
	// carry; "*" accepts any. Empty: the listen address's IP, localhost,
	// 127.0.0.1 and ::1.
	Hosts []string
	// TLS, when set, makes the server speak HTTPS only.
	TLS *tls.Config
}

// Server is the admin HTTP server.
type Server struct {
	srv   *http.Server
	ln    net.Listener
	log   *slog.Logger
	hooks Hooks
	token tokenCheck
	read  tokenCheck
	hosts hostCheck
}

// maxBody bounds a request body: the API's requests are a few fields.
const maxBody = 64 << 10

// New prepares the server on addr ("127.0.0.1:8080"); it does not listen yet.
func New(addr string, gatherer prometheus.Gatherer, hooks Hooks, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{hooks: hooks, log: log, token: newTokenCheck(hooks.Token), read: newTokenCheck(hooks.ReadToken),
		hosts: newHostCheck(addr, hooks.Hosts)}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if hooks.Ready != nil && !hooks.Ready() {
			// The reason, for whoever reads it: a graceful stop is under
			// way and the node answers new requests with 503 + Retry-After.
			http.Error(w, "draining: shutting down; new requests get 503 with Retry-After", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	s.route(mux, "/api/v1/status", methods{http.MethodGet: s.status})
	s.route(mux, "/api/v1/reload", methods{http.MethodPost: s.auth(s.reload)})
	s.route(mux, "/api/v1/incidents", methods{http.MethodGet: s.listIncidents})
	s.route(mux, "/api/v1/incidents/{id}", methods{http.MethodGet: s.getIncident})
	s.route(mux, "/api/v1/incidents/{id}/release", methods{http.MethodPost: s.auth(s.releaseIncident)})
	s.route(mux, "/api/v1/bans", methods{http.MethodGet: s.listBans, http.MethodPost: s.auth(s.addBan)})
	s.route(mux, "/api/v1/registrations", methods{http.MethodGet: s.listRegistrations})
	s.route(mux, "/api/v1/bans/{prefix...}", methods{http.MethodDelete: s.auth(s.removeBan)})
	// Go's profiler (heap, goroutines, CPU) for soak runs and memory
	// questions: it exposes the process's internals and can cost CPU, so
	// it needs the token like a change does.
	mux.HandleFunc("GET /debug/pprof/", s.auth(pprof.Index))
	mux.HandleFunc("GET /debug/pprof/cmdline", s.auth(pprof.Cmdline))
	mux.HandleFunc("GET /debug/pprof/profile", s.auth(pprof.Profile))
	mux.HandleFunc("GET /debug/pprof/symbol", s.auth(pprof.Symbol))
	mux.HandleFunc("GET /debug/pprof/trace", s.auth(pprof.Trace))
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no API endpoint "+r.URL.Path)
	})
	s.srv = &http.Server{
		Addr:              addr,
		Handler:           s.guard(mux),
		TLSConfig:         hooks.TLS,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		// TLS handshakes that fail (scanners, a client without the
		// certificate) go to the log at debug level, not to stderr
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return s
}

// methods maps the HTTP methods an endpoint answers to their handlers.
type methods map[string]http.HandlerFunc

// route registers path for the given methods; any other method gets a JSON
// 405 with the Allow header (the mux's own 405 is plain text).
func (s *Server) route(mux *http.ServeMux, path string, m methods) {
	allowed := make([]string, 0, len(m))
	for k := range m {
		allowed = append(allowed, k)
	}
	sort.Strings(allowed)
	allow := strings.Join(allowed, ", ")
	mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		h, ok := m[r.Method]
		if !ok && r.Method == http.MethodHead {
			h, ok = m[http.MethodGet]
		}
		if !ok {
			w.Header().Set("Allow", allow)
			writeError(w, http.StatusMethodNotAllowed, r.Method+" not allowed on "+r.URL.Path+"; allowed: "+allow)
			return
		}
		h(w, r)
	})
}

func (s *Server) status(w http.ResponseWriter, _ *http.Request) {
	var st any = map[string]any{}
	if s.hooks.Status != nil {
		st = s.hooks.Status()
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) reload(w http.ResponseWriter, _ *http.Request) {
	if s.hooks.Reload == nil {
		writeError(w, http.StatusNotImplemented, "reload not available")
		return
	}
	if err := s.hooks.Reload(); err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"reloaded": false, "error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"reloaded": true})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// Error is the body of every API error response.
type Error struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, Error{Error: msg})
}

// decodeBody reads the JSON object of r into v. An empty body leaves v as
// it is (every field of the API's requests is optional or checked after).
// It writes the error response and returns false when the body is bad.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("more than one JSON value")
	}
	var tooBig *http.MaxBytesError
	switch {
	case err == nil, errors.Is(err, io.EOF):
		return true
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, "request body over 64 KiB")
	default:
		writeError(w, http.StatusBadRequest, "request body: "+err.Error())
	}
	return false
}

// Start listens and serves in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.srv.Addr)
	if err != nil {
		return err
	}
	if s.hooks.TLS != nil {
		ln = tls.NewListener(ln, s.hooks.TLS)
	}
	s.ln = ln
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin server stopped", "err", err)
		}
	}()
	return nil
}

// Handler is the server's handler (tests serve it with httptest).
func (s *Server) Handler() http.Handler { return s.srv.Handler }

// Addr is the address the server listens on (after Start).
func (s *Server) Addr() string {
	if s.ln == nil {
		return s.srv.Addr
	}
	return s.ln.Addr().String()
}

// Shutdown stops the server, letting requests in flight finish until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
