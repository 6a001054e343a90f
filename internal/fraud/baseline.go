package fraud

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// Baselines take weeks to learn, so they are kept across restarts in a small
// JSON file (about 6 KB per trunk): loaded when the file is set, saved every
// hour by Run and by SaveBaselineFile when the server stops.

const baselineVersion = 1

type baselineFile struct {
	Version  int                        `json:"version"`
	Saved    time.Time                  `json:"saved"`
	Accounts map[string]baselineAccount `json:"accounts"`
}

type baselineAccount struct {
	// Slots are the 168 hours of the week from Sunday 00:00 in the trunk's
	// time zone: calls, non-domestic calls, money spent (currency units), weeks learned.
	Slots [][4]float64 `json:"slots"`
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
	if in.Version != baselineVersion {
		return fmt.Errorf("version %d, want %d", in.Version, baselineVersion)
	}
	loaded := make(map[string]*[168]slot, len(in.Accounts))
	for name, ba := range in.Accounts {
		if len(ba.Slots) != 168 {
			return fmt.Errorf("account %q: %d slots, want 168", name, len(ba.Slots))
		}
		var b [168]slot
		for i, v := range ba.Slots {
			for _, x := range v {
				if x < 0 || x > 1e9 || math.IsNaN(x) {
					return fmt.Errorf("account %q, slot %d: value %v out of range", name, i, x)
				}
			}
			b[i] = slot{calls: float32(v[0]), risky: float32(v[1]), spend: float32(v[2]), n: uint16(min(v[3], math.MaxUint16))}
		}
		loaded[name] = &b
	}
	for name, b := range loaded {
		a := e.account(name)
		a.mu.Lock()
		a.baseline = *b
		a.mu.Unlock()
	}
	return nil
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
