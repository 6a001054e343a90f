package media

import (
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// side is what one leg's peer said about one stream, and what we told it.
type side struct {
	// addr and port are where the peer receives RTP (its c= and m= port);
	// an unspecified addr (0.0.0.0) is the RFC 2543 way of putting a call on hold.
	addr     netip.Addr
	port     int
	rtcpPort int
	// proto is the transport the peer used ("RTP/AVP", "RTP/SAVP", ...).
	proto []string
	// secure: SRTP on this leg; recv is the peer's key (it encrypts, we
	// decrypt), send is ours (we encrypt, it decrypts). With DTLS-SRTP the
	// keys come from the handshakes on the relay's ports (dtlsEndpoint),
	// not from here.
	secure     bool
	recv, send Crypto
	// dtls: the leg keys SRTP with DTLS (RFC 5763); fps are the peer's
	// certificate fingerprints, dtlsClient says whether the relay starts
	// the handshake (its a=setup is active).
	dtls       bool
	fps        []Fingerprint
	dtlsClient bool
	// inactive: the peer's a=inactive (no media either way, RFC 3264 section 5.1).
	inactive bool
}

// remote returns the peer's RTP and RTCP addresses; ok is false while unknown or on hold.
func (s *side) remote() (rtp, rtcp netip.AddrPort, ok bool) {
	if !s.addr.IsValid() || s.addr.IsUnspecified() || s.port == 0 {
		return rtp, rtcp, false
	}
	return netip.AddrPortFrom(s.addr, uint16(s.port)), netip.AddrPortFrom(s.addr, uint16(s.rtcpPort)), true
}

// stream is the negotiated state of one m-line.
type stream struct {
	media    string
	rejected bool
	sides    [2]side
	// ports are the local RTP ports facing each leg (0: none allocated).
	ports [2]int
	// offered are the keys we put in our pending offer (one per suite);
	// offeredDTLS: our pending offer proposed DTLS-SRTP instead.
	offered     []Crypto
	offeredDTLS bool
}

// negotiation is the SDP offer/answer state of one call (RFC 3264), with
// no sockets: the relay turns committed streams into forwarding.
type negotiation struct {
	pol     Policy
	addr    netip.Addr  // the relay's address written into SDP
	fp      Fingerprint // the relay's DTLS certificate, for a=fingerprint
	streams []stream    // committed (answered)
	// pending is the offer in progress, committed by the answer.
	pending     []stream
	pendingFrom Leg
	hasPending  bool
	// answered is the last offer as it was before its answer, so that a
	// repeated answer (the 200 after a 183 with SDP, another fork's answer)
	// can be applied again; nil once a new offer starts.
	answered []stream
}

// portAlloc gives stream i its local ports for both legs.
type portAlloc func(i int) ([2]int, error)

// isRTP reports whether an m-line carries RTP the relay can handle.
func isRTP(protos []string) bool {
	if isDTLSProto(protos) {
		return true
	}
	if len(protos) != 2 || protos[0] != "RTP" {
		return false
	}
	switch protos[1] {
	case "AVP", "SAVP", "AVPF", "SAVPF":
		return true
	}
	return false
}

func isSecureProto(protos []string) bool {
	return isDTLSProto(protos) || len(protos) == 2 && strings.HasPrefix(protos[1], "S")
}

// protoFor returns the RTP profile for a leg: the feedback flavour (AVPF) of
// the source is kept, the security part is chosen.
func protoFor(src []string, secure bool) []string {
	fb := len(src) > 0 && strings.HasSuffix(src[len(src)-1], "F")
	switch {
	case secure && fb:
		return []string{"RTP", "SAVPF"}
	case secure:
		return []string{"RTP", "SAVP"}
	case fb:
		return []string{"RTP", "AVPF"}
	}
	return []string{"RTP", "AVP"}
}

// connAddr returns the connection address that applies to md (media level
// c= first, then session level).
func connAddr(sd *sdp.SessionDescription, md *sdp.MediaDescription) (netip.Addr, error) {
	ci := md.ConnectionInformation
	if ci == nil {
		ci = sd.ConnectionInformation
	}
	if ci == nil || ci.Address == nil {
		return netip.Addr{}, fmt.Errorf("%w: m=%s has no c= line", ErrBadSDP, md.MediaName.Media)
	}
	a, err := netip.ParseAddr(ci.Address.Address)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%w: c= address %.64q is not an IP address", ErrBadSDP, ci.Address.Address)
	}
	return a.Unmap(), nil
}

// rtcpPort reads a=rtcp (RFC 3605) or defaults to port+1.
func rtcpPort(md *sdp.MediaDescription, port int) int {
	if v, ok := md.Attribute("rtcp"); ok {
		f, _, _ := strings.Cut(v, " ")
		if p, err := strconv.Atoi(f); err == nil && p > 0 && p < 65536 {
			return p
		}
	}
	return port + 1
}

// cryptos returns the parsed a=crypto attributes of md that sipwarden can
// use, in the order written (the offerer's preference, RFC 4568 section 7.1.1).
func cryptos(md *sdp.MediaDescription) (ok []Crypto) {
	for _, a := range md.Attributes {
		if a.Key != "crypto" {
			continue
		}
		if c, err := ParseCrypto(a.Value); err == nil {
			ok = append(ok, c)
		}
	}
	return ok
}

// iceAttrs are the ICE attributes (RFC 8839 section 5) removed when stripping ICE.
var iceAttrs = map[string]bool{
	"candidate": true, "remote-candidates": true, "end-of-candidates": true,
	"ice-ufrag": true, "ice-pwd": true, "ice-options": true, "ice-lite": true,
	"ice-mismatch": true, "ice-pacing": true,
}

// relayDropAttrs are media attributes that make no sense once the relay
// anchors the stream: the peer's RTCP port, RTCP multiplexing (the relay
// uses port+1), keys and DTLS-SRTP parameters (each leg gets the relay's own).
var relayDropAttrs = map[string]bool{
	"rtcp": true, "rtcp-mux": true, "rtcp-mux-only": true, "crypto": true,
	"fingerprint": true, "setup": true, "tls-id": true, "connection": true,
}

func filterAttrs(attrs []sdp.Attribute, drop func(string) bool) []sdp.Attribute {
	out := attrs[:0]
	for _, a := range attrs {
		if !drop(a.Key) {
			out = append(out, a)
		}
	}
	return out
}

func (n *negotiation) connInfo(addr netip.Addr) *sdp.ConnectionInformation {
	at := "IP4"
	if addr.Is6() {
		at = "IP6"
	}
	return &sdp.ConnectionInformation{NetworkType: "IN", AddressType: at, Address: &sdp.Address{Address: addr.String()}}
}

// rewriteSession puts the relay's address in o= and the session c=, and
// strips session-level ICE.
func (n *negotiation) rewriteSession(sd *sdp.SessionDescription) {
	sd.Origin.NetworkType = "IN"
	sd.Origin.UnicastAddress = n.addr.String()
	sd.Origin.AddressType = "IP4"
	if n.addr.Is6() {
		sd.Origin.AddressType = "IP6"
	}
	sd.ConnectionInformation = n.connInfo(n.addr)
	sd.Attributes = filterAttrs(sd.Attributes, func(k string) bool {
		return iceAttrs[k] || k == "fingerprint" || k == "setup" || k == "tls-id"
	})
}

// rewriteMedia points md at the relay's port (0: rejected) and replaces its keys.
func (n *negotiation) rewriteMedia(md *sdp.MediaDescription, port int, hold bool, proto []string, keys []Crypto) {
	md.MediaName.Port = sdp.RangedPort{Value: port}
	if proto != nil {
		md.MediaName.Protos = proto
	}
	md.ConnectionInformation = nil
	if hold {
		md.ConnectionInformation = n.connInfo(netip.IPv4Unspecified())
	}
	md.Attributes = filterAttrs(md.Attributes, func(k string) bool { return iceAttrs[k] || relayDropAttrs[k] })
	for _, c := range keys {
		md.Attributes = append(md.Attributes, sdp.Attribute{Key: "crypto", Value: c.attrValue()})
	}
}

// parseSDP parses an SDP body with pion/sdp.
//
// pion/sdp only knows the media types and transport tokens that WebRTC uses
// and refuses, for instance, T.38 fax ("m=image 40000 udptl t38"), which SIP
// calls switch to with a re-INVITE. Such m-lines are handed to pion/sdp as
// "m=application <port> UDP -" and their media, proto and formats are put
// back after parsing: the relay disables them anyway (it carries RTP only),
// and an answer must repeat them (RFC 3264 section 6).
func parseSDP(body []byte) (*sdp.SessionDescription, error) {
	if !bytes.HasPrefix(body, []byte("v=0")) {
		return nil, fmt.Errorf("%w: does not start with v=0", ErrBadSDP)
	}
	if len(body) > maxSDPSize {
		return nil, fmt.Errorf("%w: body of %d bytes (at most %d)", ErrBadSDP, len(body), maxSDPSize)
	}
	var foreign []foreignMedia
	var buf []byte
	m := 0
	for rest := body; len(rest) > 0; {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i+1], rest[i+1:]
		} else {
			rest = nil
		}
		if !bytes.HasPrefix(line, []byte("m=")) {
			if buf != nil {
				buf = append(buf, line...)
			}
			continue
		}
		m++
		if m > maxStreams {
			return nil, fmt.Errorf("%w: more than %d m-lines", ErrBadSDP, maxStreams)
		}
		f := strings.Fields(string(line[2:]))
		if len(f) < 3 || pionMedia(f[0], f[2]) {
			if buf != nil {
				buf = append(buf, line...)
			}
			continue
		}
		if buf == nil {
			buf = append(make([]byte, 0, len(body)+32), body[:len(body)-len(line)-len(rest)]...)
		}
		foreign = append(foreign, foreignMedia{index: m - 1, media: f[0], protos: strings.Split(f[2], "/"), formats: f[3:]})
		buf = append(buf, "m=application "...)
		buf = append(buf, f[1]...)
		buf = append(buf, " UDP -\r\n"...)
	}
	if buf != nil {
		body = buf
	}
	sd := &sdp.SessionDescription{}
	if err := sd.Unmarshal(body); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	for _, fm := range foreign {
		if fm.index < len(sd.MediaDescriptions) {
			mn := &sd.MediaDescriptions[fm.index].MediaName
			mn.Media, mn.Protos, mn.Formats = fm.media, fm.protos, fm.formats
		}
	}
	return sd, nil
}

// foreignMedia is an m-line pion/sdp would refuse, set aside by parseSDP.
type foreignMedia struct {
	index   int
	media   string
	protos  []string
	formats []string
}

// pionMedia reports whether pion/sdp accepts the media type and proto of an m-line.
func pionMedia(media, proto string) bool {
	switch media {
	case "audio", "video", "text", "application", "message":
	default:
		return false
	}
	for p := range strings.SplitSeq(proto, "/") {
		switch p {
		case "UDP", "RTP", "AVP", "SAVP", "SAVPF", "TLS", "DTLS", "SCTP", "AVPF", "TCP", "MSRP", "BFCP", "UDT", "IX", "MRCPv2", "FEC":
		default:
			return false
		}
	}
	return true
}

// maxSDPSize bounds an SDP body (a SIP message over UDP is smaller anyway).
const maxSDPSize = 16 << 10

// maxStreams bounds the m-lines of one call.
const maxStreams = 8

// readSide fills s from md: address, ports, proto. It returns false for a
// stream that is disabled (port 0).
func readSide(sd *sdp.SessionDescription, md *sdp.MediaDescription, s *side) error {
	addr, err := connAddr(sd, md)
	if err != nil {
		return err
	}
	port := md.MediaName.Port.Value
	if port <= 0 || port > 65535 {
		return fmt.Errorf("%w: m=%s port %d", ErrBadSDP, md.MediaName.Media, port)
	}
	s.addr, s.port, s.rtcpPort = addr, port, rtcpPort(md, port)
	_, s.inactive = md.Attribute("inactive")
	s.proto = append(s.proto[:0:0], md.MediaName.Protos...)
	return nil
}

// offer processes an offer from leg from: it records what the offerer said,
// chooses its keys, and rewrites sd into the offer for the other leg.
func (n *negotiation) offer(from Leg, sd *sdp.SessionDescription, alloc portAlloc) error {
	to := from.other()
	if len(sd.MediaDescriptions) < len(n.streams) {
		return fmt.Errorf("%w: offer has %d m-lines, the session had %d (RFC 3264 section 8)", ErrBadSDP, len(sd.MediaDescriptions), len(n.streams))
	}
	pending := make([]stream, len(sd.MediaDescriptions))
	copy(pending, n.streams)
	for i, md := range sd.MediaDescriptions {
		st := &pending[i]
		st.media = md.MediaName.Media
		st.offered, st.offeredDTLS = nil, false
		if md.MediaName.Port.Value == 0 || !isRTP(md.MediaName.Protos) {
			// Disabled by the offerer, or not RTP (T.38 over UDPTL,
			// DTLS-SRTP, BFCP): the relay carries only RTP, and media
			// must not bypass it, so the stream is offered disabled.
			st.rejected = true
			n.rewriteMedia(md, 0, false, nil, nil)
			continue
		}
		src := &st.sides[from]
		if err := readSide(sd, md, src); err != nil {
			return err
		}
		keys := cryptos(md)
		dt, hasDTLS, dtlsErr := readDTLS(sd, md)
		switch {
		case len(keys) > 0 && !isDTLSProto(md.MediaName.Protos):
			c := keys[0]
			src.secure, src.recv, src.dtls, src.fps = true, c, false, nil
			if src.send.Suite != c.Suite || src.send.Key == nil {
				k, err := newKey(c.Suite)
				if err != nil {
					return err
				}
				src.send = Crypto{Suite: c.Suite, Key: k}
			}
			src.send.Tag = c.Tag
		case hasDTLS && dtlsErr == nil && isSecureProto(md.MediaName.Protos):
			// RFC 5763 section 5: the answerer to actpass takes active (the
			// handshake then runs in parallel with the answer), except
			// towards a peer behind NAT, which the relay's ClientHello
			// would not reach: passive lets the peer open the path. An
			// offer without a=setup is active (RFC 4145 section 4).
			client := dt.setup == SetupPassive || dt.setup == SetupActpass && !behindNAT(src.addr)
			src.secure, src.dtls, src.fps, src.dtlsClient = true, true, dt.fps, client
			src.recv, src.send = Crypto{}, Crypto{}
		default:
			if n.pol.Legs[from].SRTP == SRTPRequired {
				if dtlsErr != nil {
					return fmt.Errorf("%w: m-line %d (%s) from leg %s: %w", ErrSRTPRequired, i, st.media, from, dtlsErr)
				}
				return fmt.Errorf("%w: m-line %d (%s) from leg %s has no acceptable a=crypto or a=fingerprint", ErrSRTPRequired, i, st.media, from)
			}
			if isSecureProto(md.MediaName.Protos) {
				// RTP/SAVP without a usable key cannot be answered in clear.
				st.rejected = true
				n.rewriteMedia(md, 0, false, nil, nil)
				continue
			}
			src.secure, src.recv, src.send, src.dtls, src.fps = false, Crypto{}, Crypto{}, false, nil
		}
		if st.rejected || st.ports[from] == 0 {
			ports, err := alloc(i)
			if err != nil {
				return err
			}
			st.ports = ports
			// A re-enabled stream starts over on the answering side.
			st.sides[to] = side{}
		}
		st.rejected = false

		// The offer to the other leg.
		var proto []string
		var secureOut bool
		switch n.pol.Legs[to].SRTP {
		case SRTPRequired:
			secureOut = true
			proto = protoFor(md.MediaName.Protos, true)
		case SRTPOptional:
			// Mirror the offerer, best-effort SRTP (crypto in RTP/AVP)
			// included; DTLS-SRTP becomes SDES unless the leg asks for DTLS.
			secureOut = src.secure
			proto = md.MediaName.Protos
			if isDTLSProto(proto) {
				proto = protoFor(proto, true)
			}
		case SRTPPlain:
			proto = protoFor(md.MediaName.Protos, false)
		}
		if secureOut && n.pol.Legs[to].OfferDTLS {
			// RFC 5763 section 5: the offerer uses actpass.
			st.offeredDTLS = true
			proto = dtlsProtoFor(md.MediaName.Protos)
		} else if secureOut {
			dst := &st.sides[to]
			for j, s := range offeredSuites {
				c := Crypto{Tag: uint32(j + 1), Suite: s}
				if dst.send.Suite == s && dst.send.Key != nil {
					c.Key = dst.send.Key // keep our key across re-offers
				} else {
					k, err := newKey(s)
					if err != nil {
						return err
					}
					c.Key = k
				}
				st.offered = append(st.offered, c)
			}
		}
		n.rewriteMedia(md, st.ports[to], src.addr.IsUnspecified(), proto, st.offered)
		if st.offeredDTLS {
			n.addDTLS(md, "actpass")
		}
	}
	n.rewriteSession(sd)
	n.pending, n.pendingFrom, n.hasPending = pending, from, true
	n.answered = nil
	return nil
}

// answer processes the answer from leg from to the pending offer of the
// other leg, commits the streams, and rewrites sd into the answer for the
// offerer. It returns the committed streams that lost their ports.
func (n *negotiation) answer(from Leg, sd *sdp.SessionDescription) (released [][2]int, err error) {
	to := from.other()
	if !n.hasPending && n.answered != nil && n.pendingFrom == to {
		// A repeated answer to the offer already answered.
		n.pending, n.hasPending = append([]stream(nil), n.answered...), true
	}
	if !n.hasPending || n.pendingFrom != to {
		return nil, ErrNoOffer
	}
	snapshot := append([]stream(nil), n.pending...)
	pending := n.pending
	if len(sd.MediaDescriptions) != len(pending) {
		return nil, fmt.Errorf("%w: answer has %d m-lines, the offer %d (RFC 3264 section 6)", ErrBadSDP, len(sd.MediaDescriptions), len(pending))
	}
	for i, md := range sd.MediaDescriptions {
		st := &pending[i]
		if st.rejected || md.MediaName.Port.Value == 0 {
			st.rejected = true
			n.rewriteMedia(md, 0, false, nil, nil)
			continue
		}
		ans, off := &st.sides[from], &st.sides[to]
		if err := readSide(sd, md, ans); err != nil {
			return nil, err
		}
		ans.secure = false
		if st.offeredDTLS {
			// The answerer picks active or passive (RFC 5763 section 5;
			// actpass is not an answer). Without a=setup it is active.
			dt, has, err := readDTLS(sd, md)
			if has && err == nil && dt.setup != SetupActpass {
				ans.secure, ans.dtls, ans.fps = true, true, dt.fps
				ans.dtlsClient = dt.setup == SetupPassive
				ans.recv, ans.send = Crypto{}, Crypto{}
			}
		} else if len(st.offered) > 0 {
			keys := cryptos(md)
			for _, c := range keys {
				for _, o := range st.offered {
					if c.Tag == o.Tag && c.Suite == o.Suite {
						ans.secure, ans.recv, ans.send, ans.dtls, ans.fps = true, c, o, false, nil
						break
					}
				}
				if ans.secure {
					break
				}
			}
		}
		if !ans.secure {
			if n.pol.Legs[from].SRTP == SRTPRequired {
				return nil, fmt.Errorf("%w: answer m-line %d (%s) from leg %s has no a=crypto or a=fingerprint matching the offer", ErrSRTPRequired, i, st.media, from)
			}
			if isSecureProto(md.MediaName.Protos) {
				return nil, fmt.Errorf("%w: m-line %d answered %s without a matching a=crypto or a=fingerprint", ErrBadSDP, i, strings.Join(md.MediaName.Protos, "/"))
			}
			ans.recv, ans.send, ans.dtls, ans.fps = Crypto{}, Crypto{}, false, nil
		}
		st.offered, st.offeredDTLS = nil, false
		var keys []Crypto
		if off.secure && !off.dtls {
			keys = []Crypto{off.send}
		}
		n.rewriteMedia(md, st.ports[to], ans.addr.IsUnspecified(), off.proto, keys)
		if off.secure && off.dtls {
			n.addDTLS(md, setupValue(off.dtlsClient))
		}
	}
	n.rewriteSession(sd)
	for i := range pending {
		if pending[i].rejected && pending[i].ports != [2]int{} {
			released = append(released, pending[i].ports)
			pending[i].ports = [2]int{}
			pending[i].sides = [2]side{}
			// Its ports are gone: a repeated answer cannot revive it.
			snapshot[i].rejected, snapshot[i].ports = true, [2]int{}
		}
	}
	n.answered = snapshot
	// Streams of the old state beyond the new one cannot exist (offer checks
	// the count), so the commit is a replacement.
	n.streams, n.pending, n.hasPending = pending, nil, false
	return released, nil
}

// abandon drops a pending offer (its newly allocated ports are returned).
func (n *negotiation) abandon() (released [][2]int) {
	if !n.hasPending {
		return nil
	}
	for i := range n.pending {
		p := n.pending[i].ports
		if p == [2]int{} {
			continue
		}
		if i < len(n.streams) && n.streams[i].ports == p {
			continue
		}
		released = append(released, p)
	}
	n.pending, n.hasPending = nil, false
	return released
}

// checkDirect applies the SRTP policy to SDP of a direct-media call and
// strips ICE unless the receiving leg keeps it. It reports whether every
// active stream has SRTP.
func checkDirect(pol Policy, from Leg, sd *sdp.SessionDescription) (secure bool, err error) {
	secure = true
	active := 0
	for i, md := range sd.MediaDescriptions {
		if md.MediaName.Port.Value == 0 || !isRTP(md.MediaName.Protos) {
			continue
		}
		active++
		if !securable(sd, md) {
			secure = false
			if pol.Legs[from].SRTP == SRTPRequired {
				return false, fmt.Errorf("%w: m-line %d (%s) from leg %s has no acceptable a=crypto or a=fingerprint", ErrSRTPRequired, i, md.MediaName.Media, from)
			}
		}
		if !pol.Legs[from.other()].KeepICE {
			md.Attributes = filterAttrs(md.Attributes, func(k string) bool { return iceAttrs[k] })
		}
	}
	if !pol.Legs[from.other()].KeepICE {
		sd.Attributes = filterAttrs(sd.Attributes, func(k string) bool { return iceAttrs[k] })
	}
	return secure && active > 0, nil
}

// securable reports whether an RTP m-line carries keying the relay accepts:
// an acceptable a=crypto (SDES) outside UDP/TLS/RTP/SAVP, or a usable
// a=fingerprint with a secure transport (DTLS-SRTP).
func securable(sd *sdp.SessionDescription, md *sdp.MediaDescription) bool {
	if !isDTLSProto(md.MediaName.Protos) && len(cryptos(md)) > 0 {
		return true
	}
	_, has, err := readDTLS(sd, md)
	return has && err == nil && isSecureProto(md.MediaName.Protos)
}

// behindNAT reports whether an SDP address is one a peer behind NAT would
// announce (private, CGNAT or link-local): packets sent there from the
// relay would not reach it before it sent some itself.
func behindNAT(a netip.Addr) bool {
	return a.IsPrivate() || a.IsLinkLocalUnicast() || cgnat.Contains(a)
}
