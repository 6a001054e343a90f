package cli

import (
	"net/netip"

	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/transport"
)

// connPeers is the transport's table of configured peers for the TCP/TLS
// connection budget: each trunk's allow prefixes and its accounts'
// register_from prefixes (capped together by limits.max_connections), and
// each upstream's allow prefixes and target addresses. Connections from
// them use the share strangers cannot take.
func connPeers(cfg *config.Config) *transport.PeerTable {
	var peers []transport.PeerConns
	for i := range cfg.Trunks {
		t := &cfg.Trunks[i]
		pfs := append([]netip.Prefix(nil), t.Allow...)
		for _, a := range t.Digest.Accounts {
			pfs = append(pfs, a.RegisterFrom...)
		}
		peers = append(peers, transport.PeerConns{Name: "trunk:" + t.Name, Max: t.Limits.MaxConnections, Prefixes: pfs})
	}
	for i := range cfg.Upstreams {
		u := &cfg.Upstreams[i]
		pfs := append([]netip.Prefix(nil), u.Allow...)
		for _, tg := range u.Targets {
			a := tg.Addr.Addr().Unmap()
			pfs = append(pfs, netip.PrefixFrom(a, a.BitLen()))
		}
		peers = append(peers, transport.PeerConns{Name: "upstream:" + u.Name, Prefixes: pfs})
	}
	return transport.NewPeerTable(peers)
}
