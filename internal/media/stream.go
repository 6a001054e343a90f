package media

import (
	"errors"
	"net/netip"
	"sync/atomic"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// maxPacket is the largest datagram the relay reads; longer ones are
// truncated by the kernel and then fail to parse or to authenticate.
const maxPacket = 1500

// srtpOverhead is room for the SRTP/SRTCP trailer (auth tag, SRTCP index).
const srtpOverhead = 32

// fwdConfig says how packets arriving on one socket are handled. It is
// replaced as a whole (atomically) when the call is renegotiated; the SRTP
// contexts in it are used only by the socket's reader (its poller), and are
// carried over to the new config when the keys did not change, so that
// replay windows and rollover counters survive a re-INVITE.
type fwdConfig struct {
	// dec decrypts what the leg's peer sends (nil: plain RTP).
	dec    *srtp.Context
	decKey Crypto
	// enc encrypts what goes out to the other leg (nil: plain RTP).
	enc    *srtp.Context
	encKey Crypto
	// expect is the source the leg's SDP announced (invalid: unknown or on hold).
	expect netip.AddrPort
	// dst is where the other leg's SDP says to send (invalid: nowhere, on hold).
	dst netip.AddrPort
	// signal are the addresses the leg's signalling comes from, when known
	// (a NAT's public address): like expect's, media from them latches at once.
	signal []netip.Addr
	// nat: the leg is behind NAT (its SDP address is private, unknown, or
	// not where its signalling comes from), so plain RTP from an address it
	// did not signal may latch after a learning window.
	nat bool
}

// signalled reports whether a is an address the leg announced: its SDP
// address (any port: a NAT may remap it) or its signalling source.
func (c *fwdConfig) signalled(a netip.Addr) bool {
	if c.expect.IsValid() && a == c.expect.Addr() {
		return true
	}
	for _, s := range c.signal {
		if a == s {
			return true
		}
	}
	return false
}

// socket is one of the relay's UDP sockets: the RTP or RTCP port facing one leg.
type socket struct {
	sock   udpSock
	port   int
	kind   kind
	leg    Leg
	callID string
	// out is the socket of the same kind facing the other leg: packets read
	// here leave through it, so each peer receives from the port it sends to
	// (symmetric RTP, RFC 4961).
	out *socket
	cfg atomic.Pointer[fwdConfig]
	// latched is the source this socket has latched to; the other leg's
	// reader sends there once it is set.
	latched atomic.Pointer[netip.AddrPort]
	// lastSeen is the time of the last packet forwarded (Unix nanoseconds).
	lastSeen atomic.Int64
	// dtls runs the DTLS-SRTP handshake when the leg uses it (nil: SDES or plain).
	dtls atomic.Pointer[dtlsEndpoint]

	// State of the reader only (one poller owns all four sockets of a stream).
	// learned: the latch was learned from a source the leg did not signal
	// (a signalled source may still take it over); cand and candN are the
	// learning window: the source of the last packets and their count.
	learned   bool
	cand      netip.AddrPort
	candN     int
	candStart int64 // when cand's first packet of the window arrived
	rateTAT   int64 // rate cap: theoretical arrival time (GCRA)
	seq       seqState
	hdr       rtp.Header
	rtcpHdr   rtcp.Header
	fwd       uint64
	drops     [nDropReasons]uint64
	unflushed int
}

// relayStream is one relayed m-line: an RTP/RTCP port pair facing each leg.
type relayStream struct {
	ports  [2]int
	socks  [2][nKinds]*socket // [leg][kind]
	poller *poller
	wait   func() // where readers are goroutines: waits for them
}

// all calls f for each of the stream's four sockets.
func (st *relayStream) all(f func(*socket)) {
	for leg := range st.socks {
		for _, s := range st.socks[leg] {
			if s != nil {
				f(s)
			}
		}
	}
}

// relayParams are the relay-wide settings a reader needs.
type relayParams struct {
	met       *metrics
	rateGap   int64 // nanoseconds between packets at the cap; 0: no cap
	rateBurst int64 // nanoseconds of credit a burst may use
	// learn is the number of consecutive packets from one source that latch
	// a plain-RTP leg behind NAT to a source it did not signal.
	learn int
	// learnMin is how long (nanoseconds) a learning window lasts at least:
	// the leg's own peer, sending from a signalled address within it,
	// takes the leg first.
	learnMin int64
	onLatch  func(s *socket, src netip.AddrPort, how latchHow)
}

// latchHow says why a socket latched to a source (log and metric label).
type latchHow uint8

const (
	latchSignalled latchHow = iota // the leg's SDP or signalling address
	latchLearned                   // a learning window behind NAT
	latchSRTP                      // an authenticated SRTP packet (first latch or NAT rebinding)
	nLatchHow
)

var latchHowNames = [nLatchHow]string{"signalled", "learned", "srtp"}

func (h latchHow) String() string { return latchHowNames[h] }

// srcVerdict is what a socket does with a packet from a source other than
// the one it latched to (or any source before it latched).
type srcVerdict uint8

const (
	srcKeep  srcVerdict = iota // the latched source
	srcLatch                   // latch to it once the packet passes every check
	srcLearn                   // count it in the learning window
	srcSRTP                    // latch to it if it authenticates (SRTP)
	srcDrop                    // refuse it
)

// judgeSource decides about a packet from src on a socket latched to
// latched (nil: not yet). Plain RTP never follows a new source once
// latched, except that a latch learned behind NAT yields to a signalled
// address; SRTP follows a source whose packet authenticates (a NAT
// rebinding), since only the peer holds the key.
func (s *socket) judgeSource(cfg *fwdConfig, latched *netip.AddrPort, src netip.AddrPort) srcVerdict {
	switch {
	case latched != nil && *latched == src:
		return srcKeep
	case cfg.dec != nil:
		return srcSRTP
	case cfg.signalled(src.Addr()):
		if latched == nil || s.learned {
			return srcLatch
		}
		return srcDrop
	case latched == nil && cfg.nat:
		return srcLearn
	}
	return srcDrop
}

// openStream binds the four sockets of a stream on addr: RTP and RTCP on
// pa, pa+1 facing leg A and on pb, pb+1 facing leg B.
func openStream(addr netip.Addr, callID string, pa, pb int) (*relayStream, error) {
	st := &relayStream{ports: [2]int{pa, pb}}
	for leg, p := range st.ports {
		for k := kind(0); k < nKinds; k++ {
			port := p + int(k)
			u, err := openUDP(netip.AddrPortFrom(addr, uint16(port)))
			if err != nil {
				st.all(func(s *socket) { s.sock.close() })
				return nil, err
			}
			st.socks[leg][k] = &socket{sock: u, port: port, kind: k, leg: Leg(leg), callID: callID}
		}
	}
	for k := kind(0); k < nKinds; k++ {
		st.socks[LegA][k].out = st.socks[LegB][k]
		st.socks[LegB][k].out = st.socks[LegA][k]
	}
	return st, nil
}

// lastSeen returns the time of the last packet forwarded in either direction.
func (st *relayStream) lastSeen() int64 {
	var t int64
	st.all(func(s *socket) { t = max(t, s.lastSeen.Load()) })
	return t
}

// forwarded is the result of a packet that was relayed.
const forwarded dropReason = 255

// buffers are a reader's packet buffers, allocated once per reader: the
// relay allocates nothing per packet.
type buffers struct {
	in, mid, out []byte
}

func newBuffers() *buffers {
	return &buffers{in: make([]byte, maxPacket), mid: make([]byte, maxPacket+srtpOverhead), out: make([]byte, maxPacket+srtpOverhead)}
}

// handle checks, translates and forwards one packet.
func (s *socket) handle(p *relayParams, pkt, mid, out []byte, src netip.AddrPort, now int64) dropReason {
	if len(pkt) > 0 && isDTLSRecord(pkt[0]) {
		return s.dtlsInput(p, pkt, src, now) // RFC 7983 demultiplexing
	}
	if isKeepalive(pkt) {
		// Phones punch and hold their NAT mapping with these (Linphone
		// sends STUN binding requests on both ports without ICE). They
		// are counted apart from garbage, never relayed, and never move
		// the latch; one from elsewhere than the latched source is a
		// stranger's packet all the same.
		if l := s.latched.Load(); l != nil && *l != src {
			return dropSource
		}
		return dropKeepalive
	}
	cfg := s.cfg.Load()
	if cfg == nil {
		return dropNotReady
	}
	latched := s.latched.Load()
	verdict := srcKeep
	if latched == nil || *latched != src {
		if verdict = s.judgeSource(cfg, latched, src); verdict == srcDrop {
			return dropSource
		}
	}
	if !s.rateOK(p, now) {
		return dropRate
	}
	if len(pkt) < 8 || pkt[0]>>6 != 2 {
		return dropMalformed
	}
	var err error
	plain := pkt
	if s.kind == kindRTP {
		// RTCP packet types 200-204 would show as payload types 72-76 (RFC 5761 section 4).
		if pt := pkt[1] & 0x7f; len(pkt) < 12 || (pt >= 72 && pt <= 76) {
			return dropMalformed
		}
		if cfg.dec != nil {
			if plain, err = cfg.dec.DecryptRTP(mid, pkt, &s.hdr); err != nil {
				return srtpDrop(err)
			}
		} else if _, err = s.hdr.Unmarshal(pkt); err != nil {
			return dropMalformed
		}
		// The sequence check follows the latched source only: a packet
		// that moves the latch starts it afresh.
		if verdict == srcKeep && !s.seq.accept(s.hdr.SSRC, s.hdr.SequenceNumber) {
			return dropSequence
		}
	} else {
		if pt := pkt[1]; pt < 192 || pt > 223 {
			return dropMalformed
		}
		if cfg.dec != nil {
			if plain, err = cfg.dec.DecryptRTCP(mid, pkt, &s.rtcpHdr); err != nil {
				return srtpDrop(err)
			}
		}
	}
	if verdict != srcKeep {
		how := latchSignalled
		switch verdict {
		case srcLearn:
			// Behind NAT: the first packets must all come from one source,
			// for a while, before it latches.
			if src != s.cand {
				s.cand, s.candN, s.candStart = src, 0, now
			}
			if s.candN++; s.candN < p.learn || now-s.candStart < p.learnMin {
				return dropLearning
			}
			how = latchLearned
		case srcSRTP:
			how = latchSRTP // it authenticated
		}
		if !s.latch(p, latched, src, how) {
			return dropSource // the latch moved meanwhile (a renegotiation)
		}
	}
	if s.kind == kindRTP {
		if cfg.enc != nil {
			if pkt, err = cfg.enc.EncryptRTP(out, plain, &s.hdr); err != nil {
				return dropCrypto
			}
		} else {
			pkt = plain
		}
	} else if cfg.enc != nil {
		if pkt, err = cfg.enc.EncryptRTCP(out, plain, &s.rtcpHdr); err != nil {
			return dropCrypto
		}
	} else {
		pkt = plain
	}
	if !cfg.dst.IsValid() {
		return dropNoDest
	}
	dst := cfg.dst
	if d := s.out.latched.Load(); d != nil {
		dst = *d
	}
	if err := s.out.sock.sendTo(pkt, dst); err != nil {
		return dropWrite
	}
	s.lastSeen.Store(now)
	return forwarded
}

// stunMagicCookie is the fixed field of every STUN message (RFC 8489 section 5).
const stunMagicCookie = 0x2112A442

// isKeepalive reports whether pkt is a media keep-alive rather than RTP or
// RTCP: a STUN message (RFC 7983: first byte 0-3; RFC 8489: the magic
// cookie, and a length that matches the datagram), or a datagram shorter
// than 4 bytes (empty, a CRLF, a few zero bytes), which RTP and RTCP never are.
func isKeepalive(pkt []byte) bool {
	if len(pkt) < 4 {
		return true
	}
	return len(pkt) >= 20 && pkt[0] < 4 &&
		uint32(pkt[4])<<24|uint32(pkt[5])<<16|uint32(pkt[6])<<8|uint32(pkt[7]) == stunMagicCookie &&
		int(pkt[2])<<8|int(pkt[3]) == len(pkt)-20
}

// latch moves the socket's latch from old to src (reader only); the RTP
// sequence check starts again with the packet in s.hdr.
func (s *socket) latch(p *relayParams, old *netip.AddrPort, src netip.AddrPort, how latchHow) bool {
	a := src
	if !s.latched.CompareAndSwap(old, &a) {
		return false
	}
	s.learned = how == latchLearned
	s.cand, s.candN = netip.AddrPort{}, 0
	if s.kind == kindRTP {
		s.seq = seqState{}
		s.seq.accept(s.hdr.SSRC, s.hdr.SequenceNumber)
	}
	if p.onLatch != nil {
		p.onLatch(s, src, how)
	}
	return true
}

// rateOK applies the per-socket packet-rate cap (GCRA) to a packet at now.
func (s *socket) rateOK(p *relayParams, now int64) bool {
	if p.rateGap > 0 {
		tat := max(s.rateTAT, now)
		if tat-now > p.rateBurst {
			return false
		}
		s.rateTAT = tat + p.rateGap
	}
	return true
}

// srtpDrop classifies an SRTP or SRTCP decryption error: a failed
// authentication tag, a replay (pion/srtp's replay error is unexported, so it
// is recognised by its text once unwrapped), anything else malformed.
func srtpDrop(err error) dropReason {
	if errors.Is(err, srtp.ErrFailedToVerifyAuthTag) {
		return dropAuth
	}
	if u := errors.Unwrap(err); u != nil && u.Error() == "duplicated packet" {
		return dropReplay
	}
	return dropMalformed
}

// legBehindNAT reports whether a leg whose SDP announced expect and whose
// signalling comes from signal (empty: unknown) is behind NAT: its media
// may come from an address it did not announce.
func legBehindNAT(expect netip.AddrPort, signal []netip.Addr) bool {
	if !expect.IsValid() || expect.Addr().IsUnspecified() || behindNAT(expect.Addr().Unmap()) {
		return true
	}
	for _, s := range signal {
		if s == expect.Addr().Unmap() {
			return false
		}
	}
	return len(signal) > 0
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// count adds the result of one packet to the socket's counters, flushed to
// Prometheus every 64 packets and when the reader ends.
func (s *socket) count(m *metrics, r dropReason) {
	switch r {
	case consumed: // a DTLS record: counted by the handshake's result
		return
	case forwarded:
		s.fwd++
	default:
		s.drops[r]++
	}
	if s.unflushed++; s.unflushed >= 64 {
		s.flush(m)
	}
}

func (s *socket) flush(m *metrics) {
	if s.fwd > 0 {
		m.forwarded[s.kind].Add(float64(s.fwd))
		s.fwd = 0
	}
	for r, n := range s.drops {
		if n > 0 {
			m.dropped[s.kind][r].Add(float64(n))
			s.drops[r] = 0
		}
	}
	s.unflushed = 0
}

// seqState is the SSRC and sequence check of RFC 3550 appendix A.1, adapted:
// a new SSRC or a large sequence jump is taken only once the next packet
// confirms it, so stray or injected packets cannot move the stream.
type seqState struct {
	init     bool
	ssrc     uint32
	maxSeq   uint16
	badSeq   uint32 // seq+1 of an unconfirmed jump, or noBadSeq
	candSSRC uint32
	candSeq  uint16
	candN    int
}

const (
	maxDropout    = 3000
	maxMisorder   = 100
	minSequential = 2
	noBadSeq      = 1 << 16
)

func (q *seqState) accept(ssrc uint32, seq uint16) bool {
	if !q.init {
		*q = seqState{init: true, ssrc: ssrc, maxSeq: seq, badSeq: noBadSeq}
		return true
	}
	if ssrc != q.ssrc {
		if q.candN > 0 && ssrc == q.candSSRC && seq == q.candSeq+1 {
			q.candN++
		} else {
			q.candSSRC, q.candN = ssrc, 1
		}
		q.candSeq = seq
		if q.candN >= minSequential {
			*q = seqState{init: true, ssrc: ssrc, maxSeq: seq, badSeq: noBadSeq}
			return true
		}
		return false
	}
	q.candN = 0
	switch delta := seq - q.maxSeq; {
	case delta < maxDropout:
		q.maxSeq = seq
		q.badSeq = noBadSeq
		return true
	case delta > 1<<16-1-maxMisorder:
		return true // late or duplicate (SRTP replay protection catches duplicates)
	default:
		if uint32(seq) == q.badSeq {
			q.maxSeq, q.badSeq = seq, noBadSeq
			return true
		}
		q.badSeq = uint32(seq) + 1
		if q.badSeq == noBadSeq {
			q.badSeq = 0
		}
		return false
	}
}
