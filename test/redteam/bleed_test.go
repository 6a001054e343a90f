package redteam

// Attacks on the media relay: RTP bleed (a stranger sending RTP to a relay
// port takes the call's media) and predictable relay ports.

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/sipwarden/sipwarden/test/testbed"
)

// bleedConfig: the trunk acme (127.0.0.2) uses plain RTP; its calls go to
// the PBX (127.0.0.3, a smPBX) through the media relay.
const bleedConfig = `
listen: [udp://127.0.0.1:{{.SIPPort}}]
admin: {listen: "127.0.0.1:{{.AdminPort}}"}
storage: {path: "{{.Dir}}/data"}
log: {level: info}
media: {enabled: true, address: 127.0.0.1, ports: "{{index .Extra "ports"}}"}
upstreams:
  - name: pbx
    targets: ["udp://127.0.0.3:{{.PBXPort}}"]
trunks:
  - name: acme
    auth: ip
    allow: [127.0.0.2/32]
    upstream: pbx
    numbers: ["+15551230000/4"]
    targets: ["udp://127.0.0.2:5070"]
`

// smMediaPorts is a relay port range of 400 ports for this process.
func smMediaPorts() string {
	base := 42000 + os.Getpid()%40*400
	return fmt.Sprintf("%d-%d", base, base+399)
}

// TestRTPBleedHijackPrivateSDP: the trunk's phone sits behind NAT (its SDP
// says 10.20.30.40) and sends plain RTP from the address it signals from.
// A stranger sprays RTP at the relay port facing the phone before the
// phone's media starts, and again afterwards. The phone gets the PBX's
// media, the PBX gets the phone's, and the stranger gets nothing and
// injects nothing. (Before: a private SDP address let the first source of
// a valid packet latch the port for good, so the stranger took the call.)
func TestRTPBleedHijackPrivateSDP(t *testing.T) {
	pbxRTP := smUDP(t, "127.0.0.3")
	pbx := smStartPBX(t, "127.0.0.3", fmt.Sprintf("c=IN IP4 127.0.0.3\r\nm=audio %d RTP/AVP 0", pbxRTP.LocalAddr().(*net.UDPAddr).Port))
	e := testbed.StartEdge(t, bleedConfig, pbx.port, map[string]any{"ports": smMediaPorts()})

	phoneRTP := smUDP(t, "127.0.0.2")
	phone := testbed.NewRawUA(t, "udp", "127.0.0.2")
	sdp := fmt.Sprintf("c=IN IP4 10.20.30.40\r\nm=audio %d RTP/AVP 0", phoneRTP.LocalAddr().(*net.UDPAddr).Port)
	ok := smCall(t, e, phone, "bleed-1", sdp)
	relayA := smRelayAddr(t, ok.Raw)               // the relay port facing the phone
	relayB := smRelayAddr(t, pbx.offer("bleed-1")) // the relay port facing the PBX

	stranger := smUDP(t, "127.0.0.9")
	// Before: the stranger sprays the port before the phone's media starts.
	for i := 0; i < 10; i++ {
		smSendRTP(t, stranger, relayA, 0x5742, uint16(100+i), "stranger")
		time.Sleep(5 * time.Millisecond)
	}
	// The phone's media starts; the PBX hears the phone.
	for i := 0; i < 5; i++ {
		smSendRTP(t, phoneRTP, relayA, 0x1111, uint16(1+i), "phone")
		time.Sleep(20 * time.Millisecond)
	}
	heard := smRecvRTP(pbxRTP, "phone", 3*time.Second)
	// The PBX answers with its media: it goes to the phone, not the stranger.
	for i := 0; i < 5; i++ {
		smSendRTP(t, pbxRTP, relayB, 0x2222, uint16(1+i), fmt.Sprintf("pbx-%d", i))
		time.Sleep(20 * time.Millisecond)
	}
	if got := smRecvRTP(phoneRTP, "pbx-4", 3*time.Second); got["pbx-4"] == 0 {
		t.Errorf("the phone did not get the PBX's media (got %v)", got)
	}
	// After: the stranger tries again once the call's media flows.
	for i := 0; i < 10; i++ {
		smSendRTP(t, stranger, relayA, 0x5742, uint16(200+i), "stranger")
		time.Sleep(5 * time.Millisecond)
	}
	for i := 0; i < 3; i++ {
		smSendRTP(t, pbxRTP, relayB, 0x2222, uint16(10+i), fmt.Sprintf("pbx-after-%d", i))
		time.Sleep(20 * time.Millisecond)
	}
	if got := smRecvRTP(phoneRTP, "pbx-after-2", 3*time.Second); got["pbx-after-2"] == 0 {
		t.Errorf("the phone lost the PBX's media after the stranger's second try (got %v)", got)
	}
	// Sentinel sent: whatever the relay sent the stranger has arrived by now.
	if got := smRecvRTP(stranger, "", 300*time.Millisecond); len(got) > 0 {
		t.Errorf("the stranger received the call's media: %v", got)
	}
	// The PBX heard the phone and never the stranger.
	for k, v := range smRecvRTP(pbxRTP, "", 300*time.Millisecond) {
		heard[k] += v
	}
	if heard["phone"] == 0 {
		t.Errorf("the PBX did not hear the phone (heard %v)", heard)
	}
	if heard["stranger"] > 0 {
		t.Errorf("the stranger's RTP reached the PBX %d times", heard["stranger"])
	}
}

// TestRelayPortsUnpredictable: the relay ports of consecutive calls do not
// follow each other, so the next call's ports cannot be aimed at from the
// last one's. (Before: pairs went round the range in order, two calls'
// ports four apart.)
func TestRelayPortsUnpredictable(t *testing.T) {
	pbxRTP := smUDP(t, "127.0.0.3")
	pbx := smStartPBX(t, "127.0.0.3", fmt.Sprintf("c=IN IP4 127.0.0.3\r\nm=audio %d RTP/AVP 0", pbxRTP.LocalAddr().(*net.UDPAddr).Port))
	e := testbed.StartEdge(t, bleedConfig, pbx.port, map[string]any{"ports": smMediaPorts()})
	phone := testbed.NewRawUA(t, "udp", "127.0.0.2")
	const calls = 6
	var ports []int
	for i := 0; i < calls; i++ {
		id := fmt.Sprintf("ports-%d", i)
		ok := smCall(t, e, phone, id, "c=IN IP4 127.0.0.2\r\nm=audio 40000 RTP/AVP 0")
		a, b := smRelayAddr(t, ok.Raw), smRelayAddr(t, pbx.offer(id))
		ports = append(ports, int(b.Port()), int(a.Port()))
	}
	guessed := 0
	for i := 1; i < len(ports); i++ {
		if d := ports[i] - ports[i-1]; d >= -4 && d <= 4 {
			guessed++
		}
	}
	// A uniform draw from 100 pairs puts a port within two pairs of the
	// previous one about 4% of the time: 11 steps, at most 3.
	if guessed > 3 {
		t.Errorf("relay ports of %d consecutive calls: %v (%d of %d within two pairs of the previous one)", calls, ports, guessed, len(ports)-1)
	}
}

// smCall sends an INVITE from phone with the media lines sdp and returns
// the 200 OK (the test fails without one).
func smCall(t *testing.T, e *testbed.Edge, phone *testbed.RawUA, callID, sdp string) *testbed.RawMsg {
	t.Helper()
	body := "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\n" + strings.Replace(sdp, "\r\nm=", "\r\nt=0 0\r\nm=", 1) + "\r\na=rtpmap:0 PCMU/8000\r\n"
	target := e.SIPAddr()
	msg := fmt.Sprintf("INVITE sip:+15551230001@%s SIP/2.0\r\nVia: %s\r\nFrom: <sip:+15550001000@127.0.0.2>;tag=f-%s\r\n"+
		"To: <sip:+15551230001@%s>\r\nCall-ID: %s\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@%s>\r\nMax-Forwards: 70\r\n"+
		"Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		target, phone.Via("z9hG4bK-"+callID), callID, target, callID, phone.LocalAddr(), len(body), body)
	addr, _ := net.ResolveUDPAddr("udp", target)
	if _, err := phone.UDP.WriteToUDP([]byte(msg), addr); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		m := phone.Recv(time.Until(deadline))
		if m == nil {
			break
		}
		if m.Get("Call-ID") != callID || m.Code < 200 {
			continue
		}
		if m.Code != 200 {
			t.Fatalf("call %s: %d", callID, m.Code)
		}
		return m
	}
	t.Fatalf("call %s: no 200 OK", callID)
	return nil
}

// smRelayAddr reads the audio address of an SDP body (in a whole message).
func smRelayAddr(t *testing.T, msg string) netip.AddrPort {
	t.Helper()
	var ip string
	port := 0
	for _, l := range strings.Split(msg, "\n") {
		l = strings.TrimSpace(l)
		if v, ok := strings.CutPrefix(l, "c=IN IP4 "); ok {
			ip = v
		}
		if v, ok := strings.CutPrefix(l, "m=audio "); ok {
			port, _ = strconv.Atoi(strings.Fields(v)[0])
		}
	}
	a, err := netip.ParseAddr(ip)
	if err != nil || port == 0 {
		t.Fatalf("no audio address in:\n%s", msg)
	}
	return netip.AddrPortFrom(a, uint16(port))
}

func smUDP(t *testing.T, ip string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func smSendRTP(t *testing.T, c *net.UDPConn, dst netip.AddrPort, ssrc uint32, seq uint16, payload string) {
	t.Helper()
	b, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: seq, Timestamp: uint32(seq) * 160, SSRC: ssrc},
		Payload: []byte(payload)}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteToUDPAddrPort(b, dst); err != nil {
		t.Fatal(err)
	}
}

// smRecvRTP counts the payloads of the RTP packets c receives until one
// carries until ("" : until nothing comes for wait) or wait passes.
func smRecvRTP(c *net.UDPConn, until string, wait time.Duration) map[string]int {
	got := map[string]int{}
	deadline := time.Now().Add(wait)
	buf := make([]byte, 2000)
	for {
		if until == "" {
			_ = c.SetReadDeadline(time.Now().Add(wait))
		} else {
			_ = c.SetReadDeadline(deadline)
		}
		n, _, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return got
		}
		var p rtp.Packet
		if p.Unmarshal(buf[:n]) != nil {
			got["(not RTP)"]++
			continue
		}
		got[string(p.Payload)]++
		if until != "" && string(p.Payload) == until {
			return got
		}
	}
}

// smPBX is the protected side: a UDP SIP endpoint that answers INVITE with
// 200 OK and the SDP lines it was given, every other request but ACK with
// 200 OK, and keeps the offers it received by Call-ID.
type smPBX struct {
	port   int
	mu     sync.Mutex
	offers map[string]string
}

func smStartPBX(t *testing.T, ip, sdp string) *smPBX {
	t.Helper()
	c := smUDP(t, ip)
	p := &smPBX{port: c.LocalAddr().(*net.UDPAddr).Port, offers: map[string]string{}}
	body := ""
	if sdp != "" {
		body = "v=0\r\no=pbx 1 1 IN IP4 " + ip + "\r\ns=-\r\n" + strings.Replace(sdp, "\r\nm=", "\r\nt=0 0\r\nm=", 1) + "\r\na=rtpmap:0 PCMU/8000\r\n"
	}
	done := make(chan struct{})
	t.Cleanup(func() { c.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, src, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			m := testbed.ParseRaw(buf[:n])
			if m.Method == "" || m.Method == "ACK" {
				continue
			}
			var resp strings.Builder
			resp.WriteString("SIP/2.0 200 OK\r\n")
			for _, v := range m.Headers["via"] {
				resp.WriteString("Via: " + v + "\r\n")
			}
			for _, v := range m.Headers["record-route"] {
				resp.WriteString("Record-Route: " + v + "\r\n")
			}
			to := m.Get("To")
			if !strings.Contains(to, "tag=") {
				to += ";tag=pbx"
			}
			fmt.Fprintf(&resp, "From: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %s\r\nContact: <sip:pbx@%s:%d>\r\n",
				m.Get("From"), to, m.Get("Call-ID"), m.Get("CSeq"), ip, p.port)
			b := ""
			if m.Method == "INVITE" {
				b = body
				_, offer, _ := strings.Cut(m.Raw, "\r\n\r\n")
				p.mu.Lock()
				p.offers[m.Get("Call-ID")] = offer
				p.mu.Unlock()
				if b != "" {
					resp.WriteString("Content-Type: application/sdp\r\n")
				}
			}
			fmt.Fprintf(&resp, "Content-Length: %d\r\n\r\n%s", len(b), b)
			_, _ = c.WriteToUDPAddrPort([]byte(resp.String()), src)
		}
	}()
	return p
}

// offer returns the SDP of the INVITE the PBX got for callID.
func (p *smPBX) offer(callID string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.offers[callID]
}
