package media

import (
	"net/netip"
	"testing"
	"time"
)

// benchCall sets up a call whose leg A is plain RTP and leg B SRTP with suite s
// (SuiteNone: plain), and returns the peers.
func benchCall(b *testing.B, s Suite) (*Relay, *peer, *peer) {
	t := &testing.T{}
	r, err := New(Config{PortMin: 38000, PortMax: 38099, MaxPacketRate: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(r.Shutdown)
	pol := Policy{}
	if s != SuiteNone {
		pol, _ = TrunkPolicy("bridge", "relay", false, LegB)
	}
	a, p := newPeer(t, "127.0.0.1"), newPeer(t, "127.0.0.1")
	b.Cleanup(func() { a.rtp.Close(); a.rtcp.Close(); p.rtp.Close(); p.rtcp.Close() })
	toB, err := r.Offer("bench", LegA, a.sdp("RTP/AVP", nil), pol)
	if err != nil {
		b.Fatal(err)
	}
	p.t = t
	p.learn(toB)
	if s != SuiteNone {
		// Answer with the requested suite's tag.
		sd := mustParse(t, toB)
		for _, v := range attrs(sd.MediaDescriptions[0], "crypto") {
			c, _ := ParseCrypto(v)
			if c.Suite == s {
				k, _ := newKey(s)
				p.key = Crypto{Tag: c.Tag, Suite: s, Key: k}
				p.enc, _ = p.key.context()
				p.dec, _ = c.context()
			}
		}
	}
	toA, err := r.Answer("bench", LegB, p.answerSDP(map[bool]string{true: "RTP/SAVP", false: "RTP/AVP"}[s != SuiteNone]))
	if err != nil {
		b.Fatal(err)
	}
	a.t = t
	a.learn(toA)
	return r, a, p
}

// BenchmarkRelayRoundTrip sends a G.711 packet (160-byte payload) from the
// plain leg through the relay and reads it on the other leg: relay work
// (read, check, encrypt, write) plus two loopback syscalls of the test.
func BenchmarkRelayRoundTrip(b *testing.B) {
	for _, s := range []Suite{SuiteNone, AES_CM_128_HMAC_SHA1_80, AEAD_AES_128_GCM} {
		b.Run(s.String(), func(b *testing.B) {
			_, a, p := benchCall(b, s)
			pkt := a.packet(make([]byte, 160))
			buf := make([]byte, 2000)
			_ = p.rtp.SetReadDeadline(time.Now().Add(5 * time.Second))
			b.ReportAllocs()
			b.SetBytes(int64(len(pkt)))
			seq := uint16(0)
			for b.Loop() {
				seq++
				pkt[2], pkt[3] = byte(seq>>8), byte(seq)
				if _, err := a.rtp.WriteToUDPAddrPort(pkt, a.relayRTP); err != nil {
					b.Fatal(err)
				}
				if _, _, err := p.rtp.ReadFromUDPAddrPort(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHandle measures the relay's per-packet work without the read:
// checks, SRTP encryption and the send.
func BenchmarkHandle(b *testing.B) {
	for _, s := range []Suite{SuiteNone, AES_CM_128_HMAC_SHA1_80, AEAD_AES_128_GCM} {
		b.Run(s.String(), func(b *testing.B) {
			r, a, _ := benchCall(b, s)
			var sock *socket
			for _, st := range r.sessions["bench"].streams {
				sock = st.socks[LegA][kindRTP]
			}
			src := netip.MustParseAddrPort(a.rtp.LocalAddr().String())
			pkt := a.packet(make([]byte, 160))
			mid := make([]byte, maxPacket+srtpOverhead)
			out := make([]byte, maxPacket+srtpOverhead)
			var q seqState
			b.ReportAllocs()
			seq := uint16(0)
			for b.Loop() {
				seq++
				pkt[2], pkt[3] = byte(seq>>8), byte(seq)
				if res := sock.handle(&r.params, pkt, mid, out, src, time.Now().UnixNano()+int64(seq)*int64(time.Second)); res != forwarded {
					b.Fatalf("packet %d: %s", seq, res)
				}
				_ = q
			}
		})
	}
}
