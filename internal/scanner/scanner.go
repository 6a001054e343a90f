// Package scanner recognises SIP scanners and attack tools (SIPVicious and
// its "friendly-scanner", sipcli, sundayddr, VaxSIPUserAgent, pplsip, iWar,
// SIVuS, smap...) by the signatures they leave in User-Agent or in the From
// display name. Their requests are dropped without a reply — a scanner that
// gets no answer cannot fingerprint or enumerate — and the source is banned
// (package banlist), so its next packets are dropped before parsing.
package scanner

import (
	"bytes"
	"strings"

	"github.com/sipwarden/sipwarden/internal/sip"
)

// DefaultSignatures are the built-in signatures (matched case-insensitively
// as substrings).
var DefaultSignatures = []string{
	"friendly-scanner", "sipvicious", "sipcli", "sundayddr", "vaxsipuseragent", "pplsip", "sip-scan",
	"sipscan", "iwar", "sivus", "smap", "svcrack", "svwar", "sipsscan", "nmap", "masscan", "voipbuster",
}

// Matcher finds signatures in a message.
type Matcher struct {
	sigs [][]byte // lower case
}

// NewMatcher compiles signatures (nil: DefaultSignatures).
func NewMatcher(signatures []string) *Matcher {
	if len(signatures) == 0 {
		signatures = DefaultSignatures
	}
	m := &Matcher{}
	for _, s := range signatures {
		m.sigs = append(m.sigs, []byte(strings.ToLower(s)))
	}
	return m
}

// maxScan bounds how much of a header is examined.
const maxScan = 256

// Match returns the signature found in m's User-Agent or From display name,
// or "". It does not allocate.
func (mt *Matcher) Match(m *sip.Msg) string {
	if s := mt.matchValue(m.Get(sip.HdrUserAgent)); s != "" {
		return s
	}
	if from := m.Get(sip.HdrFrom); from != nil {
		if na, _, err := sip.ParseNameAddr(from); err == nil && len(na.Display) > 0 {
			return mt.matchValue(na.Display)
		}
	}
	return ""
}

func (mt *Matcher) matchValue(v []byte) string {
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
		if bytes.Contains(low, s) {
			return string(s)
		}
	}
	return ""
}
