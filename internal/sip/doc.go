// Package sip is sipwarden's SIP message layer, built for a proxy: it reads
// a message once, keeps an index of where things are in the received bytes,
// parses a header's value only when someone asks, and writes a changed
// message by splicing new bytes between untouched ranges of the original. It
// has no sockets and no goroutines.
//
// # Promises
//
//   - Zero copy and zero allocation: Msg.Parse, the accessors, the value
//     parsers (ParseVia, ParseURI, ParseNameAddr, Param), Editor.AppendTo into
//     a reused buffer and AppendResponse allocate nothing (guarded by
//     testing.AllocsPerRun tests). Parsing a typical 800-byte INVITE takes
//     about 500 ns on the project's 2-core machines (BenchmarkParseInvite).
//   - Bounded: at most MaxHeaders header fields; Content-Length must fit in
//     the message; every value parser walks its input once.
//   - Strict where a lenient parser would let two implementations disagree:
//     lines end in CRLF (a bare LF is refused, so that no downstream parser
//     sees other fields than sipwarden checked), control bytes are refused
//     outside quoted-pairs, conflicting Content-Length values are an error.
//   - Tolerant where RFC 3261 and RFC 4475 section 3.1.1 say so: folded
//     lines, compact header names (RFC 3261 7.3.3 and extensions), any case
//     in names, white space around separators, unknown methods, empty reason
//     phrases, several Via values in one field, escaped characters, bytes
//     after Content-Length in a datagram (ignored, RFC 3261 18.3).
//   - Never a panic on any input (fuzz targets FuzzParse, FuzzParseVia,
//     FuzzParseURI, FuzzParseNameAddr, and FuzzDifferentialSipgo, which
//     compares the results with those of the independent sipgo parser; it
//     is used in tests only).
//
// # Use
//
//	var m sip.Msg
//	if err := m.Parse(datagram); err != nil { ... }   // m keeps datagram: do not reuse it while m is in use
//	callID := m.CallID()                              // []byte into the datagram
//	via, err := m.TopVia()                            // parsed on demand
//	num, method := m.CSeq()
//
//	var e sip.Editor                                  // reusable
//	e.Reset(&m)
//	e.InsertHeader(0, "Via", ourVia)                  // a new top Via
//	e.SetMaxForwards(m.MaxForwards() - 1)
//	out, err := e.AppendTo(buf[:0])                   // Content-Length always correct in out
//
//	reply := sip.AppendResponse(buf[:0], &m, 503, sip.ReasonText(503), toTag, "", []byte("Retry-After: 5\r\n"))
//
// A message that fails to parse keeps the start line and the header fields
// indexed before the error readable, so that a peer can still be answered
// 400 or 505 (see package sanity).
//
// # RFC sections
//
// RFC 3261 7 (messages), 7.3.1 (folding), 7.3.3 (compact forms), 8.2.6
// (responses: AppendResponse), 9.1 (CANCEL: AppendCancel), 17.1.1.3 (ACK for
// non-2xx: AppendAck), 18.3 (framing, Content-Length), 19.1 (SIP URIs),
// 20 (header fields), 25 (grammar); RFC 3966 (tel URIs); RFC 3581 (rport);
// RFC 4475 (torture tests: every message has its expected outcome in
// sanity's table test).
package sip
