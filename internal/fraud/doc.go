// Package fraud is sipwarden's toll-fraud engine: it decides whether a trunk
// may place a call, from what the call would cost and from how the trunk has
// been spending, and it watches calls in progress so that an attack is
// stopped while it runs, not when the bill arrives.
//
// It has four parts, each usable without the proxy:
//
//   - Classification (classify.go): the dialled number is made E.164 in the
//     trunk's dialling context (ITU-T E.164; national and international
//     prefixes as in ITU-T E.164 annex and RFC 3966 section 5.1.4 global
//     numbers), then classified as domestic, international, premium
//     (premium-rate, shared-cost, UAN), satellite / international networks
//     (+881, +882, +883, +870, +979, +808), NANP numbers that are really
//     other countries (Caribbean area codes such as 268, 876, 809) or
//     invalid/unallocated. Number types come from github.com/nyaruka/phonenumbers,
//     the maintained Go port of Google's libphonenumber: its metadata is the
//     reference everybody uses and is refreshed with each libphonenumber
//     release, so ranges opened or closed by regulators follow by `go get -u`.
//     It is slow (about 50 µs and 100 allocations per number), so results
//     are kept in a fixed-size cache that does not allocate on a hit.
//   - The rate deck (deck.go): a CSV of prefixes and prices, loaded into a
//     compact digit trie (longest-prefix match, effective dates), and the
//     cost of a call with connect fee and billing increments.
//   - The spend and velocity engine (engine.go): per trunk, sliding windows
//     of calls, international calls and money; the live exposure of calls in
//     progress; hour-of-week baselines; and actions (alert, throttle, block)
//     in windows that expire by themselves.
//   - The chain stage (stage.go): destination policy per trunk and the
//     engine's verdicts turned into SIP answers (403 with a Warning, 503
//     with Retry-After) for initial INVITEs from trunks.
package fraud
