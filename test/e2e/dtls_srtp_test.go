package e2e

import (
	"github.com/sipwarden/sipwarden/test/testbed"

	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDTLSSRTPBaresipToSipp: a softphone keying SRTP with DTLS-SRTP
// (baresip's dtls_srtp module: UDP/TLS/RTP/SAVP, a=fingerprint,
// a=setup:actpass) calls through sipwarden to a PBX that only speaks plain
// RTP (SIPp echoing). The relay answers with its own fingerprint, runs the
// handshakes on its ports, and bridges the phone's SRTP to plain RTP and
// back; both sides verify the other's certificate against the SDP.
func TestDTLSSRTPBaresipToSipp(t *testing.T) {
	baresip := testbed.RequireTool(t, "baresip", "baresip-core")
	sipp := testbed.RequireTool(t, "sipp", "sip-tester")
	if _, err := os.Stat("/usr/lib/baresip/modules/dtls_srtp.so"); err != nil {
		t.Fatalf("baresip-core without the dtls_srtp module: %v", err)
	}
	base := 44000 + os.Getpid()%100*100
	pbxPort := testbed.FreePort(t)
	e := testbed.StartEdge(t, mediaConfig, pbxPort, map[string]any{"ports": fmt.Sprintf("%d-%d", base, base+99)})

	pbx := exec.Command(sipp, "-sn", "uas", "-i", "127.0.0.3", "-p", strconv.Itoa(pbxPort), "-rtp_echo", "-nostdin", "-m", "1")
	pbx.Dir = t.TempDir()
	startPeer(t, "SIPp", pbx)

	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "config"), phoneConfig(fmt.Sprintf("sip_listen 127.0.0.2:%d", testbed.FreePort(t)),
		"module dtls_srtp.so", fmt.Sprintf("rtp_ports %d-%d", base+200, base+299)))
	writeFile(t, filepath.Join(dir, "accounts"),
		fmt.Sprintf("<sip:+15550001000@127.0.0.1>;regint=0;mediaenc=dtls_srtp;outbound=\"sip:%s\"\n", e.SIPAddr()))
	out := startPeer(t, "baresip", exec.Command(baresip, "-f", dir, "-e", "/dial sip:+15551230001@127.0.0.1", "-t", "40"))

	forwarded := `sipwarden_media_packets_forwarded_total{kind="rtp"}`
	deadline := time.Now().Add(30 * time.Second) // baresip makes an RSA key for DTLS at start: seconds under load
	for e.Metric(forwarded) < 200 || !strings.Contains(out.String(), "incoming rtp for 'audio' established") {
		if time.Now().After(deadline) {
			t.Fatalf("media through the relay: %v RTP packets forwarded, %v DTLS handshakes ok, %v failed", e.Metric(forwarded),
				e.Metric(`sipwarden_media_dtls_handshakes_total{result="ok"}`), e.Metric(`sipwarden_media_dtls_handshakes_total{result="failed"}`))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// baresip checked the relay's certificate against the relay's SDP.
	for _, want := range []string{"fingerprint OK", "DTLS-SRTP complete"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("baresip output lacks %q", want)
		}
	}
	if strings.Contains(out.String(), "failed to decrypt") {
		t.Error("baresip could not decrypt what the relay sent")
	}
	// One association on the RTP port, one on the RTCP port (no rtcp-mux).
	if v := e.Metric(`sipwarden_media_dtls_handshakes_total{result="ok"}`); v != 2 {
		t.Errorf("%v DTLS handshakes completed on the relay, want 2", v)
	}
	if v := e.Metric(`sipwarden_media_dtls_handshakes_total{result="failed"}`); v > 0 { // -1: never counted
		t.Errorf("%v DTLS handshakes failed", v)
	}
	expectNoMediaDrops(t, e)

	e.Stop()
	expectMediaCDR(t, e, "srtp:", "rtp")
}

// dtlsTrunkConfig: the trunk acme (baresip on 127.0.0.2) takes SRTP keyed
// with DTLS-SRTP when sipwarden offers it (offer_keying: dtls); the PBX
// upstream speaks plain RTP.
const dtlsTrunkConfig = `
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
    targets: ["udp://127.0.0.2:{{index .Extra "trunkPort"}}"]
    media: {srtp: bridge, offer_keying: dtls}
`

// TestDTLSSRTPOfferedToBaresip: the PBX (SIPp, plain RTP, echoing) calls a
// number of a trunk whose policy offers DTLS-SRTP; sipwarden offers
// UDP/TLS/RTP/SAVP with its fingerprint and a=setup:actpass to the trunk's
// softphone (baresip, dtls_srtp), which answers and runs the handshakes
// with the relay; the phone's audio comes back to it through the echo.
func TestDTLSSRTPOfferedToBaresip(t *testing.T) {
	baresip := testbed.RequireTool(t, "baresip", "baresip-core")
	sipp := testbed.RequireTool(t, "sipp", "sip-tester")
	base := 45000 + os.Getpid()%100*100
	pbxPort, phonePort := testbed.FreePort(t), testbed.FreePort(t)
	e := testbed.StartEdge(t, dtlsTrunkConfig, pbxPort, map[string]any{"ports": fmt.Sprintf("%d-%d", base, base+99), "trunkPort": phonePort})

	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "config"), phoneConfig(fmt.Sprintf("sip_listen 127.0.0.2:%d", phonePort),
		"module dtls_srtp.so", fmt.Sprintf("rtp_ports %d-%d", base+200, base+299)))
	writeFile(t, filepath.Join(dir, "accounts"), "<sip:+15551230001@127.0.0.2>;regint=0;mediaenc=dtls_srtp;answermode=auto\n")
	out := startPeer(t, "baresip", exec.Command(baresip, "-f", dir, "-t", "40"))
	deadline := time.Now().Add(30 * time.Second) // baresip makes an RSA key for DTLS at start: seconds under load
	for !strings.Contains(out.String(), "baresip is ready") {
		if time.Now().After(deadline) {
			t.Fatal("baresip did not start")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The PBX calls from its own address (the upstream), holds the call 8 s
	// and echoes the RTP it receives.
	pbx := exec.Command(sipp, "-sn", "uac", "-i", "127.0.0.3", "-p", strconv.Itoa(pbxPort), "-s", "+15551230001",
		"-m", "1", "-d", "8000", "-rtp_echo", "-nostdin", "-timeout", "30s", "-timeout_error", e.SIPAddr())
	pbx.Dir = t.TempDir()
	startPeer(t, "SIPp", pbx)

	forwarded := `sipwarden_media_packets_forwarded_total{kind="rtp"}`
	deadline = time.Now().Add(15 * time.Second)
	for e.Metric(forwarded) < 200 || !strings.Contains(out.String(), "incoming rtp for 'audio' established") {
		if time.Now().After(deadline) {
			t.Fatalf("media through the relay: %v RTP packets forwarded, %v DTLS handshakes ok, %v failed", e.Metric(forwarded),
				e.Metric(`sipwarden_media_dtls_handshakes_total{result="ok"}`), e.Metric(`sipwarden_media_dtls_handshakes_total{result="failed"}`))
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, want := range []string{"fingerprint OK", "DTLS-SRTP complete"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("baresip output lacks %q", want)
		}
	}
	if strings.Contains(out.String(), "failed to decrypt") {
		t.Error("baresip could not decrypt what the relay sent")
	}
	if v := e.Metric(`sipwarden_media_dtls_handshakes_total{result="ok"}`); v != 2 {
		t.Errorf("%v DTLS handshakes completed on the relay, want 2", v)
	}
	expectNoMediaDrops(t, e)
	e.Stop()
	expectMediaCDR(t, e, "rtp", "srtp:")
}
