package shaken

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/testenv"
)

// secsipidx returns the path of the reference tool (Debian package
// secsipidx, from github.com/asipto/secsipidx). Locally a missing tool skips
// the interop tests; in CI (CI=true) it is a failure: .ci/run installs it.
func secsipidx(t *testing.T) string {
	t.Helper()
	return testenv.Tool(t, "secsipidx", "secsipidx")
}

// runTool runs secsipidx with args (and extra environment), bounded in time.
func runTool(t *testing.T, bin string, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return strings.TrimSpace(out.String()), err
}

// interopLab is a lab whose files secsipidx can read: the STI root, the SP
// key, and the certificate of the HTTPS server publishing the x5u (given to
// secsipidx as its system roots through SSL_CERT_FILE).
type interopLab struct {
	*lab
	dir, root, key, chain string
	env                   []string
}

func newInteropLab(t *testing.T) *interopLab {
	l := &interopLab{lab: newLab(t), dir: t.TempDir()}
	// secsipidx checks iat against its own clock: use the real time
	l.clk.ns.Store(time.Now().UnixNano())
	write := func(name string, data []byte) string {
		p := filepath.Join(l.dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	l.root = write("root.pem", CertPEM(l.pki.Root))
	keyPEM, err := KeyPEM(l.pki.LeafKey)
	if err != nil {
		t.Fatal(err)
	}
	l.key = write("sp.key", keyPEM)
	l.chain = write("sp.pem", l.pki.ChainPEM())
	l.env = []string{"SSL_CERT_FILE=" + write("https.pem", CertPEM(l.srv.Certificate())), "SSL_CERT_DIR=" + l.dir}
	return l
}

// secsipidx -check (given the x5u URL as its -fpubkey) fetches the certificate over HTTPS, verifies the chain to our test
// root (cert-verify 5: validity and custom CA) and the signature.
func TestInteropSecsipidxVerifiesOurs(t *testing.T) {
	bin := secsipidx(t)
	l := newInteropLab(t)
	s, err := NewSigner(l.pki.LeafKey, l.x5u, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, attest := range []string{AttestA, AttestB, AttestC} {
		sg, err := s.SignCall("15551230001", []string{"15559870002"}, attest, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		out, err := runTool(t, bin, l.env, "-check", "-identity", sg.Identity, "-fpubkey", l.x5u, "-cert-verify", "5", "-ca-file", l.root, "-expire", "60", "-timeout", "5")
		if err != nil || !strings.HasSuffix(out, "ok") || strings.HasSuffix(out, "not-ok") {
			t.Fatalf("secsipidx -check of our attest %s identity: %v\n%s\nidentity: %s", attest, err, out, sg.Identity)
		}
	}
	if n := l.srv.hits.Load(); n < 3 {
		t.Fatalf("secsipidx fetched the x5u %d times, want 3", n)
	}
	// the check is meaningful: a tampered signature and an untrusted root fail
	sg, _ := s.SignCall("15551230001", []string{"15559870002"}, AttestA, "", nil)
	tok, params, _ := strings.Cut(sg.Identity, ";")
	tampered := tok[:len(tok)-2] + flip(tok[len(tok)-2]) + tok[len(tok)-1:] + ";" + params
	if out, err := runTool(t, bin, l.env, "-check", "-identity", tampered, "-fpubkey", l.x5u, "-cert-verify", "5", "-ca-file", l.root, "-expire", "60"); err == nil {
		t.Fatalf("secsipidx accepted a tampered identity: %s", out)
	}
	other := newPKI(t)
	otherRoot := filepath.Join(l.dir, "other-root.pem")
	if err := os.WriteFile(otherRoot, CertPEM(other.Root), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := runTool(t, bin, l.env, "-check", "-identity", sg.Identity, "-fpubkey", l.x5u, "-cert-verify", "5", "-ca-file", otherRoot, "-expire", "60"); err == nil {
		t.Fatalf("secsipidx accepted our identity against another root: %s", out)
	}
	// and with the chain given as a file instead of the x5u fetch
	if out, err := runTool(t, bin, nil, "-check", "-identity", sg.Identity, "-fpubkey", l.chain, "-cert-verify", "5", "-ca-file", l.root, "-expire", "60"); err != nil {
		t.Fatalf("secsipidx -check -fpubkey: %v\n%s", err, out)
	}
}

func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

// What secsipidx -sign-full produces verifies here as TN-Validation-Passed.
func TestInteropWeVerifySecsipidx(t *testing.T) {
	bin := secsipidx(t)
	l := newInteropLab(t)
	out, err := runTool(t, bin, nil, "-sign-full", "-k", l.key, "-x5u", l.x5u, "-o", "15551230001", "-d", "15559870002",
		"-a", "A", "-orig-id", "123e4567-e89b-12d3-a456-426655440000")
	if err != nil {
		t.Fatalf("secsipidx -sign-full: %v\n%s", err, out)
	}
	r := l.v.VerifyMsg(invite(t, out))
	if !r.Passed() || r.Attest != "A" || r.SPC != "709J" {
		t.Fatalf("secsipidx identity %q: %+v", out, r)
	}
	// a different called number: the same token fails as dest_mismatch
	if r := l.v.VerifyMsg(inviteFrom(t, "<sip:+15551230001@a>;tag=1", "<sip:+15559870009@b>", "sip:+15559870009@b", "", out)); r.Reason != ReasonDestMismatch {
		t.Fatalf("secsipidx identity to another number: %+v", r)
	}
}

// secsipidx -sign with JSON given as text signs those exact bytes: keys out
// of order and white space. The signature is valid, so we accept it.
func TestInteropNonCanonicalFromSecsipidx(t *testing.T) {
	bin := secsipidx(t)
	l := newInteropLab(t)
	hdr := `{ "x5u": "` + l.x5u + `", "typ": "passport", "ppt": "shaken", "alg": "ES256" }`
	payload := `{ "origid": "123e4567-e89b-12d3-a456-426655440000", "orig": { "tn": "15551230001" }, "iat": ` +
		itoa(time.Now().Unix()) + `, "dest": { "tn": [ "15559870002" ] }, "attest": "B" }`
	tok, err := runTool(t, bin, nil, "-sign", "-k", l.key, "-header", hdr, "-payload", payload)
	if err != nil || strings.Count(tok, ".") != 2 {
		t.Fatalf("secsipidx -sign: %v\n%s", err, tok)
	}
	p, err := ParsePASSporT([]byte(tok))
	if err != nil {
		t.Fatal(err)
	}
	if string(p.HeaderJSON) != hdr {
		t.Fatalf("secsipidx re-serialised the header: %s", p.HeaderJSON)
	}
	r := l.v.VerifyMsg(invite(t, tok+";info=<"+l.x5u+">;alg=ES256;ppt=\"shaken\""))
	if !r.Passed() || r.Attest != "B" {
		t.Fatalf("non-canonical secsipidx token: %+v", r)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
