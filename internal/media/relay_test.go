package media

import (
	"bytes"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sipwarden/sipwarden/internal/testenv"
	"go.uber.org/goleak"
)

// The relay starts pollers (a goroutine each; one per socket off Linux) and
// a reaper: goleak checks that Shutdown ends every one of them.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var testPortBase atomic.Int32

func init() { testPortBase.Store(31000) }

func newTestRelay(t testing.TB, cfg Config) *Relay {
	t.Helper()
	if cfg.PortMin == 0 {
		base := int(testPortBase.Add(200))
		cfg.PortMin, cfg.PortMax = base, base+199
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Shutdown()
		if n := r.PortsInUse(); n != 0 {
			t.Errorf("%d port pairs leaked", n)
		}
	})
	return r
}

// peer is a test endpoint: an RTP and an RTCP socket on loopback.
type peer struct {
	t         testing.TB
	rtp, rtcp *net.UDPConn
	// relay addresses this peer sends to (from the SDP it received).
	relayRTP, relayRTCP netip.AddrPort
	// SRTP: enc with the peer's own key, dec with the relay's key.
	enc, dec     *srtp.Context
	encC, decC   *srtp.Context // RTCP
	seq          uint16
	ssrc         uint32
	key          Crypto
	secureOffers bool
}

func newPeer(t testing.TB, ip string) *peer {
	t.Helper()
	p := &peer{t: t, ssrc: 0x1234}
	var err error
	for _, c := range []**net.UDPConn{&p.rtp, &p.rtcp} {
		if *c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(ip+":0"))); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { (*c).Close() })
	}
	return p
}

func port(c *net.UDPConn) int { return c.LocalAddr().(*net.UDPAddr).Port }

// sdp returns the peer's SDP with one audio stream; key (if set) is its SDES key.
func (p *peer) sdp(proto string, key *Crypto) []byte {
	m := "m=audio " + strconv.Itoa(port(p.rtp)) + " " + proto + " 0\na=rtcp:" + strconv.Itoa(port(p.rtcp)) + "\na=sendrecv"
	if key != nil {
		p.key = *key
		m += "\na=crypto:" + key.attrValue()
		p.enc, _ = key.context()
		p.encC, _ = key.context()
	}
	return sdpBody("127.0.0.1", m)
}

// learn reads the relay's address and key for this peer from the SDP it got.
func (p *peer) learn(body []byte) {
	p.t.Helper()
	sd := mustParse(p.t, body)
	md := sd.MediaDescriptions[0]
	a, _ := connAddr(sd, md)
	p.relayRTP = netip.AddrPortFrom(a, uint16(md.MediaName.Port.Value))
	p.relayRTCP = netip.AddrPortFrom(a, uint16(md.MediaName.Port.Value+1))
	for _, v := range attrs(md, "crypto") {
		c, err := ParseCrypto(v)
		if err != nil {
			p.t.Fatal(err)
		}
		if p.enc == nil { // we answer: pick the first, with a key of ours
			k, _ := newKey(c.Suite)
			own := Crypto{Tag: c.Tag, Suite: c.Suite, Key: k}
			p.key = own
			p.enc, _ = own.context()
			p.encC, _ = own.context()
		}
		p.dec, _ = c.context()
		p.decC, _ = c.context()
		break
	}
}

// answerSDP is the peer's answer echoing the tag it picked.
func (p *peer) answerSDP(proto string) []byte {
	if p.enc == nil {
		return p.sdp(proto, nil)
	}
	k := p.key
	enc, encC := p.enc, p.encC
	b := p.sdp(proto, &k)
	p.enc, p.encC = enc, encC
	return b
}

func (p *peer) packet(payload []byte) []byte {
	p.seq++
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: p.seq, Timestamp: uint32(p.seq) * 160, SSRC: p.ssrc}, Payload: payload}
	b, err := pkt.Marshal()
	if err != nil {
		p.t.Fatal(err)
	}
	if p.enc != nil {
		if b, err = p.enc.EncryptRTP(nil, b, nil); err != nil {
			p.t.Fatal(err)
		}
	}
	return b
}

func (p *peer) sendRTP(payload []byte) []byte {
	b := p.packet(payload)
	if _, err := p.rtp.WriteToUDPAddrPort(b, p.relayRTP); err != nil {
		p.t.Fatal(err)
	}
	return b
}

// rtcpRR is a minimal receiver report (RFC 3550 section 6.4.2).
func rtcpRR(ssrc uint32) []byte {
	return []byte{0x80, 201, 0, 1, byte(ssrc >> 24), byte(ssrc >> 16), byte(ssrc >> 8), byte(ssrc)}
}

func (p *peer) sendRTCP() {
	b := rtcpRR(p.ssrc)
	if p.encC != nil {
		var err error
		if b, err = p.encC.EncryptRTCP(nil, b, nil); err != nil {
			p.t.Fatal(err)
		}
	}
	if _, err := p.rtcp.WriteToUDPAddrPort(b, p.relayRTCP); err != nil {
		p.t.Fatal(err)
	}
}

// recvRTP returns the payload of the next RTP packet (decrypted when the leg is SRTP).
func (p *peer) recvRTP(wait time.Duration) ([]byte, bool) {
	p.t.Helper()
	buf := make([]byte, 2000)
	_ = p.rtp.SetReadDeadline(time.Now().Add(wait))
	n, _, err := p.rtp.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil, false
	}
	b := buf[:n]
	if p.dec != nil {
		if b, err = p.dec.DecryptRTP(nil, b, nil); err != nil {
			p.t.Fatalf("decrypt relayed packet: %v", err)
		}
	}
	var pkt rtp.Packet
	if err := pkt.Unmarshal(b); err != nil {
		p.t.Fatalf("relayed packet is not RTP: %v", err)
	}
	return pkt.Payload, true
}

func (p *peer) recvRTCP(wait time.Duration) ([]byte, bool) {
	buf := make([]byte, 2000)
	_ = p.rtcp.SetReadDeadline(time.Now().Add(wait))
	n, _, err := p.rtcp.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil, false
	}
	b := buf[:n]
	if p.decC != nil {
		if b, err = p.decC.DecryptRTCP(nil, b, nil); err != nil {
			p.t.Fatalf("decrypt relayed RTCP: %v", err)
		}
	}
	return b, true
}

// call sets up a call from a to b through r.
func call(t testing.TB, r *Relay, id string, pol Policy, a, b *peer, aProto string, aKey *Crypto, bProto string) {
	t.Helper()
	toB, err := r.Offer(id, LegA, a.sdp(aProto, aKey), pol)
	if err != nil {
		t.Fatalf("offer: %v", err)
	}
	b.learn(toB)
	toA, err := r.Answer(id, LegB, b.answerSDP(bProto))
	if err != nil {
		t.Fatalf("answer: %v", err)
	}
	a.learn(toA)
}

func testKey(t testing.TB, s Suite) *Crypto {
	k, err := newKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return &Crypto{Tag: 1, Suite: s, Key: k}
}

func expectPayload(t *testing.T, p *peer, want []byte) {
	t.Helper()
	got, ok := p.recvRTP(2 * time.Second)
	if !ok {
		t.Fatalf("no packet relayed (want %q)", want)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("payload %q, want %q", got, want)
	}
}

func expectNothing(t *testing.T, p *peer) {
	t.Helper()
	if got, ok := p.recvRTP(150 * time.Millisecond); ok {
		t.Fatalf("packet relayed that should have been dropped: %q", got)
	}
}

func TestRelayBridging(t *testing.T) {
	bridge, _ := TrunkPolicy("bridge", "relay", false, LegA)
	required, _ := TrunkPolicy("required", "relay", false, LegA)
	toTrunk, _ := TrunkPolicy("bridge", "relay", false, LegB)
	tests := []struct {
		name           string
		pol            Policy
		aProto, bProto string
		aSuite         Suite
		wantA, wantB   string
	}{
		{"SRTP trunk to plain PBX (AES_CM_80)", bridge, "RTP/SAVP", "RTP/AVP", AES_CM_128_HMAC_SHA1_80, "srtp:AES_CM_128_HMAC_SHA1_80", "rtp"},
		{"SRTP trunk to plain PBX (AES_CM_32)", bridge, "RTP/SAVP", "RTP/AVP", AES_CM_128_HMAC_SHA1_32, "srtp:AES_CM_128_HMAC_SHA1_32", "rtp"},
		{"SRTP trunk to plain PBX (GCM)", bridge, "RTP/SAVP", "RTP/AVP", AEAD_AES_128_GCM, "srtp:AEAD_AES_128_GCM", "rtp"},
		{"SRTP to SRTP, GCM to AES_CM_80, other keys", required, "RTP/SAVP", "RTP/SAVP", AEAD_AES_128_GCM, "srtp:AEAD_AES_128_GCM", "srtp:AES_CM_128_HMAC_SHA1_80"},
		{"plain PBX to SRTP trunk", toTrunk, "RTP/AVP", "RTP/SAVP", SuiteNone, "rtp", "srtp:AES_CM_128_HMAC_SHA1_80"},
		{"plain to plain", Policy{}, "RTP/AVP", "RTP/AVP", SuiteNone, "rtp", "rtp"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRelay(t, Config{})
			a, b := newPeer(t, "127.0.0.1"), newPeer(t, "127.0.0.1")
			var key *Crypto
			if tt.aSuite != SuiteNone {
				key = testKey(t, tt.aSuite)
			}
			id := "call-" + strconv.Itoa(i)
			call(t, r, id, tt.pol, a, b, tt.aProto, key, tt.bProto)
			for j := 0; j < 5; j++ {
				payload := []byte("a-to-b " + strconv.Itoa(j))
				wire := a.sendRTP(payload)
				if key != nil && bytes.Contains(wire, payload) {
					t.Fatal("test peer sent clear payload on an SRTP leg")
				}
				expectPayload(t, b, payload)
				payload = []byte("b-to-a " + strconv.Itoa(j))
				b.sendRTP(payload)
				expectPayload(t, a, payload)
			}
			a.sendRTCP()
			if got, ok := b.recvRTCP(2 * time.Second); !ok || !bytes.Equal(got, rtcpRR(a.ssrc)) {
				t.Errorf("RTCP a->b: %x %v", got, ok)
			}
			b.sendRTCP()
			if got, ok := a.recvRTCP(2 * time.Second); !ok || !bytes.Equal(got, rtcpRR(b.ssrc)) {
				t.Errorf("RTCP b->a: %x %v", got, ok)
			}
			sec := r.Close(id)
			if sec[LegA].String() != tt.wantA || sec[LegB].String() != tt.wantB {
				t.Errorf("security = %s / %s, want %s / %s", sec[LegA], sec[LegB], tt.wantA, tt.wantB)
			}
			if got := testutil.ToFloat64(r.met.forwarded[kindRTP]); got != 10 {
				t.Errorf("forwarded RTP = %v, want 10", got)
			}
			if r.PortsInUse() != 0 || r.Sessions() != 0 {
				t.Errorf("after Close: %d port pairs, %d sessions", r.PortsInUse(), r.Sessions())
			}
		})
	}
}

func TestRelayDropsForgedReplayedAndForeign(t *testing.T) {
	r := newTestRelay(t, Config{})
	pol, _ := TrunkPolicy("bridge", "relay", false, LegA)
	a, b := newPeer(t, "127.0.0.1"), newPeer(t, "127.0.0.1")
	call(t, r, "c1", pol, a, b, "RTP/SAVP", testKey(t, AES_CM_128_HMAC_SHA1_80), "RTP/AVP")

	// Forged: encrypted with another key.
	forger := newPeer(t, "127.0.0.1")
	forger.relayRTP = a.relayRTP
	forger.enc, _ = testKey(t, AES_CM_128_HMAC_SHA1_80).context()
	forger.seq = 100
	forger.sendRTP([]byte("forged"))
	expectNothing(t, b)

	// Valid: latches a's source.
	first := a.sendRTP([]byte("one"))
	expectPayload(t, b, []byte("one"))
	// Replayed.
	if _, err := a.rtp.WriteToUDPAddrPort(first, a.relayRTP); err != nil {
		t.Fatal(err)
	}
	expectNothing(t, b)
	// The replay from another source does not move the latch either.
	if _, err := forger.rtp.WriteToUDPAddrPort(first, a.relayRTP); err != nil {
		t.Fatal(err)
	}
	expectNothing(t, b)
	b.sendRTP([]byte("to a"))
	expectPayload(t, a, []byte("to a"))
	// A packet that authenticates from another source is a NAT rebinding
	// (only the key's holder can make one): the latch follows it.
	moved := newPeer(t, "127.0.0.1")
	moved.dec = a.dec
	b2 := a.packet([]byte("from the new mapping"))
	if _, err := moved.rtp.WriteToUDPAddrPort(b2, a.relayRTP); err != nil {
		t.Fatal(err)
	}
	expectPayload(t, b, []byte("from the new mapping"))
	b.sendRTP([]byte("to the new mapping"))
	if got, ok := moved.recvRTP(2 * time.Second); !ok || string(got) != "to the new mapping" {
		t.Fatalf("after the rebinding: %q %v", got, ok)
	}
	// Plain RTP towards the SRTP leg fails authentication.
	plain, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: 500, SSRC: 9}, Payload: []byte("clear RTP sent to an SRTP leg")}).Marshal()
	if _, err := a.rtp.WriteToUDPAddrPort(plain, a.relayRTP); err != nil {
		t.Fatal(err)
	}
	expectNothing(t, b)
	a.sendRTP([]byte("two"))
	expectPayload(t, b, []byte("two"))
	r.Close("c1")
	for reason, want := range map[dropReason]float64{dropAuth: 2, dropReplay: 2, dropSource: 0} {
		if got := testutil.ToFloat64(r.met.dropped[kindRTP][reason]); got != want {
			t.Errorf("dropped %s = %v, want %v", reason, got, want)
		}
	}
}

func TestRelayPlainLatchingAndBleed(t *testing.T) {
	r := newTestRelay(t, Config{})
	a, b := newPeer(t, "127.0.0.1"), newPeer(t, "127.0.0.1")
	call(t, r, "c2", Policy{}, a, b, "RTP/AVP", nil, "RTP/AVP")

	// Before latching, a source on another IP than the SDP's is refused.
	stranger := newPeer(t, "127.0.0.2")
	stranger.relayRTP = a.relayRTP
	stranger.sendRTP([]byte("early bleed"))
	expectNothing(t, b)

	a.sendRTP([]byte("hello"))
	expectPayload(t, b, []byte("hello"))
	// After latching even the SDP's IP on another port is refused.
	other := newPeer(t, "127.0.0.1")
	other.relayRTP, other.seq = a.relayRTP, a.seq
	other.sendRTP([]byte("bleed"))
	expectNothing(t, b)

	// b's replies go to a's latched source.
	b.sendRTP([]byte("back"))
	expectPayload(t, a, []byte("back"))

	// An SSRC change is taken on the second consecutive packet.
	a.ssrc = 0xbeef
	a.sendRTP([]byte("new ssrc 1"))
	a.sendRTP([]byte("new ssrc 2"))
	expectPayload(t, b, []byte("new ssrc 2"))
	// A jump of the sequence number is taken once confirmed.
	a.seq += 20000
	a.sendRTP([]byte("jump 1"))
	a.sendRTP([]byte("jump 2"))
	expectPayload(t, b, []byte("jump 2"))
	r.Close("c2")
	if got := testutil.ToFloat64(r.met.dropped[kindRTP][dropSource]); got != 2 {
		t.Errorf("dropped source = %v, want 2", got)
	}
	if got := testutil.ToFloat64(r.met.dropped[kindRTP][dropSequence]); got != 2 {
		t.Errorf("dropped sequence = %v, want 2", got)
	}
}

func TestRelayRateCap(t *testing.T) {
	r := newTestRelay(t, Config{MaxPacketRate: 40}) // a quarter second of burst: 10 packets
	a, b := newPeer(t, "127.0.0.1"), newPeer(t, "127.0.0.1")
	call(t, r, "c3", Policy{}, a, b, "RTP/AVP", nil, "RTP/AVP")
	for i := 0; i < 100; i++ {
		a.sendRTP([]byte("flood"))
	}
	got := 0
	for {
		if _, ok := b.recvRTP(200 * time.Millisecond); !ok {
			break
		}
		got++
	}
	if got < 8 || got > 40 { // 10 expected; slack for a loaded machine spreading the sends
		t.Errorf("%d of 100 packets passed a cap of 40/s with a 250 ms burst", got)
	}
	r.Close("c3")
	if d := testutil.ToFloat64(r.met.dropped[kindRTP][dropRate]); d < 60 {
		t.Errorf("dropped rate = %v", d)
	}
}

func TestRelayHoldAndReinvite(t *testing.T) {
	r := newTestRelay(t, Config{})
	a, b := newPeer(t, "127.0.0.1"), newPeer(t, "127.0.0.1")
	call(t, r, "c4", Policy{}, a, b, "RTP/AVP", nil, "RTP/AVP")
	a.sendRTP([]byte("x"))
	expectPayload(t, b, []byte("x"))
	portsBefore := r.PortsInUse()

	// b holds with 0.0.0.0: a's packets have nowhere to go.
	hold := sdpBody("0.0.0.0", "m=audio "+strconv.Itoa(port(b.rtp))+" RTP/AVP 0\na=sendonly")
	toA, err := r.Update("c4", LegB, hold)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(toA, []byte("c=IN IP4 0.0.0.0")) {
		t.Errorf("hold not passed on:\n%s", toA)
	}
	if _, err := r.Answer("c4", LegA, a.sdp("RTP/AVP", nil)); err != nil {
		t.Fatal(err)
	}
	a.sendRTP([]byte("on hold"))
	expectNothing(t, b)
	// b resumes.
	if _, err := r.Update("c4", LegB, b.sdp("RTP/AVP", nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Answer("c4", LegA, a.sdp("RTP/AVP", nil)); err != nil {
		t.Fatal(err)
	}
	a.sendRTP([]byte("resumed"))
	expectPayload(t, b, []byte("resumed"))
	if r.PortsInUse() != portsBefore {
		t.Errorf("re-INVITEs changed the ports in use: %d -> %d", portsBefore, r.PortsInUse())
	}
	if _, err := r.Update("nope", LegA, hold); err != ErrNoSession {
		t.Errorf("update of an unknown call: %v", err)
	}
}

func TestRelayRefusalsLeaveNothing(t *testing.T) {
	r := newTestRelay(t, Config{})
	pol, _ := TrunkPolicy("required", "relay", false, LegA)
	a := newPeer(t, "127.0.0.1")
	if _, err := r.Offer("c5", LegA, a.sdp("RTP/AVP", nil), pol); err == nil {
		t.Fatal("plain offer accepted where SRTP is required")
	} else if code, warn, _ := SIPStatus(err); code != 488 || warn == "" {
		t.Errorf("SIPStatus = %d %q", code, warn)
	}
	if r.Sessions() != 0 || r.PortsInUse() != 0 {
		t.Errorf("refused offer left %d sessions, %d port pairs", r.Sessions(), r.PortsInUse())
	}
	// Port exhaustion: a range with room for one stream.
	small := newTestRelay(t, Config{PortMin: 33990, PortMax: 33993})
	if _, err := small.Offer("c6", LegA, a.sdp("RTP/AVP", nil), Policy{}); err != nil {
		t.Fatal(err)
	}
	if _, err := small.Offer("c7", LegA, a.sdp("RTP/AVP", nil), Policy{}); err == nil {
		t.Fatal("offer accepted with no free ports")
	} else if code, _, _ := SIPStatus(err); code != 503 {
		t.Errorf("no ports -> %d", code)
	}
	// The INVITE retried after a 407 replaces the pending offer.
	if _, err := small.Offer("c6", LegA, a.sdp("RTP/AVP", nil), Policy{}); err != nil {
		t.Fatalf("retried offer: %v", err)
	}
	if small.PortsInUse() != 2 {
		t.Errorf("%d pairs after a retried offer, want 2", small.PortsInUse())
	}
	small.Close("c6")
	if small.PortsInUse() != 0 {
		t.Errorf("%d pairs after Close", small.PortsInUse())
	}
}

func TestRelayInactivityTimeout(t *testing.T) {
	timedOut := make(chan string, 1)
	r := newTestRelay(t, Config{Timeout: 500 * time.Millisecond, OnTimeout: func(id string) { timedOut <- id }})
	a, b := newPeer(t, "127.0.0.1"), newPeer(t, "127.0.0.1")
	call(t, r, "c8", Policy{}, a, b, "RTP/AVP", nil, "RTP/AVP")
	// Traffic keeps it alive.
	for i := 0; i < 6; i++ {
		a.sendRTP([]byte("alive"))
		expectPayload(t, b, []byte("alive"))
		time.Sleep(100 * time.Millisecond)
	}
	if r.Sessions() != 1 {
		t.Fatal("session with traffic timed out")
	}
	select {
	case id := <-timedOut:
		if id != "c8" {
			t.Errorf("timed out %q", id)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no timeout")
	}
	// The proxy ends the call; its close still has the legs' security for the CDR.
	if sec := r.Close("c8"); !sec[LegA].Relayed || !sec[LegB].Relayed {
		t.Errorf("security at the close after a timeout: %+v", sec)
	}
	if r.Sessions() != 0 || r.PortsInUse() != 0 {
		t.Errorf("after timeout: %d sessions, %d pairs", r.Sessions(), r.PortsInUse())
	}

	// A timed-out session nobody closes is closed after another timeout,
	// reported once.
	call(t, r, "c9", Policy{}, a, b, "RTP/AVP", nil, "RTP/AVP")
	select {
	case <-timedOut:
	case <-time.After(2 * time.Second):
		t.Fatal("no timeout")
	}
	deadline := time.Now().Add(3 * time.Second)
	for r.Sessions() != 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if r.Sessions() != 0 || r.PortsInUse() != 0 {
		t.Errorf("a timed-out session left open: %d sessions, %d pairs", r.Sessions(), r.PortsInUse())
	}
	select {
	case id := <-timedOut:
		t.Errorf("timeout of %q reported twice", id)
	default:
	}
}

func TestRelayDirect(t *testing.T) {
	r := newTestRelay(t, Config{})
	pol, _ := TrunkPolicy("required", "direct", false, LegA)
	a := newPeer(t, "127.0.0.1")
	if _, err := r.Offer("d1", LegA, a.sdp("RTP/AVP", nil), pol); err == nil {
		t.Error("direct: plain offer accepted where SRTP is required")
	}
	body := a.sdp("RTP/SAVP", testKey(t, AES_CM_128_HMAC_SHA1_80))
	out, err := r.Offer("d1", LegA, body, pol)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte("m=audio "+strconv.Itoa(port(a.rtp)))) {
		t.Error("direct media rewrote the port")
	}
	if r.PortsInUse() != 0 {
		t.Error("direct media allocated ports")
	}
	sec := r.Close("d1")
	if !sec[LegA].SRTP || sec[LegA].Relayed {
		t.Errorf("security %+v", sec[LegA])
	}
}

func TestSeqState(t *testing.T) {
	var q seqState
	steps := []struct {
		ssrc uint32
		seq  uint16
		ok   bool
	}{
		{1, 65534, true}, {1, 65535, true}, {1, 0, true}, {1, 1, true}, // wrap
		{1, 0, true},                      // late
		{1, 5000, false}, {1, 5001, true}, // jump confirmed
		{2, 7, false}, {1, 5002, true}, {2, 9, false}, {2, 10, true}, // new SSRC confirmed by consecutive packets
		{2, 40000, false}, {2, 11, true}, // unconfirmed jump forgotten
		{2, 30000, false}, {2, 30001, true},
		{2, 65535, false}, {2, 0, true}, // a jump to 65535 is confirmed by 0
	}
	for i, s := range steps {
		if got := q.accept(s.ssrc, s.seq); got != s.ok {
			t.Errorf("step %d (ssrc %d seq %d) = %v, want %v", i, s.ssrc, s.seq, got, s.ok)
		}
	}
}

// A re-INVITE that re-keys one leg switches that leg's decryption at the
// answer, keeps the other leg's keys (and its SRTP state), and the old key
// stops working.
func TestRelayRekeyOnReinvite(t *testing.T) {
	r := newTestRelay(t, Config{})
	pol, _ := TrunkPolicy("required", "relay", false, LegA)
	a, b := newPeer(t, "127.0.0.1"), newPeer(t, "127.0.0.1")
	call(t, r, "rk", pol, a, b, "RTP/SAVP", testKey(t, AES_CM_128_HMAC_SHA1_80), "RTP/SAVP")
	a.sendRTP([]byte("old key"))
	expectPayload(t, b, []byte("old key"))
	b.sendRTP([]byte("to a"))
	expectPayload(t, a, []byte("to a"))
	oldEnc := a.enc

	// a re-offers with a new key.
	toB, err := r.Update("rk", LegA, a.sdp("RTP/SAVP", testKey(t, AES_CM_128_HMAC_SHA1_80)))
	if err != nil {
		t.Fatal(err)
	}
	bDec := b.dec
	b.learn(toB) // b keeps its own key; the relay's key for b must be unchanged
	b.dec = bDec
	toA, err := r.Answer("rk", LegB, b.answerSDP("RTP/SAVP"))
	if err != nil {
		t.Fatal(err)
	}
	aDec := a.dec
	a.learn(toA)
	a.dec = aDec // the relay keeps its key towards a: a's old decryption context still works
	a.sendRTP([]byte("new key"))
	expectPayload(t, b, []byte("new key"))
	b.sendRTP([]byte("still to a"))
	expectPayload(t, a, []byte("still to a"))
	// The old key is refused now.
	a.enc = oldEnc
	a.sendRTP([]byte("old key again"))
	expectNothing(t, b)
	r.Close("rk")
	if got := testutil.ToFloat64(r.met.dropped[kindRTP][dropAuth]); got != 1 {
		t.Errorf("dropped auth = %v, want 1", got)
	}
}

// The relay works over IPv6 (raw sockaddr handling of the Linux pollers).
func TestRelayIPv6(t *testing.T) {
	testenv.IPv6Loopback(t)
	r := newTestRelay(t, Config{Addr: netip.MustParseAddr("::1")})
	a, b := newPeer(t, "[::1]"), newPeer(t, "[::1]")
	pol, _ := TrunkPolicy("bridge", "relay", false, LegA)
	toB, err := r.Offer("v6", LegA, a.sdp6("RTP/SAVP", testKey(t, AEAD_AES_128_GCM)), pol)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(toB, []byte("c=IN IP6 ::1")) {
		t.Errorf("offer to B:\n%s", toB)
	}
	b.learn(toB)
	toA, err := r.Answer("v6", LegB, b.sdp6("RTP/AVP", nil))
	if err != nil {
		t.Fatal(err)
	}
	a.learn(toA)
	a.sendRTP([]byte("over v6"))
	expectPayload(t, b, []byte("over v6"))
	b.sendRTP([]byte("back over v6"))
	expectPayload(t, a, []byte("back over v6"))
}

// sdp6 is sdp with an IPv6 connection address.
func (p *peer) sdp6(proto string, key *Crypto) []byte {
	b := p.sdp(proto, key)
	return bytes.ReplaceAll(b, []byte("IN IP4 127.0.0.1"), []byte("IN IP6 ::1"))
}

// An offerless INVITE: the offer comes from the callee (in the 200) and the
// answer from the caller (in the ACK). Here the caller is an SRTP trunk
// (bridge) and the callee a plain PBX.
func TestRelayOfferFromCallee(t *testing.T) {
	r := newTestRelay(t, Config{})
	pol, _ := TrunkPolicy("bridge", "relay", false, LegA)
	a, b := newPeer(t, "127.0.0.1"), newPeer(t, "127.0.0.1")
	toA, err := r.Offer("ol", LegB, b.sdp("RTP/AVP", nil), pol)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(toA, []byte("RTP/SAVP")) || !bytes.Contains(toA, []byte("a=crypto:")) {
		t.Fatalf("offer to the SRTP trunk:\n%s", toA)
	}
	a.learn(toA)
	// An answer without crypto from the trunk is refused.
	if _, err := r.Answer("ol", LegA, a.sdp("RTP/AVP", nil)); err == nil {
		t.Fatal("plain answer accepted from a trunk that requires SRTP")
	}
	toB, err := r.Answer("ol", LegA, a.answerSDP("RTP/SAVP"))
	if err != nil {
		t.Fatal(err)
	}
	b.learn(toB)
	a.sendRTP([]byte("from trunk"))
	expectPayload(t, b, []byte("from trunk"))
	b.sendRTP([]byte("from pbx"))
	expectPayload(t, a, []byte("from pbx"))
	sec := r.Close("ol")
	if sec[LegA].String() != "srtp:AES_CM_128_HMAC_SHA1_80" || sec[LegB].String() != "rtp" {
		t.Errorf("security %s / %s", sec[LegA], sec[LegB])
	}
}

// The 200 after a 183 with SDP repeats the answer; another fork's answer
// moves leg B's destination.
func TestRelayRepeatedAnswer(t *testing.T) {
	r := newTestRelay(t, Config{})
	pol, _ := TrunkPolicy("required", "relay", false, LegA)
	a, b := newPeer(t, "127.0.0.1"), newPeer(t, "127.0.0.1")
	call(t, r, "ra", pol, a, b, "RTP/SAVP", testKey(t, AES_CM_128_HMAC_SHA1_80), "RTP/SAVP")
	a.sendRTP([]byte("early"))
	expectPayload(t, b, []byte("early"))
	// The 200 repeats the 183's SDP.
	again, err := r.Answer("ra", LegB, b.answerSDP("RTP/SAVP"))
	if err != nil {
		t.Fatalf("repeated answer: %v", err)
	}
	if !bytes.Contains(again, []byte("m=audio "+strconv.Itoa(int(a.relayRTP.Port())))) {
		t.Errorf("repeated answer moved leg A's port:\n%s", again)
	}
	a.sendRTP([]byte("answered"))
	expectPayload(t, b, []byte("answered"))
	// Another fork answers from elsewhere (with the same key tag).
	c := newPeer(t, "127.0.0.1")
	c.key, c.enc, c.encC, c.dec, c.decC = b.key, b.enc, b.encC, b.dec, b.decC
	if _, err := r.Answer("ra", LegB, c.answerSDP("RTP/SAVP")); err != nil {
		t.Fatal(err)
	}
	c.relayRTP = b.relayRTP
	a.sendRTP([]byte("to the fork"))
	expectPayload(t, c, []byte("to the fork"))
	// An answer from the offerer's side is still refused.
	if _, err := r.Answer("ra", LegA, a.sdp("RTP/SAVP", nil)); err == nil {
		t.Error("answer from the offerer accepted")
	}
}
