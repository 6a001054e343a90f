package cli

import (
	"bytes"
	"context"
	"encoding/json"
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
	"text/tabwriter"
	"time"

	"github.com/sipwarden/sipwarden/internal/admin"
	"github.com/sipwarden/sipwarden/internal/config"
)

// AdminTokenFile is the name of the admin API's token file in storage.path.
// `sipwarden serve` creates it (mode 0600) when it is missing; an operator
// who wants a token of their own writes it there before the start.
const AdminTokenFile = "admin.token"

// adminTokenPath is where the process of cfg keeps its admin token.
func adminTokenPath(cfg *config.Config) string {
	return filepath.Join(cfg.Storage.Path, AdminTokenFile)
}

const incidentsUsage = `Usage: sipwarden incidents list|release [flags] [ID]

  list        show the open toll-fraud incidents
  release ID  end an incident before its action window does (ID as the list
              shows it: TRUNK:RULE); the trunk's calls flow again, and the
              fraud_release event names who released it (--by)

The command talks to the admin API of the running sipwarden: at admin.listen
of the configuration (or --admin), with the token of storage.path/admin.token
(or --token-file) for a release.

Flags:
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
	tokenFile := fs.String("token-file", "", "file holding the admin token (default: storage.path/admin.token of --config)")
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
	// The configuration is read only for what the flags do not give.
	if c.addr == "" || (sub == "release" && *tokenFile == "") {
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
			c.addr = dialAddr(cfg.Admin.Listen)
		}
		if *tokenFile == "" {
			*tokenFile = adminTokenPath(cfg)
		}
	}
	if sub == "list" {
		return c.listIncidents(*format, stdout, stderr)
	}
	tok, _, err := admin.LoadToken(*tokenFile, false)
	if err != nil {
		fmt.Fprintf(stderr, "sipwarden incidents release: %v\n", err)
		return 1
	}
	c.token = tok
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
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.addr+path, rd)
	if err != nil {
		return fmt.Errorf("admin API at %s: %w", c.addr, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	// No proxy: the token goes to the admin listener and nowhere else.
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DialContext: (&net.Dialer{}).DialContext}}
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
