// Package media anchors the RTP of calls through sipwarden: it rewrites the
// SDP of offers and answers so that every stream flows through a local
// relay, negotiates SRTP per leg with SDES or DTLS-SRTP, and forwards
// packets between the legs, bridging plain RTP and SRTP and defending the
// relay's ports.
//
// # Using it
//
// A Relay is created once per process (New) and keyed by the SIP Call-ID.
// The proxy, or the media stage, calls:
//
//	out, err := relay.Offer(callID, media.LegA, body, policy)  // INVITE offer from the caller
//	out, err := relay.Answer(callID, media.LegB, body)          // 183/200 answer from the callee
//	out, err := relay.Update(callID, leg, body)                 // re-INVITE/UPDATE offer from either leg
//	sec      := relay.Close(callID)                             // BYE, CANCEL, failure: sockets and ports freed
//
// Each returns the body to send on instead of the one received. An error
// from Offer or Update maps to a SIP reply with SIPStatus (ErrSRTPRequired:
// 488 with a Warning). Close (or Security) gives the media security of both
// legs for the CDR. TrunkPolicy turns a trunk's `srtp` and `media` settings
// into a call's Policy.
//
// # What it implements
//
//   - SDP offer/answer (RFC 3264): the connection address (o=, c=) and the
//     port of each m-line are replaced by the relay's, per leg; m-lines keep
//     their order; port 0 disables a stream (its ports are freed on the
//     answer); non-RTP m-lines (T.38, BFCP) are offered disabled, since
//     media must not bypass the relay; hold (c=0.0.0.0, a=sendonly,
//     a=inactive) is passed on; re-offers keep ports and keys.
//   - RFC 3605 a=rtcp, a=rtcp-mux (RFC 5761) and ICE attributes (RFC 8839)
//     are dropped from relayed streams: the relay uses RTCP on port+1 and is
//     not an ICE agent. With direct media, ICE is kept or stripped per policy.
//   - SDES (RFC 4568) with AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32
//     (RFC 4568 section 6.2) and AEAD_AES_128_GCM (RFC 7714 section 14.2):
//     the offerer's first acceptable a=crypto is taken, the relay answers
//     with a fresh key of its own; towards the other leg it offers all three
//     suites with fresh keys. Keys are per leg, never forwarded, and print as
//     "[redacted]". MKIs, several key parameters and session parameters that
//     weaken SRTP (UNENCRYPTED_*, UNAUTHENTICATED_SRTP, KDR other than 0) make
//     an a=crypto line unacceptable.
//   - DTLS-SRTP (RFC 5763, RFC 5764) through pion/dtls: offers in
//     UDP/TLS/RTP/SAVP (or RTP/SAVP) with a=fingerprint (RFC 8122) and
//     a=setup (RFC 4145) are answered with the relay's own certificate
//     fingerprint and role; a leg can be offered DTLS-SRTP instead of SDES
//     (LegPolicy.OfferDTLS). The handshakes run on the leg's relay ports,
//     one per port since RTCP is not multiplexed, demultiplexed from RTP by
//     the first byte (RFC 7983); the peer's certificate must match its SDP
//     fingerprint; SRTP keys come from the exporter (RFC 5764 section 4.2)
//     and then follow the same packet path as SDES keys. See dtls.go and
//     dtls_endpoint.go.
//   - SRTP and SRTCP (RFC 3711) through pion/srtp, with replay protection
//     (a 128-packet window, section 3.3.2); packets that fail authentication
//     or replay are dropped and counted.
//   - Symmetric RTP (RFC 4961): the relay sends to each peer from the port
//     it receives on, and latches to the first valid source. With plain RTP
//     only the SDP's address, its IP, or (for a private SDP address, a peer
//     behind NAT) any source may latch; with SRTP only an authenticated
//     packet latches. After latching, other sources are dropped (RTP bleed).
//   - RTP sanity (RFC 3550 appendix A.1): version 2, no RTCP on the RTP
//     port, a new SSRC or a sequence jump taken only once the next packet
//     confirms it; a packet-rate cap per socket; an inactivity timeout.
//
// # Performance
//
// On Linux the relay runs one poller per CPU (GOMAXPROCS): an epoll
// instance over the non-blocking sockets of the streams assigned to it,
// read and written with raw recvfrom/sendto. Parking a goroutine per socket
// in Go's netpoller instead costs, per packet, a read that fails with
// EAGAIN, a goroutine wake-up and often a thread wake-up: measured with
// bench/mediabench, the pollers halve the CPU per packet. epoll_wait is the
// batching that pays here: one call returns the ready sockets of many
// streams. A batched read per socket (recvmmsg, x/net/ipv4 ReadBatch) does
// not: at 50 packets a second a socket almost never has a second packet
// queued. All four sockets of a stream belong to one poller, which alone
// reads, writes and closes them. Buffers are per poller: forwarding
// allocates nothing per packet. Counters are kept per socket and flushed to
// Prometheus every 64 packets. Elsewhere a goroutine per socket reads
// through net.UDPConn.
//
// # Libraries
//
// pion/sdp, pion/srtp, pion/rtp, pion/rtcp and pion/dtls (the WebRTC stack
// of the Go ecosystem: maintained, fuzzed, without cgo; pion/dtls is the
// DTLS 1.2 that pion/webrtc runs DTLS-SRTP on, with use_srtp and the key
// exporter). pion/sdp refuses media types it does not know (m=image for
// T.38); parseSDP works around that.
package media
