package transport

import (
	"net/netip"

	"github.com/sipwarden/sipwarden/internal/cidr"
)

// DefaultPeerConns is the connection cap of a peer whose configuration
// gives none: room for an office NAT with a few hundred phones on TLS.
const DefaultPeerConns = 1000

// PeerConns describes one configured peer for the connection budget: the
// prefixes its connections come from and how many it may hold at once.
type PeerConns struct {
	// Name identifies the peer (a trunk or upstream name); connections of
	// peers with the same Name share one count.
	Name string
	// Max caps the peer's concurrent connections (0: DefaultPeerConns).
	Max      int
	Prefixes []netip.Prefix
}

type peerEntry struct {
	name string
	max  int
}

// PeerTable tells which configured peer a connecting address belongs to
// (longest-prefix match). It is immutable once built; a reload builds a new
// one and hands it to Manager.SetPeers.
type PeerTable struct {
	t *cidr.Table[peerEntry]
}

// NewPeerTable builds the table of peers; where two peers list the same
// prefix, the first keeps it.
func NewPeerTable(peers []PeerConns) *PeerTable {
	t := cidr.New[peerEntry]()
	for _, p := range peers {
		e := peerEntry{name: p.Name, max: p.Max}
		if e.max <= 0 {
			e.max = DefaultPeerConns
		}
		for _, pf := range p.Prefixes {
			t.Set(pf, e, false)
		}
	}
	return &PeerTable{t: t}
}

// lookup returns the peer that a belongs to (ok false: a stranger). It
// allocates nothing.
func (pt *PeerTable) lookup(a netip.Addr) (peerEntry, bool) {
	if pt == nil {
		return peerEntry{}, false
	}
	return pt.t.Lookup(a, nil)
}

// Peer returns the configured peer that a belongs to and its cap (ok
// false: a stranger).
func (pt *PeerTable) Peer(a netip.Addr) (name string, max int, ok bool) {
	e, ok := pt.lookup(a)
	return e.name, e.max, ok
}

// SetPeers replaces the table of configured peers used to admit stream
// connections (nil: everyone is a stranger). Connections already open keep
// the slot they were admitted with.
func (m *Manager) SetPeers(pt *PeerTable) { m.peers.Store(pt) }
