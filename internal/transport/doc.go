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
// allowed to block the proxy. Connections are capped per source address and
// in total; TLS handshakes, the first message and idle periods have timeouts,
// so slow or half-open connections cannot exhaust the server. TLS is 1.2 or
// newer; the certificate is reloaded from its files without a restart, and
// client certificates are verified when a client CA is configured.
//
// Defaults: MaxMessageSize 65535, IdleTimeout 3m, HandshakeTimeout 5s,
// MaxConnsPerSource 32, MaxConns 10000, WriteQueue 256 messages.
package transport
