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
//   - auth:   digest authentication of requests from trunks with auth: digest
//     (401/407 challenges, brute-force counters); runs after scanner so that
//     attack tools are dropped without a challenge, and before limits so that
//     only authenticated calls take a trunk's call slots.
//   - identity: removes P-Asserted-Identity, P-Preferred-Identity, Diversion
//     and Remote-Party-ID from trunks outside the trust domain (RFC 3325) and
//     checks a digest account's caller ID against its numbers; needs the
//     trunk from acl and the account from auth, and runs before limits so
//     that a call refused for its caller ID takes no call slot, and before
//     fraud and shaken so that they see the identities that will be forwarded.
//   - limits: calls per second, concurrent calls and registrations per trunk
//     and per account; needs the trunk from acl and the account from auth,
//     and runs before registrar so that registrations are counted before
//     they are answered.
//   - registrar: answers the authenticated REGISTERs of digest trunks that
//     have one (bindings, 423); needs the account that auth established.
//   - fraud:  destination policy and spend/velocity rules for calls from trunks;
//     after limits, so that calls refused for capacity do not count as
//     attempts, and before shaken, so that no signature is spent on a call it
//     refuses.
//   - shaken: signs calls from trunks whose numbers we vouch for and verifies
//     calls from carrier trunks (STIR/SHAKEN); needs the trunk from acl, and
//     runs after limits so that no signature or certificate fetch is spent on
//     a call the limits refuse.
//   - media:  refuses (488) offers from trunks whose policy requires SRTP when a
//     stream lacks acceptable crypto; after limits so that refused calls were
//     counted, before route so that nothing is routed that would be refused.
//   - route:  picks the destination (the trunk's upstream, or the trunk that owns the
//     dialled number for calls from an upstream); runs last so nothing is
//     routed that another stage would refuse.
var Order = []string{"acl", "flood", "sanity", "scanner", "auth", "identity", "limits", "registrar", "fraud", "shaken", "media", "route"}
