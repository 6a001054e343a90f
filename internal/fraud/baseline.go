package fraud

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Baselines take weeks to learn, so they are kept across restarts in a small
// JSON file (about 6 KB per trunk, plus the countries and ranges it learned):
// loaded when the file is set, saved every hour by Run and by
// SaveBaselineFile when the server stops.

// baselineVersion 2 added the learned countries and ranges; version 1 files load.
const baselineVersion = 2

type baselineFile struct {
	Version  int                        `json:"version"`
	Saved    time.Time                  `json:"saved"`
	Accounts map[string]baselineAccount `json:"accounts"`
}

type baselineAccount struct {
	// Slots are the 168 hours of the week from Sunday 00:00 in the trunk's
	// time zone: calls, non-domestic calls, money spent (currency units), weeks learned.
	Slots [][4]float64 `json:"slots"`
	// Countries are the countries the trunk learned (new_country rules),
	// with the Unix second of the first call that taught each.
	Countries map[string]int64 `json:"countries,omitempty"`
	// Ranges are the ranges it learned ("+4420794xxxx"), likewise.
	Ranges map[string]int64 `json:"ranges,omitempty"`
	// Since is the Unix second from which the trunk has been watched.
	Since int64 `json:"since,omitempty"`
}

// SetBaselineFile loads the baselines saved at path (a missing file is a
// first start, not an error) and makes Run save them there.
func (e *Engine) SetBaselineFile(path string) error {
	e.baselinePath.Store(&path)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load fraud baselines: %w", err)
	}
	defer f.Close()
	if err := e.LoadBaselines(f); err != nil {
		return fmt.Errorf("load fraud baselines %s: %w", path, err)
	}
	return nil
}

// SaveBaselines writes every account's hour-of-week baseline as JSON.
func (e *Engine) SaveBaselines(w io.Writer) error {
	out := baselineFile{Version: baselineVersion, Saved: e.now().UTC(), Accounts: map[string]baselineAccount{}}
	e.mu.RLock()
	accts := make([]*account, 0, len(e.accts))
	for _, a := range e.accts {
		accts = append(accts, a)
	}
	e.mu.RUnlock()
	sort.Slice(accts, func(i, j int) bool { return accts[i].name < accts[j].name })
	for _, a := range accts {
		ba := baselineAccount{Slots: make([][4]float64, 168)}
		a.mu.Lock()
		for i, s := range a.baseline {
			ba.Slots[i] = [4]float64{float64(s.calls), float64(s.risky), float64(s.spend), float64(s.n)}
		}
		ba.Since = a.since
		if len(a.knownCountries) > 0 {
			ba.Countries = maps.Clone(a.knownCountries)
		}
		if len(a.knownRanges) > 0 {
			ba.Ranges = make(map[string]int64, len(a.knownRanges))
			for k, ts := range a.knownRanges {
				ba.Ranges[formatRange(k)] = ts
			}
		}
		a.mu.Unlock()
		out.Accounts[a.name] = ba
	}
	enc := json.NewEncoder(w)
	return enc.Encode(&out)
}

// LoadBaselines replaces the baselines of the accounts in r (read by
// SaveBaselines); other state is untouched. Nothing is changed when r is invalid.
func (e *Engine) LoadBaselines(r io.Reader) error {
	var in baselineFile
	dec := json.NewDecoder(io.LimitReader(r, 64<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	if in.Version != 1 && in.Version != baselineVersion {
		return fmt.Errorf("version %d, want 1 to %d", in.Version, baselineVersion)
	}
	type learned struct {
		slots     [168]slot
		countries map[string]int64
		ranges    map[uint64]int64
		since     int64
	}
	loaded := make(map[string]*learned, len(in.Accounts))
	for name, ba := range in.Accounts {
		if len(ba.Slots) != 168 {
			return fmt.Errorf("account %q: %d slots, want 168", name, len(ba.Slots))
		}
		if ba.Since < 0 {
			return fmt.Errorf("account %q: since %d", name, ba.Since)
		}
		b := &learned{countries: map[string]int64{}, ranges: map[uint64]int64{}, since: ba.Since}
		for i, v := range ba.Slots {
			for _, x := range v {
				if x < 0 || x > 1e9 || math.IsNaN(x) {
					return fmt.Errorf("account %q, slot %d: value %v out of range", name, i, x)
				}
			}
			b.slots[i] = slot{calls: float32(v[0]), risky: float32(v[1]), spend: float32(v[2]), n: uint16(min(v[3], math.MaxUint16))}
		}
		if len(ba.Countries) > 400 || len(ba.Ranges) > maxKnownRanges {
			return fmt.Errorf("account %q: %d countries and %d ranges, at most 400 and %d", name, len(ba.Countries), len(ba.Ranges), maxKnownRanges)
		}
		for c, ts := range ba.Countries {
			if c == "" || len(c) > 3 || ts < 0 {
				return fmt.Errorf("account %q: country %q learned at %d: want a region (GB) or a global code (881) and a time", name, c, ts)
			}
			b.countries[c] = ts
		}
		for r, ts := range ba.Ranges {
			k, err := parseRange(r)
			if err != nil || ts < 0 {
				return fmt.Errorf("account %q: range %q: want \"+4420794xxxx\" and a time", name, r)
			}
			b.ranges[k] = ts
		}
		loaded[name] = b
	}
	for name, b := range loaded {
		a := e.account(name)
		a.mu.Lock()
		a.baseline = b.slots
		a.knownCountries, a.knownRanges = b.countries, b.ranges
		if b.since != 0 && (a.since == 0 || b.since < a.since) {
			a.since = b.since
		}
		a.mu.Unlock()
	}
	return nil
}

// formatRange writes a range key as its digits with an x for each of the
// rangeDigits last ones: "+4420794xxxx".
func formatRange(k uint64) string {
	n := int(k & 15)
	s := strconv.FormatUint(k>>4, 10)
	for len(s) < n-rangeDigits { // leading zeros cannot happen in E.164, but keep the length exact
		s = "0" + s
	}
	return "+" + s + strings.Repeat("x", rangeDigits)
}

// parseRange reads what formatRange wrote.
func parseRange(s string) (uint64, error) {
	digits, ok := strings.CutPrefix(s, "+")
	if !ok || !strings.HasSuffix(digits, strings.Repeat("x", rangeDigits)) {
		return 0, fmt.Errorf("range %q", s)
	}
	digits = strings.TrimSuffix(digits, strings.Repeat("x", rangeDigits))
	n := len(digits) + rangeDigits
	if len(digits) == 0 || n > 15 || strings.Trim(digits, "0123456789") != "" {
		return 0, fmt.Errorf("range %q", s)
	}
	v, err := strconv.ParseUint(digits, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("range %q", s)
	}
	return v<<4 | uint64(n), nil
}

// SaveBaselineFile writes the baselines to the file of SetBaselineFile
// (nothing when none is set). A server calls it when it stops (Run does not:
// a save racing the end of the process would leave a partial temporary file).
func (e *Engine) SaveBaselineFile() error { return e.saveBaselines() }

// saveBaselines writes the baseline file atomically (a temporary file renamed over it).
func (e *Engine) saveBaselines() error {
	p := e.baselinePath.Load()
	if p == nil {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(*p), ".fraud-baselines-*")
	if err != nil {
		return fmt.Errorf("save fraud baselines: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := e.SaveBaselines(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("save fraud baselines: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save fraud baselines: %w", err)
	}
	if err := os.Rename(tmp.Name(), *p); err != nil {
		return fmt.Errorf("save fraud baselines: %w", err)
	}
	return nil
}
