// Package auth implements SIP digest authentication for sipwarden: accounts
// whose passwords are never stored (only HA1 per algorithm), a credential
// policy, the parsing of Authorization and Proxy-Authorization headers,
// challenges, stateless nonces and their replay protection, and the chain
// stage "auth" that challenges requests from trunks with `auth: digest`.
//
// # Standards
//
//   - RFC 3261 section 22 (HTTP authentication in SIP: 401 with
//     WWW-Authenticate for REGISTER and requests to a registrar/UAS role,
//     407 with Proxy-Authenticate for requests through a proxy) and the
//     grammar of section 25.1 (credentials, digest-response).
//   - RFC 7616 (HTTP Digest): algorithms MD5, SHA-256 and SHA-512-256,
//     qop=auth, nonce-count, stale=true; the test vectors of section 3.9.1
//     and the RFC 2617 section 3.5 example are unit tests. The "-sess"
//     algorithms, qop=auth-int and userhash are not offered and are refused.
//   - RFC 8760 (SHA-256 and SHA-512/256 in SIP digest): one challenge header
//     per algorithm, in the order the trunk lists them (default SHA-256
//     alone: many phones answer only the first challenge).
//
// # Design
//
// Nonces are stateless: a nonce carries its issue time and a counter and is
// authenticated with an HMAC-SHA-256 (server secret) over the realm, that
// time, the counter and the source address the challenge went to. A nonce
// from another address, another realm or another process secret does not
// verify; one older than the lifetime is stale. Only the nonce-count needs
// state: ReplayGuard keeps, per nonce in use, the highest count seen and a
// 64-entry window, in a table of bounded size. A nonce that fell out of the
// table is answered stale (the client takes a new one), never accepted twice.
//
// Verification is in two halves (Check, then Finish) so that nothing about
// the response is looked at before the nonce is known to be ours, fresh and
// bound to the source, the algorithm one the realm offers, and the account
// free to authenticate from there (lockout, register_from: decided by the
// stage between the halves). A right and a wrong password get the same
// answer unless all of those hold: no stale=true password oracle.
//
// The expected response is compared in constant time (crypto/subtle). An
// unknown username is verified against a pseudo-HA1 derived from the secret,
// so that it costs the same time and gets exactly the same answer as a wrong
// password: extensions cannot be enumerated. Verification allocates nothing.
//
// The library uses only the Go standard library (crypto/md5, crypto/sha256,
// crypto/sha512): nothing here needs more.
package auth
