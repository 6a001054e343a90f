// Package cli implements sipwarden's subcommands. Each returns an exit code:
// 0 ok, 1 failure, 2 usage error.
package cli

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
)

const usage = `sipwarden — a SIP security edge

Usage:
  sipwarden <command> [flags]

Commands:
  serve         run the edge proxy (sipwarden serve --config FILE)
  check-config  validate a configuration file and print every problem
  chain         print the effective security chain of a configuration
  cdr           list or export call detail records
  ban           add, remove or list bans
  incidents     list or release toll-fraud incidents (through the admin API)
  registrations list the phones registered to sipwarden's registrar (through the admin API)
  passwd        check a password against the policy and print a digest account entry (HA1 values)
  firewall      print an nftables ruleset for the SIP ports (firewall nft)
  certs         write a private test CA and the TLS files the examples name (sipwarden certs examples/certs)
  shaken        STIR/SHAKEN tools: keygen, testpki, sign, verify, inspect
  fraudsim      replay synthetic traffic and attacks through the toll-fraud engine
  fraud         toll-fraud tools: learn (baselines from CDR history)
  audit         judge a configuration (audit config) or probe your own SIP endpoint (audit probe)
  version       print the version

Run 'sipwarden <command> --help' for a command's flags.
`

// Main runs the command line args and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return Serve(rest, stdout, stderr)
	case "check-config":
		return CheckConfig(rest, stdout, stderr)
	case "chain":
		return ChainCommand(rest, stdout, stderr)
	case "cdr":
		return CDRCommand(rest, stdout, stderr)
	case "ban":
		return BanCommand(rest, stdout, stderr)
	case "incidents":
		return IncidentsCommand(rest, stdout, stderr)
	case "registrations":
		return RegistrationsCommand(rest, stdout, stderr)
	case "passwd":
		return PasswdCommand(rest, os.Stdin, stdout, stderr)
	case "firewall":
		return FirewallCommand(rest, stdout, stderr)
	case "certs":
		return CertsCommand(rest, stdout, stderr)
	case "shaken":
		return ShakenCommand(rest, stdout, stderr)
	case "fraudsim":
		return FraudsimCommand(rest, stdout, stderr)
	case "fraud":
		return FraudCommand(rest, stdout, stderr)
	case "audit":
		return AuditCommand(rest, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "sipwarden %s\n", Version())
		return 0
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "sipwarden: unknown command %q\n\n%s", cmd, usage)
	return 2
}

// version and commit are stamped at build time by `make build`
// (-ldflags "-X .../internal/cli.version=... -X .../internal/cli.commit=...");
// without them Version reads what the Go toolchain recorded.
var version, commit string

// Version names the build: the stamped version, else the module version
// (go install module@v1.2.3), else "devel"; followed by the commit, stamped
// or recorded by go build in a git checkout (vcs.revision, "+dirty" when
// the tree had changes): "devel (commit 0ff07ea1c2d3+dirty)".
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	return versionOf(version, commit, bi, ok)
}

func versionOf(version, commit string, bi *debug.BuildInfo, ok bool) string {
	v := version
	if v == "" && ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	if v == "" {
		v = "devel"
	}
	c := commit
	if c == "" && ok {
		dirty := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				c = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if len(c) > 12 {
			c = c[:12]
		}
		if c != "" && dirty {
			c += "+dirty"
		}
	}
	if c == "" || strings.Contains(v, c) {
		return v
	}
	return v + " (commit " + c + ")"
}

// newFlagSet returns a flag set that reports usage errors as exit code 2.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: sipwarden %s\n", synopsis)
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 { // no empty heading for a command without flags
			fmt.Fprint(stderr, "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseFlags parses args; it returns -1 to go on, or the exit code.
// Flags may come before or after the positional arguments
// (`sipwarden ban add 192.0.2.1 --for 1h`); fs.Args() holds the positional ones.
func parseFlags(fs *flag.FlagSet, args []string) int {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if err == flag.ErrHelp {
				return 0
			}
			return 2
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
	_ = fs.Parse(append([]string{"--"}, positional...))
	return -1
}
