// Package acl identifies who sent a request from the packet's source address:
// a customer trunk, an upstream (the protected PBX side), or nobody. It reads
// no SIP header, so it runs first in the chain, and an unknown source is
// dropped before any other work is spent on it (or answered 403 when the
// configuration says unknown_sources: reject).
//
// Upstreams are recognised first by the exact address and port of their
// targets (so a PBX on the same host as a trunk is still told apart over UDP),
// then every allow prefix of trunks and upstreams by longest-prefix match
// over IPv4 and IPv6. A lookup allocates nothing.
package acl

import (
	"net/netip"

	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/cidr"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/sip"
)

// Match is the result of a lookup.
type Match struct {
	Kind     chain.PeerKind
	Trunk    *config.Trunk
	Upstream *config.Upstream
}

// Table maps source addresses to peers. It is immutable once built.
type Table struct {
	exact    map[netip.AddrPort]Match
	prefixes *cidr.Table[Match]
}

// New builds the table of cfg.
func New(cfg *config.Config) *Table {
	t := &Table{exact: map[netip.AddrPort]Match{}, prefixes: cidr.New[Match]()}
	for i := range cfg.Upstreams {
		u := &cfg.Upstreams[i]
		m := Match{Kind: chain.PeerUpstream, Upstream: u}
		for _, tg := range u.Targets {
			t.exact[tg.Addr] = m
		}
		for _, pf := range u.Allow {
			t.prefixes.Set(pf, m, true)
		}
	}
	for i := range cfg.Trunks {
		tr := &cfg.Trunks[i]
		for _, pf := range tr.Allow {
			t.prefixes.Set(pf, Match{Kind: chain.PeerTrunk, Trunk: tr}, true)
		}
	}
	// An upstream's target addresses also identify it on streams (whose source
	// port is ephemeral), unless an explicit allow entry owns the address.
	for i := range cfg.Upstreams {
		u := &cfg.Upstreams[i]
		for _, tg := range u.Targets {
			a := tg.Addr.Addr()
			t.prefixes.Set(netip.PrefixFrom(a, a.BitLen()), Match{Kind: chain.PeerUpstream, Upstream: u}, false)
		}
	}
	return t
}

// Lookup identifies the sender at src. tr is the transport it arrived on:
// exact upstream addresses count for UDP only (a stream's port is ephemeral).
func (t *Table) Lookup(src netip.AddrPort, tr sip.Transport) Match {
	a := src.Addr().Unmap()
	if tr == sip.UDP {
		if m, ok := t.exact[netip.AddrPortFrom(a, src.Port())]; ok {
			return m
		}
	}
	m, _ := t.prefixes.Lookup(a, nil)
	return m
}
