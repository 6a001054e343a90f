// Package firewall connects sipwarden to the kernel's packet filter.
//
// Two things, following the carrier guide's advice to "firewall your SIP
// ports ... only allow traffic to these ports from your carrier's IP addresses
// and from authorized endpoint IPs":
//
//   - Ruleset prints an nftables ruleset derived from the configuration: the SIP
//     listener ports (and an RTP port range, when given) open only to the
//     trunks' and upstreams' prefixes. The operator reviews it and loads it with
//     `nft -f`; sipwarden never installs it on its own, because a firewall that
//     a program rewrites behind the operator's back is a firewall nobody trusts.
//
//   - Mirror keeps the bans in force in a table that sipwarden owns (inet
//     family, default name sipwarden_bans) in step with the ban list, through
//     netlink (github.com/google/nftables: pure Go, no nft binary needed, the
//     library Google uses in production for the same job). Packets from a
//     banned source to sipwarden's ports are dropped in the prerouting hook at
//     raw priority, before connection tracking and before they cost a socket
//     wake-up and a system call. The ban list's own pre-parse gate stays in
//     force, so nothing is let through while the kernel set catches up.
//     Reputation-feed entries are not mirrored: they must never drop a
//     configured peer, and only the gate knows who the peer is.
//
// The kernel sets are interval sets: prefixes are merged into ranges (a /32
// inside a banned /24 disappears into it) and the whole set is replaced in
// one netlink transaction at each change, so the kernel never holds a state
// the list did not have.
package firewall
