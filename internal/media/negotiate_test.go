package media

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/pion/sdp/v3"
)

const relayAddr = "203.0.113.1"

// sdpBody builds an SDP body; media are the lines from the first m= on.
func sdpBody(addr string, media ...string) []byte {
	s := "v=0\r\no=alice 2890844526 2890844526 IN IP4 " + addr + "\r\ns=-\r\nc=IN IP4 " + addr + "\r\nt=0 0\r\n"
	for _, m := range media {
		s += strings.ReplaceAll(strings.TrimSpace(m), "\n", "\r\n") + "\r\n"
	}
	return []byte(s)
}

func cryptoLine(tag int, suite Suite) string {
	k := key30
	if suite == AEAD_AES_128_GCM {
		k = key28
	}
	return "a=crypto:" + itoa(tag) + " " + suite.String() + " inline:" + k
}

func itoa(i int) string { return strconv.Itoa(i) }

type fakePorts struct{ next int }

func (f *fakePorts) alloc(int) ([2]int, error) {
	if f.next == 0 {
		f.next = 30000
	}
	p := [2]int{f.next, f.next + 2}
	f.next += 4
	return p, nil
}

func mustParse(t testing.TB, b []byte) *sdp.SessionDescription {
	t.Helper()
	sd, err := parseSDP(b)
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, b)
	}
	return sd
}

func newNeg(p Policy) *negotiation {
	return &negotiation{pol: p, addr: netip.MustParseAddr(relayAddr), fp: fingerprintOf([]byte("relay certificate"))}
}

func attrs(md *sdp.MediaDescription, key string) []string {
	var v []string
	for _, a := range md.Attributes {
		if a.Key == key {
			v = append(v, a.Value)
		}
	}
	return v
}

func TestOfferAnswerRewrite(t *testing.T) {
	plainA := Policy{}
	bridge, _ := TrunkPolicy("bridge", "relay", false, LegA)
	required, _ := TrunkPolicy("required", "relay", false, LegA)
	toTrunkBridge, _ := TrunkPolicy("bridge", "relay", false, LegB)

	audioPlain := "m=audio 49170 RTP/AVP 0 8 101\na=rtpmap:0 PCMU/8000\na=sendrecv"
	audioSRTP := "m=audio 49170 RTP/SAVP 0\n" + cryptoLine(1, AES_CM_128_HMAC_SHA1_32) + "\n" + cryptoLine(2, AES_CM_128_HMAC_SHA1_80)
	audioGCM := "m=audio 49170 RTP/SAVP 0\n" + cryptoLine(5, AEAD_AES_128_GCM)
	audioBadCrypto := "m=audio 49170 RTP/SAVP 0\na=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:" + key30
	videoICE := "m=video 51372 RTP/AVPF 96\na=rtpmap:96 H264/90000\na=ice-ufrag:abcd\na=ice-pwd:secretsecretsecretsecret\na=candidate:1 1 UDP 2130706431 10.0.0.5 51372 typ host\na=rtcp:51999\na=rtcp-mux"
	t38 := "m=image 40000 udptl t38"

	tests := []struct {
		name        string
		pol         Policy
		offer       []string
		answer      func(offerToB *sdp.SessionDescription) []string
		offerErr    error
		answerErr   error
		toB, backA  []legOut
		secureA     []bool
		secureB     []bool
		checkOfferB func(t *testing.T, sd *sdp.SessionDescription)
	}{
		{
			name:  "plain both sides, two m-lines, ICE stripped",
			pol:   plainA,
			offer: []string{audioPlain, videoICE},
			answer: func(*sdp.SessionDescription) []string {
				return []string{"m=audio 6000 RTP/AVP 0\na=sendrecv", "m=video 6002 RTP/AVPF 96"}
			},
			toB:   []legOut{{true, "RTP/AVP", 0, 0}, {true, "RTP/AVPF", 0, 0}},
			backA: []legOut{{true, "RTP/AVP", 0, 0}, {true, "RTP/AVPF", 0, 0}},
			checkOfferB: func(t *testing.T, sd *sdp.SessionDescription) {
				v := sd.MediaDescriptions[1]
				for _, k := range []string{"ice-ufrag", "ice-pwd", "candidate", "rtcp", "rtcp-mux"} {
					if len(attrs(v, k)) != 0 {
						t.Errorf("a=%s kept", k)
					}
				}
				if len(attrs(v, "rtpmap")) != 1 {
					t.Error("a=rtpmap lost")
				}
			},
		},
		{
			name:  "bridge: SRTP trunk to plain PBX, offerer's first acceptable suite",
			pol:   bridge,
			offer: []string{audioSRTP},
			answer: func(*sdp.SessionDescription) []string {
				return []string{"m=audio 6000 RTP/AVP 0"}
			},
			toB:     []legOut{{true, "RTP/AVP", 0, 0}},
			backA:   []legOut{{true, "RTP/SAVP", 1, AES_CM_128_HMAC_SHA1_32}},
			secureA: []bool{true}, secureB: []bool{false},
		},
		{
			name:  "bridge: GCM",
			pol:   bridge,
			offer: []string{audioGCM},
			answer: func(*sdp.SessionDescription) []string {
				return []string{"m=audio 6000 RTP/AVP 0"}
			},
			toB:     []legOut{{true, "RTP/AVP", 0, 0}},
			backA:   []legOut{{true, "RTP/SAVP", 1, AEAD_AES_128_GCM}},
			secureA: []bool{true}, secureB: []bool{false},
		},
		{
			name:     "required: plain offer refused",
			pol:      required,
			offer:    []string{audioPlain},
			offerErr: ErrSRTPRequired,
		},
		{
			name:     "required: only unsupported suites refused",
			pol:      required,
			offer:    []string{audioBadCrypto},
			offerErr: ErrSRTPRequired,
		},
		{
			name:  "optional: SAVP with unsupported suites is rejected (port 0), not answered in clear",
			pol:   plainA,
			offer: []string{audioBadCrypto, audioPlain},
			answer: func(*sdp.SessionDescription) []string {
				return []string{"m=audio 0 RTP/AVP 0", "m=audio 6000 RTP/AVP 0"}
			},
			toB:   []legOut{{false, "RTP/SAVP", 0, 0}, {true, "RTP/AVP", 0, 0}},
			backA: []legOut{{false, "RTP/AVP", 0, 0}, {true, "RTP/AVP", 0, 0}},
		},
		{
			name:  "required: SRTP end to end with fresh keys on leg B",
			pol:   required,
			offer: []string{audioSRTP},
			answer: func(*sdp.SessionDescription) []string {
				return []string{"m=audio 6000 RTP/SAVP 0\n" + cryptoLine(2, AEAD_AES_128_GCM)}
			},
			toB:     []legOut{{true, "RTP/SAVP", 3, 0}},
			backA:   []legOut{{true, "RTP/SAVP", 1, AES_CM_128_HMAC_SHA1_32}},
			secureA: []bool{true}, secureB: []bool{true},
			checkOfferB: func(t *testing.T, sd *sdp.SessionDescription) {
				for _, v := range attrs(sd.MediaDescriptions[0], "crypto") {
					if strings.Contains(v, key30) || strings.Contains(v, key28) {
						t.Error("offerer's key forwarded to leg B")
					}
				}
			},
		},
		{
			name:  "call to a bridge trunk: plain PBX offer, SRTP to the trunk",
			pol:   toTrunkBridge,
			offer: []string{audioPlain},
			answer: func(*sdp.SessionDescription) []string {
				return []string{"m=audio 6000 RTP/SAVP 0\n" + cryptoLine(1, AES_CM_128_HMAC_SHA1_80)}
			},
			toB:     []legOut{{true, "RTP/SAVP", 3, 0}},
			backA:   []legOut{{true, "RTP/AVP", 0, 0}},
			secureA: []bool{false}, secureB: []bool{true},
		},
		{
			name:  "call to a bridge trunk answering without crypto",
			pol:   toTrunkBridge,
			offer: []string{audioPlain},
			answer: func(*sdp.SessionDescription) []string {
				return []string{"m=audio 6000 RTP/AVP 0"}
			},
			answerErr: ErrSRTPRequired,
		},
		{
			name:  "answer with a tag we did not offer",
			pol:   toTrunkBridge,
			offer: []string{audioPlain},
			answer: func(*sdp.SessionDescription) []string {
				return []string{"m=audio 6000 RTP/SAVP 0\n" + cryptoLine(7, AES_CM_128_HMAC_SHA1_80)}
			},
			answerErr: ErrSRTPRequired,
		},
		{
			name:  "non-RTP stream (T.38) disabled, audio relayed",
			pol:   plainA,
			offer: []string{audioPlain, t38},
			answer: func(*sdp.SessionDescription) []string {
				return []string{"m=audio 6000 RTP/AVP 0", "m=image 0 udptl t38"}
			},
			toB:   []legOut{{true, "RTP/AVP", 0, 0}, {false, "udptl", 0, 0}},
			backA: []legOut{{true, "RTP/AVP", 0, 0}, {false, "udptl", 0, 0}},
		},
		{
			name:  "answer with fewer m-lines",
			pol:   plainA,
			offer: []string{audioPlain, audioPlain},
			answer: func(*sdp.SessionDescription) []string {
				return []string{"m=audio 6000 RTP/AVP 0"}
			},
			answerErr: ErrBadSDP,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNeg(tt.pol)
			fp := &fakePorts{}
			offer := mustParse(t, sdpBody("192.0.2.10", tt.offer...))
			err := n.offer(LegA, offer, fp.alloc)
			if tt.offerErr != nil {
				if !errors.Is(err, tt.offerErr) {
					t.Fatalf("offer error = %v, want %v", err, tt.offerErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("offer: %v", err)
			}
			body, err := offer.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(body), "192.0.2.10") {
				t.Errorf("offerer's address leaked to leg B:\n%s", body)
			}
			offerB := mustParse(t, body)
			checkLegs(t, "offer to B", offerB, tt.toB)
			if tt.checkOfferB != nil {
				tt.checkOfferB(t, offerB)
			}
			ans := mustParse(t, sdpBody("198.51.100.20", tt.answer(offerB)...))
			_, err = n.answer(LegB, ans)
			if tt.answerErr != nil {
				if !errors.Is(err, tt.answerErr) {
					t.Fatalf("answer error = %v, want %v", err, tt.answerErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("answer: %v", err)
			}
			body, _ = ans.Marshal()
			if strings.Contains(string(body), "198.51.100.20") {
				t.Errorf("answerer's address leaked to leg A:\n%s", body)
			}
			checkLegs(t, "answer to A", mustParse(t, body), tt.backA)
			for i, want := range tt.secureA {
				if got := n.streams[i].sides[LegA].secure; got != want {
					t.Errorf("stream %d leg A secure = %v", i, got)
				}
			}
			for i, want := range tt.secureB {
				if got := n.streams[i].sides[LegB].secure; got != want {
					t.Errorf("stream %d leg B secure = %v", i, got)
				}
			}
			// Keys of both legs differ (fresh keys per leg).
			for _, st := range n.streams {
				a, b := st.sides[LegA], st.sides[LegB]
				for _, k := range []Key{b.send.Key, b.recv.Key} {
					if a.send.Key != nil && string(a.send.Key) == string(k) {
						t.Error("leg A send key reused on leg B")
					}
				}
			}
		})
	}
}

type legOut struct {
	port   bool // non-zero port
	proto  string
	crypto int // a=crypto lines
	suite  Suite
}

func checkLegs(t *testing.T, what string, sd *sdp.SessionDescription, want []legOut) {
	t.Helper()
	if want == nil {
		return
	}
	if len(sd.MediaDescriptions) != len(want) {
		t.Fatalf("%s: %d m-lines, want %d", what, len(sd.MediaDescriptions), len(want))
	}
	if sd.ConnectionInformation == nil || sd.ConnectionInformation.Address.Address != relayAddr {
		t.Errorf("%s: session c= is not the relay", what)
	}
	if sd.Origin.UnicastAddress != relayAddr {
		t.Errorf("%s: o= is %s", what, sd.Origin.UnicastAddress)
	}
	for i, w := range want {
		md := sd.MediaDescriptions[i]
		if got := md.MediaName.Port.Value != 0; got != w.port {
			t.Errorf("%s m-line %d: port %d", what, i, md.MediaName.Port.Value)
		}
		if got := strings.Join(md.MediaName.Protos, "/"); got != w.proto {
			t.Errorf("%s m-line %d: proto %s, want %s", what, i, got, w.proto)
		}
		cs := attrs(md, "crypto")
		if len(cs) != w.crypto {
			t.Errorf("%s m-line %d: %d a=crypto, want %d", what, i, len(cs), w.crypto)
		}
		if w.suite != SuiteNone && len(cs) == 1 {
			c, err := ParseCrypto(cs[0])
			if err != nil || c.Suite != w.suite {
				t.Errorf("%s m-line %d: crypto %v %v, want %v", what, i, c, err, w.suite)
			}
		}
	}
}

// A re-INVITE with the same streams keeps the relay's ports and keys, and a
// hold (0.0.0.0, a=sendonly) is passed on.
func TestReinviteHoldKeepsPortsAndKeys(t *testing.T) {
	pol, _ := TrunkPolicy("required", "relay", false, LegA)
	n := newNeg(pol)
	fp := &fakePorts{}
	audio := "m=audio 49170 RTP/SAVP 0\n" + cryptoLine(1, AES_CM_128_HMAC_SHA1_80)
	off := mustParse(t, sdpBody("192.0.2.10", audio))
	if err := n.offer(LegA, off, fp.alloc); err != nil {
		t.Fatal(err)
	}
	offB := off.MediaDescriptions[0]
	firstKey := attrs(offB, "crypto")[0]
	if !strings.Contains(firstKey, "AES_CM_128_HMAC_SHA1_80") {
		t.Fatalf("first offered suite: %s", firstKey)
	}
	ans := mustParse(t, sdpBody("198.51.100.20", "m=audio 6000 RTP/SAVP 0"))
	// The UA echoes our tag with its own key: use a fresh one.
	ans.MediaDescriptions[0].Attributes = []sdp.Attribute{{Key: "crypto", Value: "1 AES_CM_128_HMAC_SHA1_80 inline:" + key30}}
	if _, err := n.answer(LegB, ans); err != nil {
		t.Fatal(err)
	}
	ports := n.streams[0].ports
	sendA := string(n.streams[0].sides[LegA].send.Key)
	sendB := string(n.streams[0].sides[LegB].send.Key)

	// Leg B puts the call on hold with a re-INVITE.
	hold := mustParse(t, sdpBody("0.0.0.0", "m=audio 6000 RTP/SAVP 0\na=sendonly\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"+key30))
	if err := n.offer(LegB, hold, fp.alloc); err != nil {
		t.Fatal(err)
	}
	md := hold.MediaDescriptions[0]
	if md.ConnectionInformation == nil || md.ConnectionInformation.Address.Address != "0.0.0.0" {
		t.Errorf("hold address not passed on: %+v", md.ConnectionInformation)
	}
	if len(attrs(md, "sendonly")) != 1 {
		t.Error("a=sendonly lost")
	}
	if md.MediaName.Port.Value != ports[LegA] {
		t.Errorf("re-offer to A on port %d, want %d", md.MediaName.Port.Value, ports[LegA])
	}
	// Our offer to A lists our existing key for its suite.
	found := false
	for _, v := range attrs(md, "crypto") {
		c, _ := ParseCrypto(v)
		if c.Suite == AES_CM_128_HMAC_SHA1_80 && string(c.Key) == sendA {
			found = true
		}
	}
	if !found {
		t.Error("re-offer to A does not keep the key of the negotiated suite")
	}
	var tag string
	for _, v := range attrs(md, "crypto") {
		if strings.Contains(v, "AES_CM_128_HMAC_SHA1_80") {
			tag = strings.Fields(v)[0]
		}
	}
	ansA := mustParse(t, sdpBody("192.0.2.10", "m=audio 49170 RTP/SAVP 0\na=recvonly\na=crypto:"+tag+" AES_CM_128_HMAC_SHA1_80 inline:"+key30))
	if _, err := n.answer(LegA, ansA); err != nil {
		t.Fatal(err)
	}
	if n.streams[0].ports != ports {
		t.Errorf("ports changed on re-INVITE: %v -> %v", ports, n.streams[0].ports)
	}
	if string(n.streams[0].sides[LegB].send.Key) != sendB {
		t.Error("leg B key changed on a re-INVITE with the same suite")
	}
	if _, _, ok := n.streams[0].sides[LegB].remote(); ok {
		t.Error("leg B on hold still has a destination")
	}
	if ansA.MediaDescriptions[0].MediaName.Port.Value != ports[LegB] {
		t.Error("answer to B does not use B's port")
	}
}

// A re-INVITE that disables a stream (port 0) releases its ports on the answer.
func TestReinviteDisablesStream(t *testing.T) {
	n := newNeg(Policy{})
	fp := &fakePorts{}
	a := "m=audio 49170 RTP/AVP 0"
	v := "m=video 49172 RTP/AVP 96"
	off := mustParse(t, sdpBody("192.0.2.10", a, v))
	if err := n.offer(LegA, off, fp.alloc); err != nil {
		t.Fatal(err)
	}
	if _, err := n.answer(LegB, mustParse(t, sdpBody("198.51.100.20", "m=audio 6000 RTP/AVP 0", "m=video 6002 RTP/AVP 96"))); err != nil {
		t.Fatal(err)
	}
	vp := n.streams[1].ports
	off = mustParse(t, sdpBody("192.0.2.10", a, "m=video 0 RTP/AVP 96"))
	if err := n.offer(LegA, off, fp.alloc); err != nil {
		t.Fatal(err)
	}
	rel, err := n.answer(LegB, mustParse(t, sdpBody("198.51.100.20", "m=audio 6000 RTP/AVP 0", "m=video 0 RTP/AVP 96")))
	if err != nil {
		t.Fatal(err)
	}
	if len(rel) != 1 || rel[0] != vp {
		t.Errorf("released %v, want [%v]", rel, vp)
	}
	// Fewer m-lines than the session is refused.
	if err := n.offer(LegA, mustParse(t, sdpBody("192.0.2.10", a)), fp.alloc); !errors.Is(err, ErrBadSDP) {
		t.Errorf("offer removing an m-line: %v", err)
	}
	// An answer from the offerer's own leg is refused.
	if err := n.offer(LegA, mustParse(t, sdpBody("192.0.2.10", a, v)), fp.alloc); err != nil {
		t.Fatal(err)
	}
	if _, err := n.answer(LegA, mustParse(t, sdpBody("192.0.2.10", a, v))); !errors.Is(err, ErrNoOffer) {
		t.Errorf("answer from the offerer: %v", err)
	}
	if rel := n.abandon(); len(rel) != 1 {
		t.Errorf("abandon released %v, want the re-enabled video ports", rel)
	}
}

func TestDirectPolicy(t *testing.T) {
	pol, _ := TrunkPolicy("required", "direct", true, LegA)
	sd := mustParse(t, sdpBody("192.0.2.10", "m=audio 49170 RTP/AVP 0\na=candidate:1 1 UDP 1 192.0.2.10 49170 typ host"))
	if _, err := checkDirect(pol, LegA, sd); !errors.Is(err, ErrSRTPRequired) {
		t.Errorf("direct, required, plain: %v", err)
	}
	pol, _ = TrunkPolicy("optional", "direct", false, LegA)
	secure, err := checkDirect(pol, LegA, sd)
	if err != nil || secure {
		t.Errorf("direct optional: %v %v", secure, err)
	}
	if len(attrs(sd.MediaDescriptions[0], "candidate")) != 0 {
		t.Error("ICE not stripped")
	}
	if _, err := TrunkPolicy("bridge", "direct", false, LegA); err == nil {
		t.Error("bridge with direct media accepted")
	}
	if _, err := TrunkPolicy("required", "relay", true, LegA); err == nil {
		t.Error("ice keep with relay accepted")
	}
	if _, err := TrunkPolicy("sometimes", "relay", false, LegA); err == nil {
		t.Error("bad srtp mode accepted")
	}
}

func TestSIPStatus(t *testing.T) {
	code, warn, reason := SIPStatus(ErrSRTPRequired)
	if code != 488 || warn == "" || reason != "srtp_required" {
		t.Errorf("SIPStatus(ErrSRTPRequired) = %d %q %q", code, warn, reason)
	}
	if code, _, _ := SIPStatus(ErrNoPorts); code != 503 {
		t.Errorf("no ports -> %d", code)
	}
}

// FuzzOfferAnswer feeds arbitrary bodies through the SDP parser and both
// sides of the negotiation: nothing may panic, and what the relay writes
// must parse again.
func FuzzOfferAnswer(f *testing.F) {
	f.Add(sdpBody("192.0.2.10", "m=audio 49170 RTP/SAVP 0\n"+cryptoLine(1, AES_CM_128_HMAC_SHA1_80), "m=image 4000 udptl t38"))
	f.Add(sdpBody("0.0.0.0", "m=audio 49170 RTP/AVP 0\na=sendonly\na=rtcp:4000 IN IP4 192.0.2.1", "m=video 0 RTP/AVP 96"))
	f.Add(sdpBody("2001:db8::1", "m=audio 49170 RTP/AVPF 0\na=candidate:1 1 UDP 1 192.0.2.10 49170 typ host"))
	f.Add(sdpBody("192.0.2.10", dtlsOffer("UDP/TLS/RTP/SAVPF", "actpass", fp256)))
	f.Add(sdpBody("192.0.2.10", dtlsOffer("RTP/SAVP", "active", fp256)))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, pol := range []Policy{{}, {Legs: [2]LegPolicy{{SRTP: SRTPRequired}, {SRTP: SRTPPlain}}}, {Legs: [2]LegPolicy{{SRTP: SRTPPlain}, {SRTP: SRTPRequired}}},
			{Legs: [2]LegPolicy{{SRTP: SRTPRequired}, {SRTP: SRTPRequired, OfferDTLS: true}}}} {
			n := newNeg(pol)
			fp := &fakePorts{}
			sd, err := parseSDP(body)
			if err != nil {
				return
			}
			if err := n.offer(LegA, sd, fp.alloc); err != nil {
				continue
			}
			out, err := sd.Marshal()
			if err != nil {
				t.Fatalf("marshal rewritten offer: %v", err)
			}
			if _, err := parseSDP(out); err != nil {
				t.Fatalf("rewritten offer does not parse: %v\n%q", err, out)
			}
			// The same body as the answer.
			sd2, _ := parseSDP(body)
			if _, err := n.answer(LegB, sd2); err == nil {
				if _, err := sd2.Marshal(); err != nil {
					t.Fatalf("marshal rewritten answer: %v", err)
				}
			}
		}
	})
}
