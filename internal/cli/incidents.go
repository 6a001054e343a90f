package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sipwarden/sipwarden/internal/admin"
	"github.com/sipwarden/sipwarden/internal/config"
)

// AdminTokenFile is the name of the admin API's token file in storage.path.
// `sipwarden serve` creates it (mode 0600) when it is missing; an operator
// who wants a token of their own writes it there before the start.
const AdminTokenFile = "admin.token"

// AdminReadTokenFile is the name of the admin API's read-only token file
// in storage.path, created like AdminTokenFile: it reads (/metrics, the
// lists, the status) and changes nothing.
const AdminReadTokenFile = "admin.read.token"

// adminTokenPath is where the process of cfg keeps its admin token.
func adminTokenPath(cfg *config.Config) string {
	return filepath.Join(cfg.Storage.Path, AdminTokenFile)
}

// adminReadTokenPath is where the process of cfg keeps its read token.
func adminReadTokenPath(cfg *config.Config) string {
	return filepath.Join(cfg.Storage.Path, AdminReadTokenFile)
}

// adminTLS is the admin server's TLS configuration (nil: plain HTTP).
func adminTLS(cfg *config.Config) (*tls.Config, error) {
	if cfg.Admin.TLS.Cert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.Admin.TLS.Cert, cfg.Admin.TLS.Key)
	if err != nil {
		return nil, fmt.Errorf("admin.tls: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

const incidentsUsage = `Usage: sipwarden incidents list|release [flags] [ID]

  list        show the open toll-fraud incidents
  release ID  end an incident before its action window does (ID as the list
              shows it: TRUNK:RULE); the trunk's calls flow again, and the
              fraud_release event names who released it (--by)

The command talks to the admin API of the running sipwarden: at admin.listen
of the configuration (or --admin; https:// when admin.tls is set), with the
token of storage.path/admin.read.token for the list and of
storage.path/admin.token for a release (or --token-file).

Run 'sipwarden incidents list --help' or 'sipwarden incidents release --help'
for the flags.
`

// IncidentsCommand lists and releases fraud incidents through the admin
// API: `sipwarden incidents list|release`. Unlike `sipwarden ban`, which
// writes the ban store the process re-reads, incidents live only in the
// running process, so the command must ask it.
func IncidentsCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "list" && args[0] != "release") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(stdout, incidentsUsage)
			return 0
		}
		fmt.Fprint(stderr, incidentsUsage)
		return 2
	}
	sub := args[0]
	synopsis := "incidents list [flags]"
	if sub == "release" {
		synopsis = "incidents release [flags] TRUNK:RULE"
	}
	fs := newFlagSet("incidents "+sub, synopsis, stderr)
	file := fs.String("config", "sipwarden.yaml", "configuration file (finds admin.listen and storage.path)")
	addr := fs.String("admin", "", "host:port of the admin API (default: admin.listen of --config)")
	tokenFile := fs.String("token-file", "", "file holding the admin token (default: storage.path/admin.read.token for list, storage.path/admin.token for release, of --config)")
	format := fs.String("format", "table", "list output: table or json")
	by := fs.String("by", "", "who releases, for the event (default: your login name)")
	timeout := fs.Duration("timeout", 10*time.Second, "bound on the request")
	if code := parseFlags(fs, args[1:]); code >= 0 {
		return code
	}
	switch {
	case *format != "table" && *format != "json":
		fmt.Fprintf(stderr, "sipwarden incidents: --format must be table or json, got %q\n", *format)
		return 2
	case *timeout <= 0:
		fmt.Fprintln(stderr, "sipwarden incidents: --timeout must be positive")
		return 2
	case sub == "list" && fs.NArg() != 0:
		fmt.Fprintln(stderr, "sipwarden incidents list: takes no arguments")
		return 2
	case sub == "release" && fs.NArg() != 1:
		fmt.Fprintln(stderr, "sipwarden incidents release: one incident ID (TRUNK:RULE) expected")
		return 2
	}
	c := apiClient{addr: *addr, timeout: *timeout}
	if a, ok := strings.CutPrefix(c.addr, "https://"); ok {
		c.addr, c.tls = a, &tls.Config{MinVersion: tls.VersionTLS12}
	}
	// The configuration is read only for what the flags do not give.
	if c.addr == "" || *tokenFile == "" {
		cfg, err := config.Load(*file)
		if err != nil {
			printConfigError(stderr, *file, err)
			return 1
		}
		if c.addr == "" {
			if cfg.Admin.Listen == "" {
				fmt.Fprintf(stderr, "sipwarden incidents: %s has no admin.listen: the admin API is off (or give --admin)\n", cfg.File)
				return 1
			}
			if err := c.configure(cfg); err != nil {
				fmt.Fprintf(stderr, "sipwarden incidents: %v\n", err)
				return 1
			}
		}
		if *tokenFile == "" {
			*tokenFile = adminTokenPath(cfg)
			if sub == "list" {
				*tokenFile = adminReadTokenPath(cfg)
			}
		}
	}
	tok, _, err := admin.LoadToken(*tokenFile, false)
	if err != nil {
		fmt.Fprintf(stderr, "sipwarden incidents %s: %v\n", sub, err)
		return 1
	}
	c.token = tok
	if sub == "list" {
		return c.listIncidents(*format, stdout, stderr)
	}
	who := *by
	if who == "" {
		who = loginName()
	}
	return c.release(fs.Arg(0), who, *format, stdout, stderr)
}

// dialAddr turns a listen address into one to connect to: a wildcard
// listener (0.0.0.0, ::) is reached on loopback.
func dialAddr(listen string) string {
	ap, err := netip.ParseAddrPort(listen)
	if err != nil || !ap.Addr().IsUnspecified() {
		return listen
	}
	lo := netip.MustParseAddr("127.0.0.1")
	if ap.Addr().Is6() {
		lo = netip.IPv6Loopback()
	}
	return netip.AddrPortFrom(lo, ap.Port()).String()
}

// loginName names the operator for the release event when --by is not
// given (the API adds "via admin API from ADDRESS"); characters the API
// does not take are left out.
func loginName() string {
	name := ""
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	if name == "" {
		name = os.Getenv("USER")
	}
	clean := make([]rune, 0, len(name))
	for _, r := range name {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-' || r == '@' {
			clean = append(clean, r)
		}
	}
	if len(clean) > 48 {
		clean = clean[:48]
	}
	return string(clean)
}

// apiClient calls the admin API of a running sipwarden.
type apiClient struct {
	addr, token string
	timeout     time.Duration
	// host, when set, is sent as the Host header (a name of admin.hosts).
	host string
	// tls, when set, makes the client speak HTTPS.
	tls *tls.Config
}

// configure points c at the admin server of cfg: its listen address (on
// loopback for a wildcard), over TLS with the server's own certificate
// pinned when admin.tls is set (the CLI runs beside the server and reads
// the same file, whatever name the certificate has), with a Host that
// admin.hosts allows.
func (c *apiClient) configure(cfg *config.Config) error {
	c.addr = dialAddr(cfg.Admin.Listen)
	if cfg.Admin.TLS.Cert != "" {
		conf, err := pinnedTLS(cfg.Admin.TLS.Cert)
		if err != nil {
			return err
		}
		c.tls = conf
	}
	if h, _, err := net.SplitHostPort(c.addr); err == nil && len(cfg.Admin.Hosts) > 0 &&
		!slices.Contains(cfg.Admin.Hosts, h) && !slices.Contains(cfg.Admin.Hosts, "*") {
		c.host = cfg.Admin.Hosts[0]
	}
	return nil
}

// pinnedTLS accepts exactly the certificate of certFile's first PEM block.
func pinnedTLS(certFile string) (*tls.Config, error) {
	b, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("admin.tls.cert: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("admin.tls.cert %s: no PEM certificate", certFile)
	}
	if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
		return nil, fmt.Errorf("admin.tls.cert %s: %w", certFile, err)
	}
	want := blk.Bytes
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The chain is not checked against roots: the peer must present
		// the very certificate sipwarden serves, compared byte for byte.
		InsecureSkipVerify: true, //nolint:gosec // replaced by the pin below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || !bytes.Equal(raw[0], want) {
				return errors.New("the admin server's certificate is not the one of admin.tls.cert")
			}
			return nil
		},
	}, nil
}

// apiError is an answer of the API that is an error (its message is the API's).
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return fmt.Sprintf("%s (HTTP %d)", e.msg, e.status) }

// do sends one request and decodes a 2xx JSON answer into out.
func (c *apiClient) do(method, path string, body, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	scheme := "http://"
	if c.tls != nil {
		scheme = "https://"
	}
	req, err := http.NewRequestWithContext(ctx, method, scheme+c.addr+path, rd)
	if err != nil {
		return fmt.Errorf("admin API at %s: %w", c.addr, err)
	}
	if c.host != "" {
		req.Host = c.host
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	// No proxy: the token goes to the admin listener and nowhere else.
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DialContext: (&net.Dialer{}).DialContext, TLSClientConfig: c.tls}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("admin API at %s: %w (is sipwarden running with admin.listen?)", c.addr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("admin API at %s: %w", c.addr, err)
	}
	if resp.StatusCode/100 != 2 {
		var e admin.Error
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = http.StatusText(resp.StatusCode)
		}
		return &apiError{status: resp.StatusCode, msg: e.Error}
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("admin API at %s: unexpected answer: %w", c.addr, err)
	}
	return nil
}

func (c *apiClient) listIncidents(format string, stdout, stderr io.Writer) int {
	var list admin.IncidentList
	if err := c.do(http.MethodGet, "/api/v1/incidents", nil, &list); err != nil {
		fmt.Fprintf(stderr, "sipwarden incidents list: %v\n", err)
		return 1
	}
	if format == "json" {
		return writeIndented(stdout, stderr, list)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tACTION\tSCOPE\tOPENED\tEXPIRES\tBREACHES\tPEAK\tESCALATION")
	for _, in := range list.Incidents {
		action := in.Action
		if in.ReportOnly {
			action += " (report only)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%g\t%d\n", in.ID, action, in.Scope, localTime(in.Opened), localTime(in.Expires),
			in.Breaches, in.Peak, in.Escalation)
	}
	fmt.Fprintf(tw, "(%d incidents)\n", len(list.Incidents))
	_ = tw.Flush()
	return 0
}

func (c *apiClient) release(id, by, format string, stdout, stderr io.Writer) int {
	var res admin.ReleaseResult
	err := c.do(http.MethodPost, "/api/v1/incidents/"+url.PathEscape(id)+"/release", admin.ReleaseRequest{By: by}, &res)
	if err != nil {
		fmt.Fprintf(stderr, "sipwarden incidents release: %v\n", err)
		var e *apiError
		if errors.As(err, &e) && e.status == http.StatusBadRequest {
			return 2 // the ID or --by the API refused
		}
		return 1
	}
	if format == "json" {
		return writeIndented(stdout, stderr, res)
	}
	fmt.Fprintf(stdout, "released %s (%s, opened %s, %d breaches) by %s\n", res.Released.ID, res.Released.Action,
		localTime(res.Released.Opened), res.Released.Breaches, res.By)
	return 0
}

func writeIndented(stdout, stderr io.Writer, v any) int {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(stderr, "sipwarden incidents: %v\n", err)
		return 1
	}
	return 0
}

// localTime shows an RFC 3339 time of the API in local time, as `ban list` does.
func localTime(s string) string {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return s
	}
	return t.Local().Format("2006-01-02 15:04:05")
}
