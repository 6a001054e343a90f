package e2e

import (
	"github.com/sipwarden/sipwarden/test/testbed"

	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/auth"
	"github.com/sipwarden/sipwarden/internal/cdr"
)

// tlsPhonesConfig: a hosted phone trunk that requires TLS, with sipwarden's
// registrar. Only MD5 is offered: Debian's baresip 1.0 (libre 1.x) gives up
// (ENOSYS) on a 401 that holds any SHA challenge, before or after the MD5 one
// (TestBaresipChallengeOrders).
const tlsPhonesConfig = `
listen: [udp://127.0.0.1:{{.SIPPort}}, tls://127.0.0.1:{{.TLSPort}}]
tls: {cert: "{{index .Extra "cert"}}", key: "{{index .Extra "key"}}"}
admin: {listen: "127.0.0.1:{{.AdminPort}}"}
storage: {path: "{{.Dir}}/data"}
log: {level: info}
sip: {drain_timeout: 1s}
upstreams:
  - name: pbx
    targets: ["udp://127.0.0.3:{{.PBXPort}}"]
trunks:
  - name: phones
    auth: digest
    realm: phones.example.test
    algorithms: [MD5]
    require_tls: true
    upstream: pbx
    registrar: {enabled: true}
    accounts:
      - {username: "1001", ha1: {md5: {{index .Extra "ha1"}}}}
`

// TestBaresipRegistersOverTLSAndAnswers: a real softphone (baresip)
// registers with digest over TLS (the same REGISTER over UDP is refused) and
// places a call through the 407 challenge that the PBX answers and ends;
// then the PBX calls the phone, which answers through the TLS connection it
// registered on; that call is hung up and recorded.
func TestBaresipRegistersOverTLSAndAnswers(t *testing.T) {
	baresip := testbed.RequireTool(t, "baresip", "baresip-core")
	const realm = "phones.example.test"
	dir := t.TempDir()
	certFile, keyFile, _ := writeCert(t, dir)
	pbxPort := testbed.FreePort(t)
	pbxConn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.3"), Port: pbxPort})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pbxConn.Close() })
	pbx := &testbed.RawUA{T: t, Network: "udp", IP: "127.0.0.3", UDP: pbxConn}
	e := testbed.StartEdge(t, tlsPhonesConfig, pbxPort, map[string]any{"cert": certFile, "key": keyFile,
		"ha1": auth.HA1(auth.MD5, "1001", realm, e2ePass)})

	// Digest over UDP is refused on this trunk.
	udpPhone := testbed.NewRawUA(t, "udp", "127.0.0.44")
	udpPhone.Send(e.SIPAddr(), fmt.Sprintf("REGISTER sip:%[1]s SIP/2.0\nVia: %[2]s\nFrom: <sip:1001@%[1]s>;tag=u\nTo: <sip:1001@%[1]s>\nCall-ID: udp-reg\nCSeq: 1 REGISTER\nContact: <sip:1001@%[3]s>\nMax-Forwards: 70\nContent-Length: 0\n\n",
		realm, udpPhone.Via("z9hG4bK-udp"), udpPhone.LocalAddr()))
	if m := waitCode(udpPhone, "udp-reg", 0); m == nil || m.Code != 403 || !strings.Contains(m.Get("Warning"), "TLS") {
		t.Fatalf("REGISTER over UDP to a require_tls trunk: %+v, want 403 with a Warning", m)
	}

	cfgDir := filepath.Join(dir, "baresip")
	if err := os.MkdirAll(cfgDir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(cfgDir, "config"), phoneConfig(
		fmt.Sprintf("sip_listen 127.0.0.45:%d", testbed.FreePort(t)), "sip_cafile "+certFile))
	writeFile(t, filepath.Join(cfgDir, "accounts"), fmt.Sprintf(
		"<sip:1001@%s;transport=tls>;auth_pass=%s;outbound=\"sip:127.0.0.1:%d;transport=tls\";regint=600;answermode=auto\n",
		realm, e2ePass, e.TLSPort))
	// baresip places a call at once (through a 407 challenge), then waits.
	cmd := exec.Command(baresip, "-f", cfgDir, "-e", "/dial sip:+15559990000@"+realm, "-t", "30")
	startPeer(t, "baresip", cmd)
	deadline := time.Now().Add(10 * time.Second)
	for e.Metric(`sipwarden_registrar_bindings`) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("baresip did not register within 10 s")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The phone's own call reaches the PBX, authenticated and without
	// credentials; the PBX answers, then hangs up.
	var out1 *testbed.RawMsg
	deadline = time.Now().Add(10 * time.Second)
	for out1 == nil && time.Now().Before(deadline) {
		if m := pbx.Recv(time.Until(deadline)); m != nil && m.Method == "INVITE" {
			out1 = m
		}
	}
	if out1 == nil {
		t.Fatal("the phone's call did not reach the PBX")
	}
	if out1.Get("Proxy-Authorization") != "" || !strings.Contains(out1.Raw, "+15559990000") {
		t.Fatalf("the phone's INVITE at the PBX:\n%s", out1.Raw)
	}
	pbx.Send(e.SIPAddr(), strings.Replace(responseTo(out1, 200, "OK"), "Content-Length: 0\n\n",
		fmt.Sprintf("Contact: <sip:pbx@127.0.0.3:%d>\nContent-Type: application/sdp\nContent-Length: %d\n\n", pbxPort, len(sdpPBXAnswer))+
			strings.ReplaceAll(sdpPBXAnswer, "\r\n", "\n"), 1))
	if ack := waitMethod(pbx, out1.Get("Call-ID"), "ACK"); ack == nil {
		t.Fatal("the phone did not ACK the PBX's 200")
	}
	bye := fmt.Sprintf("BYE %s SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.3:%d;branch=z9hG4bK-pbxbye\nRoute: %s\nFrom: %s;tag=callee\nTo: %s\nCall-ID: %s\nCSeq: 1 BYE\nMax-Forwards: 70\nContent-Length: 0\n\n",
		strings.Trim(strings.SplitN(out1.Get("Contact"), ">", 2)[0], "<"), pbxPort, strings.Join(out1.Headers["record-route"], ", "),
		out1.Get("To"), out1.Get("From"), out1.Get("Call-ID"))
	pbx.Send(e.SIPAddr(), bye)
	if m := waitCode(pbx, out1.Get("Call-ID"), 200); m == nil {
		t.Fatal("the phone did not answer the PBX's BYE")
	}

	// The PBX calls the phone; baresip answers on its own.
	sdp := "v=0\r\no=pbx 1 1 IN IP4 127.0.0.3\r\ns=-\r\nc=IN IP4 127.0.0.3\r\nt=0 0\r\nm=audio 40002 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
	pbx.Send(e.SIPAddr(), fmt.Sprintf("INVITE sip:1001@%[1]s SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.3:%[2]d;branch=z9hG4bK-bs1\nFrom: <sip:pbx@127.0.0.3>;tag=pbx1\nTo: <sip:1001@%[1]s>\nCall-ID: baresip-call\nCSeq: 1 INVITE\nContact: <sip:pbx@127.0.0.3:%[2]d>\nMax-Forwards: 70\nContent-Type: application/sdp\nContent-Length: %[3]d\n\n",
		realm, pbxPort, len(sdp))+strings.ReplaceAll(sdp, "\r\n", "\n"))
	ok := waitCode(pbx, "baresip-call", 200)
	if ok == nil {
		t.Fatal("the PBX got no 200 OK from baresip")
	}
	// ACK and BYE along the route set: the Record-Route entries in reverse
	// order, to the phone's contact.
	var routes []string
	for _, rr := range ok.Headers["record-route"] {
		for _, r := range strings.Split(rr, ",") {
			routes = append([]string{strings.TrimSpace(r)}, routes...)
		}
	}
	contact := strings.Trim(strings.SplitN(ok.Get("Contact"), ";expires", 2)[0], "<>")
	if i := strings.Index(contact, ">"); i >= 0 {
		contact = contact[:i]
	}
	inDialog := func(method string, cseq int) string {
		return fmt.Sprintf("%s %s SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.3:%d;branch=z9hG4bK-bs-%s\nRoute: %s\nFrom: <sip:pbx@127.0.0.3>;tag=pbx1\nTo: %s\nCall-ID: baresip-call\nCSeq: %d %s\nMax-Forwards: 70\nContent-Length: 0\n\n",
			method, contact, pbxPort, method, strings.Join(routes, ", "), ok.Get("To"), cseq, method)
	}
	acks := e.Metric(`sipwarden_proxy_requests_total{method="ACK"}`)
	pbx.Send(e.SIPAddr(), inDialog("ACK", 1))
	waitMetric(t, e, `sipwarden_proxy_requests_total{method="ACK"}`, acks+1) // relayed before the BYE
	pbx.Send(e.SIPAddr(), inDialog("BYE", 2))
	if m := waitCode(pbx, "baresip-call", 200); m == nil || !strings.Contains(m.Get("CSeq"), "BYE") {
		t.Fatalf("BYE not answered by baresip: %+v", m)
	}

	e.Stop()
	var call *cdr.Record
	for _, r := range e.CDRs() {
		if r.CallID == "baresip-call" {
			call = &r
		}
	}
	if call == nil || call.Disposition != cdr.Answered || call.Trunk != "phones" || call.Direction != "terminating" {
		t.Fatalf("CDR of the call: %+v", call)
	}
}

const sdpPBXAnswer = "v=0\r\no=pbx 2 2 IN IP4 127.0.0.3\r\ns=-\r\nc=IN IP4 127.0.0.3\r\nt=0 0\r\nm=audio 40004 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"

// waitMethod waits (3 s) for a request with Call-ID callID and method.
func waitMethod(ua *testbed.RawUA, callID, method string) *testbed.RawMsg {
	return waitMethodFor(ua, callID, method, 3*time.Second)
}

// waitMethodFor waits up to d for a request with Call-ID callID and method.
func waitMethodFor(ua *testbed.RawUA, callID, method string, d time.Duration) *testbed.RawMsg {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		m := ua.Recv(time.Until(deadline))
		if m == nil {
			return nil
		}
		if m.Method == method && m.Get("Call-ID") == callID {
			return m
		}
	}
	return nil
}

// phoneConfig is the configuration of a headless baresip (Debian's
// baresip 1.0): G.711 with a sine tone as audio source, commands (/dial),
// accounts from the accounts file; extra lines add listeners, TLS and SRTP.
func phoneConfig(extra ...string) string {
	return strings.Join(append([]string{
		"poll_method epoll",
		"module_path /usr/lib/baresip/modules",
		"module g711.so",
		"module ausine.so",
		"module menu.so",
		"module_app account.so",
		"audio_player ausine,nil",
		"audio_source ausine,440",
		"audio_alert ausine,nil",
		// ausine only makes 48 kHz stereo
		"ausrc_srate 48000", "auplay_srate 48000", "ausrc_channels 2", "auplay_channels 2",
	}, extra...), "\n") + "\n"
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
