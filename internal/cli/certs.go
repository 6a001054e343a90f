package cli

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const certsUsage = `Usage: sipwarden certs [flags] DIR

Writes a private test CA and the certificates the examples name into DIR
(created if missing), for trying sipwarden out and for lab phones, never
for production:

  ca.pem, ca-key.pem           the test CA (import ca.pem into a phone to trust the server)
  server.pem, server-key.pem   tls.cert and tls.key: the SIP TLS listener (names of --hosts)
  clients-ca.pem               tls.client_ca: verifies client certificates (the same CA)
  client.pem, client-key.pem   a client certificate of that CA, for a trunk with require_client_cert
  admin.pem, admin-key.pem     admin.tls.cert and admin.tls.key

The examples read certs/ beside them:

  sipwarden certs examples/certs
  sipwarden check-config examples/*.yaml

Keys are ECDSA P-256, written with mode 0600. Existing files are kept
unless --force.

Flags:
`

// CertsCommand writes a test CA and the TLS files of the examples:
// `sipwarden certs DIR`.
func CertsCommand(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("certs", "certs [flags] DIR", stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, certsUsage)
		fs.PrintDefaults()
	}
	hosts := fs.String("hosts", "localhost,127.0.0.1,::1", "comma-separated DNS names and IP addresses of the server and admin certificates")
	valid := fs.Duration("valid", 90*24*time.Hour, "validity of every certificate")
	force := fs.Bool("force", false, "overwrite existing files")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "sipwarden certs: one directory expected (sipwarden certs examples/certs)")
		return 2
	}
	if *valid <= 0 {
		fmt.Fprintln(stderr, "sipwarden certs: --valid must be positive")
		return 2
	}
	var names []string
	var ips []net.IP
	for _, h := range strings.Split(*hosts, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
		}
		// An address is a DNS name too: Linphone's TLS library (mbedTLS 2)
		// matches the host it dialled against DNS names only, never
		// against IP address entries.
		names = append(names, h)
	}
	if len(names)+len(ips) == 0 {
		fmt.Fprintln(stderr, "sipwarden certs: --hosts names no host")
		return 2
	}
	dir := fs.Arg(0)
	files, err := makeTestCerts(names, ips, time.Now(), *valid)
	if err != nil {
		fmt.Fprintf(stderr, "sipwarden certs: %v\n", err)
		return 1
	}
	if !*force {
		for _, f := range files {
			if _, err := os.Stat(filepath.Join(dir, f.name)); err == nil {
				fmt.Fprintf(stderr, "sipwarden certs: %s exists; nothing written (--force overwrites)\n", filepath.Join(dir, f.name))
				return 1
			} else if !errors.Is(err, iofs.ErrNotExist) {
				fmt.Fprintf(stderr, "sipwarden certs: %v\n", err)
				return 1
			}
		}
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		fmt.Fprintf(stderr, "sipwarden certs: %v\n", err)
		return 1
	}
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		mode := iofs.FileMode(0o644)
		if f.private {
			mode = 0o600
		}
		// Remove first: WriteFile keeps the mode of a file that exists.
		_ = os.Remove(p)
		if err := os.WriteFile(p, f.data, mode); err != nil {
			fmt.Fprintf(stderr, "sipwarden certs: %v\n", err)
			return 1
		}
		fmt.Fprintln(stdout, "wrote "+p)
	}
	fmt.Fprintf(stdout, "a test CA for %s, valid %s: never for production\n", *hosts, *valid)
	return 0
}

type certFile struct {
	name    string
	data    []byte
	private bool
}

// makeTestCerts returns the files of a test CA, a server, a client and an
// admin certificate, valid from now (a minute back, for clock skew).
func makeTestCerts(names []string, ips []net.IP, now time.Time, valid time.Duration) ([]certFile, error) {
	newKey := func() (*ecdsa.PrivateKey, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }
	serial := func() (*big.Int, error) { return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127)) }
	var files []certFile
	pemOf := func(typ string, b []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}) }
	keyPEM := func(k *ecdsa.PrivateKey) ([]byte, error) {
		b, err := x509.MarshalPKCS8PrivateKey(k)
		return pemOf("PRIVATE KEY", b), err
	}
	caKey, err := newKey()
	if err != nil {
		return nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber: sn, Subject: pkix.Name{CommonName: "sipwarden test CA", Organization: []string{"sipwarden test (not for production)"}},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(valid),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	caKeyPEM, err := keyPEM(caKey)
	if err != nil {
		return nil, err
	}
	files = append(files, certFile{"ca.pem", pemOf("CERTIFICATE", caDER), false}, certFile{"ca-key.pem", caKeyPEM, true},
		certFile{"clients-ca.pem", pemOf("CERTIFICATE", caDER), false})
	leaf := func(name, cn string, usage []x509.ExtKeyUsage, dns []string, ip []net.IP) error {
		k, err := newKey()
		if err != nil {
			return err
		}
		sn, err := serial()
		if err != nil {
			return err
		}
		tmpl := &x509.Certificate{
			SerialNumber: sn, Subject: pkix.Name{CommonName: cn, Organization: []string{"sipwarden test (not for production)"}},
			NotBefore: now.Add(-time.Minute), NotAfter: now.Add(valid),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usage, DNSNames: dns, IPAddresses: ip,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			return err
		}
		kp, err := keyPEM(k)
		if err != nil {
			return err
		}
		// The chain: the leaf, then the CA (what a TLS server sends).
		files = append(files, certFile{name + ".pem", append(pemOf("CERTIFICATE", der), pemOf("CERTIFICATE", caDER)...), false},
			certFile{name + "-key.pem", kp, true})
		return nil
	}
	cn := names[0] // the first of --hosts
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	if err := leaf("server", cn, both, names, ips); err != nil {
		return nil, err
	}
	if err := leaf("client", "sipwarden test trunk", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil); err != nil {
		return nil, err
	}
	if err := leaf("admin", cn, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, names, ips); err != nil {
		return nil, err
	}
	return files, nil
}
