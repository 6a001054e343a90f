package shaken

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
)

// ErrX5U: the certificate URL is refused or cannot be fetched (436 Bad Identity Info).
var ErrX5U = errors.New("bad identity info")

// MaxX5ULen is the longest x5u URL accepted.
const MaxX5ULen = 1024

// CheckX5U applies the SHAKEN rules for certificate URLs (ATIS-1000080
// section 5.3.1, and the lessons of SSRF): https only, port 443 or 8443, no
// user information, query or fragment, and no literal special-purpose
// address (loopback, private, link-local, documentation, ...). relaxed lifts
// the port and address rules, for tests and labs only. Errors wrap ErrX5U.
func CheckX5U(raw string, relaxed bool) (*url.URL, error) {
	if raw == "" || len(raw) > MaxX5ULen {
		return nil, fmt.Errorf("%w: x5u of %d bytes", ErrX5U, len(raw))
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] <= ' ' || raw[i] >= 0x7f {
			return nil, fmt.Errorf("%w: x5u has byte 0x%02x", ErrX5U, raw[i])
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: x5u: %v", ErrX5U, err)
	}
	switch {
	case u.Scheme != "https":
		return nil, fmt.Errorf("%w: x5u scheme %q, want https", ErrX5U, u.Scheme)
	case u.User != nil:
		return nil, fmt.Errorf("%w: x5u has user information", ErrX5U)
	case u.RawQuery != "" || u.ForceQuery:
		return nil, fmt.Errorf("%w: x5u has a query", ErrX5U)
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return nil, fmt.Errorf("%w: x5u has a fragment", ErrX5U)
	case u.Hostname() == "":
		return nil, fmt.Errorf("%w: x5u has no host", ErrX5U)
	case u.Opaque != "":
		return nil, fmt.Errorf("%w: x5u is not hierarchical", ErrX5U)
	}
	if relaxed {
		return u, nil
	}
	if p := u.Port(); p != "" && p != "443" && p != "8443" {
		return nil, fmt.Errorf("%w: x5u port %s, want 443 or 8443", ErrX5U, p)
	}
	if a, err := netip.ParseAddr(u.Hostname()); err == nil && SpecialPurpose(a) {
		return nil, fmt.Errorf("%w: x5u host %s is a special-purpose address", ErrX5U, a)
	}
	if h := strings.ToLower(u.Hostname()); h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return nil, fmt.Errorf("%w: x5u host %s is local", ErrX5U, h)
	}
	return u, nil
}

// specialPrefixes are the IANA special-purpose registries' entries that are
// not globally reachable (RFC 6890 and its updates), plus multicast.
var specialPrefixes = func() []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
		"172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
		"198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
		"::/128", "::1/128", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32",
		"2002::/16", "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10", "ff00::/8",
	} {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}()

// SpecialPurpose reports whether a is an address a certificate fetch must
// never reach: not globally routable, or reserved.
func SpecialPurpose(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() {
		return true
	}
	a = a.WithZone("")
	for _, p := range specialPrefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// dialControl refuses connections to special-purpose addresses after DNS
// resolution, so that a name resolving to 127.0.0.1 (or rebinding to it)
// cannot be used to reach internal services.
func dialControl(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: dial %s: %v", ErrX5U, address, err)
	}
	if SpecialPurpose(ap.Addr()) {
		return fmt.Errorf("%w: %s resolves to a special-purpose address", ErrX5U, ap.Addr())
	}
	return nil
}
