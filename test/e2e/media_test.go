package e2e

import (
	"github.com/sipwarden/sipwarden/test/testbed"

	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// mediaConfig: the trunk acme (127.0.0.2) must use SRTP; sipwarden's relay
// bridges it to plain RTP towards the PBX (srtp: bridge).
const mediaConfig = `
listen: [udp://127.0.0.1:{{.SIPPort}}]
admin: {listen: "127.0.0.1:{{.AdminPort}}"}
storage: {path: "{{.Dir}}/data"}
log: {level: info}
sip: {drain_timeout: 1s}
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
    media: {srtp: bridge}
`

// TestSRTPBridgeBaresipToSipp: a softphone (baresip, SDES SRTP mandatory)
// calls through sipwarden to a PBX that only speaks plain RTP (SIPp echoing
// the audio back). The relay decrypts the phone's SRTP towards the PBX and
// encrypts the echo back, both ways; an offer without SRTP is refused with
// 488; the CDR records the media security of both legs.
func TestSRTPBridgeBaresipToSipp(t *testing.T) {
	baresip := testbed.RequireTool(t, "baresip", "baresip-core")
	sipp := testbed.RequireTool(t, "sipp", "sip-tester")
	base := 40000 + os.Getpid()%200*100
	pbxPort := testbed.FreePort(t)
	e := testbed.StartEdge(t, mediaConfig, pbxPort, map[string]any{"ports": fmt.Sprintf("%d-%d", base, base+99)})

	// An offer with plain RTP from the trunk: 488 and a Warning.
	plain := testbed.NewRawUA(t, "udp", "127.0.0.2")
	if m := plain.Invite(e.SIPAddr(), "plain-rtp"); m.Code != 488 || !strings.Contains(m.Get("Warning"), "SRTP required") {
		t.Fatalf("plain RTP offer from an SRTP trunk: %d %q, want 488 with a Warning", m.Code, m.Get("Warning"))
	}

	// The PBX: SIPp's built-in UAS, echoing RTP.
	pbx := exec.Command(sipp, "-sn", "uas", "-i", "127.0.0.3", "-p", strconv.Itoa(pbxPort), "-rtp_echo", "-nostdin", "-m", "1")
	pbx.Dir = t.TempDir()
	startPeer(t, "SIPp", pbx)

	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "config"), phoneConfig(fmt.Sprintf("sip_listen 127.0.0.2:%d", testbed.FreePort(t)),
		"module srtp.so", fmt.Sprintf("rtp_ports %d-%d", base+200, base+299)))
	writeFile(t, filepath.Join(dir, "accounts"),
		fmt.Sprintf("<sip:+15550001000@127.0.0.1>;regint=0;mediaenc=srtp-mand;outbound=\"sip:%s\"\n", e.SIPAddr()))
	out := startPeer(t, "baresip", exec.Command(baresip, "-f", dir, "-e", "/dial sip:+15551230001@127.0.0.1", "-t", "20"))

	// Media flows both ways through the relay: the phone's SRTP decrypted
	// towards the PBX, the PBX's echo encrypted towards the phone, whose
	// libsrtp accepts it.
	forwarded := `sipwarden_media_packets_forwarded_total{kind="rtp"}`
	deadline := time.Now().Add(10 * time.Second)
	for e.Metric(forwarded) < 200 || !strings.Contains(out.String(), "incoming rtp for 'audio' established") {
		if time.Now().After(deadline) {
			t.Fatalf("media through the relay: %v RTP packets forwarded", e.Metric(forwarded))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(out.String(), "SRTP is Enabled (cryptosuite=AES_CM_128_HMAC_SHA1_80)") {
		t.Errorf("baresip did not use SRTP")
	}
	expectNoMediaDrops(t, e)

	// A graceful stop ends the call; its CDR says how each leg was protected.
	e.Stop()
	expectMediaCDR(t, e, "srtp:AES_CM_128_HMAC_SHA1_80", "rtp")
}

// startPeer starts a real peer (SIPp, baresip) for the test and returns its
// gathered output; the process is killed when the test ends, and its output
// is logged when the test failed.
func startPeer(t *testing.T, name string, cmd *exec.Cmd) *testbed.SyncBuffer {
	t.Helper()
	out := &testbed.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
	return out
}

// expectNoMediaDrops fails the test when the relay dropped RTP for failed
// authentication, replay or a crypto error.
func expectNoMediaDrops(t *testing.T, e *testbed.Edge) {
	t.Helper()
	for _, reason := range []string{"auth", "replay", "crypto_error"} {
		if v := e.Metric(fmt.Sprintf(`sipwarden_media_packets_dropped_total{kind="rtp",reason=%q}`, reason)); v > 0 {
			t.Errorf("%v RTP packets dropped for %s", v, reason)
		}
	}
}

// expectMediaCDR checks the media security in the CDR of acme's answered
// call (stop the edge first); a wanted value ending in ':' is a prefix.
func expectMediaCDR(t *testing.T, e *testbed.Edge, caller, callee string) {
	t.Helper()
	match := func(got, want string) bool {
		if strings.HasSuffix(want, ":") {
			return strings.HasPrefix(got, want)
		}
		return got == want
	}
	var found bool
	for _, r := range e.CDRs() {
		if r.Trunk == "acme" && !r.Answer.IsZero() {
			found = true
			if !match(r.CallerMedia, caller) || !match(r.CalleeMedia, callee) {
				t.Errorf("CDR media: caller %q callee %q, want %s and %s", r.CallerMedia, r.CalleeMedia, caller, callee)
			}
		}
	}
	if !found {
		t.Errorf("no CDR of the answered call: %+v", e.CDRs())
	}
}

// mediaTimeoutConfig: calls of acme are anchored (plain RTP), and a call
// whose media stops for 2 s is ended.
const mediaTimeoutConfig = `
listen: [udp://127.0.0.1:{{.SIPPort}}]
admin: {listen: "127.0.0.1:{{.AdminPort}}"}
storage: {path: "{{.Dir}}/data"}
log: {level: info}
sip: {drain_timeout: 1s}
media: {enabled: true, address: 127.0.0.1, ports: "{{index .Extra "ports"}}", timeout: 2s}
upstreams:
  - name: pbx
    targets: ["udp://127.0.0.3:{{.PBXPort}}"]
trunks:
  - {name: acme, auth: ip, allow: [127.0.0.2/32], upstream: pbx, numbers: ["+15551230000/4"], targets: ["udp://127.0.0.2:5070"]}
`

// TestMediaTimeoutEndsTheCall: an answered call whose media never flows
// (a phone gone behind its NAT) is ended by sipwarden once the relay's
// inactivity timeout fires: BYE to both sides, and a CDR that says why.
func TestMediaTimeoutEndsTheCall(t *testing.T) {
	base := 46000 + os.Getpid()%100*40
	pbxPort := testbed.FreePort(t)
	pbxConn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.3"), Port: pbxPort})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pbxConn.Close() })
	pbx := &testbed.RawUA{T: t, Network: "udp", IP: "127.0.0.3", UDP: pbxConn}
	e := testbed.StartEdge(t, mediaTimeoutConfig, pbxPort, map[string]any{"ports": fmt.Sprintf("%d-%d", base, base+39)})
	caller := testbed.NewRawUA(t, "udp", "127.0.0.2")

	caller.Send(e.SIPAddr(), caller.InviteText(e.SIPAddr(), "silent", "z9hG4bK-silent", 1))
	inv := waitMethod(pbx, "silent", "INVITE")
	if inv == nil {
		t.Fatal("the INVITE did not reach the PBX")
	}
	if !strings.Contains(inv.Raw, "c=IN IP4 127.0.0.1") {
		t.Fatalf("the offer was not anchored:\n%s", inv.Raw)
	}
	pbx.Send(e.SIPAddr(), strings.Replace(responseTo(inv, 200, "OK"), "Content-Length: 0\n\n",
		fmt.Sprintf("Contact: <sip:pbx@127.0.0.3:%d>\nContent-Type: application/sdp\nContent-Length: %d\n\n", pbxPort, len(sdpPBXAnswer))+
			strings.ReplaceAll(sdpPBXAnswer, "\r\n", "\n"), 1))
	ok := waitCode(caller, "silent", 200)
	if ok == nil {
		t.Fatal("the caller got no 200")
	}
	var routes []string
	for _, rr := range ok.Headers["record-route"] {
		routes = append([]string{rr}, routes...)
	}
	// the ACK goes to the remote target the 200 gave (sipwarden's, with topology hiding)
	caller.Send(e.SIPAddr(), fmt.Sprintf("ACK %s SIP/2.0\nVia: %s\nRoute: %s\nFrom: <sip:+15550001000@127.0.0.2>;tag=f-silent\nTo: %s\nCall-ID: silent\nCSeq: 1 ACK\nMax-Forwards: 70\nContent-Length: 0\n\n",
		strings.Trim(ok.Get("Contact"), "<>"), caller.Via("z9hG4bK-silent-ack"), strings.Join(routes, ", "), ok.Get("To")))

	for _, side := range []struct {
		name string
		ua   *testbed.RawUA
	}{{"PBX", pbx}, {"caller", caller}} {
		bye := waitMethodFor(side.ua, "silent", "BYE", 10*time.Second)
		if bye == nil {
			t.Fatalf("the %s got no BYE", side.name)
		}
		if !strings.Contains(bye.Get("Reason"), "media_timeout") {
			t.Errorf("BYE to the %s: Reason %q", side.name, bye.Get("Reason"))
		}
		side.ua.Send(e.SIPAddr(), responseTo(bye, 200, "OK"))
	}
	e.Stop()
	found := false
	for _, r := range e.CDRs() {
		if r.CallID != "silent" {
			continue
		}
		found = true
		if r.Stage != "media" || r.Reason != "media_timeout" {
			t.Errorf("CDR: %s/%s, want media/media_timeout", r.Stage, r.Reason)
		}
		// The relay leaves the session to the call's end, which records
		// the legs' media security.
		if r.CallerMedia != "rtp" || r.CalleeMedia != "rtp" {
			t.Errorf("CDR media %q/%q, want rtp/rtp", r.CallerMedia, r.CalleeMedia)
		}
	}
	if !found {
		t.Error("no CDR of the call")
	}
}
