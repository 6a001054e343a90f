package media

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// dtlsPhone is a test softphone doing DTLS-SRTP with pion/dtls on its RTP
// and RTCP ports (one association each, as without rtcp-mux). It shares
// each port between DTLS and SRTP by the first byte, like the relay.
type dtlsPhone struct {
	t       *testing.T
	cert    tls.Certificate // presented in the handshake
	sdpFP   Fingerprint     // announced in SDP (another certificate's: a lying phone)
	profile dtls.SRTPProtectionProfile
	// noRetransmit: the phone's first flight is never retransmitted within
	// a handshake timeout (a lost ClientHello fails the handshake).
	noRetransmit bool
	comps        [nKinds]*phoneComp
	seq          uint16
	// learnt from the relay's SDP
	relayFP    Fingerprint
	relaySetup Setup

	// firstFlight, when set, gets one value per association once its
	// first handshake flight has been sent.
	firstFlight chan struct{}
}

type phoneComp struct {
	udp   *net.UDPConn
	dtls  chan []byte // DTLS records read from udp
	media chan []byte // everything else
	relay netip.AddrPort
	conn  *dtls.Conn
	// SRTP contexts from this association's keys
	enc, dec *srtp.Context
	done     chan struct{}
}

func newDTLSPhone(t *testing.T, profile dtls.SRTPProtectionProfile, lie bool) *dtlsPhone {
	t.Helper()
	cert, err := GenerateDTLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	p := &dtlsPhone{t: t, cert: cert, sdpFP: fingerprintOf(cert.Certificate[0]), profile: profile}
	if lie {
		other, err := GenerateDTLSCertificate()
		if err != nil {
			t.Fatal(err)
		}
		p.sdpFP = fingerprintOf(other.Certificate[0])
	}
	for k := range p.comps {
		u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		c := &phoneComp{udp: u, dtls: make(chan []byte, 32), media: make(chan []byte, 64), done: make(chan struct{})}
		p.comps[k] = c
		go c.demux()
		t.Cleanup(func() {
			if c.conn != nil {
				_ = c.conn.Close()
			}
			_ = u.Close()
			<-c.done
		})
	}
	return p
}

func (c *phoneComp) demux() {
	defer close(c.done)
	buf := make([]byte, 2048)
	for {
		n, _, err := c.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		ch := c.media
		if isDTLSRecord(buf[0]) {
			ch = c.dtls
		}
		select {
		case ch <- append([]byte(nil), buf[:n]...):
		default:
		}
	}
}

// sdp is the phone's SDP (offer or answer) with its fingerprint and a=setup.
func (p *dtlsPhone) sdp(setup string) []byte {
	m := "m=audio " + strconv.Itoa(port(p.comps[kindRTP].udp)) + " UDP/TLS/RTP/SAVP 0\na=rtcp:" + strconv.Itoa(port(p.comps[kindRTCP].udp)) +
		"\na=fingerprint:" + p.sdpFP.String() + "\na=setup:" + setup + "\na=sendrecv"
	return sdpBody("127.0.0.1", m)
}

// learn reads the relay's address, fingerprint and role from its SDP.
func (p *dtlsPhone) learn(body []byte) {
	p.t.Helper()
	sd := mustParse(p.t, body)
	md := sd.MediaDescriptions[0]
	a, _ := connAddr(sd, md)
	p.comps[kindRTP].relay = netip.AddrPortFrom(a, uint16(md.MediaName.Port.Value))
	p.comps[kindRTCP].relay = netip.AddrPortFrom(a, uint16(md.MediaName.Port.Value+1))
	d, ok, err := readDTLS(sd, md)
	if !ok || err != nil || len(d.fps) != 1 {
		p.t.Fatalf("relay SDP without a usable fingerprint: %v\n%s", err, body)
	}
	p.relayFP, p.relaySetup = d.fps[0], d.setup
}

// handshake runs both associations; client says whether the phone starts them.
func (p *dtlsPhone) handshake(client bool, timeout time.Duration) error {
	var wg sync.WaitGroup
	errs := make([]error, nKinds)
	for k, c := range p.comps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[k] = p.comp(c, client, timeout)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (p *dtlsPhone) comp(c *phoneComp, client bool, timeout time.Duration) error {
	pc := &chanConn{udp: c.udp, in: c.dtls, closed: make(chan struct{}), wake: make(chan struct{}), sent: p.firstFlight}
	verify := func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 || !p.relayFP.matches(raw[0]) {
			return errors.New("relay certificate does not match its SDP fingerprint")
		}
		return nil
	}
	opts := []dtls.Option{
		dtls.WithCertificates(p.cert),
		dtls.WithSRTPProtectionProfiles(p.profile),
		dtls.WithInsecureSkipVerify(true),
		dtls.WithVerifyPeerCertificate(verify),
	}
	if p.noRetransmit {
		opts = append(opts, dtls.WithFlightInterval(time.Minute))
	}
	raddr := net.UDPAddrFromAddrPort(c.relay)
	var err error
	if client {
		co := make([]dtls.ClientOption, len(opts))
		for i, o := range opts {
			co[i] = o
		}
		c.conn, err = dtls.ClientWithOptions(pc, raddr, co...)
	} else {
		so := make([]dtls.ServerOption, 0, len(opts)+1)
		for _, o := range opts {
			so = append(so, o)
		}
		so = append(so, dtls.WithClientAuth(dtls.RequireAnyClientCert))
		c.conn, err = dtls.ServerWithOptions(pc, raddr, so...)
	}
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := c.conn.HandshakeContext(ctx); err != nil {
		return err
	}
	prof, ok := c.conn.SelectedSRTPProtectionProfile()
	if !ok || prof != p.profile {
		return errors.New("unexpected SRTP profile")
	}
	state, _ := c.conn.ConnectionState()
	cfg := srtp.Config{Profile: srtp.ProtectionProfile(prof)}
	if err := cfg.ExtractSessionKeysFromDTLS(&state, client); err != nil {
		return err
	}
	if c.enc, err = srtp.CreateContext(cfg.Keys.LocalMasterKey, cfg.Keys.LocalMasterSalt, cfg.Profile); err != nil {
		return err
	}
	c.dec, err = srtp.CreateContext(cfg.Keys.RemoteMasterKey, cfg.Keys.RemoteMasterSalt, cfg.Profile)
	return err
}

func (p *dtlsPhone) sendRTP(payload []byte) {
	p.t.Helper()
	p.seq++
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: p.seq, Timestamp: uint32(p.seq) * 160, SSRC: 0xd715}, Payload: payload}
	b, err := pkt.Marshal()
	if err != nil {
		p.t.Fatal(err)
	}
	c := p.comps[kindRTP]
	if c.enc != nil {
		if b, err = c.enc.EncryptRTP(nil, b, nil); err != nil {
			p.t.Fatal(err)
		}
	}
	if _, err := c.udp.WriteToUDPAddrPort(b, c.relay); err != nil {
		p.t.Fatal(err)
	}
}

func (p *dtlsPhone) sendRTCP() {
	p.t.Helper()
	c := p.comps[kindRTCP]
	b, err := c.enc.EncryptRTCP(nil, rtcpRR(0xd715), nil)
	if err != nil {
		p.t.Fatal(err)
	}
	if _, err := c.udp.WriteToUDPAddrPort(b, c.relay); err != nil {
		p.t.Fatal(err)
	}
}

// recv returns the next packet of kind k, decrypted; ok is false on timeout.
func (p *dtlsPhone) recv(k kind, wait time.Duration) ([]byte, bool) {
	p.t.Helper()
	c := p.comps[k]
	select {
	case b := <-c.media:
		if c.dec == nil {
			p.t.Fatalf("phone received %s before its handshake", k)
		}
		var err error
		if k == kindRTP {
			b, err = c.dec.DecryptRTP(nil, b, nil)
		} else {
			b, err = c.dec.DecryptRTCP(nil, b, nil)
		}
		if err != nil {
			p.t.Fatalf("phone cannot decrypt relayed %s: %v", k, err)
		}
		if k == kindRTP {
			var pkt rtp.Packet
			if err := pkt.Unmarshal(b); err != nil {
				p.t.Fatal(err)
			}
			return pkt.Payload, true
		}
		return b, true
	case <-time.After(wait):
		return nil, false
	}
}

// chanConn is the phone's net.PacketConn for pion/dtls: DTLS records from
// the demultiplexer in, datagrams to the UDP socket out.
type chanConn struct {
	udp      *net.UDPConn
	in       chan []byte
	mu       sync.Mutex
	deadline time.Time
	wake     chan struct{}
	closed   chan struct{}
	once     sync.Once
	sent     chan struct{} // told of the first datagram written (nil: nobody asks)
	sentOnce sync.Once
}

func (c *chanConn) write(b []byte, addr net.Addr) (int, error) {
	n, err := c.udp.WriteTo(b, addr)
	if c.sent != nil && err == nil {
		c.sentOnce.Do(func() { c.sent <- struct{}{} })
	}
	return n, err
}

func (c *chanConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		c.mu.Lock()
		d, wake := c.deadline, c.wake
		c.mu.Unlock()
		var expired <-chan time.Time
		if !d.IsZero() {
			if time.Until(d) <= 0 {
				return 0, nil, os.ErrDeadlineExceeded
			}
			tm := time.NewTimer(time.Until(d))
			defer tm.Stop()
			expired = tm.C
		}
		select {
		case pkt := <-c.in:
			return copy(b, pkt), c.udp.LocalAddr(), nil
		case <-c.closed:
			return 0, nil, net.ErrClosed
		case <-expired:
			return 0, nil, os.ErrDeadlineExceeded
		case <-wake:
		}
	}
}

func (c *chanConn) WriteTo(b []byte, addr net.Addr) (int, error) { return c.write(b, addr) }
func (c *chanConn) Close() error                                 { c.once.Do(func() { close(c.closed) }); return nil }
func (c *chanConn) LocalAddr() net.Addr                          { return c.udp.LocalAddr() }
func (c *chanConn) SetDeadline(t time.Time) error                { return c.SetReadDeadline(t) }
func (c *chanConn) SetWriteDeadline(time.Time) error             { return nil }
func (c *chanConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	close(c.wake)
	c.wake = make(chan struct{})
	c.mu.Unlock()
	return nil
}

// firstThrough sends from send until recv sees a packet (the relay installs
// the keys when its side of the handshake ends, which may be a little after
// the phone's), at most 20 times.
func firstThrough(t *testing.T, send func(), recv func(time.Duration) bool) {
	t.Helper()
	for range 20 {
		send()
		if recv(150 * time.Millisecond) {
			return
		}
	}
	t.Fatal("no packet went through the relay")
}

// TestRelayDTLSPhoneToPlainPBX: a phone doing DTLS-SRTP (pion/dtls, with
// each of the three profiles and each a=setup) calls through the relay to
// a plain-RTP PBX; RTP and RTCP flow both ways, the phone decrypting what
// the relay sends with keys from its own handshakes.
func TestRelayDTLSPhoneToPlainPBX(t *testing.T) {
	bridge, _ := TrunkPolicy("bridge", "relay", false, LegA)
	tests := []struct {
		setup         string
		profile       dtls.SRTPProtectionProfile
		phoneIsClient bool
	}{
		{"actpass", dtls.SRTP_AES128_CM_HMAC_SHA1_80, false}, // the relay answers active
		{"active", dtls.SRTP_AEAD_AES_128_GCM, true},
		{"passive", dtls.SRTP_AES128_CM_HMAC_SHA1_32, false},
	}
	for i, tt := range tests {
		t.Run(tt.setup+"/"+suiteOfProfile(tt.profile).String(), func(t *testing.T) {
			r := newTestRelay(t, Config{})
			phone, pbx := newDTLSPhone(t, tt.profile, false), newPeer(t, "127.0.0.1")
			id := "dtls-" + strconv.Itoa(i)
			toB, err := r.Offer(id, LegA, phone.sdp(tt.setup), bridge)
			if err != nil {
				t.Fatal(err)
			}
			pbx.learn(toB)
			toA, err := r.Answer(id, LegB, pbx.answerSDP("RTP/AVP"))
			if err != nil {
				t.Fatal(err)
			}
			phone.learn(toA)
			wantSetup := SetupActive
			if tt.phoneIsClient {
				wantSetup = SetupPassive
			}
			if phone.relaySetup != wantSetup {
				t.Fatalf("relay a=setup %v, want %v", phone.relaySetup, wantSetup)
			}
			if err := phone.handshake(tt.phoneIsClient, 5*time.Second); err != nil {
				t.Fatalf("phone handshake: %v", err)
			}
			firstThrough(t, func() { phone.sendRTP([]byte("hello")) }, func(d time.Duration) bool { _, ok := pbx.recvRTP(d); return ok })
			for j := range 5 {
				payload := []byte("phone-to-pbx " + strconv.Itoa(j))
				phone.sendRTP(payload)
				expectPayload(t, pbx, payload)
				payload = []byte("pbx-to-phone " + strconv.Itoa(j))
				pbx.sendRTP(payload)
				if got, ok := phone.recv(kindRTP, 2*time.Second); !ok || !bytes.Equal(got, payload) {
					t.Fatalf("phone got %q %v, want %q", got, ok, payload)
				}
			}
			// RTCP has its own association and keys.
			firstThrough(t, phone.sendRTCP, func(d time.Duration) bool {
				got, ok := pbx.recvRTCP(d)
				if ok && !bytes.Equal(got, rtcpRR(0xd715)) {
					t.Fatalf("PBX got RTCP %x", got)
				}
				return ok
			})
			pbx.sendRTCP()
			if got, ok := phone.recv(kindRTCP, 2*time.Second); !ok || !bytes.Equal(got, rtcpRR(pbx.ssrc)) {
				t.Fatalf("phone got RTCP %x %v", got, ok)
			}
			// A re-INVITE with the same fingerprint and roles keeps the
			// associations and their keys: media goes on, no new handshake.
			toB, err = r.Update(id, LegA, phone.sdp(tt.setup))
			if err != nil {
				t.Fatal(err)
			}
			pbx.learn(toB)
			if _, err := r.Answer(id, LegB, pbx.answerSDP("RTP/AVP")); err != nil {
				t.Fatal(err)
			}
			phone.sendRTP([]byte("after re-INVITE"))
			expectPayload(t, pbx, []byte("after re-INVITE"))
			pbx.sendRTP([]byte("back"))
			if got, ok := phone.recv(kindRTP, 2*time.Second); !ok || string(got) != "back" {
				t.Fatalf("after re-INVITE the phone got %q %v", got, ok)
			}
			if got := waitHandshakesOK(r, 2); got != 2 {
				t.Errorf("handshakes ok = %v, want 2 (RTP and RTCP)", got)
			}
			sec := r.Close(id)
			if want := "srtp:" + suiteOfProfile(tt.profile).String(); sec[LegA].String() != want || sec[LegB].String() != "rtp" {
				t.Errorf("security %s / %s, want %s / rtp", sec[LegA], sec[LegB], want)
			}
		})
	}
}

// TestRelayDTLSWrongFingerprint: a phone whose certificate does not match
// the fingerprint in its SDP fails the handshake, whichever side starts
// it, and no media flows in either direction.
func TestRelayDTLSWrongFingerprint(t *testing.T) {
	bridge, _ := TrunkPolicy("bridge", "relay", false, LegA)
	for i, setup := range []string{"actpass", "active"} {
		t.Run(setup, func(t *testing.T) {
			r := newTestRelay(t, Config{DTLSHandshakeTimeout: 2 * time.Second})
			phone, pbx := newDTLSPhone(t, dtls.SRTP_AES128_CM_HMAC_SHA1_80, true), newPeer(t, "127.0.0.1")
			id := "dtls-lie-" + strconv.Itoa(i)
			toB, err := r.Offer(id, LegA, phone.sdp(setup), bridge)
			if err != nil {
				t.Fatal(err)
			}
			pbx.learn(toB)
			toA, err := r.Answer(id, LegB, pbx.answerSDP("RTP/AVP"))
			if err != nil {
				t.Fatal(err)
			}
			phone.learn(toA)
			if err := phone.handshake(setup == "active", 3*time.Second); err == nil {
				t.Fatal("handshake with a certificate that does not match the SDP fingerprint succeeded")
			}
			deadline := time.Now().Add(3 * time.Second)
			for testutil.ToFloat64(r.met.dtls.WithLabelValues("failed")) == 0 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if got := testutil.ToFloat64(r.met.dtls.WithLabelValues("failed")); got == 0 {
				t.Error("no failed handshake counted")
			}
			if got := testutil.ToFloat64(r.met.dtls.WithLabelValues("ok")); got != 0 {
				t.Errorf("%v handshakes succeeded", got)
			}
			// Nothing flows: the PBX's RTP is not sent in clear to the phone,
			// the phone's packets are not relayed.
			pbx.sendRTP([]byte("secret"))
			select {
			case b := <-phone.comps[kindRTP].media:
				t.Fatalf("phone received %d bytes without keys", len(b))
			case <-time.After(200 * time.Millisecond):
			}
			phone.sendRTP([]byte("clear"))
			expectNothing(t, pbx)
			if sec := r.Close(id); sec[LegA].String() != "srtp" {
				t.Errorf("leg A security %q, want srtp (no suite: no handshake)", sec[LegA])
			}
		})
	}
}

// TestRelayOffersDTLS: a plain PBX calls a DTLS-SRTP trunk (offer_keying:
// dtls); the trunk answers a=setup:active and starts its handshake before
// its answer reaches the relay: the relay's port queues the ClientHello
// (the phone does not retransmit it: were it dropped, the handshake would
// time out).
func TestRelayOffersDTLS(t *testing.T) {
	toTrunk, _ := TrunkPolicy("bridge", "relay", false, LegB)
	toTrunk.Legs[LegB].OfferDTLS = true
	r := newTestRelay(t, Config{})
	pbx, phone := newPeer(t, "127.0.0.1"), newDTLSPhone(t, dtls.SRTP_AES128_CM_HMAC_SHA1_80, false)
	toB, err := r.Offer("dtls-out", LegA, pbx.sdp("RTP/AVP", nil), toTrunk)
	if err != nil {
		t.Fatal(err)
	}
	phone.learn(toB)
	if phone.relaySetup != SetupActpass {
		t.Fatalf("relay offered a=setup %v, want actpass", phone.relaySetup)
	}
	phone.noRetransmit = true
	phone.firstFlight = make(chan struct{}, nKinds)
	done := make(chan error, 1)
	go func() { done <- phone.handshake(true, 5*time.Second) }()
	// the ClientHellos (RTP and RTCP) are on their way before the answer
	for range nKinds {
		select {
		case <-phone.firstFlight:
		case err := <-done:
			t.Fatalf("handshake ended before its first flight was sent: %v", err)
		case <-time.After(5 * time.Second):
			t.Fatal("no ClientHello sent within 5s")
		}
	}
	toA, err := r.Answer("dtls-out", LegB, phone.sdp("active"))
	if err != nil {
		t.Fatal(err)
	}
	pbx.learn(toA)
	if err := <-done; err != nil {
		t.Fatalf("phone handshake: %v", err)
	}
	firstThrough(t, func() { pbx.sendRTP([]byte("hi")) }, func(d time.Duration) bool { _, ok := phone.recv(kindRTP, d); return ok })
	phone.sendRTP([]byte("from the trunk"))
	expectPayload(t, pbx, []byte("from the trunk"))
	if sec := r.Close("dtls-out"); sec[LegB].String() != "srtp:AES_CM_128_HMAC_SHA1_80" || sec[LegA].String() != "rtp" {
		t.Errorf("security %s / %s", sec[LegA], sec[LegB])
	}
}

// TestRelayDTLSNewCertificateOnReinvite: a re-INVITE with another
// fingerprint (the phone restarted, or another device took the call)
// starts new handshakes; media resumes under the new keys, and the old
// association's keys no longer get anything through.
func TestRelayDTLSNewCertificateOnReinvite(t *testing.T) {
	bridge, _ := TrunkPolicy("bridge", "relay", false, LegA)
	r := newTestRelay(t, Config{})
	phone, pbx := newDTLSPhone(t, dtls.SRTP_AES128_CM_HMAC_SHA1_80, false), newPeer(t, "127.0.0.1")
	const id = "dtls-rekey"
	setup := func() {
		t.Helper()
		toB, err := r.Offer(id, LegA, phone.sdp("active"), bridge)
		if err != nil {
			t.Fatal(err)
		}
		pbx.learn(toB)
		toA, err := r.Answer(id, LegB, pbx.answerSDP("RTP/AVP"))
		if err != nil {
			t.Fatal(err)
		}
		phone.learn(toA)
		if err := phone.handshake(true, 5*time.Second); err != nil {
			t.Fatalf("handshake: %v", err)
		}
		firstThrough(t, func() { phone.sendRTP([]byte("x")) }, func(d time.Duration) bool { _, ok := pbx.recvRTP(d); return ok })
	}
	setup()
	oldEnc := phone.comps[kindRTP].enc
	// The same ports, a new certificate: the old associations end.
	cert, err := GenerateDTLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	phone.cert, phone.sdpFP = cert, fingerprintOf(cert.Certificate[0])
	for _, c := range phone.comps {
		_ = c.conn.Close()
		c.conn = nil
	}
	setup()
	if got := waitHandshakesOK(r, 4); got != 4 {
		t.Errorf("handshakes ok = %v, want 4 (two per certificate)", got)
	}
	newEnc := phone.comps[kindRTP].enc
	phone.comps[kindRTP].enc = oldEnc
	phone.sendRTP([]byte("old keys"))
	expectNothing(t, pbx)
	phone.comps[kindRTP].enc = newEnc
	phone.sendRTP([]byte("new keys"))
	expectPayload(t, pbx, []byte("new keys"))
	r.Close(id)
}

// waitHandshakesOK returns the relay's count of completed handshakes once it
// reaches want, or after 2 s: the phone's side of a handshake can end
// before the relay's has counted it (the RTCP association's especially).
func waitHandshakesOK(r *Relay, want float64) float64 {
	deadline := time.Now().Add(2 * time.Second)
	for testutil.ToFloat64(r.met.dtls.WithLabelValues("ok")) < want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	return testutil.ToFloat64(r.met.dtls.WithLabelValues("ok"))
}
