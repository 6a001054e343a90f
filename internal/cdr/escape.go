package cdr

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"unicode/utf8"
)

const hexDigits = "0123456789abcdef"

// EscapeText returns s as valid UTF-8 text without NUL, losslessly: a
// backslash becomes `\\`, a NUL byte `\x00` and every byte that is not part
// of a valid UTF-8 sequence `\xNN` (two lower-case hex digits); everything
// else, printable or not, is kept. UnescapeText reverses it. Text that needs
// no escaping (the common case) is returned as is, without allocating.
func EscapeText(s string) string {
	if textSafe(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\':
			b.WriteString(`\\`)
			i++
		case c == 0:
			b.WriteString(`\x00`)
			i++
		case c < utf8.RuneSelf:
			b.WriteByte(c)
			i++
		default:
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				b.WriteString(`\x`)
				b.WriteByte(hexDigits[c>>4])
				b.WriteByte(hexDigits[c&15])
				i++
				continue
			}
			b.WriteString(s[i : i+n])
			i += n
		}
	}
	return b.String()
}

// textSafe reports whether EscapeText would leave s unchanged.
func textSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == 0 || c == '\\' {
			return false
		}
		if c >= utf8.RuneSelf {
			return utf8.ValidString(s[i:]) && strings.IndexByte(s[i:], '\\') < 0 && strings.IndexByte(s[i:], 0) < 0
		}
	}
	return true
}

// UnescapeText reverses EscapeText: `\\` is a backslash and `\xNN` the byte
// NN. A backslash followed by anything else is kept as it is.
func UnescapeText(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			b = append(b, c)
			continue
		}
		switch {
		case s[i+1] == '\\':
			b = append(b, '\\')
			i++
		case s[i+1] == 'x' && i+3 < len(s) && isHex(s[i+2]) && isHex(s[i+3]):
			b = append(b, unhex(s[i+2])<<4|unhex(s[i+3]))
			i += 3
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// EscapeRecord returns r with every text field escaped by EscapeText: what
// the stores keep.
func EscapeRecord(r Record) Record {
	r.modifyText(EscapeText)
	return r
}

// UnescapeRecord reverses EscapeRecord: the bytes the proxy recorded.
func UnescapeRecord(r Record) Record {
	r.modifyText(UnescapeText)
	return r
}

func (r *Record) modifyText(f func(string) string) {
	r.UID, r.CallID, r.Trunk, r.Upstream, r.Direction = f(r.UID), f(r.CallID), f(r.Trunk), f(r.Upstream), f(r.Direction)
	r.SrcAddr, r.Transport, r.From, r.To = f(r.SrcAddr), f(r.Transport), f(r.From), f(r.To)
	r.Disposition, r.Stage, r.Reason = Disposition(f(string(r.Disposition))), f(r.Stage), f(r.Reason)
	r.CallerMedia, r.CalleeMedia, r.Identity = f(r.CallerMedia), f(r.CalleeMedia), f(r.Identity)
}

// NewUID returns a new unique record id: 32 hex digits of randomness.
func NewUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24)
	return hex.EncodeToString(b[:])
}
