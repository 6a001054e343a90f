package config

import (
	"net/netip"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sipwarden/sipwarden/internal/sip"
)

// Config is one whole, validated configuration. A Config is never modified
// after Load returns it: a reload builds a new one.
type Config struct {
	// File is the path the configuration was loaded from.
	File string
	// Warnings are settings that are valid but contradict one another (a
	// trunk's limits above its flood budgets), each with file, line and key;
	// check-config prints them and serve logs them.
	Warnings Errors
	// root is the file's YAML tree: errors found after Parse (missing
	// files, a stage's constructor) are placed at their key's line with it.
	root *yaml.Node

	// Listen lists the SIP listeners ("udp://127.0.0.1:5060").
	Listen []Listen
	// TLS holds the certificate for tls:// listeners.
	TLS TLS
	// Admin is the admin HTTP server (API, /metrics, /healthz).
	Admin Admin
	// Storage is where embedded state (SQLite) lives.
	Storage Storage
	// CDR selects the CDR store.
	CDR CDR
	// Log configures logging.
	Log Log
	// SIP holds protocol settings of the proxy core.
	SIP SIP
	// UnknownSources is what happens to requests from addresses that match no
	// trunk and no upstream: UnknownDrop (no reply at all) or UnknownReject (403).
	UnknownSources string

	Upstreams []Upstream
	Trunks    []Trunk

	// Bans tunes the ban list.
	Bans Bans
	// Scanner configures the scanner stage.
	Scanner Scanner
	// Flood configures flood detection for peers.
	Flood Flood
	// Fraud configures the toll-fraud stage (fraud.go).
	Fraud Fraud
	// Media configures the media relay (media.go).
	Media Media
	// Shaken configures STIR/SHAKEN signing and verification (shaken.go).
	Shaken Shaken
	// Auth configures digest authentication and brute-force detection (auth.go).
	Auth Auth
	// Firewall configures the kernel firewall integration.
	Firewall Firewall
	// GeoIP locates addresses (optional).
	GeoIP GeoIP
	// Notify sends security events to webhooks (notify.go).
	Notify Notify
}

// GeoIP is the optional country database (MaxMind format).
type GeoIP struct {
	// CountryDB is a GeoLite2-Country or GeoIP2-Country .mmdb file; with it
	// the registrar reports accounts registering from a new country.
	CountryDB string
}

// Firewall configures the mirror of the ban list into the kernel.
type Firewall struct {
	// Nftables mirrors the bans in force (not reputation-feed entries, which
	// depend on who the peer is) into sets of an nftables table owned by
	// sipwarden, so that banned traffic is dropped before it reaches a socket.
	Nftables bool
	// Table is the name of that table in the inet family (default sipwarden_bans).
	Table string
}

// Flood configures the flood stage: request budgets per source address (and,
// multiplied by PrefixFactor, per /24 or /64) and method class.
type Flood struct {
	Disabled     bool
	TableSize    int
	PrefixFactor float64
	// Trunk is the default profile of trunks; Upstream that of upstreams.
	Trunk, Upstream FloodProfile
}

// FloodProfile holds one budget per class; a zero Rate means unlimited.
type FloodProfile struct {
	Invite, Register, Options, Other, Malformed Budget
}

// Budget is a token bucket written "N/W": N requests at once, refilled at N per W.
type Budget struct {
	Raw   string
	Rate  float64 // per second
	Burst float64
}

// Bans tunes the ban list: durations and escalation, and the rule that bans
// unknown sources that keep probing.
type Bans struct {
	// Duration is a first ban's length (default 1h).
	Duration time.Duration
	// Factor multiplies it for each repeat offense (default 4), up to Max (default 7 days).
	Factor int
	Max    time.Duration
	// ProbeRate, when above zero, bans an address that is no peer once it has
	// sent more than ProbeBurst requests at more than ProbeRate per second
	// (default 20/1m with a burst of 20). Zero disables the rule.
	ProbeRate  float64
	ProbeBurst int
	// ProbePrefixFactor, when above zero, also bans the /24 (IPv4) or /64
	// (IPv6) of strangers that together probe faster than this many times
	// one address's budget (default 8; 0 disables). Such a ban never applies
	// to configured peers in that prefix.
	ProbePrefixFactor float64
	// Feeds are reputation lists; their entries only ever drop traffic from
	// addresses that are no trunk or upstream.
	Feeds []Feed
}

// Feed is a reputation list refreshed periodically.
type Feed struct {
	Name    string
	URL     string // http or https, or
	File    string // a local file
	Format  string // plain or apiban
	Refresh time.Duration
}

// Scanner configures the detection of SIP scanners and attack tools.
type Scanner struct {
	// Disabled turns the stage off.
	Disabled bool
	// Signatures are tool names matched case-insensitively as whole tokens
	// of User-Agent ("=..." matches the whole User-Agent); display names are
	// never examined. Empty: the built-in list.
	Signatures []string
	// BanAfter is how many scanner requests from one address lead to a ban (default 1; 0: never ban).
	BanAfter int
}

// Values of Config.UnknownSources.
const (
	UnknownDrop   = "drop"
	UnknownReject = "reject"
)

// Listen is one SIP listener.
type Listen struct {
	Raw       string // as written in the file
	Transport sip.Transport
	Addr      netip.AddrPort
	// Advertise is the host[:port] put in Via and Record-Route instead of Addr
	// (for a listener behind NAT or bound to a wildcard address). Empty: Addr.
	Advertise string
}

// TLS is the server certificate, reloaded from its files when they change.
type TLS struct {
	Cert string // PEM certificate chain file
	Key  string // PEM private key file
	// ClientCA, when set, is a PEM bundle used to verify client certificates
	// of trunks whose tls.require_client_cert is true.
	ClientCA string
	// UpstreamCA, when set, is a PEM bundle that verifies the certificates
	// of the peers sipwarden connects to over TLS (tls:// targets of
	// upstreams and trunks), instead of the system roots.
	UpstreamCA string
	// HandshakeTimeout bounds a TLS handshake (default 5s).
	HandshakeTimeout time.Duration
}

// Admin is the admin HTTP server (admin.go).
type Admin struct {
	Listen string // host:port; empty disables the admin server
	// Hosts are the names a request's Host header may carry (without the
	// port), against DNS rebinding: the listen address, localhost,
	// 127.0.0.1 and ::1 by default; "*" accepts any.
	Hosts []string
	// OpenMetrics serves /metrics without a token.
	OpenMetrics bool
	// TLS serves HTTPS with this certificate and key.
	TLS AdminTLS
	// InsecurePlaintext allows plain HTTP on an address that is not loopback.
	InsecurePlaintext bool
}

// AdminTLS is the admin server's certificate.
type AdminTLS struct {
	Cert, Key string // PEM files
}

// Storage locates the embedded stores.
type Storage struct {
	Path string // directory for SQLite files (created if missing)
}

// CDR selects and tunes the CDR store.
type CDR struct {
	// Backend is "sqlite" (default, in Storage.Path) or "postgres".
	Backend string
	// DSN is the PostgreSQL connection string when Backend is "postgres".
	DSN string
	// BatchSize and FlushInterval tune the asynchronous writer.
	BatchSize     int
	FlushInterval time.Duration
	// JournalMaxBytes bounds the journal that keeps records while the store
	// is down (storage.path/cdr-journal.jsonl).
	JournalMaxBytes int64
}

// Log configures logging.
type Log struct {
	Level  string // debug, info, warn, error
	Format string // json (default) or text
}

// SIP holds protocol settings.
type SIP struct {
	// MaxMessageSize is the largest message accepted on any transport (default 65535).
	MaxMessageSize int
	// UserAgent is sent in the Server header of locally generated replies ("" for none).
	UserAgent string
	// Workers is the number of message workers (default: number of CPUs).
	Workers int
	// TCPIdleTimeout closes stream connections idle this long (default 3m).
	TCPIdleTimeout time.Duration
	// MaxConnsPerSource caps concurrent TCP/TLS connections from one address (default 32).
	MaxConnsPerSource int
	// MaxConns caps all concurrent TCP/TLS connections (default 10000).
	MaxConns int
	// MaxConnsPerPrefix caps the TCP/TLS connections of the strangers of one
	// IPv6 /64 (default twice MaxConnsPerSource).
	MaxConnsPerPrefix int
	// ReservedPeerConns is the part of MaxConns that only configured peers
	// may use (default MaxConns/4).
	ReservedPeerConns int
	// DialogTimeout ends confirmed dialogs that see no traffic for this long (default 2h).
	DialogTimeout time.Duration
	// DrainTimeout is how long a graceful stop waits for calls to end (default 30s).
	DrainTimeout time.Duration
}

// Upstream is the protected side: a PBX or softswitch that sipwarden forwards
// trunk traffic to and accepts calls from.
type Upstream struct {
	Name string
	// Targets are tried in order (failover) when one does not answer.
	Targets []Target
	// Allow lists extra source prefixes the upstream may send from. By default
	// an upstream is recognised by its targets' exact addresses and ports, and
	// by their addresses for stream connections.
	Allow []netip.Prefix
}

// Target is a SIP destination "udp://192.0.2.10:5060".
type Target struct {
	Raw       string
	Transport sip.Transport
	Addr      netip.AddrPort
}

// Trunk is a customer: an IP-authenticated peer on the untrusted side.
type Trunk struct {
	Name string
	// Auth is how the trunk is identified: AuthIP (source address) or
	// AuthDigest (digest credentials of one of its accounts; see auth.go).
	Auth string
	// Allow lists the source prefixes the trunk sends from.
	Allow []netip.Prefix
	// Upstream names the Upstream that this trunk's calls go to.
	Upstream string
	// Numbers are the DIDs and ranges that belong to the trunk: calls from an
	// upstream to one of them are routed to this trunk's Targets.
	Numbers []NumberRange
	// Targets are where calls to this trunk go (tried in order).
	Targets []Target
	// Limits are the trunk's call limits (zero: unlimited).
	Limits TrunkLimits
	// TLS options for this trunk.
	TLS TrunkTLS
	// Flood is this trunk's flood profile (the default trunk profile with
	// this trunk's overrides applied, raised where the trunk's own Limits
	// allow more: INVITE to CPS, other to OtherPerCall × CPS, REGISTER to
	// Registrations).
	Flood FloodProfile
	// Digest holds the realm and accounts of a trunk with Auth AuthDigest.
	Digest TrunkDigest
	// Media is the trunk's media policy (media.go).
	Media TrunkMedia
	// AllowTransfers (transfers: allow) lets the trunk transfer its calls
	// with REFER, to targets the fraud destination policy would accept for
	// a new call of the trunk; by default (deny) a REFER gets 403.
	AllowTransfers bool
	// TopologyHiding keeps the protected side's addresses (Contact, Via,
	// Record-Route, Server/User-Agent, Warning) from this trunk and its
	// phones (default true; see package proxy, topology.go).
	TopologyHiding bool
	// TrustIdentity lets the trunk's P-Asserted-Identity,
	// P-Preferred-Identity, Diversion and Remote-Party-ID reach the
	// upstream; by default they are removed (identity.go).
	TrustIdentity bool
	// CallerID is what happens to a call of a digest account whose caller
	// ID is none of its numbers: CallerIDRefuse (403, the default) or
	// CallerIDRewrite.
	CallerID string
}

// Values of Trunk.Auth.
const (
	AuthIP = "ip"
)

// TrunkLimits are per-trunk call limits.
type TrunkLimits struct {
	// CPS is the sustained rate of new calls per second (0: unlimited).
	CPS float64
	// Burst is how many calls may arrive at once above CPS (default: max(1, CPS)).
	Burst int
	// Concurrent caps the calls in progress (0: unlimited).
	Concurrent int
	// MaxConnections caps the trunk's concurrent TCP/TLS connections, from
	// its allow prefixes and its accounts' register_from prefixes together
	// (default DefaultTrunkConns).
	MaxConnections int
	// Registrations is a budget of REGISTER requests ("600/1m": 600 at once,
	// 600 more a minute; zero Rate: unlimited), answered 429 when exceeded.
	Registrations Budget
}

// TrunkTLS are per-trunk TLS requirements.
type TrunkTLS struct {
	// RequireClientCert refuses TLS connections from this trunk's addresses
	// without a client certificate that verifies against TLS.ClientCA.
	RequireClientCert bool
}

// NumberRange is a set of E.164 numbers written "+15551230000/4" (the last 4
// digits vary: +15551230000 to +15551239999), "+15551234567" (one number) or
// "+1555*" (any number with that prefix).
type NumberRange struct {
	Raw string
	// Prefix is the fixed part, with its leading '+'.
	Prefix string
	// Digits is how many digits follow Prefix; -1 for any number of digits.
	Digits int
}
