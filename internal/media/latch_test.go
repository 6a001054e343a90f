package media

import (
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/pion/srtp/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestJudgeSource(t *testing.T) {
	ap := netip.MustParseAddrPort
	sig := []netip.Addr{netip.MustParseAddr("203.0.113.7")}
	private := ap("10.1.2.3:4000")
	public := ap("203.0.113.7:4000")
	elsewhere := ap("198.51.100.9:5000")
	nated := ap("203.0.113.7:61000")
	tests := []struct {
		name    string
		cfg     fwdConfig
		latched *netip.AddrPort
		learned bool
		src     netip.AddrPort
		want    srcVerdict
	}{
		{"SDP address", fwdConfig{expect: public, signal: sig}, nil, false, public, srcLatch},
		{"SDP address, NAT port", fwdConfig{expect: public, signal: sig}, nil, false, nated, srcLatch},
		{"public SDP: stranger", fwdConfig{expect: public, signal: sig, nat: legBehindNAT(public, sig)}, nil, false, elsewhere, srcDrop},
		{"private SDP: signalling address", fwdConfig{expect: private, signal: sig, nat: true}, nil, false, nated, srcLatch},
		{"private SDP: stranger learns", fwdConfig{expect: private, signal: sig, nat: true}, nil, false, elsewhere, srcLearn},
		{"latched", fwdConfig{expect: private, signal: sig, nat: true}, &nated, false, nated, srcKeep},
		{"latched: stranger", fwdConfig{expect: private, signal: sig, nat: true}, &nated, false, elsewhere, srcDrop},
		{"latched: signalled, other port", fwdConfig{expect: private, signal: sig, nat: true}, &nated, false, public, srcDrop},
		{"learned latch yields to signalled", fwdConfig{expect: private, signal: sig, nat: true}, &elsewhere, true, nated, srcLatch},
		{"learned latch: another stranger", fwdConfig{expect: private, signal: sig, nat: true}, &elsewhere, true, ap("198.51.100.10:5000"), srcDrop},
		{"SRTP: any source, if it authenticates", fwdConfig{expect: public, dec: testCtx(t)}, nil, false, elsewhere, srcSRTP},
		{"SRTP: rebinding, if it authenticates", fwdConfig{expect: public, dec: testCtx(t)}, &public, false, elsewhere, srcSRTP},
	}
	for _, tt := range tests {
		s := &socket{learned: tt.learned}
		if got := s.judgeSource(&tt.cfg, tt.latched, tt.src); got != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestLegBehindNAT(t *testing.T) {
	ap := netip.MustParseAddrPort
	a := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, x := range s {
			out = append(out, netip.MustParseAddr(x))
		}
		return out
	}
	tests := []struct {
		expect netip.AddrPort
		signal []netip.Addr
		want   bool
	}{
		{ap("203.0.113.7:4000"), a("203.0.113.7"), false},
		{ap("203.0.113.7:4000"), nil, false},
		{ap("203.0.113.7:4000"), a("198.51.100.1"), true}, // SDP differs from the signalling source
		{ap("192.168.1.20:4000"), a("203.0.113.7"), true},
		{ap("100.64.3.4:4000"), nil, true},
		{ap("[fe80::1]:4000"), nil, true},
		{netip.AddrPort{}, nil, true},
		{ap("0.0.0.0:4000"), nil, true},
	}
	for _, tt := range tests {
		if got := legBehindNAT(tt.expect, tt.signal); got != tt.want {
			t.Errorf("legBehindNAT(%v, %v) = %v", tt.expect, tt.signal, got)
		}
	}
}

func testCtx(t *testing.T) *srtp.Context {
	c, err := testKey(t, AES_CM_128_HMAC_SHA1_80).context()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// natCall sets up a plain-RTP call whose caller (a) announces a private
// SDP address and signals from sig.
func natCall(t *testing.T, r *Relay, id string, a, b *peer, sig ...string) {
	t.Helper()
	pol := Policy{}
	for _, s := range sig {
		pol.Legs[LegA].Signal = append(pol.Legs[LegA].Signal, netip.MustParseAddr(s))
	}
	m := "m=audio " + strconv.Itoa(port(a.rtp)) + " RTP/AVP 0\na=rtcp:" + strconv.Itoa(port(a.rtcp)) + "\na=sendrecv"
	toB, err := r.Offer(id, LegA, sdpBody("10.1.2.3", m), pol)
	if err != nil {
		t.Fatal(err)
	}
	b.learn(toB)
	toA, err := r.Answer(id, LegB, b.answerSDP("RTP/AVP"))
	if err != nil {
		t.Fatal(err)
	}
	a.learn(toA)
}

// RTP bleed behind NAT: a stranger's packets do not take a leg whose
// signalling address is known, before or after the peer's.
func TestRelayBleedBehindNAT(t *testing.T) {
	r := newTestRelay(t, Config{})
	a, b := newPeer(t, "127.0.0.1"), newPeer(t, "127.0.0.1")
	natCall(t, r, "nat1", a, b, "127.0.0.1")
	stranger := newPeer(t, "127.0.0.2")
	stranger.relayRTP = a.relayRTP
	// Before the peer: more than latch_packets, within the learning window.
	for i := 0; i < 10; i++ {
		stranger.sendRTP([]byte("probe"))
	}
	expectNothing(t, b)
	// The peer, from its signalling address: latched at once.
	a.sendRTP([]byte("hello"))
	expectPayload(t, b, []byte("hello"))
	b.sendRTP([]byte("back"))
	expectPayload(t, a, []byte("back"))
	// The stranger after the peer: nothing, however much it sends.
	for i := 0; i < 10; i++ {
		stranger.sendRTP([]byte("bleed"))
	}
	expectNothing(t, b)
	b.sendRTP([]byte("still to a"))
	expectPayload(t, a, []byte("still to a"))
	expectNothing(t, stranger)
	r.Close("nat1")
	if got := testutil.ToFloat64(r.met.latched[latchSignalled]); got != 2 { // a's RTP, b's RTP
		t.Errorf("signalled latches %v", got)
	}
	if got := testutil.ToFloat64(r.met.latched[latchLearned]); got != 0 {
		t.Errorf("learned latches %v", got)
	}
}

// A stranger that got in first through the learning window (here without
// its minimum duration) loses the leg to the signalled address as soon as
// the peer sends.
func TestRelayLearnedLatchYieldsToSignalled(t *testing.T) {
	r := newTestRelay(t, Config{LatchWindow: -1})
	a, b := newPeer(t, "127.0.0.1"), newPeer(t, "127.0.0.1")
	natCall(t, r, "nat2", a, b, "127.0.0.1")
	stranger := newPeer(t, "127.0.0.2")
	stranger.relayRTP = a.relayRTP
	for i := 0; i < 3; i++ {
		stranger.sendRTP([]byte("early"))
	}
	expectPayload(t, b, []byte("early")) // the third packet latched
	a.sendRTP([]byte("hello"))
	expectPayload(t, b, []byte("hello"))
	b.sendRTP([]byte("back"))
	expectPayload(t, a, []byte("back"))
	expectNothing(t, stranger)
	stranger.sendRTP([]byte("again"))
	expectNothing(t, b)
}

// Without a known signalling address, a leg behind NAT latches to the
// first source that sends LatchPackets packets in a row.
func TestRelayLearningWindow(t *testing.T) {
	r := newTestRelay(t, Config{LatchPackets: 3, LatchWindow: -1})
	a, b := newPeer(t, "127.0.0.1"), newPeer(t, "127.0.0.1")
	natCall(t, r, "nat3", a, b)
	stranger := newPeer(t, "127.0.0.2")
	stranger.relayRTP = a.relayRTP
	a.sendRTP([]byte("1"))
	a.sendRTP([]byte("2"))
	stranger.sendRTP([]byte("interleaved")) // the window restarts
	a.sendRTP([]byte("3"))
	a.sendRTP([]byte("4"))
	expectNothing(t, b)
	a.sendRTP([]byte("5"))
	expectPayload(t, b, []byte("5"))
	for i := 0; i < 5; i++ {
		stranger.sendRTP([]byte("bleed"))
	}
	expectNothing(t, b)
	r.Close("nat3")
	if got := testutil.ToFloat64(r.met.dropped[kindRTP][dropLearning]); got != 5 {
		t.Errorf("learning drops %v, want 5", got)
	}
}

// The learning window also lasts a minimum time: packets in a burst do not
// latch before it ends, and the next one after it does.
func TestRelayLearningWindowDuration(t *testing.T) {
	r := newTestRelay(t, Config{LatchPackets: 3, LatchWindow: 300 * time.Millisecond})
	a, b := newPeer(t, "127.0.0.1"), newPeer(t, "127.0.0.1")
	natCall(t, r, "nat4", a, b)
	for i := 0; i < 6; i++ {
		a.sendRTP([]byte("early"))
	}
	expectNothing(t, b) // 150ms
	time.Sleep(200 * time.Millisecond)
	a.sendRTP([]byte("late"))
	expectPayload(t, b, []byte("late"))
}
