package media

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/pion/srtp/v3"

	"github.com/sipwarden/sipwarden/internal/config"
)

// fp256 is a well-formed sha-256 fingerprint value.
var fp256 = "sha-256 " + strings.TrimSuffix(strings.Repeat("AB:", 32), ":")

func TestParseFingerprint(t *testing.T) {
	sha1FP := "sha-1 " + strings.TrimSuffix(strings.Repeat("0f:", 20), ":")
	tests := []struct {
		in      string
		hash    string
		wantErr bool
	}{
		{fp256, "sha-256", false},
		{"SHA-256 " + strings.TrimSuffix(strings.Repeat("ab:", 32), ":"), "sha-256", false},
		{sha1FP, "sha-1", false},
		{"sha-512 " + strings.TrimSuffix(strings.Repeat("01:", 64), ":"), "sha-512", false},
		{"md5 " + strings.TrimSuffix(strings.Repeat("01:", 16), ":"), "", true},     // refused hash (RFC 8122)
		{"sha-256 " + strings.TrimSuffix(strings.Repeat("AB:", 31), ":"), "", true}, // short digest
		{"sha-256 " + strings.Repeat("AB", 32) + strings.Repeat(" ", 31), "", true}, // no colons
		{"sha-256 " + strings.TrimSuffix(strings.Repeat("ZZ:", 32), ":"), "", true}, // not hex
		{"sha-256", "", true},
		{"", "", true},
		{"sha-256 " + strings.Repeat("A", 300), "", true},
	}
	for _, tt := range tests {
		f, err := ParseFingerprint(tt.in)
		if tt.wantErr {
			if !errors.Is(err, ErrBadFingerprint) {
				t.Errorf("%.40q: err %v, want ErrBadFingerprint", tt.in, err)
			}
			continue
		}
		if err != nil || f.Hash != tt.hash {
			t.Errorf("%.40q: %v %v", tt.in, f, err)
			continue
		}
		// Round trip: String writes upper-case hex.
		if g, err := ParseFingerprint(f.String()); err != nil || !sameFingerprints([]Fingerprint{f}, []Fingerprint{g}) {
			t.Errorf("%.40q: round trip %q: %v", tt.in, f.String(), err)
		}
	}
}

func TestFingerprintMatches(t *testing.T) {
	cert := []byte("not really DER, but hashed all the same")
	f := fingerprintOf(cert)
	if !f.matches(cert) {
		t.Fatal("own fingerprint does not match")
	}
	if f.matches(append([]byte{}, cert[:len(cert)-1]...)) {
		t.Fatal("fingerprint matches another certificate")
	}
	d := sha256.Sum256(cert)
	if g := (Fingerprint{Hash: "sha-1", Digest: d[:20]}); g.matches(cert) {
		t.Fatal("digest compared under the wrong hash")
	}
}

func TestParseSetup(t *testing.T) {
	for in, want := range map[string]Setup{"actpass": SetupActpass, "ACTIVE": SetupActive, " passive": SetupPassive, "holdconn": SetupHoldconn} {
		if got, err := ParseSetup(in); err != nil || got != want {
			t.Errorf("%q: %v %v", in, got, err)
		}
	}
	if _, err := ParseSetup("both"); !errors.Is(err, ErrBadSetup) {
		t.Errorf("both: %v", err)
	}
}

// fakeExporter returns bytes 0, 1, 2, ...: the key layout is visible.
type fakeExporter struct{ label string }

func (f *fakeExporter) ExportKeyingMaterial(label string, _ []byte, n int) ([]byte, error) {
	f.label = label
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b, nil
}

// TestSRTPKeysLayout checks the RFC 5764 section 4.2 layout against
// pion/srtp's own extraction (an independent implementation).
func TestSRTPKeysLayout(t *testing.T) {
	for _, s := range []Suite{AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32, AEAD_AES_128_GCM} {
		for _, client := range []bool{true, false} {
			var ex fakeExporter
			recv, send, err := srtpKeys(&ex, s, client)
			if err != nil {
				t.Fatal(err)
			}
			if ex.label != "EXTRACTOR-dtls_srtp" {
				t.Errorf("label %q", ex.label)
			}
			cfg := srtp.Config{Profile: s.profile()}
			if err := cfg.ExtractSessionKeysFromDTLS(&fakeExporter{}, client); err != nil {
				t.Fatal(err)
			}
			wantSend := append(append([]byte{}, cfg.Keys.LocalMasterKey...), cfg.Keys.LocalMasterSalt...)
			wantRecv := append(append([]byte{}, cfg.Keys.RemoteMasterKey...), cfg.Keys.RemoteMasterSalt...)
			if !bytes.Equal(send.Key, wantSend) || !bytes.Equal(recv.Key, wantRecv) || send.Suite != s || recv.Suite != s {
				t.Errorf("%s client=%v: keys differ from pion/srtp's extraction", s, client)
			}
			if _, err := send.context(); err != nil {
				t.Errorf("%s: %v", s, err)
			}
		}
	}
}

// dtlsOffer is an audio m-line with DTLS-SRTP attributes.
func dtlsOffer(proto, setup, fp string) string {
	m := "m=audio 49170 " + proto + " 0\na=rtpmap:0 PCMU/8000"
	if fp != "" {
		m += "\na=fingerprint:" + fp
	}
	if setup != "" {
		m += "\na=setup:" + setup
	}
	return m + "\na=tls-id:abc\na=rtcp-mux"
}

func TestDTLSOfferAnswer(t *testing.T) {
	bridge, _ := TrunkPolicy("bridge", "relay", false, LegA)
	required, _ := TrunkPolicy("required", "relay", false, LegA)
	relayFP := fingerprintOf([]byte("relay certificate"))
	tests := []struct {
		name       string
		pol        Policy
		addr       string
		media      string
		session    string // session-level attribute lines
		wantErr    error
		wantSetup  string // the relay's a=setup in the answer to A ("": stream refused)
		wantProtoA string
		wantProtoB string
	}{
		{"actpass: the relay is active", bridge, "198.51.100.7", dtlsOffer("UDP/TLS/RTP/SAVP", "actpass", fp256), "", nil, "active", "UDP/TLS/RTP/SAVP", "RTP/AVP"},
		{"actpass behind NAT: passive", bridge, "10.1.2.3", dtlsOffer("UDP/TLS/RTP/SAVP", "actpass", fp256), "", nil, "passive", "UDP/TLS/RTP/SAVP", "RTP/AVP"},
		{"active: passive", bridge, "198.51.100.7", dtlsOffer("UDP/TLS/RTP/SAVP", "active", fp256), "", nil, "passive", "UDP/TLS/RTP/SAVP", "RTP/AVP"},
		{"passive: active", bridge, "198.51.100.7", dtlsOffer("UDP/TLS/RTP/SAVP", "passive", fp256), "", nil, "active", "UDP/TLS/RTP/SAVP", "RTP/AVP"},
		{"no a=setup means active", bridge, "198.51.100.7", dtlsOffer("UDP/TLS/RTP/SAVP", "", fp256), "", nil, "passive", "UDP/TLS/RTP/SAVP", "RTP/AVP"},
		{"RTP/SAVP with a=fingerprint", bridge, "198.51.100.7", dtlsOffer("RTP/SAVP", "actpass", fp256), "", nil, "active", "RTP/SAVP", "RTP/AVP"},
		{"SAVPF kept", bridge, "198.51.100.7", dtlsOffer("UDP/TLS/RTP/SAVPF", "actpass", fp256), "", nil, "active", "UDP/TLS/RTP/SAVPF", "RTP/AVPF"},
		{"session-level attributes", bridge, "198.51.100.7", "m=audio 49170 UDP/TLS/RTP/SAVP 0", "a=fingerprint:" + fp256 + "\r\na=setup:actpass\r\n", nil, "active", "UDP/TLS/RTP/SAVP", "RTP/AVP"},
		{"required: other leg gets SDES", required, "198.51.100.7", dtlsOffer("UDP/TLS/RTP/SAVP", "actpass", fp256), "", nil, "active", "UDP/TLS/RTP/SAVP", "RTP/SAVP"},
		{"md5 fingerprint: 488", bridge, "198.51.100.7", dtlsOffer("UDP/TLS/RTP/SAVP", "actpass", "md5 "+strings.TrimSuffix(strings.Repeat("01:", 16), ":")), "", ErrSRTPRequired, "", "", ""},
		{"malformed fingerprint: 488", bridge, "198.51.100.7", dtlsOffer("UDP/TLS/RTP/SAVP", "actpass", "sha-256 zz"), "", ErrSRTPRequired, "", "", ""},
		{"holdconn: 488", bridge, "198.51.100.7", dtlsOffer("UDP/TLS/RTP/SAVP", "holdconn", fp256), "", ErrSRTPRequired, "", "", ""},
		{"no fingerprint: 488", bridge, "198.51.100.7", dtlsOffer("UDP/TLS/RTP/SAVP", "actpass", ""), "", ErrSRTPRequired, "", "", ""},
		{"optional, bad fingerprint: stream refused", Policy{}, "198.51.100.7", dtlsOffer("UDP/TLS/RTP/SAVP", "actpass", "sha-256 zz"), "", nil, "", "", ""},
		{"optional: mirrored as SDES", Policy{}, "198.51.100.7", dtlsOffer("UDP/TLS/RTP/SAVP", "actpass", fp256), "", nil, "active", "UDP/TLS/RTP/SAVP", "RTP/SAVP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNeg(tt.pol)
			n.fp = relayFP
			body := sdpBody(tt.addr, tt.media)
			if tt.session != "" {
				body = bytes.Replace(body, []byte("t=0 0\r\n"), []byte("t=0 0\r\n"+tt.session), 1)
			}
			sd := mustParse(t, body)
			var fp fakePorts
			err := n.offer(LegA, sd, fp.alloc)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("offer: %v, want %v", err, tt.wantErr)
				}
				if code, _, _ := SIPStatus(err); code != 488 {
					t.Errorf("SIP status %d, want 488", code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			toB := sd.MediaDescriptions[0]
			if tt.wantSetup == "" {
				if toB.MediaName.Port.Value != 0 {
					t.Fatalf("stream offered on port %d, want refused", toB.MediaName.Port.Value)
				}
				return
			}
			if got := strings.Join(toB.MediaName.Protos, "/"); got != tt.wantProtoB {
				t.Errorf("offer to B: %s, want %s", got, tt.wantProtoB)
			}
			if f := attrs(toB, "fingerprint"); len(f) != 0 {
				t.Errorf("A's fingerprint forwarded to B: %v", f)
			}
			for _, k := range []string{"tls-id", "rtcp-mux", "setup"} {
				if v := attrs(toB, k); len(v) != 0 {
					t.Errorf("a=%s forwarded to B", k)
				}
			}
			// B answers in the protocol it was offered, with SDES when offered.
			ansMedia := "m=audio 50000 " + tt.wantProtoB + " 0"
			if c := attrs(toB, "crypto"); len(c) > 0 {
				off, _ := ParseCrypto(c[0])
				ansMedia += "\n" + cryptoLine(int(off.Tag), off.Suite)
			}
			ans := mustParse(t, sdpBody("192.0.2.9", ansMedia))
			if _, err := n.answer(LegB, ans); err != nil {
				t.Fatal(err)
			}
			toA := ans.MediaDescriptions[0]
			if got := strings.Join(toA.MediaName.Protos, "/"); got != tt.wantProtoA {
				t.Errorf("answer to A: %s, want %s", got, tt.wantProtoA)
			}
			if got := attrs(toA, "setup"); len(got) != 1 || got[0] != tt.wantSetup {
				t.Errorf("answer to A: a=setup %v, want %s", got, tt.wantSetup)
			}
			if got := attrs(toA, "fingerprint"); len(got) != 1 || got[0] != relayFP.String() {
				t.Errorf("answer to A: a=fingerprint %v, want the relay's %s", got, relayFP)
			}
			if c := attrs(toA, "crypto"); len(c) != 0 {
				t.Errorf("answer to A has a=crypto: %v", c)
			}
			a := n.streams[0].sides[LegA]
			if !a.secure || !a.dtls || len(a.fps) != 1 || a.dtlsClient != (tt.wantSetup == "active") {
				t.Errorf("leg A side: secure %v dtls %v fps %d client %v", a.secure, a.dtls, len(a.fps), a.dtlsClient)
			}
		})
	}
}

// TestDTLSOfferedToLeg: with OfferDTLS the relay offers DTLS-SRTP with
// actpass, and takes the answerer's role from its a=setup.
func TestDTLSOfferedToLeg(t *testing.T) {
	toTrunk, _ := TrunkPolicy("bridge", "relay", false, LegB)
	toTrunk.Legs[LegB].OfferDTLS = true
	optional := Policy{}
	optional.Legs[LegB].OfferDTLS = true
	relayFP := fingerprintOf([]byte("relay certificate"))
	tests := []struct {
		name       string
		pol        Policy
		offer      string
		answer     string
		wantErr    error
		wantClient bool
		wantDTLS   bool
	}{
		{"answer active: relay is server", toTrunk, "m=audio 49170 RTP/AVP 0", dtlsOffer("UDP/TLS/RTP/SAVP", "active", fp256), nil, false, true},
		{"answer passive: relay is client", toTrunk, "m=audio 49170 RTP/AVP 0", dtlsOffer("UDP/TLS/RTP/SAVP", "passive", fp256), nil, true, true},
		{"answer without a=setup: active", toTrunk, "m=audio 49170 RTP/AVP 0", dtlsOffer("UDP/TLS/RTP/SAVP", "", fp256), nil, false, true},
		{"answer actpass: refused", toTrunk, "m=audio 49170 RTP/AVP 0", dtlsOffer("UDP/TLS/RTP/SAVP", "actpass", fp256), ErrSRTPRequired, false, false},
		{"answer without fingerprint: refused", toTrunk, "m=audio 49170 RTP/AVP 0", dtlsOffer("UDP/TLS/RTP/SAVP", "active", ""), ErrSRTPRequired, false, false},
		{"optional: plain offer stays plain", optional, "m=audio 49170 RTP/AVP 0", "m=audio 50000 RTP/AVP 0", nil, false, false},
		{"optional: SDES offer becomes DTLS", optional, "m=audio 49170 RTP/SAVP 0\n" + cryptoLine(1, AES_CM_128_HMAC_SHA1_80), dtlsOffer("UDP/TLS/RTP/SAVP", "active", fp256), nil, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNeg(tt.pol)
			n.fp = relayFP
			sd := mustParse(t, sdpBody("192.0.2.9", tt.offer))
			var fp fakePorts
			if err := n.offer(LegA, sd, fp.alloc); err != nil {
				t.Fatal(err)
			}
			toB := sd.MediaDescriptions[0]
			if tt.wantDTLS || tt.wantErr != nil {
				if got := strings.Join(toB.MediaName.Protos, "/"); got != "UDP/TLS/RTP/SAVP" {
					t.Errorf("offer to B: %s", got)
				}
				if s := attrs(toB, "setup"); len(s) != 1 || s[0] != "actpass" {
					t.Errorf("offer to B: a=setup %v, want actpass", s)
				}
				if f := attrs(toB, "fingerprint"); len(f) != 1 || f[0] != relayFP.String() {
					t.Errorf("offer to B: a=fingerprint %v", f)
				}
				if c := attrs(toB, "crypto"); len(c) != 0 {
					t.Errorf("offer to B has a=crypto %v", c)
				}
			}
			ans := mustParse(t, sdpBody("198.51.100.7", tt.answer))
			_, err := n.answer(LegB, ans)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("answer: %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b := n.streams[0].sides[LegB]
			if b.dtls != tt.wantDTLS || b.secure != tt.wantDTLS || (tt.wantDTLS && b.dtlsClient != tt.wantClient) {
				t.Errorf("leg B: dtls %v secure %v client %v", b.dtls, b.secure, b.dtlsClient)
			}
			if f := attrs(ans.MediaDescriptions[0], "fingerprint"); len(f) != 0 {
				t.Errorf("B's fingerprint forwarded to A: %v", f)
			}
		})
	}
}

func TestCheckOfferAndDirectCountDTLS(t *testing.T) {
	required, _ := TrunkPolicy("required", "relay", false, LegA)
	direct, _ := TrunkPolicy("required", "direct", false, LegA)
	good := sdpBody("198.51.100.7", dtlsOffer("UDP/TLS/RTP/SAVP", "actpass", fp256))
	bad := sdpBody("198.51.100.7", dtlsOffer("UDP/TLS/RTP/SAVP", "actpass", "sha-256 00"))
	if err := CheckOffer(good, required, LegA); err != nil {
		t.Errorf("CheckOffer(DTLS-SRTP): %v", err)
	}
	if err := CheckOffer(bad, required, LegA); !errors.Is(err, ErrSRTPRequired) {
		t.Errorf("CheckOffer(bad fingerprint): %v", err)
	}
	if secure, err := checkDirect(direct, LegA, mustParse(t, good)); err != nil || !secure {
		t.Errorf("checkDirect(DTLS-SRTP): %v %v", secure, err)
	}
	if _, err := checkDirect(direct, LegA, mustParse(t, bad)); !errors.Is(err, ErrSRTPRequired) {
		t.Errorf("checkDirect(bad fingerprint): %v", err)
	}
}

// FuzzParseFingerprint: no input panics, and what parses formats to a value
// that parses to the same fingerprint.
func FuzzParseFingerprint(f *testing.F) {
	f.Add(fp256)
	f.Add("sha-1 " + strings.TrimSuffix(strings.Repeat("0f:", 20), ":"))
	f.Add("sha-256 AB")
	f.Fuzz(func(t *testing.T, v string) {
		fp, err := ParseFingerprint(v)
		if err != nil {
			return
		}
		g, err := ParseFingerprint(fp.String())
		if err != nil || !sameFingerprints([]Fingerprint{fp}, []Fingerprint{g}) {
			t.Fatalf("%q: round trip %q: %v", v, fp.String(), err)
		}
	})
}

// TestDTLSInputBounds: records for a socket without DTLS are malformed; the
// queue of an endpoint is bounded; once an attempt is bound to its peer,
// records from other sources are dropped.
func TestDTLSInputBounds(t *testing.T) {
	p := &relayParams{}
	rec := []byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	src := netip.MustParseAddrPort("198.51.100.7:4000")
	s := &socket{}
	if r := s.handle(p, rec, nil, nil, src, 0); r != dropMalformed {
		t.Fatalf("DTLS record on a plain socket: %v", r)
	}
	e := newDTLSEndpoint(s, &dtlsEnv{}, nil)
	defer e.stop()
	s.dtls.Store(e)
	for i := range dtlsQueue {
		if r := s.handle(p, rec, nil, nil, src, int64(i)); r != consumed {
			t.Fatalf("record %d: %v", i, r)
		}
	}
	if r := s.handle(p, rec, nil, nil, src, 0); r != dropRate {
		t.Fatalf("record over the queue: %v, want rate", r)
	}
	for len(e.in) > 0 {
		<-e.in
	}
	e.params = &dtlsParams{dst: src}
	if r := s.handle(p, rec, nil, nil, netip.MustParseAddrPort("203.0.113.66:4000"), 0); r != consumed {
		t.Fatalf("record from another address before binding: %v", r)
	}
	for len(e.in) > 0 {
		<-e.in
	}
	c := &dtlsConn{e: e}
	if !c.bind(src) || c.bind(netip.MustParseAddrPort("203.0.113.66:4000")) {
		t.Fatal("bind: the first source is not the peer")
	}
	if r := s.handle(p, rec, nil, nil, netip.MustParseAddrPort("198.51.100.7:4002"), 0); r != dropSource {
		t.Fatalf("record from another source after binding: %v", r)
	}
	if r := s.handle(p, rec, nil, nil, src, 0); r != consumed {
		t.Fatalf("record from the bound peer: %v", r)
	}
	e.stop()
	if r := s.handle(p, rec, nil, nil, src, 0); r != dropNotReady {
		t.Fatalf("record after stop: %v", r)
	}
}

// TestPolicyForOfferKeying: a trunk's offer_keying: dtls makes the relay
// offer DTLS-SRTP on the trunk's leg only.
func TestPolicyForOfferKeying(t *testing.T) {
	tr := &config.Trunk{Media: config.TrunkMedia{Mode: config.MediaRelay, SRTP: config.SRTPBridge, OfferKeying: config.KeyingDTLS}}
	for _, leg := range []Leg{LegA, LegB} {
		p, err := PolicyFor(tr, leg)
		if err != nil {
			t.Fatal(err)
		}
		if !p.Legs[leg].OfferDTLS || p.Legs[leg.other()].OfferDTLS {
			t.Errorf("trunk on leg %s: %+v", leg, p.Legs)
		}
	}
	tr.Media.OfferKeying = ""
	if p, _ := PolicyFor(tr, LegA); p.Legs[LegA].OfferDTLS {
		t.Error("default keying is DTLS")
	}
}
