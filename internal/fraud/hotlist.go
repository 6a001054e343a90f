package fraud

import (
	"slices"

	"github.com/sipwarden/sipwarden/internal/config"
)

// hotList matches E.164 numbers against operator entries: an exact number
// beats any range, and a longer range beats a shorter one.
type hotList struct {
	exact  map[string]bool // number -> block
	ranges []hotRange      // longest prefix first
}

type hotRange struct {
	prefix string
	digits int // digits after prefix; -1: any
	block  bool
}

type hotMatch uint8

const (
	hotNone hotMatch = iota
	hotAllow
	hotBlock
)

func newHotList(entries []config.HotEntry) hotList {
	var h hotList
	for _, e := range entries {
		block := e.Action == config.FraudBlock
		if e.Number.Digits == 0 {
			if h.exact == nil {
				h.exact = map[string]bool{}
			}
			h.exact[e.Number.Prefix] = block
			continue
		}
		h.ranges = append(h.ranges, hotRange{prefix: e.Number.Prefix, digits: e.Number.Digits, block: block})
	}
	// Longest fixed part first; at equal length a fixed-length range before an open one.
	slices.SortStableFunc(h.ranges, func(a, b hotRange) int {
		if len(a.prefix) != len(b.prefix) {
			return len(b.prefix) - len(a.prefix)
		}
		if (a.digits < 0) != (b.digits < 0) {
			if a.digits < 0 {
				return 1
			}
			return -1
		}
		return 0
	})
	return h
}

func (h *hotList) match(num []byte) hotMatch {
	if len(num) == 0 {
		return hotNone
	}
	if block, ok := h.exact[string(num)]; ok { // no allocation: map lookup by string(bytes)
		return verdictOf(block)
	}
	for _, r := range h.ranges {
		if len(num) >= len(r.prefix) && string(num[:len(r.prefix)]) == r.prefix &&
			(r.digits < 0 || len(num)-len(r.prefix) == r.digits) {
			return verdictOf(r.block)
		}
	}
	return hotNone
}

func verdictOf(block bool) hotMatch {
	if block {
		return hotBlock
	}
	return hotAllow
}
