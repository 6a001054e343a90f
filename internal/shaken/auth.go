package shaken

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/sipwarden/sipwarden/internal/sip"
)

// Errors of the authentication service.
var (
	// ErrNotSigned: the policy forbids signing this call (unknown source).
	ErrNotSigned = errors.New("call not signed")
	// ErrStaleDate: the request's Date header is outside the freshness window (403 Stale Date).
	ErrStaleDate = errors.New("stale date")
	// ErrNoTN: the calling or called party is no telephone number.
	ErrNoTN = errors.New("no telephone number")
)

// Source is what the chain knows about who sent a call going out.
type Source struct {
	// Known: the source was identified as a configured customer (trunk).
	Known bool
	// Authenticated: the customer proved who it is (source address ACL,
	// TLS client certificate, digest).
	Authenticated bool
	// OwnsNumber: the calling number is one of the customer's numbers.
	OwnsNumber bool
	// Gateway: the call entered our network from another network we cannot
	// vouch for (an interconnect or international gateway).
	Gateway bool
}

// Attestation decides the attestation level of a call (RFC 8588 section 4,
// ATIS-1000074 section 5.2.3): C for gateway traffic; A when the customer is
// authenticated and owns the calling number; B when the customer is known
// but the number is not theirs (or it is not authenticated). A call from an
// unknown source is never signed: ErrNotSigned.
func Attestation(s Source) (string, error) {
	switch {
	case s.Gateway:
		return AttestC, nil
	case !s.Known:
		return "", fmt.Errorf("%w: unknown source", ErrNotSigned)
	case s.Authenticated && s.OwnsNumber:
		return AttestA, nil
	default:
		return AttestB, nil
	}
}

// LoadSigningKey reads a PEM P-256 private key (PKCS #8 "PRIVATE KEY" or
// SEC 1 "EC PRIVATE KEY"). It refuses a file that others may read or write
// (any permission bit for "other"): a signing key lets anyone attest calls
// in our name.
func LoadSigningKey(path string) (*ecdsa.PrivateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	defer func() { _ = f.Close() }()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("signing key %s: not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o007 != 0 {
		return nil, fmt.Errorf("signing key %s: mode %04o lets other users access it; chmod o-rwx (0600 or 0640)", path, perm)
	}
	data, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	key, err := ParseSigningKey(data)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	return key, nil
}

// ParseSigningKey decodes the first private key PEM block of data.
func ParseSigningKey(data []byte) (*ecdsa.PrivateKey, error) {
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New(`no PEM private key: give a P-256 key ("PRIVATE KEY" or "EC PRIVATE KEY" block), e.g. from openssl ecparam -name prime256v1 -genkey`)
		}
		var key any
		var err error
		switch b.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(b.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, err
		}
		k, ok := key.(*ecdsa.PrivateKey)
		if !ok || k.Curve != elliptic.P256() {
			return nil, errors.New("not an ECDSA P-256 key (ES256 needs one)")
		}
		return k, nil
	}
}

// Signer is the authentication service of one signing identity: a key and
// the x5u URL of its certificate. Safe for concurrent use.
type Signer struct {
	key *ecdsa.PrivateKey
	x5u string
	// MaxDateSkew is how far a request's Date may be from our clock for its
	// time to be the iat (default 60s, RFC 8224 section 4.1).
	MaxDateSkew time.Duration
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Rand is the source of origid values (nil: crypto/rand).
	Rand io.Reader
}

// NewSigner returns a Signer; x5u must pass CheckX5U (relaxed for labs).
func NewSigner(key *ecdsa.PrivateKey, x5u string, relaxed bool) (*Signer, error) {
	if key == nil || key.Curve != elliptic.P256() {
		return nil, errors.New("signer: want a P-256 key")
	}
	if _, err := CheckX5U(x5u, relaxed); err != nil {
		return nil, fmt.Errorf("signer: %w", err)
	}
	return &Signer{key: key, x5u: x5u}, nil
}

// X5U returns the certificate URL the signer puts in its PASSporTs.
func (s *Signer) X5U() string { return s.x5u }

// Signed is what the authentication service adds to a request.
type Signed struct {
	// Identity is the full-form Identity header value.
	Identity string
	// Date, when not empty, is a Date header value to add (the request had none).
	Date   string
	Attest string
	OrigID string
	IAT    int64
}

// SignCall signs a call from orig to dest (canonical TNs) with attest. date
// is the request's Date header value (nil when absent): when present it
// must be within MaxDateSkew of our clock and becomes the iat (RFC 8224
// section 4.1: Date and iat agree); when absent, the iat is now and
// Signed.Date is the header to add. origID "" draws a new UUID.
func (s *Signer) SignCall(orig string, dest []string, attest, origID string, date []byte) (Signed, error) {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	t := now().Truncate(time.Second)
	var out Signed
	if len(date) > 0 {
		d, err := http.ParseTime(string(date))
		if err != nil {
			return out, fmt.Errorf("%w: unreadable Date header", ErrStaleDate)
		}
		skew := s.MaxDateSkew
		if skew <= 0 {
			skew = 60 * time.Second
		}
		if diff := d.Sub(t); diff > skew || -diff > skew {
			return out, fmt.Errorf("%w: Date is %v from our clock", ErrStaleDate, diff.Round(time.Second))
		}
		t = d
	} else {
		out.Date = t.UTC().Format(http.TimeFormat)
	}
	if origID == "" {
		var err error
		if origID, err = NewUUID(s.Rand); err != nil {
			return Signed{}, err
		}
	}
	c := Claims{Attest: attest, Orig: orig, Dest: dest, IAT: t.Unix(), OrigID: origID}
	var buf [1024]byte
	tok, err := AppendSigned(buf[:0], s.key, s.x5u, &c)
	if err != nil {
		return Signed{}, err
	}
	out.Identity = string(AppendIdentity(tok, "", s.x5u)) // token, then ;info=<x5u>;alg;ppt
	out.Attest, out.OrigID, out.IAT = attest, origID, c.IAT
	return out, nil
}

// CallNumbers reads what the authentication service signs from a request:
// orig from P-Asserted-Identity, else From; dest from To, or from the
// Request-URI when destFromRURI. Both must be telephone numbers (ErrNoTN).
// A number written without country code gets cc before it (cc "": as is).
func CallNumbers(m *sip.Msg, destFromRURI bool, cc string) (orig, dest string, err error) {
	if v := m.Get(sip.HdrPAssertedIdentity); v != nil {
		for rest := v; len(rest) > 0 && orig == ""; {
			na, r, err := sip.ParseNameAddr(rest)
			if err != nil {
				break
			}
			orig = NationalTN(na.URI, cc)
			rest = r
		}
	}
	if orig == "" {
		if na, _, err := sip.ParseNameAddr(m.Get(sip.HdrFrom)); err == nil {
			orig = NationalTN(na.URI, cc)
		}
	}
	if destFromRURI {
		dest = NationalTN(m.RequestURI(), cc)
	} else if na, _, err := sip.ParseNameAddr(m.Get(sip.HdrTo)); err == nil {
		dest = NationalTN(na.URI, cc)
	}
	switch {
	case orig == "":
		return "", "", fmt.Errorf("%w: calling party", ErrNoTN)
	case dest == "":
		return "", "", fmt.Errorf("%w: called party", ErrNoTN)
	}
	return orig, dest, nil
}
