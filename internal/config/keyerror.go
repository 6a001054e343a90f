package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// KeyError is a problem with the value of one key that a stage finds when
// it builds itself from a valid Config (a key file that is not a P-256
// key, a rate deck with a bad row). Stage constructors return one (with At)
// so that Config.Locate can place it at the key's file, line and column.
type KeyError struct {
	Key string // dotted path: shaken.signers[0].key
	Err error  // what is wrong, and what would be valid
}

func (e *KeyError) Error() string { return e.Key + ": " + e.Err.Error() }

func (e *KeyError) Unwrap() error { return e.Err }

// At returns err as the error of the value at key (a dotted path such as
// "trunks[2].fraud.rules[0]"). A nil err stays nil.
func At(key string, err error) error {
	if err == nil {
		return nil
	}
	return &KeyError{Key: key, Err: err}
}

// Atf is At with a formatted message.
func Atf(key, format string, args ...any) error {
	return &KeyError{Key: key, Err: fmt.Errorf(format, args...)}
}

// Locate turns an error of a stage's constructor into Errors of c's file:
// each KeyError (and each Error without a line) gets its key's line and
// column; any other error is reported against the file, prefixed by stage.
func (c *Config) Locate(stage string, err error) error {
	if err == nil {
		return nil
	}
	var out Errors
	var walk func(err error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok { //nolint:errorlint // a joined error's parts
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		var es Errors
		var e *Error
		var ke *KeyError
		switch {
		case errors.As(err, &es):
			for _, e := range es {
				out = append(out, c.place(e))
			}
		case errors.As(err, &e):
			out = append(out, c.place(e))
		case errors.As(err, &ke):
			out = append(out, c.place(&Error{Key: ke.Key, Msg: ke.Err.Error()}))
		default:
			out = append(out, &Error{File: c.File, Key: stage, Msg: err.Error()})
		}
	}
	walk(err)
	return out
}

// place fills in e's file, line and column from its key.
func (c *Config) place(e *Error) *Error {
	ec := *e
	if ec.File == "" {
		ec.File = c.File
	}
	if ec.Line == 0 && ec.Key != "" && c.root != nil {
		if n := lookup(c.root, ParseKey(ec.Key)); n != nil {
			ec.Line, ec.Column = n.Line, n.Column
		}
	} else if ec.Column == 0 && ec.Key != "" && c.root != nil {
		if n := lookup(c.root, ParseKey(ec.Key)); n != nil && n.Line == ec.Line {
			ec.Column = n.Column
		}
	}
	return &ec
}

// ParseKey splits a dotted key ("trunks[2].limits.cps") into the path
// validators use ("trunks", 2, "limits", "cps").
func ParseKey(key string) []any {
	var path []any
	for _, part := range strings.Split(key, ".") {
		name, rest, _ := strings.Cut(part, "[")
		if name != "" {
			path = append(path, name)
		}
		for rest != "" {
			num, after, _ := strings.Cut(rest, "]")
			if i, err := strconv.Atoi(num); err == nil {
				path = append(path, i)
			}
			_, rest, _ = strings.Cut(after, "[")
		}
	}
	return path
}

// CheckFiles verifies that every file the configuration names can be read
// and holds what serve will look for (a certificate and its key, CA
// certificates, a secret), so check-config refuses what serve would: each
// problem is an error at the key's line and column.
func (c *Config) CheckFiles() error {
	var es Errors
	fail := func(path []any, format string, args ...any) {
		es = append(es, c.place(&Error{Key: keyString(path), Msg: fmt.Sprintf(format, args...)}))
	}
	// check reports a missing or unreadable file and says whether it can be read.
	check := func(path []any, file string) bool {
		if file == "" {
			return false
		}
		if err := readable(file); err != nil {
			fail(path, "%v: give the path of a readable file (relative to the configuration file)", err)
			return false
		}
		return true
	}
	pair := func(base []any, cert, key string) {
		certOK, keyOK := check(at(base, "cert"), cert), check(at(base, "key"), key)
		if certOK && keyOK {
			if _, err := tls.LoadX509KeyPair(cert, key); err != nil {
				fail(at(base, "cert"), "%s and %s are not a certificate and its private key (%v): give a PEM certificate chain in cert and its PEM private key in key", cert, key, err)
			}
		}
	}
	cas := func(path []any, file string) {
		if !check(path, file) {
			return
		}
		if b, err := os.ReadFile(file); err == nil && !x509.NewCertPool().AppendCertsFromPEM(b) {
			fail(path, "%s holds no PEM certificate: give a file of PEM CA certificates (-----BEGIN CERTIFICATE-----)", file)
		}
	}
	secret := func(path []any, file string) {
		if !check(path, file) {
			return
		}
		if b, err := os.ReadFile(file); err == nil && strings.TrimSpace(string(b)) == "" {
			fail(path, "%s is empty: write the secret in it (one line)", file)
		}
	}
	pair(p("tls"), c.TLS.Cert, c.TLS.Key)
	cas(p("tls", "client_ca"), c.TLS.ClientCA)
	cas(p("tls", "upstream_ca"), c.TLS.UpstreamCA)
	pair(p("admin", "tls"), c.Admin.TLS.Cert, c.Admin.TLS.Key)
	check(p("geoip", "country_db"), c.GeoIP.CountryDB)
	for i, w := range c.Notify.Webhooks {
		secret(p("notify", "webhooks", i, "secret_file"), w.SecretFile)
	}
	if e := c.Notify.Email; e != nil {
		secret(p("notify", "email", "password_file"), e.PasswordFile)
		cas(p("notify", "email", "ca_file"), e.CAFile)
	}
	check(p("auth", "policy", "extra_file"), c.Auth.Policy.ExtraFile)
	check(p("fraud", "rate_deck"), c.Fraud.RateDeck)
	for i, f := range c.Bans.Feeds {
		check(p("bans", "feeds", i, "file"), f.File)
	}
	cas(p("shaken", "trust_anchors"), c.Shaken.TrustAnchors)
	for i, s := range c.Shaken.Signers {
		check(p("shaken", "signers", i, "key"), s.Key)
	}
	if len(es) > 0 {
		return es
	}
	return nil
}

// readable opens file for reading: missing, unreadable and a directory are errors.
func readable(file string) error {
	f, err := os.Open(file)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return fmt.Errorf("cannot read %s: %w", file, pe.Err)
		}
		return fmt.Errorf("cannot read %s: %w", file, err)
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", file, err)
	}
	if fi.IsDir() {
		return fmt.Errorf("%s is a directory, not a file", file)
	}
	return nil
}

// FirstKey returns the first of keys that the file holds (the last one if
// none): a stage names the section a value came from, e.g. a trunk's own
// fraud section or else fraud.default.
func (c *Config) FirstKey(keys ...string) string {
	for _, k := range keys {
		if c.root != nil && lookupExact(c.root, ParseKey(k)) != nil {
			return k
		}
	}
	return keys[len(keys)-1]
}

// lookupExact is lookup that returns nil unless the whole path exists.
func lookupExact(root *yaml.Node, path []any) *yaml.Node {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, part := range path {
		for n != nil && n.Kind == yaml.AliasNode {
			n = n.Alias
		}
		if n == nil {
			return nil
		}
		switch x := part.(type) {
		case string:
			if n.Kind != yaml.MappingNode {
				return nil
			}
			var next *yaml.Node
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == x {
					next = n.Content[i+1]
				}
			}
			n = next
		case int:
			if n.Kind != yaml.SequenceNode || x >= len(n.Content) {
				return nil
			}
			n = n.Content[x]
		}
	}
	return n
}

// Node returns the YAML node of the value at key (a dotted path such as
// "fraud" or "trunks[0].media"), or nil if the file does not give it: a
// stage that reads a section of its own decodes and checks it with
// c.NewValidator(), so its errors carry the file's lines.
func (c *Config) Node(key string) *yaml.Node {
	if c.root == nil {
		return nil
	}
	return lookupExact(c.root, ParseKey(key))
}

// NewValidator returns a validator of c's file, for a stage to decode and
// check a section of its own (Node) with the lines and keys of the file.
func (c *Config) NewValidator() *Validator {
	return NewValidator(c.File, c.root)
}
