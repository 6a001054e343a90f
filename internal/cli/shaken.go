package cli

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sipwarden/sipwarden/internal/shaken"
)

const shakenUsage = `Usage: sipwarden shaken <subcommand> [flags]

STIR/SHAKEN tooling (RFC 8224, 8225, 8588; ATIS-1000074).

Subcommands:
  keygen   --out FILE                  write a new P-256 signing key (mode 0600)
  testpki  DIR [--spc CODE]            create a lab STI-CA: root, intermediate, SP certificate
                                       with TNAuthList and its key (never for production)
  sign     --key K --x5u URL --orig TN --dest TN --attest A|B|C [--origid ID] [--iat N]
                                       print a full-form Identity header value
  verify   --identity VALUE|--identity-file F --trust ROOTS.pem [--cert CHAIN.pem]
           [--orig TN --dest TN] [--now N]
                                       print the verstat and the reason; exit 0 only when
                                       validation passed
  inspect  VALUE | --identity-file F | --cert FILE
                                       decode an Identity header or a certificate

Run 'sipwarden shaken <subcommand> --help' for its flags.
`

// ShakenCommand runs `sipwarden shaken ...`.
func ShakenCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, shakenUsage)
		return 2
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "keygen":
		return shakenKeygen(rest, stdout, stderr)
	case "testpki", "cert":
		return shakenTestPKI(rest, stdout, stderr)
	case "sign":
		return shakenSign(rest, stdout, stderr)
	case "verify":
		return shakenVerify(rest, stdout, stderr)
	case "inspect":
		return shakenInspect(rest, stdout, stderr)
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, shakenUsage)
		return 0
	}
	fmt.Fprintf(stderr, "sipwarden shaken: unknown subcommand %q\n\n%s", sub, shakenUsage)
	return 2
}

// writeNew writes data to path, refusing to overwrite, with mode perm.
func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func shakenKeygen(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("shaken keygen", "shaken keygen --out FILE", stderr)
	out := fs.String("out", "", "file to write the PEM private key to (created with mode 0600, never overwritten)")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if *out == "" || fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	key, err := shaken.NewKey()
	if err == nil {
		var pemKey []byte
		if pemKey, err = shaken.KeyPEM(key); err == nil {
			err = writeNew(*out, pemKey, 0o600)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "shaken keygen: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote P-256 key %s\n", *out)
	return 0
}

func shakenTestPKI(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("shaken testpki", "shaken testpki [--spc CODE] [--days N] DIR", stderr)
	spc := fs.String("spc", "1234", "Service Provider Code in the SP certificate's TNAuthList")
	days := fs.Int("days", 365, "validity of the certificates in days")
	crlURL := fs.String("crl-url", "", "CRL distribution point put in the SP certificates (serve crl.der there)")
	// accept DIR before or after the flags
	var dir string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		dir, args = args[0], args[1:]
	}
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if dir == "" && fs.NArg() == 1 {
		dir = fs.Arg(0)
	} else if fs.NArg() != 0 || dir == "" || *days <= 0 {
		fs.Usage()
		return 2
	}
	now := time.Now()
	p, err := shaken.NewTestPKI(shaken.TestPKIOptions{SPC: *spc, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Duration(*days) * 24 * time.Hour), CRLURL: *crlURL})
	var revoked *x509.Certificate
	var crl []byte
	if err == nil {
		// a second SP certificate for the same key, revoked by crl.der
		revoked, err = p.IssueLeaf(*spc, &p.LeafKey.PublicKey, func(c *x509.Certificate) {
			c.Subject.CommonName += " (revoked)"
			if *crlURL != "" {
				c.CRLDistributionPoints = []string{*crlURL}
			}
		})
	}
	if err == nil {
		crl, err = p.CRL(revoked)
	}
	if err != nil {
		fmt.Fprintf(stderr, "shaken testpki: %v\n", err)
		return 1
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintf(stderr, "shaken testpki: %v\n", err)
		return 1
	}
	files := []struct {
		name string
		data func() ([]byte, error)
		perm os.FileMode
	}{
		{"root.pem", func() ([]byte, error) { return shaken.CertPEM(p.Root), nil }, 0o644},
		{"intermediate.pem", func() ([]byte, error) { return shaken.CertPEM(p.Inter), nil }, 0o644},
		{"sp.pem", func() ([]byte, error) { return p.ChainPEM(), nil }, 0o644},
		{"sp.key", func() ([]byte, error) { return shaken.KeyPEM(p.LeafKey) }, 0o600},
		{"root.key", func() ([]byte, error) { return shaken.KeyPEM(p.RootKey) }, 0o600},
		{"intermediate.key", func() ([]byte, error) { return shaken.KeyPEM(p.InterKey) }, 0o600},
		{"revoked.pem", func() ([]byte, error) { return append(shaken.CertPEM(revoked), shaken.CertPEM(p.Inter)...), nil }, 0o644},
		{"crl.der", func() ([]byte, error) { return crl, nil }, 0o644},
	}
	for _, f := range files {
		data, err := f.data()
		if err == nil {
			err = writeNew(filepath.Join(dir, f.name), data, f.perm)
		}
		if err != nil {
			fmt.Fprintf(stderr, "shaken testpki: %v\n", err)
			return 1
		}
	}
	fmt.Fprintf(stdout, "lab STI-CA in %s (SPC %s, valid until %s):\n", dir, *spc, p.Leaf.NotAfter.UTC().Format(time.RFC3339))
	fmt.Fprintf(stdout, "  root.pem          trust anchor (verify --trust)\n")
	fmt.Fprintf(stdout, "  sp.pem            SP certificate and intermediate: publish it at the x5u URL\n")
	fmt.Fprintf(stdout, "  sp.key            signing key (sign --key)\n")
	fmt.Fprintf(stdout, "  revoked.pem       an SP certificate for the same key, revoked by crl.der\n")
	fmt.Fprintf(stdout, "  crl.der           CRL signed by the intermediate (serve it at --crl-url)\n")
	fmt.Fprintf(stdout, "  root.key, intermediate.key, intermediate.pem\n")
	return 0
}

func shakenSign(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("shaken sign", "shaken sign --key K --x5u URL --orig TN --dest TN --attest A|B|C [--origid ID] [--iat N]", stderr)
	keyPath := fs.String("key", "", "PEM P-256 private key (must not be readable by others)")
	x5u := fs.String("x5u", "", "https URL of the signing certificate")
	orig := fs.String("orig", "", "calling number (E.164, '+' and separators allowed)")
	dest := fs.String("dest", "", "called number(s), comma-separated")
	attest := fs.String("attest", "", "attestation: A, B or C")
	origID := fs.String("origid", "", "origination identifier (a UUID; default: a new random one)")
	iat := fs.Int64("iat", 0, "issued-at time in seconds since the epoch (default: now)")
	relaxed := fs.Bool("relaxed", false, "accept an x5u on any port or a private address (labs only)")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if *keyPath == "" || *x5u == "" || *orig == "" || *dest == "" || *attest == "" || fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	o, ok := shaken.CanonicalTN(*orig)
	if !ok {
		fmt.Fprintf(stderr, "shaken sign: --orig %q is not a telephone number\n", *orig)
		return 2
	}
	var dests []string
	for d := range strings.SplitSeq(*dest, ",") {
		tn, ok := shaken.CanonicalTN(strings.TrimSpace(d))
		if !ok {
			fmt.Fprintf(stderr, "shaken sign: --dest %q is not a telephone number\n", d)
			return 2
		}
		dests = append(dests, tn)
	}
	key, err := shaken.LoadSigningKey(*keyPath)
	if err != nil {
		fmt.Fprintf(stderr, "shaken sign: %v\n", err)
		return 1
	}
	s, err := shaken.NewSigner(key, *x5u, *relaxed)
	if err != nil {
		fmt.Fprintf(stderr, "shaken sign: %v\n", err)
		return 1
	}
	if *iat != 0 {
		t := time.Unix(*iat, 0)
		s.Now = func() time.Time { return t }
	}
	signed, err := s.SignCall(o, dests, strings.ToUpper(*attest), *origID, nil)
	if err != nil {
		fmt.Fprintf(stderr, "shaken sign: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, signed.Identity)
	return 0
}

// readIdentity takes the Identity value from --identity or --identity-file
// (a file holding the value, or a whole "Identity: ..." header line).
func readIdentity(value, file string) (string, error) {
	switch {
	case value != "" && file != "":
		return "", errors.New("give --identity or --identity-file, not both")
	case file != "":
		data, err := os.ReadFile(file)
		if err != nil {
			return "", err
		}
		value = string(data)
	}
	value = strings.TrimSpace(value)
	if name, v, ok := strings.Cut(value, ":"); ok && strings.EqualFold(strings.TrimSpace(name), "identity") {
		value = strings.TrimSpace(v)
	}
	if value == "" {
		return "", errors.New("no Identity value")
	}
	return value, nil
}

type verifyOutput struct {
	Verstat string `json:"verstat"`
	Code    int    `json:"code,omitempty"`
	Reason  string `json:"reason"`
	Detail  string `json:"detail,omitempty"`
	Attest  string `json:"attest,omitempty"`
	OrigID  string `json:"origid,omitempty"`
	SPC     string `json:"spc,omitempty"`
	X5U     string `json:"x5u,omitempty"`
}

func shakenVerify(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("shaken verify", "shaken verify --identity VALUE|--identity-file F --trust ROOTS.pem [--cert CHAIN.pem] [--orig TN --dest TN] [--now N]", stderr)
	value := fs.String("identity", "", "the Identity header value")
	file := fs.String("identity-file", "", "a file holding the Identity header value")
	trust := fs.String("trust", "", "PEM bundle of STI-CA trust anchors")
	certFile := fs.String("cert", "", "PEM certificate chain to use instead of fetching the x5u")
	orig := fs.String("orig", "", "the call's calling number (default: trust the PASSporT's orig)")
	dest := fs.String("dest", "", "the call's called number (default: trust the PASSporT's dest)")
	nowFlag := fs.Int64("now", 0, "verify as if the time were N seconds since the epoch (default: now)")
	maxAge := fs.Duration("max-age", 60*time.Second, "how old the iat may be")
	relaxed := fs.Bool("relaxed", false, "fetch an x5u on any port or a private address (labs only)")
	crlMode := fs.String("crl", "soft", "revocation check: off, soft (ignore a CRL that cannot be fetched) or hard")
	format := fs.String("format", "text", "output: text or json")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if *trust == "" || fs.NArg() != 0 || (*format != "text" && *format != "json") {
		fs.Usage()
		return 2
	}
	val, err := readIdentity(*value, *file)
	if err != nil {
		fmt.Fprintf(stderr, "shaken verify: %v\n", err)
		return 2
	}
	roots, err := shaken.LoadTrustAnchors(*trust)
	if err != nil {
		fmt.Fprintf(stderr, "shaken verify: %v\n", err)
		return 1
	}
	now := time.Now
	if *nowFlag != 0 {
		t := time.Unix(*nowFlag, 0)
		now = func() time.Time { return t }
	}
	cache := shaken.NewCache(shaken.CacheConfig{Relaxed: *relaxed, Now: now})
	defer cache.Close()
	var certs shaken.CertSource = cache
	if *certFile != "" {
		data, err := os.ReadFile(*certFile)
		if err == nil {
			var cs []*x509.Certificate
			if cs, err = shaken.ParseCertificates(data); err == nil {
				certs = shaken.StaticCerts{Entry: &shaken.CertEntry{Certs: cs}}
			}
		}
		if err != nil {
			fmt.Fprintf(stderr, "shaken verify: --cert %s: %v\n", *certFile, err)
			return 1
		}
	}
	v, err := shaken.NewVerifier(shaken.VerifierConfig{Roots: roots, Certs: certs, CRLs: cache, CRL: *crlMode, Now: now, MaxAge: *maxAge, Budget: 10 * time.Second})
	if err != nil {
		fmt.Fprintf(stderr, "shaken verify: %v\n", err)
		return 2
	}
	var call shaken.Call
	if *orig != "" || *dest != "" {
		o, ok1 := shaken.CanonicalTN(*orig)
		d, ok2 := shaken.CanonicalTN(*dest)
		if !ok1 || !ok2 {
			fmt.Fprintln(stderr, "shaken verify: --orig and --dest go together and must be telephone numbers")
			return 2
		}
		call = shaken.Call{Orig: []string{o}, Dest: []string{d}}
	} else {
		// no call to compare with: take the numbers from the PASSporT itself
		if id, err := shaken.ParseIdentity([]byte(val)); err == nil {
			if p, err := shaken.ParsePASSporT(id.Token); err == nil {
				call.Orig = []string{p.Claims.Orig}
				for _, d := range p.Claims.Dest {
					if tn, ok := shaken.CanonicalTN(d); ok {
						call.Dest = append(call.Dest, tn)
					}
				}
				if tn, ok := shaken.CanonicalTN(p.Claims.Orig); ok {
					call.Orig = []string{tn}
				}
			}
		}
	}
	var vals [][]byte
	shaken.SplitIdentities([]byte(val), func(b []byte) bool { vals = append(vals, b); return len(vals) < shaken.MaxIdentities })
	r := v.Verify(vals, call)
	out := verifyOutput{Verstat: r.Verstat, Code: r.Code, Reason: r.Reason, Attest: r.Attest, OrigID: r.OrigID, SPC: r.SPC, X5U: r.X5U}
	if r.Err != nil {
		out.Detail = r.Err.Error()
	}
	if *format == "json" {
		b, _ := json.Marshal(out)
		fmt.Fprintln(stdout, string(b))
	} else {
		fmt.Fprintf(stdout, "verstat=%s reason=%s", out.Verstat, out.Reason)
		if out.Code != 0 {
			fmt.Fprintf(stdout, " code=%d", out.Code)
		}
		if out.Attest != "" {
			fmt.Fprintf(stdout, " attest=%s", out.Attest)
		}
		if out.SPC != "" {
			fmt.Fprintf(stdout, " spc=%s", out.SPC)
		}
		fmt.Fprintln(stdout)
		if out.Detail != "" {
			fmt.Fprintf(stdout, "detail: %s\n", out.Detail)
		}
	}
	if r.Passed() {
		return 0
	}
	return 1
}

func shakenInspect(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("shaken inspect", "shaken inspect VALUE | --identity-file F | --cert FILE", stderr)
	file := fs.String("identity-file", "", "a file holding the Identity header value")
	certFile := fs.String("cert", "", "a PEM or DER certificate (chain) to decode")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if *certFile != "" {
		if fs.NArg() != 0 || *file != "" {
			fs.Usage()
			return 2
		}
		return inspectCert(*certFile, stdout, stderr)
	}
	value := ""
	if fs.NArg() == 1 {
		value = fs.Arg(0)
	} else if fs.NArg() > 1 {
		fs.Usage()
		return 2
	}
	val, err := readIdentity(value, *file)
	if err != nil {
		fmt.Fprintf(stderr, "shaken inspect: %v\n", err)
		return 2
	}
	code := 0
	n := 0
	shaken.SplitIdentities([]byte(val), func(b []byte) bool {
		n++
		fmt.Fprintf(stdout, "identity %d:\n", n)
		id, err := shaken.ParseIdentity(b)
		if err != nil {
			fmt.Fprintf(stdout, "  error: %v\n", err)
			code = 1
			return true
		}
		fmt.Fprintf(stdout, "  info=%s alg=%s ppt=%s\n", id.Info, id.Alg, id.PPT)
		p, err := shaken.ParsePASSporT(id.Token)
		if p != nil {
			fmt.Fprintf(stdout, "  header: %s\n", p.HeaderJSON)
			if p.ClaimsJSON != nil {
				fmt.Fprintf(stdout, "  claims: %s\n", p.ClaimsJSON)
			}
		}
		if err != nil {
			fmt.Fprintf(stdout, "  error: %v\n", err)
			code = 1
			return true
		}
		fmt.Fprintf(stdout, "  attest=%s orig=%s dest=%s origid=%s\n", p.Claims.Attest, p.Claims.Orig, strings.Join(p.Claims.Dest, ","), p.Claims.OrigID)
		fmt.Fprintf(stdout, "  iat=%d (%s)\n", p.Claims.IAT, time.Unix(p.Claims.IAT, 0).UTC().Format(time.RFC3339))
		return true
	})
	return code
}

func inspectCert(path string, stdout, stderr io.Writer) int {
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(stderr, "shaken inspect: %v\n", err)
		return 1
	}
	certs, err := shaken.ParseCertificates(data)
	if err != nil {
		fmt.Fprintf(stderr, "shaken inspect: %s: %v\n", path, err)
		return 1
	}
	for i, c := range certs {
		fmt.Fprintf(stdout, "certificate %d:\n  subject: %s\n  issuer:  %s\n  valid:   %s to %s\n  ca:      %v\n",
			i+1, c.Subject, c.Issuer, c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), c.IsCA)
		if tl, err := shaken.CertTNAuthList(c); err == nil {
			fmt.Fprintf(stdout, "  spc:     %s\n", tl.SPC)
		} else if !c.IsCA {
			fmt.Fprintf(stdout, "  tnauthlist: %v\n", err)
		}
		if len(c.CRLDistributionPoints) > 0 {
			fmt.Fprintf(stdout, "  crl:     %s\n", strings.Join(c.CRLDistributionPoints, " "))
		}
	}
	return 0
}
