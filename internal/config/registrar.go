package config

import "time"

// Registrar configures the registrar of a digest trunk (package registrar):
// when enabled, sipwarden answers the trunk's authenticated REGISTERs itself
// and keeps the bindings, instead of forwarding them to the upstream.
type Registrar struct {
	Enabled        bool
	MinExpires     time.Duration // default 60s; shorter expiries get 423
	MaxExpires     time.Duration // default 1h; longer ones are shortened
	DefaultExpires time.Duration // default: min(1h, max_expires)
	MaxContacts    int           // bindings per account (default 5)
}

type rawRegistrar struct {
	Enabled        bool   `yaml:"enabled"`
	MinExpires     string `yaml:"min_expires"`
	MaxExpires     string `yaml:"max_expires"`
	DefaultExpires string `yaml:"default_expires"`
	MaxContacts    int    `yaml:"max_contacts"`
}

func (v *validator) registrar(base []any, r rawRegistrar) Registrar {
	base = append(append([]any{}, base...), "registrar")
	g := Registrar{
		Enabled:     r.Enabled,
		MinExpires:  v.duration(append(base, "min_expires"), r.MinExpires, 60*time.Second),
		MaxExpires:  v.duration(append(base, "max_expires"), r.MaxExpires, time.Hour),
		MaxContacts: r.MaxContacts,
	}
	g.DefaultExpires = v.duration(append(base, "default_expires"), r.DefaultExpires, min(time.Hour, g.MaxExpires))
	if g.MinExpires > g.MaxExpires {
		v.fail(append(base, "min_expires"), "must not exceed max_expires (%v)", g.MaxExpires)
	} else if g.DefaultExpires < g.MinExpires || g.DefaultExpires > g.MaxExpires {
		v.fail(append(base, "default_expires"), "must be within min_expires and max_expires (%v to %v)", g.MinExpires, g.MaxExpires)
	}
	if g.MaxContacts < 0 || g.MaxContacts > 100 {
		v.fail(append(base, "max_contacts"), "must be 0 (default 5) to 100, got %d", g.MaxContacts)
	}
	if g.MaxContacts == 0 {
		g.MaxContacts = 5
	}
	return g
}
