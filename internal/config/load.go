// Package config loads, validates and describes sipwarden's one YAML
// configuration file.
//
// Load checks the whole file and reports every problem at once, each with
// the file, line and key, and what would be valid. A Config is immutable:
// a reload loads a new one and the proxy swaps it atomically, so a file with
// an error never replaces a running configuration. docs/config.md is the
// reference of every key.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Error is one problem in a configuration file.
type Error struct {
	File   string
	Line   int
	Column int
	Key    string // dotted path: trunks[1].limits.cps
	Msg    string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one file.
type Errors []*Error

func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

// Load reads and validates a configuration file. Relative paths in it are
// resolved against the file's directory; referenced files must exist.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	cfg, err := Parse(data, path)
	if err != nil {
		return nil, err
	}
	cfg.resolvePaths(filepath.Dir(path))
	if err := cfg.CheckFiles(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Parse validates a configuration given as bytes; file names it in errors.
// It does not touch the file system.
func Parse(data []byte, file string) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, Errors{yamlError(file, err)}
	}
	var raw rawConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&raw); err != nil && !errors.Is(err, errEOF) {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			var es Errors
			for _, msg := range te.Errors {
				es = append(es, typeError(file, msg))
			}
			return nil, es
		}
		if err.Error() != "EOF" {
			return nil, Errors{yamlError(file, err)}
		}
	}
	v := &validator{file: file, root: &root}
	cfg := v.build(&raw)
	if len(v.errs) > 0 {
		sort.SliceStable(v.errs, func(i, j int) bool { return v.errs[i].Line < v.errs[j].Line })
		return nil, v.errs
	}
	cfg.Warnings = v.warns
	return cfg, nil
}

var errEOF = errors.New("EOF")

var lineRe = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

func yamlError(file string, err error) *Error {
	msg := err.Error()
	if m := lineRe.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{File: file, Line: line, Msg: "invalid YAML: " + m[2]}
	}
	return &Error{File: file, Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

var (
	unknownFieldRe = regexp.MustCompile(`field (\S+) not found in type (\S+)`)
	unmarshalRe    = regexp.MustCompile("cannot unmarshal !!(\\w+) `(.*)` into (.+)")
)

func typeError(file, msg string) *Error {
	e := &Error{File: file, Msg: msg}
	if m := lineRe.FindStringSubmatch(msg); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		msg = m[2]
		e.Msg = msg
	}
	if m := unknownFieldRe.FindStringSubmatch(msg); m != nil {
		key := m[1]
		valid := knownKeys[strings.TrimPrefix(m[2], "config.")]
		e.Key = key
		e.Msg = "unknown key"
		if s := suggest(key, valid); s != "" {
			e.Msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		if len(valid) > 0 {
			e.Msg += "; valid keys here: " + strings.Join(valid, ", ")
		}
		return e
	}
	if m := unmarshalRe.FindStringSubmatch(msg); m != nil {
		want := m[3]
		switch {
		case strings.HasPrefix(want, "[]"):
			want = "a list"
		case strings.HasPrefix(want, "config.") || strings.HasPrefix(want, "struct"):
			want = "a mapping"
		case strings.HasPrefix(want, "int") || strings.HasPrefix(want, "uint"):
			want = "an integer"
		case want == "bool":
			want = "true or false"
		case want == "string":
			want = "a string"
		}
		e.Msg = fmt.Sprintf("must be %s, got %s %q", want, m[1], m[2])
	}
	return e
}

// suggest returns the valid key closest to key (edit distance <= 2).
func suggest(key string, valid []string) string {
	best, bestD := "", 3
	for _, v := range valid {
		if d := editDistance(key, v); d < bestD {
			best, bestD = v, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Trunk returns the trunk named name, or nil.
func (c *Config) Trunk(name string) *Trunk {
	for i := range c.Trunks {
		if c.Trunks[i].Name == name {
			return &c.Trunks[i]
		}
	}
	return nil
}

// UpstreamByName returns the upstream named name, or nil.
func (c *Config) UpstreamByName(name string) *Upstream {
	for i := range c.Upstreams {
		if c.Upstreams[i].Name == name {
			return &c.Upstreams[i]
		}
	}
	return nil
}

func (c *Config) resolvePaths(dir string) {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	c.TLS.Cert = abs(c.TLS.Cert)
	c.TLS.Key = abs(c.TLS.Key)
	c.TLS.ClientCA = abs(c.TLS.ClientCA)
	c.TLS.UpstreamCA = abs(c.TLS.UpstreamCA)
	c.Admin.TLS.Cert, c.Admin.TLS.Key = abs(c.Admin.TLS.Cert), abs(c.Admin.TLS.Key)
	c.GeoIP.CountryDB = abs(c.GeoIP.CountryDB)
	for i := range c.Notify.Webhooks {
		c.Notify.Webhooks[i].SecretFile = abs(c.Notify.Webhooks[i].SecretFile)
	}
	if e := c.Notify.Email; e != nil {
		e.PasswordFile, e.CAFile = abs(e.PasswordFile), abs(e.CAFile)
	}
	c.Storage.Path = abs(c.Storage.Path)
	c.Auth.Policy.ExtraFile = abs(c.Auth.Policy.ExtraFile)
	c.Fraud.RateDeck = abs(c.Fraud.RateDeck)
	for i := range c.Bans.Feeds {
		c.Bans.Feeds[i].File = abs(c.Bans.Feeds[i].File)
	}
	c.Shaken.resolvePaths(dir)
}

// CheckFiles verifies that the files the configuration names can be read.
func (c *Config) CheckFiles() error {
	var es Errors
	check := func(key, path string) {
		if path == "" {
			return
		}
		if _, err := os.Stat(path); err != nil {
			es = append(es, &Error{File: c.File, Key: key, Msg: fmt.Sprintf("cannot read %s: %v", path, errors.Unwrap(err))})
		}
	}
	check("tls.cert", c.TLS.Cert)
	check("tls.key", c.TLS.Key)
	check("tls.client_ca", c.TLS.ClientCA)
	check("tls.upstream_ca", c.TLS.UpstreamCA)
	check("admin.tls.cert", c.Admin.TLS.Cert)
	check("admin.tls.key", c.Admin.TLS.Key)
	check("geoip.country_db", c.GeoIP.CountryDB)
	for i, w := range c.Notify.Webhooks {
		check(fmt.Sprintf("notify.webhooks[%d].secret_file", i), w.SecretFile)
	}
	if e := c.Notify.Email; e != nil {
		check("notify.email.password_file", e.PasswordFile)
		check("notify.email.ca_file", e.CAFile)
	}
	check("auth.policy.extra_file", c.Auth.Policy.ExtraFile)
	check("fraud.rate_deck", c.Fraud.RateDeck)
	if len(es) > 0 {
		return es
	}
	return nil
}
