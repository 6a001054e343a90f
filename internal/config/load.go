// Package config loads, validates and describes sipwarden's one YAML
// configuration file.
//
// Load checks the whole file and reports every problem at once, each as an
// Error with the file, line, column and full dotted key
// (trunks[2].limits.concurrent), and what would be valid: values of the
// wrong type and unknown keys (the decoder reads the file node by node, so
// one mistake does not hide the next), invalid values, and missing or
// unreadable files the configuration names. A stage whose constructor finds
// a problem in a valid Config (a key file that is no key) returns it with At
// (the key's dotted path), and Config.Locate places it at the key's line; a
// stage that checks a section of its own decodes and checks the section's
// yaml.Node with a Validator (NewValidator, Decode, Fail), so that its
// errors read like every other. A Config is immutable:
// a reload loads a new one and the proxy swaps it atomically, so a file with
// an error never replaces a running configuration. docs/config.md is the
// reference of every key.
package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
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
	cfg, v := parse(data, path)
	if cfg == nil {
		return nil, v.errs
	}
	// the files are checked even when a value is wrong: every problem at once
	cfg.resolvePaths(filepath.Dir(path))
	var files Errors
	if err := cfg.CheckFiles(); err != nil {
		files = err.(Errors) //nolint:errorlint // CheckFiles returns Errors or nil
	}
	for _, e := range files {
		if !v.suppressed(e.Key) {
			v.errs = append(v.errs, e)
		}
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Parse validates a configuration given as bytes; file names it in errors.
// It does not touch the file system. Every problem is reported at once:
// values of the wrong type and unknown keys (each at its own line, column
// and full key path) as well as invalid values.
func Parse(data []byte, file string) (*Config, error) {
	cfg, v := parse(data, file)
	if err := v.Err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// parse decodes and checks data. The Config is nil only if the YAML cannot
// be read at all; with errors in v it is incomplete and must not be used.
func parse(data []byte, file string) (*Config, *validator) {
	var root yaml.Node
	v := &validator{file: file, root: &root}
	if err := yaml.Unmarshal(data, &root); err != nil {
		v.errs = Errors{yamlError(file, err)}
		return nil, v
	}
	var raw rawConfig
	v.decode(nil, &root, reflect.ValueOf(&raw).Elem())
	cfg := v.build(&raw)
	cfg.Warnings = v.warns
	cfg.root = &root
	return cfg, v
}

var lineRe = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

func yamlError(file string, err error) *Error {
	msg := err.Error()
	if m := lineRe.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{File: file, Line: line, Msg: "invalid YAML: " + m[2]}
	}
	return &Error{File: file, Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
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
