package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/sipwarden/sipwarden/internal/auth"
	"github.com/sipwarden/sipwarden/internal/config"
)

// maxPasswordLen bounds what passwd reads.
const maxPasswordLen = 1024

// PasswdCommand reads a password, enforces the credential policy and prints
// the account entry of a digest trunk with its HA1 values:
//
//	sipwarden passwd --realm sip.example.com --username 1001 < secret.txt
//
// The password comes from stdin: typed twice without echo on a terminal,
// else the first line. It is never printed; a refusal names the rule only.
func PasswdCommand(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("passwd", "passwd --realm REALM --username USER [flags] (password on stdin)", stderr)
	realm := fs.String("realm", "", "realm of the trunk (required unless --config and --trunk give it)")
	user := fs.String("username", "", "digest username (required)")
	algs := fs.String("algorithms", "SHA-512-256,SHA-256,MD5", "comma-separated algorithms to print HA1 for")
	shaOnly := fs.Bool("sha-only", false, "mark the account SHA-only (no MD5 HA1, MD5 never offered)")
	regFrom := fs.String("register-from", "", "comma-separated prefixes the account may REGISTER from")
	cfgFile := fs.String("config", "", "take the credential policy (auth.policy) and, with --trunk, the realm and algorithms from this file")
	trunk := fs.String("trunk", "", "digest trunk of --config whose realm and algorithms to use")
	format := fs.String("format", "yaml", "output: yaml (an entry for trunks[].accounts) or json")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	policy := auth.DefaultPolicy
	offer := *algs
	if *cfgFile != "" {
		cfg, err := config.Load(*cfgFile)
		if err != nil {
			printConfigError(stderr, *cfgFile, err)
			return 1
		}
		p := cfg.Auth.Policy
		policy = auth.Policy{MinLength: p.MinLength, MinClasses: p.MinClasses, RejectCommon: p.RejectCommon}
		if p.ExtraFile != "" && p.RejectCommon {
			f, err := os.Open(p.ExtraFile)
			if err == nil {
				policy.Extra, err = auth.ParseList(f)
				_ = f.Close()
			}
			if err != nil {
				fmt.Fprintf(stderr, "passwd: auth.policy.extra_file: %v\n", err)
				return 1
			}
		}
		if *trunk != "" {
			t := cfg.Trunk(*trunk)
			if t == nil || t.Auth != config.AuthDigest {
				fmt.Fprintf(stderr, "passwd: %s has no digest trunk named %q\n", *cfgFile, *trunk)
				return 1
			}
			if *realm == "" {
				*realm = t.Digest.Realm
			}
			offer = strings.Join(t.Digest.Algorithms, ",")
		}
	} else if *trunk != "" {
		fmt.Fprintln(stderr, "passwd: --trunk needs --config")
		return 2
	}
	if *realm == "" || *user == "" {
		fmt.Fprintln(stderr, "passwd: --realm and --username are required")
		fs.Usage()
		return 2
	}
	if strings.ContainsAny(*realm, "\"\\\r\n") || strings.ContainsAny(*user, "\"\\\r\n\x00") || len(*user) > 128 {
		fmt.Fprintln(stderr, "passwd: realm and username must not hold quotes, backslashes or line breaks (username: at most 128 bytes)")
		return 2
	}
	var list []auth.Algorithm
	for _, name := range strings.Split(offer, ",") {
		a := auth.ParseAlgorithm([]byte(strings.TrimSpace(name)))
		if a == auth.AlgUnknown {
			fmt.Fprintf(stderr, "passwd: unknown algorithm %q (use SHA-512-256, SHA-256, MD5)\n", name)
			return 2
		}
		if a == auth.MD5 && *shaOnly {
			continue
		}
		list = append(list, a)
	}
	var prefixes []string
	for _, s := range strings.Split(*regFrom, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		pf, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				fmt.Fprintf(stderr, "passwd: --register-from: %q is not an address or prefix\n", s)
				return 2
			}
			pf = netip.PrefixFrom(a, a.BitLen())
		}
		prefixes = append(prefixes, pf.Masked().String())
	}

	password, err := readPassword(stdin, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "passwd: %v\n", err)
		return 1
	}
	if err := policy.Check(*user, password); err != nil {
		fmt.Fprintf(stderr, "passwd: %v\n", err)
		return 1
	}
	ha1 := map[string]string{}
	for _, a := range list {
		ha1[a.Key()] = auth.HA1(a, *user, *realm, password)
	}
	switch *format {
	case "json":
		out := struct {
			Username     string            `json:"username"`
			HA1          map[string]string `json:"ha1"`
			SHAOnly      bool              `json:"sha_only,omitempty"`
			RegisterFrom []string          `json:"register_from,omitempty"`
		}{*user, ha1, *shaOnly, prefixes}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
	case "yaml":
		fmt.Fprintf(stdout, "# account of realm %q: add under trunks[].accounts of the digest trunk\n", *realm)
		fmt.Fprintf(stdout, "- username: %q\n  ha1:\n", *user)
		for _, a := range list {
			fmt.Fprintf(stdout, "    %s: %s\n", a.Key(), ha1[a.Key()])
		}
		if *shaOnly {
			fmt.Fprintln(stdout, "  sha_only: true")
		}
		if len(prefixes) > 0 {
			fmt.Fprintf(stdout, "  register_from: [%s]\n", strings.Join(prefixes, ", "))
		}
	default:
		fmt.Fprintf(stderr, "passwd: --format must be yaml or json, got %q\n", *format)
		return 2
	}
	return 0
}

// readPassword reads the password: from a terminal, twice without echo;
// otherwise the first line of stdin (without its line end).
func readPassword(stdin io.Reader, prompt io.Writer) (string, error) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(prompt, "Password: ")
		a, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		fmt.Fprint(prompt, "Again: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		if string(a) != string(b) {
			return "", errors.New("the two passwords differ")
		}
		return string(a), nil
	}
	r := bufio.NewReaderSize(io.LimitReader(stdin, maxPasswordLen+2), maxPasswordLen+2)
	line, err := r.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if len(line) > maxPasswordLen {
		return "", fmt.Errorf("the password is longer than %d bytes", maxPasswordLen)
	}
	if line == "" {
		return "", errors.New("no password on stdin")
	}
	return line, nil
}
