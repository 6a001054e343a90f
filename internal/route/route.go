// Package route decides where an initial request goes. Calls from a trunk go
// to the trunk's upstream; calls from an upstream go to the trunk that owns
// the dialled number (a trunk's numbers: exact DIDs, ranges "+15551230000/4"
// and prefixes "+4420*"; the most specific match wins: an exact number, then
// the range or prefix with the most fixed digits).
package route

import (
	"github.com/sipwarden/sipwarden/internal/config"
)

// Table maps dialled E.164 numbers to trunks. It is immutable once built.
type Table struct {
	exact  map[string]*config.Trunk
	ranges map[rangeKey]*config.Trunk // fixed prefix and number of varying digits
	stars  map[string]*config.Trunk
	maxLen int
}

type rangeKey struct {
	prefix string
	digits int
}

// NewTable builds the number table of cfg's trunks.
func NewTable(cfg *config.Config) *Table {
	t := &Table{exact: map[string]*config.Trunk{}, ranges: map[rangeKey]*config.Trunk{}, stars: map[string]*config.Trunk{}}
	for i := range cfg.Trunks {
		tr := &cfg.Trunks[i]
		for _, n := range tr.Numbers {
			switch {
			case n.Digits == 0:
				t.exact[n.Prefix] = tr
			case n.Digits > 0:
				t.ranges[rangeKey{n.Prefix, n.Digits}] = tr
			default:
				t.stars[n.Prefix] = tr
			}
			t.maxLen = max(t.maxLen, len(n.Prefix))
		}
	}
	return t
}

// Lookup returns the trunk owning number ("+" and digits), or nil. It does
// not allocate.
func (t *Table) Lookup(number []byte) *config.Trunk {
	if tr := t.exact[string(number)]; tr != nil {
		return tr
	}
	for l := min(len(number), t.maxLen); l >= 2; l-- {
		p := number[:l]
		if len(t.ranges) > 0 {
			if tr := t.ranges[rangeKey{string(p), len(number) - l}]; tr != nil {
				return tr
			}
		}
		if tr := t.stars[string(p)]; tr != nil {
			return tr
		}
	}
	return nil
}
