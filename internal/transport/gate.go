package transport

import "github.com/sipwarden/sipwarden/internal/sip"

// Drop reasons of the pre-parse gate (metric label values).
const (
	dropBlocked   = "blocked"
	dropOversize  = "oversize"
	dropKeepalive = "keepalive"
	dropGarbage   = "garbage"
	dropFraming   = "framing"
	dropOverload  = "overload"
)

// dropReasons lists them all: their counters are created once (metrics.go).
var dropReasons = [...]string{dropBlocked, dropOversize, dropKeepalive, dropGarbage, dropFraming, dropOverload}

// classify decides, before any parsing, whether b may be a SIP message. It
// returns "" for a candidate, or the drop reason.
func classify(b []byte, max int) string {
	if len(b) > max {
		return dropOversize
	}
	i := 0
	for i < len(b) && (b[i] == '\r' || b[i] == '\n') {
		i++
	}
	if i == len(b) {
		return dropKeepalive
	}
	if !sip.IsTokenChar(b[i]) || len(b)-i < 12 {
		return dropGarbage
	}
	return ""
}
