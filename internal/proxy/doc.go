// Package proxy is sipwarden's transaction-stateful, dialog-aware SIP proxy core
// (RFC 3261 sections 16 and 17, RFC 3581).
//
// The transport layer hands every received message to Proxy.HandlePacket. The
// proxy picks a worker by hashing the Call-ID, so every message of one call is
// handled by one goroutine in arrival order: no locks on the transaction and
// dialog tables, and no reordering of a 180 behind the 200 that followed it.
//
// In a worker:
//
//   - Responses are matched to a client transaction by the branch of their top
//     Via (ours). 100 Trying is absorbed (we sent our own), other responses lose
//     our Via and are relayed to the address the request came from; a non-2xx
//     final response to an INVITE is acknowledged hop by hop; a 503 or a timeout
//     fails over to the next target of the route.
//   - Requests that retransmit a known server transaction get the last response
//     again and go no further. Every other request runs through the security
//     chain (see package chain); an initial request that the chain forwards
//     becomes a server transaction (100 Trying for INVITE), a client transaction
//     towards the target (with its own Via, a Record-Route and Max-Forwards
//     decremented) and, for INVITE, a dialog.
//   - CANCEL is answered hop by hop and cancels the pending client transaction.
//   - In-dialog requests (BYE, re-INVITE, ACK for 2xx, ...) are relayed to the
//     other party of a dialog the proxy knows: the Call-ID and the caller's
//     tag find it (chain.CallKey), the other tag must be the callee's once
//     the call is answered, and the request must come from its side's flow
//     (the address the INVITE came from, the address it went to, or any
//     address of the dialog's upstream). An unknown dialog gets 481, and so
//     does a known peer that sends another dialog's tags (a stranger gets
//     silence).
//   - A REFER from a trunk, in a dialog or not, is refused (403) unless the
//     trunk has transfers: allow, and then its target must pass the fraud
//     destination policy (Runtime.Transfers); a 3xx from the upstream to a
//     trunk's call is relayed only when every Contact passes it, else the
//     trunk gets 403.
//   - An INVITE without To tag that reuses a live dialog's Call-ID and From
//     tag is refused with 482 (RFC 3261 8.2.2.2), never taken as a new call
//     or a replacement: the dialog keeps its slot, meter and media.
//
// Topology hiding (topology.go, per trunk, on by default): the protected side's
// Contact, Via, Record-Route, Server, User-Agent and Warning never reach a
// trunk or a phone. The trunk gets sipwarden's Contact, whose user part is an
// HMAC handle of the dialog; the dialog maps it back to the upstream's
// Contact and route set, and the server transaction's copy of the request
// gives the upstream its Via entries back. topology.go says why it is done
// this way and what is not hidden.
//
// Timers (RFC 3261 17.1 and 17.2: A, B, C, D, E, F, G, H, I, J, K) run on a
// per-worker heap, so idle calls cost no goroutine. A timer lives inside its
// transaction or dialog and is removed from the heap when that ends: memory
// follows the calls in progress and the transactions of the last 32 s, never
// the calls that have ended (timers.go).
//
// A graceful stop (Drain, then EndCalls) answers new requests with 503 and
// Retry-After, lets the calls in progress go on, then ends those still up
// with a BYE towards both sides.
//
// Every INVITE dialog ends in one CDR (package cdr): answered, busy, no-answer,
// failed, cancelled, blocked by a stage, or interrupted by a shutdown.
//
// A source that has proved nothing (no configured peer, or a digest trunk's
// request without a verified account) may be a forged UDP address: replies
// of our own to it go once, without timer G, within a per-destination reply
// budget, and its refused INVITEs are counted and sampled, not written as
// CDRs (reflect.go).
package proxy
