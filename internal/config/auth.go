package config

import (
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// AuthDigest is the value of Trunk.Auth for trunks whose requests must carry
// digest credentials of one of the trunk's accounts.
const AuthDigest = "digest"

// Auth holds the process-wide settings of digest authentication (the auth
// stage) and of the brute-force counters.
type Auth struct {
	// NonceLifetime is how long a nonce is accepted (default 5m); after it the
	// client is challenged again with stale=true.
	NonceLifetime time.Duration
	// NonceTableSize bounds the nonces whose nonce-counts are remembered for
	// replay protection (default 100000; applied at start, not on reload).
	NonceTableSize int
	// RememberSources is how long an address that authenticated stays
	// identified as its digest trunk for requests that name no domain of it
	// (in-dialog requests of roaming phones; default 2h).
	RememberSources time.Duration
	// Policy is the credential policy (sipwarden passwd, and the check of
	// stored HA1 values against common passwords at load).
	Policy CredentialPolicy
	// BruteForce holds the thresholds of password-guessing and enumeration detection.
	BruteForce BruteForce
}

// CredentialPolicy configures the password rules.
type CredentialPolicy struct {
	MinLength    int  // default 16
	MinClasses   int  // of lower, upper, digit, other; default 3
	RejectCommon bool // default true
	// ExtraFile is a file of more refused passwords, one a line.
	ExtraFile string
}

// BruteForce configures the failure counters (package bruteforce).
type BruteForce struct {
	Window        time.Duration // default 10m
	SourceAccount int           // failures of one account from one source: ban (default 5)
	Source        int           // failures from one source, all accounts: ban (default 20)
	Unknown       int           // unknown usernames from one source: ban (default 10)
	Account       int           // failures of one account, all sources: lockout (default 50)
	Lockout       time.Duration // default 15m
	LockoutMode   string        // restrict (default) or lock
	BanDuration   time.Duration // 0: bans.duration
	TableSize     int           // slots per counter table (default 65536; applied at start)
}

// TrunkDigest is the digest side of a trunk with auth: digest.
type TrunkDigest struct {
	// Realm is the realm of the challenges (required).
	Realm string
	// Domains are the SIP domains (Request-URI hosts, lower case) that
	// identify the trunk for sources outside its allow prefixes. Default: the realm.
	Domains []string
	// Algorithms are offered in this order, one challenge each (default
	// SHA-256 alone: phones that read only the first challenge know it).
	Algorithms []string
	// RequireTLS refuses digest authentication over UDP and TCP.
	RequireTLS bool
	Accounts   []Account
	// Registrar, when enabled, answers the trunk's REGISTERs (registrar.go).
	Registrar Registrar
}

// Account is one set of digest credentials of a trunk. Passwords are never
// in the configuration: HA1 holds H(username:realm:password) in hex, keyed by
// algorithm ("md5", "sha-256", "sha-512-256").
type Account struct {
	Username string
	HA1      map[string]string
	// SHAOnly accounts are never offered MD5 and never accept it.
	SHAOnly bool
	// Algorithms, when set, is the account's own challenge order: some
	// of the trunk's algorithms (empty: the trunk's).
	Algorithms []string
	// RegisterFrom, when not empty, are the only prefixes the account may REGISTER from.
	RegisterFrom []netip.Prefix
	// Limits are the account's own call and registration limits, within
	// the trunk's (zero: only the trunk's apply).
	Limits TrunkLimits
	// Numbers are the E.164 numbers and ranges the account may call from
	// (identity.go); empty: the trunk's numbers.
	Numbers []NumberRange
	// Line is where the account is in the file, for errors found later.
	Line int
}

type rawAuth struct {
	NonceLifetime   string        `yaml:"nonce_lifetime"`
	NonceTableSize  int           `yaml:"nonce_table_size"`
	RememberSources string        `yaml:"remember_sources"`
	Policy          rawPolicy     `yaml:"policy"`
	BruteForce      rawBruteForce `yaml:"bruteforce"`
}

type rawPolicy struct {
	MinLength    int    `yaml:"min_length"`
	MinClasses   int    `yaml:"min_classes"`
	RejectCommon *bool  `yaml:"reject_common"`
	ExtraFile    string `yaml:"extra_file"`
}

type rawBruteForce struct {
	Window                string `yaml:"window"`
	SourceAccountFailures *int   `yaml:"source_account_failures"`
	SourceFailures        *int   `yaml:"source_failures"`
	UnknownAccounts       *int   `yaml:"unknown_accounts"`
	AccountFailures       *int   `yaml:"account_failures"`
	Lockout               string `yaml:"lockout"`
	LockoutMode           string `yaml:"lockout_mode"`
	BanDuration           string `yaml:"ban_duration"`
	TableSize             int    `yaml:"table_size"`
}

// rawTrunkDigest is inlined in rawTrunk.
type rawTrunkDigest struct {
	Realm      string       `yaml:"realm"`
	Domains    []string     `yaml:"domains"`
	Algorithms []string     `yaml:"algorithms"`
	RequireTLS bool         `yaml:"require_tls"`
	Accounts   []rawAccount `yaml:"accounts"`
	Registrar  rawRegistrar `yaml:"registrar"`
}

type rawAccount struct {
	Username     string            `yaml:"username"`
	HA1          map[string]string `yaml:"ha1"`
	SHAOnly      bool              `yaml:"sha_only"`
	Algorithms   []string          `yaml:"algorithms"`
	RegisterFrom []string          `yaml:"register_from"`
	Limits       rawTrunkLimits    `yaml:"limits"`
	Numbers      []string          `yaml:"numbers"`
}

// auth validates the auth section.
func (v *validator) auth(r rawAuth) Auth {
	a := Auth{
		NonceLifetime:   v.duration(p("auth", "nonce_lifetime"), r.NonceLifetime, 5*time.Minute),
		NonceTableSize:  r.NonceTableSize,
		RememberSources: v.duration(p("auth", "remember_sources"), r.RememberSources, 2*time.Hour),
		Policy: CredentialPolicy{MinLength: r.Policy.MinLength, MinClasses: r.Policy.MinClasses, RejectCommon: true,
			ExtraFile: r.Policy.ExtraFile},
	}
	if a.NonceTableSize < 0 || a.NonceTableSize > 1<<24 {
		v.fail(p("auth", "nonce_table_size"), "must be 0 (default 100000) to 16777216, got %d", a.NonceTableSize)
	}
	if a.NonceTableSize == 0 {
		a.NonceTableSize = 100000
	}
	if r.Policy.RejectCommon != nil {
		a.Policy.RejectCommon = *r.Policy.RejectCommon
	}
	if a.Policy.MinLength < 0 || a.Policy.MinLength > 128 {
		v.fail(p("auth", "policy", "min_length"), "must be 0 (default 16) to 128, got %d", a.Policy.MinLength)
	}
	if a.Policy.MinLength == 0 {
		a.Policy.MinLength = 16
	}
	if a.Policy.MinClasses < 0 || a.Policy.MinClasses > 4 {
		v.fail(p("auth", "policy", "min_classes"), "must be 0 (default 3) to 4, got %d", a.Policy.MinClasses)
	}
	if a.Policy.MinClasses == 0 {
		a.Policy.MinClasses = 3
	}
	b := r.BruteForce
	base := p("auth", "bruteforce")
	a.BruteForce = BruteForce{
		Window:      v.duration(append(base, "window"), b.Window, 10*time.Minute),
		Lockout:     v.duration(append(base, "lockout"), b.Lockout, 15*time.Minute),
		LockoutMode: b.LockoutMode,
		TableSize:   b.TableSize,
	}
	if b.BanDuration != "" {
		a.BruteForce.BanDuration = v.duration(append(base, "ban_duration"), b.BanDuration, 0)
	}
	for _, f := range []struct {
		key string
		raw *int
		dst *int
		def int
	}{{"source_account_failures", b.SourceAccountFailures, &a.BruteForce.SourceAccount, 5},
		{"source_failures", b.SourceFailures, &a.BruteForce.Source, 20},
		{"unknown_accounts", b.UnknownAccounts, &a.BruteForce.Unknown, 10},
		{"account_failures", b.AccountFailures, &a.BruteForce.Account, 50}} {
		*f.dst = f.def
		if f.raw != nil {
			if *f.raw < 0 {
				v.fail(append(base, f.key), "must be >= 0 (0: the rule is off), got %d", *f.raw)
			}
			*f.dst = *f.raw
		}
	}
	switch a.BruteForce.LockoutMode {
	case "":
		a.BruteForce.LockoutMode = "restrict"
	case "restrict", "lock":
	default:
		v.fail(append(base, "lockout_mode"), "must be restrict (only the account's known sources may use it) or lock (nobody), got %q", b.LockoutMode)
	}
	if a.BruteForce.TableSize < 0 || a.BruteForce.TableSize > 1<<24 {
		v.fail(append(base, "table_size"), "must be 0 (default 65536) to 16777216, got %d", a.BruteForce.TableSize)
	}
	if a.BruteForce.TableSize == 0 {
		a.BruteForce.TableSize = 65536
	}
	return a
}

var (
	realmRe = regexp.MustCompile(`^[A-Za-z0-9_.:@!%*+~-]+$`)
	hexRe   = regexp.MustCompile(`^[0-9a-f]+$`)
	// algorithmOrder is the strength order (strongest first).
	algorithmOrder = []string{"SHA-512-256", "SHA-256", "MD5"}
	// defaultAlgorithms is the offer of a trunk that names none (auth.DefaultOffer).
	defaultAlgorithms = []string{"SHA-256"}
)

// digestTrunk validates the digest keys of trunk i; tr.Auth is AuthDigest.
func (v *validator) digestTrunk(base []any, r rawTrunkDigest, tr *Trunk, hasTLS bool, domains map[string]string) {
	d := TrunkDigest{Realm: r.Realm, RequireTLS: r.RequireTLS, Registrar: v.registrar(base, r.Registrar)}
	if r.Realm == "" {
		v.fail(append(base, "realm"), "a digest trunk needs a realm, e.g. sip.example.com")
	} else if !realmRe.MatchString(r.Realm) {
		v.fail(append(base, "realm"), "may hold letters, digits and . _ : @ ! %% * + ~ - only, got %q", r.Realm)
	}
	for i, dom := range r.Domains {
		dom = strings.ToLower(strings.TrimSpace(dom))
		if dom == "" || strings.ContainsAny(dom, " /;:@\"") {
			v.fail(append(base, "domains", i), "must be a host name or IP address, got %q", r.Domains[i])
			continue
		}
		d.Domains = append(d.Domains, dom)
	}
	if len(d.Domains) == 0 && r.Realm != "" {
		d.Domains = []string{strings.ToLower(r.Realm)}
	}
	if len(tr.Allow) == 0 {
		// Only trunks without fixed addresses are found by domain.
		for _, dom := range d.Domains {
			if other, dup := domains[dom]; dup {
				v.fail(append(base, "domains"), "domain %s is also a domain of trunk %s: requests from unknown addresses would be ambiguous", dom, other)
			}
			domains[dom] = tr.Name
		}
	}
	if len(r.Algorithms) == 0 {
		d.Algorithms = defaultAlgorithms
	}
	for i, alg := range r.Algorithms {
		j := slices.IndexFunc(algorithmOrder, func(s string) bool { return strings.EqualFold(s, alg) })
		if j < 0 {
			v.fail(append(base, "algorithms", i), "must be SHA-512-256, SHA-256 or MD5, got %q", alg)
			continue
		}
		if !slices.Contains(d.Algorithms, algorithmOrder[j]) {
			d.Algorithms = append(d.Algorithms, algorithmOrder[j])
		}
	}
	// In the order written: many phones answer only the first challenge.
	if d.RequireTLS && !hasTLS {
		v.fail(append(base, "require_tls"), "needs a tls:// listener")
	}
	if len(r.Accounts) == 0 {
		v.fail(append(base, "accounts"), "a digest trunk needs at least one account (sipwarden passwd prints one)")
	}
	users := map[string]int{}
	for i, ra := range r.Accounts {
		ab := append(append([]any{}, base...), "accounts", i)
		acct := Account{Username: ra.Username, SHAOnly: ra.SHAOnly, HA1: map[string]string{}}
		if n := lookup(v.root, ab); n != nil {
			acct.Line = n.Line
		}
		switch {
		case ra.Username == "":
			v.fail(append(ab, "username"), "a username is required")
		case len(ra.Username) > 128 || strings.ContainsAny(ra.Username, "\"\\\r\n\x00"):
			v.fail(append(ab, "username"), "must be at most 128 bytes without quotes, backslashes or line breaks")
		}
		if j, dup := users[ra.Username]; dup {
			v.fail(append(ab, "username"), "account %q is already accounts[%d]", ra.Username, j)
		}
		users[ra.Username] = i
		for k, h := range ra.HA1 {
			key := strings.ToLower(k)
			want := 64
			switch key {
			case "md5":
				want = 32
				if ra.SHAOnly {
					v.fail(append(ab, "ha1", k), "a sha_only account must not have an MD5 HA1")
				}
			case "sha-256", "sha-512-256":
			default:
				v.fail(append(ab, "ha1", k), "unknown algorithm: use md5, sha-256 or sha-512-256")
				continue
			}
			h = strings.ToLower(h)
			if len(h) != want || !hexRe.MatchString(h) {
				v.fail(append(ab, "ha1", k), "must be %d hex digits (H(username:realm:password); sipwarden passwd prints it)", want)
				continue
			}
			acct.HA1[key] = h
		}
		for i, alg := range ra.Algorithms {
			j := slices.IndexFunc(algorithmOrder, func(s string) bool { return strings.EqualFold(s, alg) })
			switch {
			case j < 0:
				v.fail(append(ab, "algorithms", i), "must be SHA-512-256, SHA-256 or MD5, got %q", alg)
			case !slices.Contains(d.Algorithms, algorithmOrder[j]):
				v.fail(append(ab, "algorithms", i), "%s is not one of the trunk's algorithms %v", algorithmOrder[j], d.Algorithms)
			case algorithmOrder[j] == "MD5" && ra.SHAOnly:
				v.fail(append(ab, "algorithms", i), "a sha_only account is never offered MD5")
			case slices.Contains(acct.Algorithms, algorithmOrder[j]):
				v.fail(append(ab, "algorithms", i), "%s is listed twice", algorithmOrder[j])
			default:
				acct.Algorithms = append(acct.Algorithms, algorithmOrder[j])
			}
		}
		offered := d.Algorithms
		if len(acct.Algorithms) > 0 {
			offered = acct.Algorithms
		}
		for _, alg := range offered {
			if alg == "MD5" && ra.SHAOnly {
				continue
			}
			if acct.HA1[strings.ToLower(alg)] == "" {
				v.fail(append(ab, "ha1"), "needs an HA1 for %s, which the account is offered (sipwarden passwd prints every algorithm)", alg)
			}
		}
		if ra.SHAOnly && !slices.Contains(d.Algorithms, "SHA-256") && !slices.Contains(d.Algorithms, "SHA-512-256") {
			v.fail(append(ab, "sha_only"), "the trunk offers no SHA algorithm")
		}
		for j, s := range ra.RegisterFrom {
			pf, err := parsePrefix(s)
			if err != nil {
				v.fail(append(ab, "register_from", j), "%v", err)
				continue
			}
			acct.RegisterFrom = append(acct.RegisterFrom, pf)
		}
		acct.Limits = v.limits(append(ab, "limits"), ra.Limits)
		d.Accounts = append(d.Accounts, acct)
	}
	tr.Digest = d
}

// AccountKey is the configuration path of account j of trunk i, for errors.
func AccountKey(i, j int) string {
	return "trunks[" + strconv.Itoa(i) + "].accounts[" + strconv.Itoa(j) + "]"
}
