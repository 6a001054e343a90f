package media

import (
	"net/netip"
	"testing"
	"time"
)

// handleRig is one relayed stream whose leg-A sockets are driven directly
// through handle: leg A sends SRTP (AES_CM_80), leg B receives plain RTP.
type handleRig struct {
	r    *Relay
	a    *peer
	rtp  *socket
	rtcp *socket
	src  netip.AddrPort
	buf  *buffers
}

func newHandleRig(t testing.TB) *handleRig {
	r := newTestRelay(t, Config{MaxPacketRate: -1})
	pol, _ := TrunkPolicy("bridge", "relay", false, LegA)
	a, b := newPeer(t, "127.0.0.1"), newPeer(t, "127.0.0.1")
	call(t, r, "h", pol, a, b, "RTP/SAVP", testKey(t, AES_CM_128_HMAC_SHA1_80), "RTP/AVP")
	h := &handleRig{r: r, a: a, src: netip.MustParseAddrPort(a.rtp.LocalAddr().String()), buf: newBuffers()}
	for _, st := range r.sessions["h"].streams {
		h.rtp, h.rtcp = st.socks[LegA][kindRTP], st.socks[LegA][kindRTCP]
	}
	return h
}

// The per-packet path allocates nothing (as the conventions ask of hot paths).
func TestHandleAllocs(t *testing.T) {
	h := newHandleRig(t)
	// Valid SRTP packets prepared beforehand (the test peer's encryption allocates).
	pkts := make([][]byte, 300)
	for i := range pkts {
		pkts[i] = h.a.packet(make([]byte, 160))
	}
	i := 0
	allocs := testing.AllocsPerRun(200, func() {
		if res := h.rtp.handle(&h.r.params, pkts[i], h.buf.mid, h.buf.out, h.src, time.Now().UnixNano()); res != forwarded {
			t.Fatalf("packet %d: %s", i, res)
		}
		i++
	})
	if allocs != 0 {
		t.Errorf("%v allocations per packet", allocs)
	}
}

// FuzzHandle feeds arbitrary datagrams to the RTP and RTCP sockets of an
// SRTP leg, from the latched source and from another one: nothing panics,
// and no unauthenticated packet is forwarded.
func FuzzHandle(f *testing.F) {
	f.Add([]byte{0x80, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 2, 3}, false)
	f.Add(rtcpRR(7), true)
	f.Add([]byte{0x90, 0x7f, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0}, false)
	f.Add([]byte{0x8f, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1}, false)
	h := newHandleRig(f)
	f.Fuzz(func(t *testing.T, pkt []byte, rtcp bool) {
		s := h.rtp
		if rtcp {
			s = h.rtcp
		}
		in := append(make([]byte, 0, maxPacket), pkt...)
		if len(in) > maxPacket {
			in = in[:maxPacket]
		}
		res := s.handle(&h.r.params, in, h.buf.mid, h.buf.out, h.src, time.Now().UnixNano())
		if res == forwarded {
			t.Fatalf("forwarded an unauthenticated packet %x", pkt)
		}
	})
}
