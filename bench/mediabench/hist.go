package main

import (
	"math"
	"strconv"
)

// hist is a cumulative histogram as Prometheus exposes it: Counts[i]
// samples at or below Bounds[i], Total samples in all (those above the last
// bound included).
type hist struct {
	Bounds []float64 `json:"bounds,omitempty"`
	Counts []uint64  `json:"counts,omitempty"`
	Total  uint64    `json:"total,omitempty"`
}

// sub returns h minus an earlier snapshot of the same histogram (the
// samples of the period between them); a snapshot with other bounds counts
// as empty.
func (h hist) sub(earlier hist) hist {
	d := hist{Bounds: h.Bounds, Counts: make([]uint64, len(h.Counts)), Total: h.Total - min(h.Total, earlier.Total)}
	same := len(earlier.Counts) == len(h.Counts)
	for i, c := range h.Counts {
		if same {
			c -= min(c, earlier.Counts[i])
		}
		d.Counts[i] = c
	}
	if !same {
		d.Total = h.Total
	}
	return d
}

// quantile estimates the q-quantile (in milliseconds, formatted)
// interpolating linearly within the bucket it falls in, as Prometheus's
// histogram_quantile does; past the last bound it says "> bound".
func (h hist) quantile(q float64) string {
	if h.Total == 0 || len(h.Bounds) == 0 {
		return "?"
	}
	rank := q * float64(h.Total)
	lo, prev := 0.0, 0.0
	for i, b := range h.Bounds {
		c := float64(h.Counts[i])
		if c >= rank && c > prev {
			v := lo + (b-lo)*(rank-prev)/(c-prev)
			return strconv.FormatFloat(math.Max(v, 0)*1e3, 'f', 3, 64)
		}
		lo, prev = b, c
	}
	return "> " + strconv.FormatFloat(h.Bounds[len(h.Bounds)-1]*1e3, 'f', 1, 64)
}
