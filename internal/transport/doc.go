// Package transport carries SIP messages over UDP, TCP and TLS (RFC 3261
// section 18, RFC 5626 keep-alives) for the proxy.
//
// Every datagram and every framed stream message passes the pre-parse gate
// before anyone reads it: a banned source (Options.Gate), an oversize
// message, a keep-alive and bytes that cannot start a SIP message are
// dropped and counted by reason in sipwarden_transport_dropped_total, and
// never reach the handler. Memory per message is bounded by MaxMessageSize;
// received datagrams are copied into right-sized pooled buffers, so a queued
// packet does not pin a 64 KiB read buffer.
//
// UDP sockets are read in batches with recvmmsg (golang.org/x/net/ipv4 and
// ipv6 ReadBatch). Streams are framed by Content-Length (a stream message
// without one is a framing error that closes the connection). Each
// connection has one reader and one writer goroutine; writes go through a
// bounded queue, and a peer that does not read is disconnected rather than
// allowed to block the proxy.
//
// Connections are admitted before any byte is read, so the budget is
// decided by address. Configured peers (SetPeers: trunks, upstreams, the
// prefixes registered accounts may register from) may use all of MaxConns,
// each up to its own cap; strangers together may use only MaxConns minus
// ReservedPeerConns, each address up to MaxConnsPerSource and each IPv6 /64
// up to MaxConnsPerPrefix. Strangers filling their share therefore never
// lock a trunk out. TLS handshakes and the first bytes have a timeout, and
// the idle timeout runs from the last complete message: bytes of an
// unfinished message and keep-alives (answered, "\r\n\r\n" with "\r\n",
// within a budget of 16 at once and one a second) do not move it, so slow or
// half-open connections cannot hold slots. TLS is 1.2 or
// newer; the certificate is reloaded from its files without a restart, and
// client certificates are verified when a client CA is configured.
//
// Defaults: MaxMessageSize 65535, IdleTimeout 3m, HandshakeTimeout 5s,
// MaxConnsPerSource 32, MaxConnsPerPrefix 64, MaxConns 10000,
// ReservedPeerConns MaxConns/4, a peer's cap DefaultPeerConns (1000),
// WriteQueue 256 messages.
package transport
