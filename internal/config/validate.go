package config

import (
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sipwarden/sipwarden/internal/sip"
)

// The raw shapes of the file, decoded strictly (unknown keys are errors).
type rawConfig struct {
	Listen         []rawListen   `yaml:"listen"`
	TLS            rawTLS        `yaml:"tls"`
	Admin          rawAdmin      `yaml:"admin"`
	Storage        rawStorage    `yaml:"storage"`
	CDR            rawCDR        `yaml:"cdr"`
	Log            rawLog        `yaml:"log"`
	SIP            rawSIP        `yaml:"sip"`
	UnknownSources string        `yaml:"unknown_sources"`
	Upstreams      []rawUpstream `yaml:"upstreams"`
	Trunks         []rawTrunk    `yaml:"trunks"`
	Bans           rawBans       `yaml:"bans"`
	Scanner        rawScanner    `yaml:"scanner"`
	Flood          rawFlood      `yaml:"flood"`
	Fraud          rawFraud      `yaml:"fraud"`
	Media          rawMedia      `yaml:"media"`
	Shaken         rawShaken     `yaml:"shaken"`
	Auth           rawAuth       `yaml:"auth"`
	Firewall       rawFirewall   `yaml:"firewall"`
	GeoIP          rawGeoIP      `yaml:"geoip"`
	Notify         rawNotify     `yaml:"notify"`
}

type rawGeoIP struct {
	CountryDB string `yaml:"country_db"`
}

type rawFirewall struct {
	Nftables bool   `yaml:"nftables"`
	Table    string `yaml:"table"`
}

type rawFlood struct {
	Enabled      *bool           `yaml:"enabled"`
	TableSize    int             `yaml:"table_size"`
	PrefixFactor float64         `yaml:"prefix_factor"`
	Trunk        rawFloodProfile `yaml:"trunk"`
	Upstream     rawFloodProfile `yaml:"upstream"`
}

type rawFloodProfile struct {
	Invite    string `yaml:"invite"`
	Register  string `yaml:"register"`
	Options   string `yaml:"options"`
	Other     string `yaml:"other"`
	Malformed string `yaml:"malformed"`
}

type rawBans struct {
	Duration            string    `yaml:"duration"`
	Factor              int       `yaml:"factor"`
	Max                 string    `yaml:"max"`
	UnknownSourceProbes string    `yaml:"unknown_source_probes"`
	ProbeBurst          int       `yaml:"probe_burst"`
	ProbePrefixFactor   *float64  `yaml:"probe_prefix_factor"`
	Feeds               []rawFeed `yaml:"feeds"`
}

type rawFeed struct {
	Name    string `yaml:"name"`
	URL     string `yaml:"url"`
	File    string `yaml:"file"`
	Format  string `yaml:"format"`
	Refresh string `yaml:"refresh"`
}

type rawScanner struct {
	Enabled    *bool    `yaml:"enabled"`
	Signatures []string `yaml:"signatures"`
	BanAfter   *int     `yaml:"ban_after"`
}

type rawListen struct {
	URL       string `yaml:"url"`
	Advertise string `yaml:"advertise"`
}

// UnmarshalYAML accepts "udp://..." or {url: ..., advertise: ...}.
func (l *rawListen) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		l.URL = n.Value
		return nil
	}
	type plain rawListen
	return n.Decode((*plain)(l))
}

type rawTLS struct {
	Cert             string `yaml:"cert"`
	Key              string `yaml:"key"`
	ClientCA         string `yaml:"client_ca"`
	UpstreamCA       string `yaml:"upstream_ca"`
	HandshakeTimeout string `yaml:"handshake_timeout"`
}

type rawAdmin struct {
	Listen            string      `yaml:"listen"`
	Hosts             []string    `yaml:"hosts"`
	OpenMetrics       bool        `yaml:"open_metrics"`
	TLS               rawAdminTLS `yaml:"tls"`
	InsecurePlaintext bool        `yaml:"insecure_plaintext"`
}

type rawAdminTLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

type rawStorage struct {
	Path string `yaml:"path"`
}

type rawCDR struct {
	Backend       string `yaml:"backend"`
	DSN           string `yaml:"dsn"`
	BatchSize     int    `yaml:"batch_size"`
	FlushInterval string `yaml:"flush_interval"`
	JournalMax    string `yaml:"journal_max_size"`
}

type rawLog struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

type rawSIP struct {
	MaxMessageSize    string `yaml:"max_message_size"`
	UserAgent         string `yaml:"user_agent"`
	Workers           int    `yaml:"workers"`
	TCPIdleTimeout    string `yaml:"tcp_idle_timeout"`
	MaxConnsPerSource int    `yaml:"max_conns_per_source"`
	MaxConnsPerPrefix int    `yaml:"max_conns_per_prefix"`
	MaxConns          int    `yaml:"max_conns"`
	ReservedPeerConns int    `yaml:"reserved_peer_conns"`
	DialogTimeout     string `yaml:"dialog_timeout"`
	DrainTimeout      string `yaml:"drain_timeout"`
}

type rawUpstream struct {
	Name    string   `yaml:"name"`
	Targets []string `yaml:"targets"`
	Allow   []string `yaml:"allow"`
}

type rawTrunk struct {
	Name     string          `yaml:"name"`
	Auth     string          `yaml:"auth"`
	Allow    []string        `yaml:"allow"`
	Upstream string          `yaml:"upstream"`
	Numbers  []string        `yaml:"numbers"`
	Targets  []string        `yaml:"targets"`
	Limits   rawTrunkLimits  `yaml:"limits"`
	TLS      rawTrunkTLS     `yaml:"tls"`
	Flood    rawFloodProfile `yaml:"flood"`
	Fraud    rawTrunkFraud   `yaml:"fraud"`
	Media    rawTrunkMedia   `yaml:"media"`
	// Transfers: deny (default) or allow.
	Transfers string `yaml:"transfers"`
	// TopologyHiding is a pointer so that absent means the default (on).
	TopologyHiding *bool `yaml:"topology_hiding"`
	// identity.go
	TrustIdentity bool   `yaml:"trust_identity"`
	CallerID      string `yaml:"caller_id"`

	rawTrunkDigest `yaml:",inline"`
}

type rawTrunkLimits struct {
	CPS           string `yaml:"cps"`
	Burst         int    `yaml:"burst"`
	Concurrent    int    `yaml:"concurrent"`
	Registrations string `yaml:"registrations"`
	// MaxConnections caps the trunk's TCP/TLS connections (0: the default).
	MaxConnections int `yaml:"max_connections"`
}

type rawTrunkTLS struct {
	RequireClientCert bool `yaml:"require_client_cert"`
}

type validator struct {
	file  string
	root  *yaml.Node
	errs  Errors
	warns Errors
	// bad holds the keys whose values failed to decode (see markBad).
	bad map[string]bool
	// nodes counts the nodes decoded (see maxDecodeNodes).
	nodes int
}

// sort orders the errors by their place in the file.
func (v *validator) sort() {
	sort.SliceStable(v.errs, func(i, j int) bool {
		a, b := v.errs[i], v.errs[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
}

// wideAllowBits is the shortest allow prefix that check-config accepts without
// a warning: a /8 of IPv4, a /32 of IPv6 (an ISP's allocation).
func wideAllowBits(a netip.Addr) int {
	if a.Is4() {
		return 8
	}
	return 32
}

// warn records a warning at the node of path: the file is valid, but a
// setting contradicts another (check-config prints it, serve logs it).
func (v *validator) warn(path []any, format string, args ...any) {
	n := lookup(v.root, path)
	e := &Error{File: v.file, Key: keyString(path), Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	v.warns = append(v.warns, e)
}

// fail records an error at the node of path (a key path like "trunks", 1, "limits", "cps").
func (v *validator) fail(path []any, format string, args ...any) {
	key := keyString(path)
	if v.suppressed(key) {
		return // its value did not decode: that error says it
	}
	n := lookup(v.root, path)
	e := &Error{File: v.file, Key: key, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	v.errs = append(v.errs, e)
}

func keyString(path []any) string {
	var b strings.Builder
	for _, p := range path {
		switch x := p.(type) {
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(x)
		case int:
			fmt.Fprintf(&b, "[%d]", x)
		}
	}
	return b.String()
}

// lookup finds the value node at path (or the deepest node that exists).
func lookup(root *yaml.Node, path []any) *yaml.Node {
	n, _ := walk(root, path)
	return n
}

// walk follows path from root as far as the file has it: the node reached,
// and whether that is the whole path.
func walk(root *yaml.Node, path []any) (*yaml.Node, bool) {
	n := root
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, p := range path {
		if n == nil {
			return nil, false
		}
		switch x := p.(type) {
		case string:
			if n.Kind != yaml.MappingNode {
				return n, false
			}
			var next *yaml.Node
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == x {
					next = n.Content[i+1]
				}
			}
			if next == nil {
				return n, false
			}
			n = next
		case int:
			if n.Kind != yaml.SequenceNode || x >= len(n.Content) {
				return n, false
			}
			n = n.Content[x]
		}
	}
	return n, n != nil
}

func p(parts ...any) []any { return parts }

func (v *validator) duration(path []any, s string, def time.Duration) time.Duration {
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		v.fail(path, "must be a positive duration such as 30s, 5m or 2h, got %q", s)
		return def
	}
	return d
}

var sizeRe = regexp.MustCompile(`^(\d+)\s*(B|KB|KiB|MB|MiB)?$`)

func (v *validator) size(path []any, s string, def int) int {
	if s == "" {
		return def
	}
	m := sizeRe.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		v.fail(path, "must be a size in bytes such as 65535 or 64KiB, got %q", s)
		return def
	}
	n, _ := strconv.Atoi(m[1])
	switch m[2] {
	case "KB":
		n *= 1000
	case "KiB":
		n *= 1024
	case "MB":
		n *= 1000 * 1000
	case "MiB":
		n *= 1024 * 1024
	}
	return n
}

var nameRe = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// nftName is a valid nftables table name that needs no quoting.
var nftName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,31}$`)

// parseURL parses "udp://1.2.3.4:5060" or "tls://[::1]:5061".
func parseURL(s string) (sip.Transport, netip.AddrPort, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return 0, netip.AddrPort{}, fmt.Errorf("must look like udp://127.0.0.1:5060 (schemes udp, tcp, tls), got %q", s)
	}
	t := sip.ParseTransport([]byte(scheme))
	if t == sip.TransportUnknown || strings.ToLower(scheme) != scheme {
		return 0, netip.AddrPort{}, fmt.Errorf("unknown scheme %q: use udp, tcp or tls", scheme)
	}
	ap, err := netip.ParseAddrPort(rest)
	if err != nil {
		if _, err2 := netip.ParseAddr(strings.Trim(rest, "[]")); err2 == nil {
			return 0, netip.AddrPort{}, fmt.Errorf("%q needs a port", s)
		}
		return 0, netip.AddrPort{}, fmt.Errorf("host must be an IP address with a port (hostnames are not resolved), got %q", rest)
	}
	if ap.Port() == 0 {
		return 0, netip.AddrPort{}, fmt.Errorf("port must be 1 to 65535 in %q", s)
	}
	return t, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		pf, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("must be an IP address or CIDR prefix, got %q", s)
		}
		if pf.Addr().Is4In6() {
			pf = netip.PrefixFrom(pf.Addr().Unmap(), pf.Bits()-96)
		}
		if pf.Masked() != pf {
			return netip.Prefix{}, fmt.Errorf("%q has host bits set; did you mean %s?", s, pf.Masked())
		}
		return pf, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("must be an IP address or CIDR prefix, got %q", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

var numberRe = regexp.MustCompile(`^\+(\d{1,15})(?:/(\d{1,2})|(\*))?$`)

func parseNumber(s string) (NumberRange, error) {
	m := numberRe.FindStringSubmatch(s)
	if m == nil {
		return NumberRange{}, fmt.Errorf(`must be an E.164 number with its '+' ("+15551234567"), a range ("+15551230000/4": the last 4 digits vary) or a prefix ("+1555*"), got %q`, s)
	}
	digits := m[1]
	switch {
	case m[3] == "*":
		return NumberRange{Raw: s, Prefix: "+" + digits, Digits: -1}, nil
	case m[2] != "":
		n, _ := strconv.Atoi(m[2])
		if n < 1 || n > len(digits) {
			return NumberRange{}, fmt.Errorf("range %q: /N must be 1 to %d (the digits that vary)", s, len(digits))
		}
		for _, c := range digits[len(digits)-n:] {
			if c != '0' {
				return NumberRange{}, fmt.Errorf("range %q: the last %d digits must be 0", s, n)
			}
		}
		return NumberRange{Raw: s, Prefix: "+" + digits[:len(digits)-n], Digits: n}, nil
	}
	return NumberRange{Raw: s, Prefix: "+" + digits, Digits: 0}, nil
}

func (v *validator) build(raw *rawConfig) *Config {
	c := &Config{File: v.file}

	if len(raw.Listen) == 0 {
		v.fail(p("listen"), "at least one listener is required, e.g. [udp://127.0.0.1:5060]")
	}
	seen := map[string]int{}
	hasTLS := false
	for i, l := range raw.Listen {
		t, ap, err := parseURL(l.URL)
		if err != nil {
			v.fail(p("listen", i), "%v", err)
			continue
		}
		key := t.String() + ap.String()
		if j, dup := seen[key]; dup {
			v.fail(p("listen", i), "duplicate of listen[%d]", j)
		}
		seen[key] = i
		hasTLS = hasTLS || t == sip.TLS
		c.Listen = append(c.Listen, Listen{Raw: l.URL, Transport: t, Addr: ap, Advertise: l.Advertise})
	}

	c.TLS = TLS{Cert: raw.TLS.Cert, Key: raw.TLS.Key, ClientCA: raw.TLS.ClientCA, UpstreamCA: raw.TLS.UpstreamCA,
		HandshakeTimeout: v.duration(p("tls", "handshake_timeout"), raw.TLS.HandshakeTimeout, 5*time.Second)}
	if hasTLS && (c.TLS.Cert == "" || c.TLS.Key == "") {
		v.fail(p("tls"), "a tls:// listener needs tls.cert and tls.key")
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		v.fail(p("tls"), "tls.cert and tls.key go together")
	}

	v.admin(c, &raw.Admin)
	c.Storage.Path = raw.Storage.Path
	if c.Storage.Path == "" {
		c.Storage.Path = "./data"
	}

	c.CDR = CDR{Backend: raw.CDR.Backend, DSN: raw.CDR.DSN, BatchSize: raw.CDR.BatchSize,
		FlushInterval: v.duration(p("cdr", "flush_interval"), raw.CDR.FlushInterval, time.Second)}
	switch c.CDR.Backend {
	case "":
		c.CDR.Backend = "sqlite"
	case "sqlite":
	case "postgres":
		if c.CDR.DSN == "" {
			v.fail(p("cdr", "dsn"), "backend postgres needs a dsn such as postgres://user@127.0.0.1:5432/sipwarden")
		}
	default:
		v.fail(p("cdr", "backend"), "must be sqlite or postgres, got %q", c.CDR.Backend)
	}
	if c.CDR.BatchSize < 0 {
		v.fail(p("cdr", "batch_size"), "must be >= 0, got %d", c.CDR.BatchSize)
	}
	if c.CDR.BatchSize == 0 {
		c.CDR.BatchSize = 256
	}
	c.CDR.JournalMaxBytes = int64(v.size(p("cdr", "journal_max_size"), raw.CDR.JournalMax, 1024<<20))
	if c.CDR.JournalMaxBytes < 1<<20 {
		v.fail(p("cdr", "journal_max_size"), "must be at least 1MiB, got %q", raw.CDR.JournalMax)
	}

	c.Log = Log{Level: raw.Log.Level, Format: raw.Log.Format}
	switch c.Log.Level {
	case "":
		c.Log.Level = "info"
	case "debug", "info", "warn", "error":
	default:
		v.fail(p("log", "level"), "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "":
		c.Log.Format = "json"
	case "json", "text":
	default:
		v.fail(p("log", "format"), "must be json or text, got %q", c.Log.Format)
	}

	s := raw.SIP
	c.SIP = SIP{
		MaxMessageSize:    v.size(p("sip", "max_message_size"), s.MaxMessageSize, 65535),
		UserAgent:         s.UserAgent,
		Workers:           s.Workers,
		TCPIdleTimeout:    v.duration(p("sip", "tcp_idle_timeout"), s.TCPIdleTimeout, 3*time.Minute),
		MaxConnsPerSource: s.MaxConnsPerSource,
		MaxConnsPerPrefix: s.MaxConnsPerPrefix,
		MaxConns:          s.MaxConns,
		ReservedPeerConns: s.ReservedPeerConns,
		DialogTimeout:     v.duration(p("sip", "dialog_timeout"), s.DialogTimeout, 2*time.Hour),
		DrainTimeout:      v.duration(p("sip", "drain_timeout"), s.DrainTimeout, 30*time.Second),
	}
	if c.SIP.MaxMessageSize < 1024 || c.SIP.MaxMessageSize > 65535 {
		v.fail(p("sip", "max_message_size"), "must be 1024 to 65535 bytes, got %d", c.SIP.MaxMessageSize)
	}
	for _, f := range []struct {
		key string
		val *int
		def int
	}{{"workers", &c.SIP.Workers, 0}, {"max_conns_per_source", &c.SIP.MaxConnsPerSource, 32}, {"max_conns", &c.SIP.MaxConns, 10000},
		{"max_conns_per_prefix", &c.SIP.MaxConnsPerPrefix, 0}, {"reserved_peer_conns", &c.SIP.ReservedPeerConns, 0}} {
		if *f.val < 0 {
			v.fail(p("sip", f.key), "must be >= 0, got %d", *f.val)
		}
		if *f.val == 0 {
			*f.val = f.def
		}
	}
	v.sipConns(&c.SIP)

	switch raw.UnknownSources {
	case "":
		c.UnknownSources = UnknownDrop
	case UnknownDrop, UnknownReject:
		c.UnknownSources = raw.UnknownSources
	default:
		v.fail(p("unknown_sources"), "must be drop (no reply) or reject (403), got %q", raw.UnknownSources)
	}

	c.Bans = Bans{
		Duration:   v.duration(p("bans", "duration"), raw.Bans.Duration, time.Hour),
		Factor:     raw.Bans.Factor,
		Max:        v.duration(p("bans", "max"), raw.Bans.Max, 7*24*time.Hour),
		ProbeBurst: raw.Bans.ProbeBurst,
	}
	if c.Bans.Factor < 0 || c.Bans.Factor == 1 {
		v.fail(p("bans", "factor"), "must be 2 or more (0: the default 4), got %d", c.Bans.Factor)
	}
	if c.Bans.Factor == 0 {
		c.Bans.Factor = 4
	}
	switch raw.Bans.UnknownSourceProbes {
	case "":
		c.Bans.ProbeRate = 20.0 / 60
	case "0", "off":
	default:
		c.Bans.ProbeRate = v.rate(p("bans", "unknown_source_probes"), raw.Bans.UnknownSourceProbes)
	}
	if c.Bans.ProbeBurst < 0 {
		v.fail(p("bans", "probe_burst"), "must be >= 0, got %d", c.Bans.ProbeBurst)
	}
	if c.Bans.ProbeBurst == 0 {
		c.Bans.ProbeBurst = 20
	}
	c.Bans.ProbePrefixFactor = 8
	if f := raw.Bans.ProbePrefixFactor; f != nil {
		if *f != 0 && *f < 1 {
			v.fail(p("bans", "probe_prefix_factor"), "must be 0 (off) or at least 1, got %g", *f)
		}
		c.Bans.ProbePrefixFactor = *f
	}
	feedNames := map[string]bool{}
	for i, f := range raw.Bans.Feeds {
		base := p("bans", "feeds", i)
		feed := Feed{Name: f.Name, URL: f.URL, File: f.File, Format: f.Format,
			Refresh: v.duration(append(base, "refresh"), f.Refresh, time.Hour)}
		if f.Name == "" || !nameRe.MatchString(f.Name) || feedNames[f.Name] {
			v.fail(append(base, "name"), "a unique name of letters, digits, '_', '.' and '-' is required, got %q", f.Name)
		}
		feedNames[f.Name] = true
		switch {
		case (f.URL == "") == (f.File == ""):
			v.fail(base, "give either url or file")
		case f.URL != "" && !strings.HasPrefix(f.URL, "https://") && !strings.HasPrefix(f.URL, "http://"):
			v.fail(append(base, "url"), "must be an http:// or https:// URL, got %q", f.URL)
		}
		switch f.Format {
		case "":
			feed.Format = "plain"
		case "plain", "apiban":
		default:
			v.fail(append(base, "format"), "must be plain (one address or prefix a line) or apiban (JSON), got %q", f.Format)
		}
		c.Bans.Feeds = append(c.Bans.Feeds, feed)
	}
	c.Scanner = Scanner{Disabled: raw.Scanner.Enabled != nil && !*raw.Scanner.Enabled, BanAfter: 1}
	if raw.Scanner.BanAfter != nil {
		if *raw.Scanner.BanAfter < 0 {
			v.fail(p("scanner", "ban_after"), "must be >= 0 (0: never ban), got %d", *raw.Scanner.BanAfter)
		}
		c.Scanner.BanAfter = *raw.Scanner.BanAfter
	}
	for i, sig := range raw.Scanner.Signatures {
		if strings.TrimSpace(strings.TrimPrefix(sig, "=")) == "" {
			v.fail(p("scanner", "signatures", i), "an empty signature would match everything")
			continue
		}
		c.Scanner.Signatures = append(c.Scanner.Signatures, sig)
	}

	c.GeoIP = GeoIP{CountryDB: raw.GeoIP.CountryDB}
	c.Notify = v.notify(raw.Notify)
	c.Firewall = Firewall{Nftables: raw.Firewall.Nftables, Table: raw.Firewall.Table}
	if c.Firewall.Table == "" {
		c.Firewall.Table = "sipwarden_bans"
	} else if !nftName.MatchString(c.Firewall.Table) {
		v.fail(p("firewall", "table"), "must be an nftables name (a letter, then letters, digits and '_', at most 32), got %q", c.Firewall.Table)
	}

	c.Flood = Flood{Disabled: raw.Flood.Enabled != nil && !*raw.Flood.Enabled, TableSize: raw.Flood.TableSize, PrefixFactor: raw.Flood.PrefixFactor}
	if c.Flood.TableSize < 0 || c.Flood.TableSize > 1<<24 {
		v.fail(p("flood", "table_size"), "must be 0 (default 65536) to 16777216, got %d", c.Flood.TableSize)
	}
	if c.Flood.TableSize == 0 {
		c.Flood.TableSize = 65536
	}
	if c.Flood.PrefixFactor < 0 {
		v.fail(p("flood", "prefix_factor"), "must be >= 1 (0: the default 8), got %g", c.Flood.PrefixFactor)
	}
	if c.Flood.PrefixFactor == 0 {
		c.Flood.PrefixFactor = 8
	}
	c.Flood.Trunk = v.floodProfile(p("flood", "trunk"), raw.Flood.Trunk, DefaultTrunkFlood)
	c.Flood.Upstream = v.floodProfile(p("flood", "upstream"), raw.Flood.Upstream, DefaultUpstreamFlood)

	names := map[string]string{} // name -> key path
	checkName := func(path []any, name string) {
		if name == "" {
			v.fail(path, "a name is required")
			return
		}
		if !nameRe.MatchString(name) {
			v.fail(path, "may hold only letters, digits, '_', '.' and '-', got %q", name)
		}
		if other, dup := names[name]; dup {
			v.fail(path, "name %q is already used by %s", name, other)
		}
		names[name] = keyString(path[:len(path)-1])
	}
	prefixes := map[netip.Prefix]string{} // prefix -> owner path
	addPrefixes := func(base []any, list []string, owner string) []netip.Prefix {
		var out []netip.Prefix
		for i, s := range list {
			pf, err := parsePrefix(s)
			if err != nil {
				v.fail(append(append([]any{}, base...), i), "%v", err)
				continue
			}
			if other, dup := prefixes[pf]; dup && other != owner {
				v.fail(append(append([]any{}, base...), i), "prefix %s is also in %s: the source would be ambiguous", pf, other)
			}
			prefixes[pf] = owner
			if pf.Bits() < wideAllowBits(pf.Addr()) {
				v.warn(append(append([]any{}, base...), i), "%s makes every address in it a configured peer of %s, "+
					"which no rule ever bans (a flood from it is only shed): list the peer's own addresses", pf, owner)
			}
			out = append(out, pf)
		}
		return out
	}
	targets := func(base []any, list []string) []Target {
		var out []Target
		for i, s := range list {
			t, ap, err := parseURL(s)
			if err != nil {
				v.fail(append(append([]any{}, base...), i), "%v", err)
				continue
			}
			out = append(out, Target{Raw: s, Transport: t, Addr: ap})
		}
		return out
	}

	for i, u := range raw.Upstreams {
		base := p("upstreams", i)
		checkName(append(base, "name"), u.Name)
		up := Upstream{Name: u.Name, Targets: targets(append(base, "targets"), u.Targets)}
		if len(u.Targets) == 0 {
			v.fail(append(base, "targets"), "at least one target is required, e.g. [udp://192.0.2.10:5060]")
		}
		up.Allow = addPrefixes(append(base, "allow"), u.Allow, "upstreams["+strconv.Itoa(i)+"] ("+u.Name+")")
		c.Upstreams = append(c.Upstreams, up)
	}
	c.Media = v.media(raw.Media)
	c.Auth = v.auth(raw.Auth)
	digestDomains := map[string]string{}
	numbers := map[string]string{}
	for i, t := range raw.Trunks {
		base := p("trunks", i)
		checkName(append(base, "name"), t.Name)
		tr := Trunk{Name: t.Name, Auth: t.Auth, Upstream: t.Upstream, TLS: TrunkTLS{RequireClientCert: t.TLS.RequireClientCert}}
		tr.TopologyHiding = t.TopologyHiding == nil || *t.TopologyHiding
		switch t.Auth {
		case "", AuthIP:
			tr.Auth = AuthIP
		case AuthDigest:
		default:
			v.fail(append(base, "auth"), "must be ip or digest, got %q", t.Auth)
		}
		if len(t.Allow) == 0 && tr.Auth == AuthIP {
			v.fail(append(base, "allow"), "an ip trunk needs at least one source address or prefix")
		}
		tr.Allow = addPrefixes(append(base, "allow"), t.Allow, "trunks["+strconv.Itoa(i)+"] ("+t.Name+")")
		if tr.Auth == AuthDigest {
			v.digestTrunk(base, t.rawTrunkDigest, &tr, hasTLS, digestDomains)
		} else if t.Realm != "" || len(t.Accounts) > 0 || len(t.Domains) > 0 || len(t.Algorithms) > 0 || t.RequireTLS || t.Registrar.Enabled {
			v.fail(base, "realm, domains, algorithms, require_tls, accounts and registrar need auth: digest")
		}
		if t.Upstream == "" {
			v.fail(append(base, "upstream"), "names the upstream this trunk's calls go to")
		} else if c.UpstreamByName(t.Upstream) == nil {
			v.fail(append(base, "upstream"), "no upstream is named %q", t.Upstream)
		}
		for j, s := range t.Numbers {
			nr, err := parseNumber(s)
			if err != nil {
				v.fail(append(base, "numbers", j), "%v", err)
				continue
			}
			key := nr.Prefix + "/" + strconv.Itoa(nr.Digits)
			if other, dup := numbers[key]; dup {
				v.fail(append(base, "numbers", j), "%s is also a number of trunk %s: routing would be ambiguous", s, other)
			}
			numbers[key] = t.Name
			tr.Numbers = append(tr.Numbers, nr)
		}
		v.trunkIdentity(base, &t, &tr)
		tr.Targets = targets(append(base, "targets"), t.Targets)
		tr.Limits = v.limits(append(base, "limits"), t.Limits)
		tr.Flood = v.floodProfile(append(base, "flood"), t.Flood, c.Flood.Trunk)
		v.floodFloors(base, &tr, t.Flood, raw.Flood.Trunk)
		tr.Media = v.trunkMedia(append(base, "media"), t.Media, c.Media)
		switch t.Transfers {
		case "", "deny":
		case "allow":
			tr.AllowTransfers = true
		default:
			v.fail(append(base, "transfers"), "must be allow or deny, got %q", t.Transfers)
		}
		if tr.TLS.RequireClientCert && c.TLS.ClientCA == "" {
			v.fail(append(base, "tls", "require_client_cert"), "needs tls.client_ca to verify client certificates")
		}
		c.Trunks = append(c.Trunks, tr)
	}
	c.Shaken = v.shaken(&raw.Shaken, c)
	trunkNames, trunkFraud := make([]string, len(raw.Trunks)), make([]rawTrunkFraud, len(raw.Trunks))
	for i, t := range raw.Trunks {
		trunkNames[i], trunkFraud[i] = t.Name, t.Fraud
	}
	c.Fraud = v.fraud(raw.Fraud, trunkNames, trunkFraud)
	return c
}

func (v *validator) limits(base []any, l rawTrunkLimits) TrunkLimits {
	var out TrunkLimits
	if l.CPS != "" {
		out.CPS = v.rate(append(base, "cps"), l.CPS)
	}
	if l.Burst < 0 {
		v.fail(append(base, "burst"), "must be >= 0, got %d", l.Burst)
	}
	out.Burst = l.Burst
	if out.Burst == 0 && out.CPS > 0 {
		out.Burst = int(math.Max(1, math.Ceil(out.CPS)))
	}
	if l.Concurrent < 0 {
		v.fail(append(base, "concurrent"), "must be >= 0 (0: unlimited), got %d", l.Concurrent)
	}
	out.Concurrent = l.Concurrent
	switch {
	case l.MaxConnections < 0:
		v.fail(append(base, "max_connections"), "must be >= 0 (0: %d), got %d", DefaultTrunkConns, l.MaxConnections)
	case l.MaxConnections == 0:
		out.MaxConnections = DefaultTrunkConns
	default:
		out.MaxConnections = l.MaxConnections
	}
	if l.Registrations != "" {
		out.Registrations = v.budget(append(base, "registrations"), l.Registrations)
	}
	return out
}

// rate parses "50" (per second), "300/1m" or "30/2s" into calls per second.
func (v *validator) rate(path []any, s string) float64 {
	num, window, hasWindow := strings.Cut(s, "/")
	n, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || n < 0 || math.IsNaN(n) || math.IsInf(n, 0) {
		v.fail(path, "must be a rate >= 0 such as 50 (per second) or 300/1m, got %q", s)
		return 0
	}
	if !hasWindow {
		return n
	}
	d, err := time.ParseDuration(strings.TrimSpace(window))
	if err != nil || d <= 0 {
		v.fail(path, "rate window must be a duration such as 1s or 1m, got %q", s)
		return 0
	}
	return n / d.Seconds()
}

// DefaultTrunkFlood and DefaultUpstreamFlood are the built-in flood profiles:
// generous enough for a busy PBX or carrier on one address, far below what a
// flood tool sends.
var (
	DefaultTrunkFlood = FloodProfile{
		Invite: Budget{"100/1s", 100, 100}, Register: Budget{"50/1s", 50, 50}, Options: Budget{"50/1s", 50, 50},
		Other: Budget{"300/1s", 300, 300}, Malformed: Budget{"20/10s", 2, 20},
	}
	DefaultUpstreamFlood = FloodProfile{
		Invite: Budget{"1000/1s", 1000, 1000}, Register: Budget{"1000/1s", 1000, 1000}, Options: Budget{"1000/1s", 1000, 1000},
		Other: Budget{"3000/1s", 3000, 3000}, Malformed: Budget{"100/10s", 10, 100},
	}
)

// OtherPerCall is how many requests of the class "other" (ACK, BYE, and
// one more such as PRACK, UPDATE or INFO) a trunk's flood budget allows per
// call of its limits.cps.
const OtherPerCall = 3

// floodFloors raises a trunk's flood budgets to what its own limits let it
// send: a customer within its limits.cps (and limits.registrations) is never
// shed by the flood stage. Where the profile was lower it warns: the two
// settings contradict each other.
func (v *validator) floodFloors(base []any, tr *Trunk, own, def rawFloodProfile) {
	l := tr.Limits
	origin := func(ownRaw, defRaw, key string) string {
		switch {
		case ownRaw != "":
			return keyString(append(append([]any{}, base...), "flood", key))
		case defRaw != "":
			return "flood.trunk." + key
		}
		return "the default flood.trunk." + key
	}
	raise := func(b *Budget, rate, burst float64, limitKey, what, ownRaw, defRaw, key string) {
		if b.Rate <= 0 || rate <= 0 || (b.Rate >= rate && b.Burst >= burst) {
			return // unlimited, or enough already
		}
		if b.Rate >= rate && limitKey == "cps" && l.Burst > 0 {
			limitKey = "burst" // the rate fits, the burst does not
		}
		v.warn(append(append([]any{}, base...), "limits", limitKey),
			"allows %s, more than the flood %s budget %s (%s): this trunk's %s budget is raised to %g/s with a burst of %g; write a flood budget of at least that to silence this warning",
			what, key, b.Raw, origin(ownRaw, defRaw, key), key, max(b.Rate, rate), max(b.Burst, burst))
		b.Rate, b.Burst = max(b.Rate, rate), max(b.Burst, burst)
	}
	if l.CPS > 0 {
		burst := max(float64(l.Burst), l.CPS)
		raise(&tr.Flood.Invite, l.CPS, burst, "cps", fmt.Sprintf("%g calls/s (burst %g)", l.CPS, burst), own.Invite, def.Invite, "invite")
		raise(&tr.Flood.Other, OtherPerCall*l.CPS, OtherPerCall*burst, "cps",
			fmt.Sprintf("%g calls/s, %d in-dialog requests each (ACK, BYE, ...)", l.CPS, OtherPerCall), own.Other, def.Other, "other")
	}
	if r := l.Registrations; r.Rate > 0 {
		raise(&tr.Flood.Register, r.Rate, r.Burst, "registrations", "REGISTER at "+r.Raw, own.Register, def.Register, "register")
	}
}

// floodProfile reads a profile; classes left out keep the value of def.
func (v *validator) floodProfile(base []any, r rawFloodProfile, def FloodProfile) FloodProfile {
	out := def
	for _, f := range []struct {
		key string
		raw string
		dst *Budget
	}{{"invite", r.Invite, &out.Invite}, {"register", r.Register, &out.Register}, {"options", r.Options, &out.Options},
		{"other", r.Other, &out.Other}, {"malformed", r.Malformed, &out.Malformed}} {
		if f.raw == "" {
			continue
		}
		*f.dst = v.budget(append(append([]any{}, base...), f.key), f.raw)
	}
	return out
}

// budget parses "N/W" (N requests at once, N more per W) or "off".
func (v *validator) budget(path []any, s string) Budget {
	if s == "off" || s == "0" {
		return Budget{Raw: s}
	}
	num, window, ok := strings.Cut(s, "/")
	n, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	d, derr := time.ParseDuration(strings.TrimSpace(window))
	if !ok || err != nil || derr != nil || n < 1 || d <= 0 || math.IsInf(n, 0) {
		v.fail(path, "must be a budget such as 50/1s (50 requests at once, 50 more each second) or off, got %q", s)
		return Budget{}
	}
	return Budget{Raw: s, Rate: n / d.Seconds(), Burst: n}
}
