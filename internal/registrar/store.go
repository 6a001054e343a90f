package registrar

import (
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// AOR is what the registrar keeps for one account: its bindings and the
// source addresses it registered from (for the new-source events).
type AOR struct {
	Bindings []Binding
	Known    []netip.Addr
}

// Store persists the registrar's state so that bindings survive a restart.
type Store interface {
	// LoadAORs returns every stored account (expired bindings included; the registrar drops them).
	LoadAORs() (map[string]AOR, error)
	// SaveAORs replaces what is stored for each key of aors (an empty AOR
	// deletes it), all in one transaction: a flush is one write, however
	// many accounts changed.
	SaveAORs(aors map[string]AOR) error
}

// Load returns a registrar with the state of st, which it writes back to
// (see Persist).
func Load(st Store) (*Registrar, error) {
	r := New()
	r.store = st
	aors, err := st.LoadAORs()
	if err != nil {
		return nil, fmt.Errorf("load registrar bindings: %w", err)
	}
	now := time.Now()
	for k, a := range aors {
		x := &aor{bindings: a.Bindings, known: a.Known}
		if len(x.known) > knownSources {
			x.known = x.known[len(x.known)-knownSources:]
		}
		x.expire(now)
		r.aors[k] = x
	}
	return r, nil
}

// markDirty notes that key changed (r.mu held).
func (r *Registrar) markDirty(key string) {
	if r.store == nil {
		return
	}
	if r.dirty == nil {
		r.dirty = map[string]struct{}{}
	}
	r.dirty[key] = struct{}{}
}

// Flush writes the accounts that changed since the last flush. A failed
// write is retried at the next flush.
func (r *Registrar) Flush() error {
	if r.store == nil {
		return nil
	}
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	r.mu.Lock()
	dirty := r.dirty
	r.dirty = nil
	snap := make(map[string]AOR, len(dirty))
	for k := range dirty {
		if a := r.aors[k]; a != nil {
			snap[k] = AOR{Bindings: append([]Binding(nil), a.bindings...), Known: append([]netip.Addr(nil), a.known...)}
		} else {
			snap[k] = AOR{}
		}
	}
	r.mu.Unlock()
	if len(snap) == 0 {
		return nil
	}
	if err := r.store.SaveAORs(snap); err != nil {
		r.mu.Lock()
		for k := range snap {
			r.markDirty(k) // retried at the next flush
		}
		r.mu.Unlock()
		return fmt.Errorf("save registrar bindings: %w", err)
	}
	return nil
}

// Persist flushes every interval until the returned stop is called; stop
// flushes a last time and returns that flush's error.
func (r *Registrar) Persist(interval time.Duration, onError func(error)) (stop func() error) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if err := r.Flush(); err != nil && onError != nil {
					onError(err)
				}
			}
		}
	}()
	var once sync.Once
	return func() error {
		once.Do(func() { close(done) })
		wg.Wait()
		return r.Flush()
	}
}
