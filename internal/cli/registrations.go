package cli

import (
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sipwarden/sipwarden/internal/admin"
	"github.com/sipwarden/sipwarden/internal/config"
)

const registrationsUsage = `Usage: sipwarden registrations list [flags]

  list  show every registration in force: the phones registered to the
        trunks with registrar.enabled (trunk, account, contact, source,
        transport, expiry, user agent)

The command asks the admin API of the running sipwarden (bindings live in
the process): at admin.listen of the configuration (or --admin; https://
when admin.tls is set), with the read token of storage.path/admin.read.token
(or --token-file).

Flags of list:
`

// RegistrationsCommand lists the registrar's bindings through the admin
// API: `sipwarden registrations list`.
func RegistrationsCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "list" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(stdout, registrationsUsage)
			newRegistrationsFlags(stdout).PrintDefaults()
			return 0
		}
		fmt.Fprint(stderr, registrationsUsage)
		newRegistrationsFlags(stderr).PrintDefaults()
		return 2
	}
	fs := newRegistrationsFlags(stderr)
	if code := parseFlags(fs, args[1:]); code >= 0 {
		return code
	}
	get := func(name string) string { return fs.Lookup(name).Value.String() }
	format := get("format")
	timeout, _ := time.ParseDuration(get("timeout"))
	switch {
	case format != "table" && format != "json":
		fmt.Fprintf(stderr, "sipwarden registrations: --format must be table or json, got %q\n", format)
		return 2
	case timeout <= 0:
		fmt.Fprintln(stderr, "sipwarden registrations: --timeout must be positive")
		return 2
	case fs.NArg() != 0:
		fmt.Fprintln(stderr, "sipwarden registrations list: takes no arguments")
		return 2
	}
	c := apiClient{addr: get("admin"), timeout: timeout}
	if a, ok := strings.CutPrefix(c.addr, "https://"); ok {
		c.addr, c.tls = a, &tls.Config{MinVersion: tls.VersionTLS12}
	}
	tokenFile := get("token-file")
	if c.addr == "" || tokenFile == "" {
		file := get("config")
		cfg, err := config.Load(file)
		if err != nil {
			printConfigError(stderr, file, err)
			return 1
		}
		if c.addr == "" {
			if cfg.Admin.Listen == "" {
				fmt.Fprintf(stderr, "sipwarden registrations: %s has no admin.listen: the admin API is off (or give --admin)\n", cfg.File)
				return 1
			}
			if err := c.configure(cfg); err != nil {
				fmt.Fprintf(stderr, "sipwarden registrations: %v\n", err)
				return 1
			}
		}
		if tokenFile == "" {
			tokenFile = adminReadTokenPath(cfg)
		}
	}
	tok, _, err := admin.LoadToken(tokenFile, false)
	if err != nil {
		fmt.Fprintf(stderr, "sipwarden registrations list: %v\n", err)
		return 1
	}
	c.token = tok
	var list admin.RegistrationList
	if err := c.do(http.MethodGet, "/api/v1/registrations", nil, &list); err != nil {
		fmt.Fprintf(stderr, "sipwarden registrations list: %v\n", err)
		return 1
	}
	if format == "json" {
		return writeIndented(stdout, stderr, list)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TRUNK\tACCOUNT\tCONTACT\tSOURCE\tTRANSPORT\tEXPIRES\tUSER-AGENT")
	for _, g := range list.Registrations {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", g.Trunk, g.Account, g.Contact, g.Source, g.Transport, localTime(g.Expires), g.UserAgent)
	}
	fmt.Fprintf(tw, "(%d registrations)\n", len(list.Registrations))
	_ = tw.Flush()
	return 0
}

func newRegistrationsFlags(out io.Writer) *flag.FlagSet {
	fs := newFlagSet("registrations list", "registrations list [flags]", out)
	fs.String("config", "sipwarden.yaml", "configuration file (finds admin.listen and storage.path)")
	fs.String("admin", "", "host:port of the admin API (default: admin.listen of --config)")
	fs.String("token-file", "", "file holding the admin read token (default: storage.path/admin.read.token of --config)")
	fs.String("format", "table", "output: table or json")
	fs.Duration("timeout", 10*time.Second, "bound on the request")
	return fs
}
