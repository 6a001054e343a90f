package config

// DefaultTrunkConns is a trunk's TCP/TLS connection cap when its limits give
// none: well above a stranger's per-address cap, so that an office NAT with a
// few hundred phones on TLS is not refused.
const DefaultTrunkConns = 1000

// sipConns fills in the connection budget defaults that depend on other keys
// and checks that the budget adds up.
func (v *validator) sipConns(s *SIP) {
	if s.MaxConnsPerPrefix == 0 {
		s.MaxConnsPerPrefix = 2 * s.MaxConnsPerSource
	}
	if s.ReservedPeerConns == 0 {
		s.ReservedPeerConns = s.MaxConns / 4
	}
	if s.ReservedPeerConns >= s.MaxConns {
		v.fail(p("sip", "reserved_peer_conns"), "must be less than max_conns (%d), got %d", s.MaxConns, s.ReservedPeerConns)
	}
}
