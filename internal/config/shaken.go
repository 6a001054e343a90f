package config

import (
	"path/filepath"
	"strings"
	"time"
)

// Shaken configures STIR/SHAKEN (package shaken): which trunks' calls are
// signed (authentication service) and which are verified (verification
// service), the signing identities, the STI-CA trust anchors and the
// certificate cache. The zero value (no shaken section) turns it off.
type Shaken struct {
	// TrustAnchors is a PEM bundle of STI-CA root certificates (needed to verify).
	TrustAnchors string
	// MaxAge is how old a PASSporT's iat may be (default 60s).
	MaxAge time.Duration
	// FutureSkew is how far ahead of our clock an iat may be (default 5s).
	FutureSkew time.Duration
	// FetchBudget is the longest a call waits for a certificate fetch (default 200ms).
	FetchBudget time.Duration
	// RelaxX5U lifts the x5u port and address rules (labs and tests only).
	RelaxX5U bool
	// CountryCode ("1") is put before numbers written without a country
	// code (no '+' or "00"), when signing and when matching orig and dest.
	CountryCode string
	// ReasonHeader is the protocol of the Reason header added to calls whose
	// verification failed and that pass (verify: mark): "SIP" (RFC 3326,
	// default) or "STIR" (RFC 9410).
	ReasonHeader string
	// CRL is the revocation check: off, soft (default: checked when the CRL
	// can be had) or hard (a certificate whose CRL cannot be had fails).
	CRL string
	// Cache tunes the certificate cache.
	Cache ShakenCache
	// Signers are the signing identities: a key and its certificate's URL.
	Signers []ShakenSigner
	// Trunks says what happens to calls from each trunk.
	Trunks []ShakenTrunk
}

// Enabled reports whether any trunk signs or verifies.
func (s *Shaken) Enabled() bool { return len(s.Trunks) > 0 }

// ShakenCache tunes the certificate cache (zero: package shaken's defaults).
type ShakenCache struct {
	DefaultTTL, MinTTL, MaxTTL, StaleWhileRevalidate, NegativeTTL time.Duration
	MaxEntries, MaxFetches, MaxResponseSize                       int
}

// ShakenSigner is one signing identity.
type ShakenSigner struct {
	Name string
	Key  string // PEM P-256 private key file (must not be readable by others)
	X5U  string // https URL of its certificate chain
}

// Values of ShakenTrunk.Verify.
const (
	ShakenMark   = "mark"   // failures pass with verstat=TN-Validation-Failed and a Reason header
	ShakenReject = "reject" // failures are answered with their RFC 8224 code
)

// ShakenTrunk is the policy for calls from one trunk: signed with Signer,
// or verified (Verify is mark or reject).
type ShakenTrunk struct {
	Trunk string
	// Signer names the signing identity; set for trunks whose calls we sign.
	Signer string
	// Gateway: the trunk brings traffic from another network (attestation C).
	Gateway bool
	// DestFromRURI takes the called number from the Request-URI instead of To.
	DestFromRURI bool
	// Verify, set for trunks whose calls we verify: mark or reject.
	Verify string
}

type rawShaken struct {
	TrustAnchors string            `yaml:"trust_anchors"`
	MaxAge       string            `yaml:"max_age"`
	FutureSkew   string            `yaml:"future_skew"`
	FetchBudget  string            `yaml:"fetch_budget"`
	RelaxX5U     bool              `yaml:"relax_x5u_for_tests"`
	CRL          string            `yaml:"crl"`
	CountryCode  string            `yaml:"country_code"`
	ReasonHeader string            `yaml:"reason_header"`
	Cache        rawShakenCache    `yaml:"cache"`
	Signers      []rawShakenSigner `yaml:"signers"`
	Trunks       []rawShakenTrunk  `yaml:"trunks"`
}

type rawShakenCache struct {
	DefaultTTL           string `yaml:"default_ttl"`
	MinTTL               string `yaml:"min_ttl"`
	MaxTTL               string `yaml:"max_ttl"`
	StaleWhileRevalidate string `yaml:"stale_while_revalidate"`
	NegativeTTL          string `yaml:"negative_ttl"`
	MaxEntries           int    `yaml:"max_entries"`
	MaxFetches           int    `yaml:"max_fetches"`
	MaxResponseSize      string `yaml:"max_response_size"`
}

type rawShakenSigner struct {
	Name string `yaml:"name"`
	Key  string `yaml:"key"`
	X5U  string `yaml:"x5u"`
}

type rawShakenTrunk struct {
	Trunk        string `yaml:"trunk"`
	Sign         string `yaml:"sign"`
	Gateway      bool   `yaml:"gateway"`
	DestFromRURI bool   `yaml:"dest_from_ruri"`
	Verify       string `yaml:"verify"`
}

// shaken validates the shaken section; c's trunks are already built.
func (v *validator) shaken(r *rawShaken, c *Config) Shaken {
	base := p("shaken")
	at := func(parts ...any) []any { return append(append([]any{}, base...), parts...) }
	s := Shaken{
		TrustAnchors: r.TrustAnchors,
		MaxAge:       v.duration(at("max_age"), r.MaxAge, 60*time.Second),
		FutureSkew:   v.duration(at("future_skew"), r.FutureSkew, 5*time.Second),
		FetchBudget:  v.duration(at("fetch_budget"), r.FetchBudget, 200*time.Millisecond),
		RelaxX5U:     r.RelaxX5U,
		CRL:          r.CRL,
		CountryCode:  strings.TrimPrefix(r.CountryCode, "+"),
		ReasonHeader: strings.ToUpper(r.ReasonHeader),
		Cache: ShakenCache{
			DefaultTTL:           v.duration(at("cache", "default_ttl"), r.Cache.DefaultTTL, 24*time.Hour),
			MinTTL:               v.duration(at("cache", "min_ttl"), r.Cache.MinTTL, time.Minute),
			MaxTTL:               v.duration(at("cache", "max_ttl"), r.Cache.MaxTTL, 7*24*time.Hour),
			StaleWhileRevalidate: v.duration(at("cache", "stale_while_revalidate"), r.Cache.StaleWhileRevalidate, time.Hour),
			NegativeTTL:          v.duration(at("cache", "negative_ttl"), r.Cache.NegativeTTL, time.Minute),
			MaxEntries:           r.Cache.MaxEntries,
			MaxFetches:           r.Cache.MaxFetches,
			MaxResponseSize:      v.size(at("cache", "max_response_size"), r.Cache.MaxResponseSize, 64<<10),
		},
	}
	if cc := s.CountryCode; cc != "" && (len(cc) > 3 || strings.Trim(cc, "0123456789") != "" || cc[0] == '0') {
		v.fail(at("country_code"), "must be 1 to 3 digits (an E.164 country code such as 1 or 44), got %q", r.CountryCode)
	}
	switch s.ReasonHeader {
	case "":
		s.ReasonHeader = "SIP"
	case "SIP", "STIR":
	default:
		v.fail(at("reason_header"), "must be sip (RFC 3326) or stir (RFC 9410), got %q", r.ReasonHeader)
	}
	switch s.CRL {
	case "":
		s.CRL = "soft"
	case "off", "soft", "hard":
	default:
		v.fail(at("crl"), "must be off, soft or hard, got %q", r.CRL)
	}
	if s.Cache.MaxEntries < 0 {
		v.fail(at("cache", "max_entries"), "must not be negative")
	}
	if s.Cache.MaxFetches < 0 {
		v.fail(at("cache", "max_fetches"), "must not be negative")
	}
	if s.Cache.MinTTL > s.Cache.MaxTTL {
		v.fail(at("cache", "min_ttl"), "is above cache.max_ttl (%v)", s.Cache.MaxTTL)
	}
	if s.FutureSkew > time.Minute {
		v.fail(at("future_skew"), "at most 1m: a PASSporT from the future is replayable for that long")
	}
	signers := map[string]int{}
	for i, rs := range r.Signers {
		switch {
		case rs.Name == "":
			v.fail(at("signers", i, "name"), "is required")
		case signers[rs.Name] > 0:
			v.fail(at("signers", i, "name"), "duplicate signer %q", rs.Name)
		}
		signers[rs.Name] = i + 1
		if rs.Key == "" {
			v.fail(at("signers", i, "key"), "is required: a PEM P-256 private key file")
		}
		if rs.X5U == "" {
			v.fail(at("signers", i, "x5u"), "is required: the https URL where the certificate chain is published")
		}
		s.Signers = append(s.Signers, ShakenSigner{Name: rs.Name, Key: rs.Key, X5U: rs.X5U})
	}
	trunks := map[string]bool{}
	verify := false
	for i, rt := range r.Trunks {
		t := ShakenTrunk{Trunk: rt.Trunk, Signer: rt.Sign, Gateway: rt.Gateway, DestFromRURI: rt.DestFromRURI, Verify: rt.Verify}
		switch {
		case rt.Trunk == "":
			v.fail(at("trunks", i, "trunk"), "is required: the name of a trunk")
		case c.Trunk(rt.Trunk) == nil:
			v.fail(at("trunks", i, "trunk"), "no trunk is named %q", rt.Trunk)
		case trunks[rt.Trunk]:
			v.fail(at("trunks", i, "trunk"), "trunk %q has two shaken entries", rt.Trunk)
		}
		trunks[rt.Trunk] = true
		switch {
		case rt.Sign != "" && rt.Verify != "":
			v.fail(at("trunks", i), "a trunk's calls are either signed (sign) or verified (verify), not both")
		case rt.Sign == "" && rt.Verify == "":
			v.fail(at("trunks", i), "needs sign: SIGNER (calls from it are signed) or verify: mark|reject")
		case rt.Sign != "" && signers[rt.Sign] == 0:
			v.fail(at("trunks", i, "sign"), "no signer is named %q", rt.Sign)
		case rt.Verify != "" && rt.Verify != ShakenMark && rt.Verify != ShakenReject:
			v.fail(at("trunks", i, "verify"), "must be mark or reject, got %q", rt.Verify)
		}
		if rt.Verify != "" {
			verify = true
			if rt.Gateway || rt.DestFromRURI {
				v.fail(at("trunks", i), "gateway and dest_from_ruri apply to signed trunks only")
			}
		}
		s.Trunks = append(s.Trunks, t)
	}
	if verify && s.TrustAnchors == "" {
		v.fail(at("trust_anchors"), "is required to verify calls: a PEM bundle of STI-CA root certificates")
	}
	return s
}

// resolvePaths makes the shaken section's file names absolute against dir.
func (s *Shaken) resolvePaths(dir string) {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	s.TrustAnchors = abs(s.TrustAnchors)
	for i := range s.Signers {
		s.Signers[i].Key = abs(s.Signers[i].Key)
	}
}

// ShakenTrunk returns the shaken policy of the trunk named name, or nil.
func (s *Shaken) ShakenTrunk(name string) *ShakenTrunk {
	for i := range s.Trunks {
		if s.Trunks[i].Trunk == name {
			return &s.Trunks[i]
		}
	}
	return nil
}
