package admin

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strings"
)

// MinTokenLength is the shortest token accepted from a token file: 16
// characters of a random token are beyond guessing over HTTP.
const MinTokenLength = 16

// tokenCheck compares bearer tokens with the configured one in constant
// time. Both sides are hashed first, so that the comparison takes the same
// time whatever the length of the guess.
type tokenCheck struct {
	sum [sha256.Size]byte
	set bool
}

func newTokenCheck(token string) tokenCheck {
	if token == "" {
		return tokenCheck{}
	}
	return tokenCheck{sum: sha256.Sum256([]byte(token)), set: true}
}

func (c tokenCheck) matches(given string) bool {
	sum := sha256.Sum256([]byte(given))
	return c.set && subtle.ConstantTimeCompare(sum[:], c.sum[:]) == 1
}

// bearer returns the token of an "Authorization: Bearer TOKEN" header.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// auth wraps a handler that changes state: it runs only for a request that
// carries the token. Refusals are logged with the peer's address, never
// with what it sent.
func (s *Server) auth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.token.set {
			writeError(w, http.StatusForbidden, "changes through the admin API are off: no admin token is configured")
			return
		}
		tok, ok := bearer(r)
		if !ok || !s.token.matches(tok) {
			why := "no bearer token"
			if ok {
				why = "wrong bearer token"
			}
			s.log.Warn("admin API request refused", "src", peerHost(r), "method", r.Method, "path", r.URL.Path, "reason", why)
			w.Header().Set("WWW-Authenticate", `Bearer realm="sipwarden admin"`)
			writeError(w, http.StatusUnauthorized, why+": send Authorization: Bearer <the admin token>")
			return
		}
		h(w, r)
	}
}

// peerHost is the address of the request's peer without its port.
func peerHost(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

// ErrTokenMissing is returned by LoadToken for a token file that does not
// exist when it may not be created.
var ErrTokenMissing = errors.New("admin token file does not exist")

// LoadToken reads the admin token from path. With create, a missing file is
// created (mode 0600, 32 random bytes in hex) and created is true: the
// default token file in the storage directory needs no setup, and the CLI on
// the same machine reads it there. The file must not be readable by others
// (mode o+r: a local user could take over the API) and must hold one token
// of at least MinTokenLength printable characters.
func LoadToken(path string, create bool) (token string, created bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if !create {
			return "", false, fmt.Errorf("%s: %w", path, ErrTokenMissing)
		}
		return createToken(path)
	}
	if err != nil {
		return "", false, fmt.Errorf("read admin token: %w", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return "", false, fmt.Errorf("admin token: %w", err)
	}
	if st.Mode().Perm()&0o007 != 0 {
		return "", false, fmt.Errorf("admin token file %s is accessible to every user (mode %04o): chmod o-rwx it", path, st.Mode().Perm())
	}
	token = strings.TrimSpace(string(b))
	if err := checkToken(token); err != nil {
		return "", false, fmt.Errorf("admin token file %s: %w", path, err)
	}
	return token, false, nil
}

func checkToken(t string) error {
	if len(t) < MinTokenLength {
		return fmt.Errorf("the token must have at least %d characters, it has %d", MinTokenLength, len(t))
	}
	for i := 0; i < len(t); i++ {
		if t[i] <= ' ' || t[i] > '~' {
			return errors.New("the token must be one word of printable ASCII characters")
		}
	}
	return nil
}

func createToken(path string) (string, bool, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", false, fmt.Errorf("admin token: %w", err)
	}
	token := hex.EncodeToString(raw[:])
	// O_EXCL: two processes starting at once do not overwrite each other's token.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return LoadToken(path, false)
	}
	if err != nil {
		return "", false, fmt.Errorf("create admin token: %w", err)
	}
	if _, err := f.WriteString(token + "\n"); err != nil {
		f.Close()
		return "", false, fmt.Errorf("write admin token %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return "", false, fmt.Errorf("write admin token %s: %w", path, err)
	}
	return token, true, nil
}
