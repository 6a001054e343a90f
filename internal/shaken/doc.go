// Package shaken implements STIR/SHAKEN for sipwarden: the PASSporT token
// and the SIP Identity header, the authentication service that signs calls
// going out, the verification service that checks calls coming in, and the
// certificate handling both need.
//
// # What it promises
//
//   - What we sign is canonical: the PASSporT header and claims are JSON with
//     lexicographically sorted keys and no white space (RFC 8225 section 9),
//     so any verifier that rebuilds the token gets the same bytes.
//   - What we accept is what carriers send: a quoted ppt parameter, several
//     Identity header fields, non-canonical JSON whose signature is valid
//     (we verify the bytes as received, never a re-serialisation), and
//     PASSporT types we do not handle ("div", "rcd", ...) are skipped
//     without failing the call. Each Identity is verified on its own.
//   - Bounded: an Identity value, a decoded token part, a certificate
//     response and the certificate cache all have fixed size limits
//     (MaxIdentityLen, MaxTokenPartLen, CacheConfig). No panic on any input
//     (fuzz targets FuzzParseIdentity and FuzzParsePASSporT).
//   - Calls never wait for the network longer than a configured budget:
//     certificates are fetched asynchronously into a cache (Cache) that
//     honours HTTP caching headers, serves stale entries while it
//     revalidates, caches failures, and bounds concurrent fetches.
//
// # RFC and ATIS sections
//
//   - RFC 8224 (SIP Identity): section 4 (the full-form Identity header and
//     its parameters info, alg, ppt), 4.1 (Date and iat), 6.2 (verifier
//     behaviour and the codes 403 Stale Date, 428, 436 Bad Identity Info,
//     437 Unsupported Credential, 438 Invalid Identity Header), 8.3
//     (telephone number canonicalisation: digits only).
//   - RFC 8225 (PASSporT): sections 5 (header: typ, alg, x5u), 5.2 (claims
//     orig, dest, iat), 9 (canonical JSON) and RFC 7515 (JWS compact
//     serialisation; ES256 signatures are raw R||S, RFC 7518 section 3.4).
//   - RFC 8588 (SHAKEN extension): ppt "shaken", claims attest (A, B, C) and
//     origid (a UUID).
//   - RFC 8226 and ATIS-1000080: the TNAuthList certificate extension
//     (OID 1.3.6.1.5.5.7.1.26, module with EXPLICIT tags; a SHAKEN
//     certificate carries exactly one Service Provider Code), chains to the
//     STI-CA trust anchors, the x5u rules.
//   - RFC 5280 section 5 and ATIS-1000080: certificate revocation lists
//     at the signing certificate's distribution point (CRLSoft, CRLHard).
//   - RFC 9111 and RFC 5861: the freshness of cached certificates
//     (Cache-Control, Expires, Age, stale-while-revalidate).
//   - ATIS-1000074: the verification steps and the verstat values
//     TN-Validation-Passed, TN-Validation-Failed and No-TN-Validation
//     (3GPP TS 24.229 section 7.2A.20) put on P-Asserted-Identity or From.
//
// # The stage
//
// Stage (stage.go) is the chain stage "shaken": it signs initial INVITEs
// from trunks configured with a signer and verifies those from trunks
// configured to verify, asking the proxy for its header edits. README.md
// describes its configuration, verdicts, metrics and events.
//
// # Libraries
//
// Only the standard library: crypto/ecdsa and crypto/x509 do ES256 and
// chain verification, encoding/asn1 reads TNAuthList, net/http fetches
// certificates. A JOSE/JWT library would not earn its place: a PASSporT is
// one fixed algorithm and a handful of claims, and building the canonical
// JSON by hand is both shorter and faster than configuring a general library
// to produce it.
package shaken
