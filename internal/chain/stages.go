package chain

// Order is THE canonical order of the stages. The configuration turns stages on
// and configures them; it never reorders them, because each stage relies on
// the ones before it:
//
//   - acl:    identifies the peer (trunk or upstream) by the packet's source
//     address; it reads no header, so it can run first. Unknown sources are
//     dropped here, so no later stage spends work on them, and the answer to a
//     malformed message depends on who sent it (400 for a peer, silence otherwise).
//   - flood:  per-peer request budgets by method class, per address and per
//     prefix; needs the peer's profile from acl, and runs before sanity so that
//     malformed messages count against their own budget.
//   - sanity: rejects malformed or looping requests before any later stage reads
//     their headers.
//   - scanner: drops (and bans) requests with the signature of a scanner or
//     attack tool; needs the parsed headers that sanity vouched for.
//   - limits: per-trunk calls per second and concurrent calls; needs the trunk from acl.
//   - fraud:  destination policy and spend/velocity rules for calls from trunks;
//     after limits, so that calls refused for capacity do not count as attempts.
//   - route:  picks the destination (the trunk's upstream, or the trunk that owns the
//     dialled number for calls from an upstream); runs last so nothing is
//     routed that another stage would refuse.
//
// Stages of later capabilities slot in between (auth and registrar before
// limits; shaken and media before route).
var Order = []string{"acl", "flood", "sanity", "scanner", "limits", "fraud", "route"}
