// Package scanner recognises SIP scanners and attack tools (SIPVicious and
// its "friendly-scanner", sipcli, sundayddr, VaxSIPUserAgent, pplsip, iWar,
// SIVuS, smap...) by the name they put in User-Agent. Their requests are
// dropped without a reply — a scanner that gets no answer cannot fingerprint
// or enumerate — and the source is banned (package banlist), so its next
// packets are dropped before parsing. A configured trunk or upstream is
// never banned (anyone can forge its address over UDP): its request is
// dropped, nothing more.
//
// A signature matches a whole token of User-Agent: the bytes around it must
// not be letters or digits, so "iwar" matches "iWar/1.0" but never
// "Siwar-Phone". A signature written "=..." matches only the whole
// User-Agent. Display names (From, To) are no evidence at all: they are
// chosen by the caller a trunk forwards, and "Anil Tiwari" is a person.
package scanner

import (
	"bytes"
	"strings"

	"github.com/sipwarden/sipwarden/internal/sip"
)

// DefaultSignatures are the built-in signatures (tokens of User-Agent,
// matched case-insensitively).
var DefaultSignatures = []string{
	"friendly-scanner", "sipvicious", "sipcli", "sundayddr", "vaxsipuseragent", "pplsip", "sip-scan",
	"sipscan", "iwar", "sivus", "smap", "svcrack", "svwar", "sipsscan", "nmap", "masscan", "voipbuster",
}

// Matcher finds signatures in a message.
type Matcher struct {
	sigs []signature
}

type signature struct {
	text  []byte // lower case
	name  string // text, for the caller (no allocation per match)
	exact bool   // the whole User-Agent, not a token of it
}

// NewMatcher compiles signatures (nil: DefaultSignatures).
func NewMatcher(signatures []string) *Matcher {
	if len(signatures) == 0 {
		signatures = DefaultSignatures
	}
	m := &Matcher{}
	for _, s := range signatures {
		sig := signature{}
		if rest, ok := strings.CutPrefix(s, "="); ok {
			s, sig.exact = rest, true
		}
		sig.text = []byte(strings.ToLower(strings.TrimSpace(s)))
		sig.name = string(sig.text)
		if len(sig.text) > 0 {
			m.sigs = append(m.sigs, sig)
		}
	}
	return m
}

// maxScan bounds how much of a header is examined.
const maxScan = 256

// Match returns the signature found in m's User-Agent, or "". It does not
// allocate.
func (mt *Matcher) Match(m *sip.Msg) string {
	return mt.matchValue(m.Get(sip.HdrUserAgent))
}

func (mt *Matcher) matchValue(v []byte) string {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return ""
	}
	var buf [maxScan]byte
	n := copy(buf[:], v)
	low := buf[:n]
	for i, c := range low {
		if 'A' <= c && c <= 'Z' {
			low[i] = c + 32
		}
	}
	for _, s := range mt.sigs {
		if s.exact {
			if len(v) <= maxScan && bytes.Equal(low, s.text) {
				return s.name
			}
			continue
		}
		if hasToken(low, s.text) {
			return s.name
		}
	}
	return ""
}

// hasToken reports whether tok occurs in s with no letter or digit (alnum)
// right before or right after it.
func hasToken(s, tok []byte) bool {
	for off := 0; off+len(tok) <= len(s); {
		i := bytes.Index(s[off:], tok)
		if i < 0 {
			return false
		}
		i += off
		end := i + len(tok)
		if (i == 0 || !alnum(s[i-1])) && (end == len(s) || !alnum(s[end])) {
			return true
		}
		off = i + 1
	}
	return false
}

// alnum reports whether c can belong to a word: an ASCII letter or digit,
// or a byte of a non-ASCII (UTF-8) character, so that "Ñiwar" is one word.
func alnum(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || c >= 0x80
}
