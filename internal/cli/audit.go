package cli

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/sipwarden/sipwarden/internal/audit"
)

const auditUsage = `Usage:
  sipwarden audit config FILE [--format table|json|html]
  sipwarden audit probe sip:HOST[:PORT] --i-own-this [flags]

config judges a configuration file offline: every trunk and account against
the customer's half of a carrier's security guide (firewalling, credentials,
TLS and SRTP, international dialling and spend, monitoring, admin, identity),
each finding with its file:line:key, why it matters and a fix.

probe sends a bounded number of SIP requests (UDP, and a TLS handshake on
5061) to an endpoint YOU OWN and reports what an attacker would learn: whether
it answers strangers and names its software, whether extensions can be
enumerated, whether it relays an unauthenticated call abroad (cancelled at
once), whether it challenges with MD5 only, and how its TLS stands. It refuses
to run without --i-own-this. Run it from an address that is no configured peer.

The exit status is 1 when a high-severity finding exists, 0 otherwise, and 2
on usage errors. docs/audit.md describes every check.
`

// AuditCommand is `sipwarden audit config|probe`.
func AuditCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, auditUsage)
		return 2
	}
	switch args[0] {
	case "config":
		return auditConfig(args[1:], stdout, stderr)
	case "probe":
		return auditProbe(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, auditUsage)
		return 0
	}
	fmt.Fprintf(stderr, "sipwarden audit: unknown subcommand %q\n\n%s", args[0], auditUsage)
	return 2
}

func validFormat(f string) bool { return f == "table" || f == "json" || f == "html" }

func writeAuditReport(r *audit.Report, format string, stdout, stderr io.Writer) int {
	var err error
	switch format {
	case "json":
		var b []byte
		if b, err = r.JSON(); err == nil {
			_, err = fmt.Fprintf(stdout, "%s\n", b)
		}
	case "html":
		err = r.WriteHTML(stdout)
	default:
		err = r.WriteTable(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "sipwarden audit: %v\n", err)
		return 1
	}
	if r.HasHigh() {
		return 1
	}
	return 0
}

func auditConfig(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("audit config", "audit config FILE [--format table|json|html]", stderr)
	format := fs.String("format", "table", "output: table, json or html")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if fs.NArg() != 1 || !validFormat(*format) {
		fs.Usage()
		return 2
	}
	r, err := audit.ConfigFile(fs.Arg(0))
	if err != nil {
		fmt.Fprintln(stderr, "sipwarden audit: the configuration does not load (check-config says the same):")
		printConfigError(stderr, fs.Arg(0), err)
		return 1
	}
	return writeAuditReport(r, *format, stdout, stderr)
}

func auditProbe(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("audit probe", "audit probe sip:HOST[:PORT] --i-own-this [flags]", stderr)
	owned := fs.Bool("i-own-this", false, "confirm that you own or are authorised to test the target (required)")
	format := fs.String("format", "table", "output: table, json or html")
	rate := fs.Float64("rate", 10, "most messages per second")
	maxMsgs := fs.Int("max-messages", 60, "most messages (and TLS connections) in all")
	timeout := fs.Duration("timeout", 2*time.Second, "wait for a final answer")
	tlsPort := fs.Int("tls-port", 5061, "port of the TLS check (-1: skip it)")
	caFile := fs.String("ca", "", "PEM bundle that verifies the TLS certificate (default: the system roots)")
	serverName := fs.String("server-name", "", "name the TLS certificate must carry (default: the host)")
	exts := fs.String("extensions", strings.Join(audit.DefaultExtensions, ","), "users tried for enumeration, comma-separated")
	source := fs.String("source", "", "local address to send from (pick one that is no configured peer)")
	number := fs.String("number", "+442079460000", "international number of the open-relay check")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if fs.NArg() != 1 || !validFormat(*format) || *rate <= 0 || *rate > 100 || *maxMsgs < 1 || *maxMsgs > 1000 {
		fs.Usage()
		return 2
	}
	if !*owned {
		fmt.Fprintln(stderr, "sipwarden audit probe: refusing to probe without --i-own-this: probe only endpoints you own or are authorised to test.")
		return 2
	}
	if _, _, err := audit.ParseTarget(fs.Arg(0)); err != nil {
		fmt.Fprintf(stderr, "sipwarden audit probe: %v\n", err)
		return 2
	}
	opt := audit.ProbeOptions{Target: fs.Arg(0), TLSPort: *tlsPort, ServerName: *serverName, Rate: *rate,
		MaxMessages: *maxMsgs, Timeout: *timeout, Number: *number, Source: *source, Extensions: []string{}}
	for _, e := range strings.Split(*exts, ",") {
		if e = strings.TrimSpace(e); e != "" {
			opt.Extensions = append(opt.Extensions, e)
		}
	}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			fmt.Fprintf(stderr, "sipwarden audit probe: --ca: %v\n", err)
			return 2
		}
		opt.RootCAs = x509.NewCertPool()
		if !opt.RootCAs.AppendCertsFromPEM(pem) {
			fmt.Fprintf(stderr, "sipwarden audit probe: --ca: no certificate in %s\n", *caFile)
			return 2
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	r, err := audit.Probe(ctx, opt)
	if err != nil {
		fmt.Fprintf(stderr, "sipwarden audit probe: %v\n", err)
		return 1
	}
	return writeAuditReport(r, *format, stdout, stderr)
}
