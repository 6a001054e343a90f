package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/testenv"
	"github.com/sipwarden/sipwarden/test/testbed"
)

// tlsMediaConfig: baresip A on the trunk (127.0.0.22) calls baresip B, the
// "PBX" (127.0.0.23), both over TLS; the relay re-keys SRTP between them.
const tlsMediaConfig = `
listen: [udp://127.0.0.1:{{.SIPPort}}, tls://127.0.0.1:{{.TLSPort}}]
tls: {cert: "{{index .Extra "cert"}}", key: "{{index .Extra "key"}}", upstream_ca: "{{index .Extra "cert"}}"}
admin: {listen: "127.0.0.1:{{.AdminPort}}"}
storage: {path: "{{.Dir}}/data"}
log: {level: info}
sip: {drain_timeout: 1s}
media: {enabled: true, address: 127.0.0.1, ports: "{{index .Extra "ports"}}"}
upstreams:
  - name: pbx
    targets: ["tls://127.0.0.23:{{index .Extra "pbxTLS"}}"]
trunks:
  - name: acme
    auth: ip
    allow: [127.0.0.22/32, 127.0.0.1/32] # baresip's TLS connections leave from 127.0.0.1
    upstream: pbx
    numbers: ["+15551230000/4"]
    targets: ["tls://127.0.0.22:5061"]
    media: {srtp: required}
`

// TestTwoBaresipsTLSAndSRTP: two softphones call each other through
// sipwarden over TLS with mandatory SDES SRTP; audio flows both ways
// through the relay, and a capture of the caller's media leg (tshark) holds
// SRTP only: every packet carries the 10-byte authentication tag of
// AES_CM_128_HMAC_SHA1_80 (20 ms of PCMU: 12 + 160 + 10 bytes), none is a
// plain 172-byte RTP packet (both legs are captured: the relay re-keys).
func TestTwoBaresipsTLSAndSRTP(t *testing.T) {
	baresip := testbed.RequireTool(t, "baresip", "baresip-core")
	tshark := testbed.RequireTool(t, "tshark", "tshark")
	testenv.Root(t, "capturing with tshark")
	dir := t.TempDir()
	certFile, keyFile, _ := writeCert(t, dir)
	both := filepath.Join(dir, "both.pem") // baresip wants certificate and key in one file
	c, _ := os.ReadFile(certFile)
	k, _ := os.ReadFile(keyFile)
	writeFile(t, both, string(c)+string(k))

	base := 42000 + os.Getpid()%100*100
	pbxPort := testbed.FreePort(t)
	e := testbed.StartEdge(t, tlsMediaConfig, pbxPort, map[string]any{"cert": certFile, "key": keyFile,
		"ports": fmt.Sprintf("%d-%d", base, base+99), "pbxTLS": pbxPort + 1}) // baresip listens for TLS on its port + 1

	// Capture both media legs: UDP to and from the relay's ports.
	pcap := filepath.Join(dir, "media.pcap")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	capture := exec.CommandContext(ctx, tshark, "-i", "lo", "-w", pcap, "-f",
		fmt.Sprintf("udp portrange %d-%d", base, base+99))
	var capOut testbed.SyncBuffer
	capture.Stdout, capture.Stderr = &capOut, &capOut
	if err := capture.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(capOut.String(), "Capturing on") {
		if time.Now().After(deadline) {
			t.Fatalf("tshark did not start:\n%s", capOut.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	phone := func(name, listen, account string, extra ...string) *testbed.SyncBuffer {
		d := filepath.Join(dir, name)
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		rtpBase := base + 200
		if name == "b" {
			rtpBase += 100
		}
		writeFile(t, filepath.Join(d, "config"), phoneConfig("sip_listen "+listen, "sip_certificate "+both,
			"sip_cafile "+certFile, "module srtp.so", fmt.Sprintf("rtp_ports %d-%d", rtpBase, rtpBase+99)))
		writeFile(t, filepath.Join(d, "accounts"), account+"\n")
		cmd := exec.Command(baresip, append([]string{"-f", d, "-t", "25"}, extra...)...)
		out := &testbed.SyncBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if t.Failed() {
				t.Logf("baresip %s output:\n%s", name, out.String())
			}
		})
		return out
	}
	b := phone("b", "127.0.0.23:"+strconv.Itoa(pbxPort), "<sip:+15551230001@127.0.0.23;transport=tls>;regint=0;mediaenc=srtp-mand;answermode=auto")
	waitOutput(t, "baresip b", b, "baresip is ready", 30*time.Second) // B listens before A calls
	a := phone("a", "127.0.0.22:"+strconv.Itoa(testbed.FreePort(t)),
		fmt.Sprintf("<sip:+15550001000@127.0.0.1;transport=tls>;regint=0;mediaenc=srtp-mand;outbound=\"sip:127.0.0.1:%d;transport=tls\"", e.TLSPort),
		"-e", "/dial sip:+15551230001@127.0.0.1")

	established := "incoming rtp for 'audio' established"
	deadline = time.Now().Add(15 * time.Second)
	for !strings.Contains(a.String(), established) || !strings.Contains(b.String(), established) || e.Metric(`sipwarden_media_packets_forwarded_total{kind="rtp"}`) < 300 {
		if time.Now().After(deadline) {
			t.Fatalf("audio did not flow both ways: %v RTP packets relayed", e.Metric(`sipwarden_media_packets_forwarded_total{kind="rtp"}`))
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, out := range []*testbed.SyncBuffer{a, b} {
		if !strings.Contains(out.String(), "SRTP is Enabled") {
			t.Fatalf("a phone did not use SRTP:\n%s", out.String())
		}
	}
	// Interrupted (not killed), tshark writes out what it captured and exits.
	_ = capture.Process.Signal(os.Interrupt)
	stopped := make(chan struct{})
	go func() { _ = capture.Wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		cancel()
		<-stopped
	}

	fields, err := exec.Command(tshark, "-r", pcap, "-T", "fields", "-e", "udp.length").Output()
	if err != nil {
		t.Fatalf("read the capture: %v", err)
	}
	counts := map[string]int{}
	total := 0
	for _, l := range strings.Fields(string(fields)) {
		counts[l]++ // udp.length = 8 + payload
		total++
	}
	if total < 100 {
		t.Fatalf("captured %d media packets, want >= 100", total)
	}
	t.Logf("captured %d media packets by UDP length: %v", total, counts)
	if counts["180"] > 0 {
		t.Errorf("%d plain RTP packets (172-byte payload) captured", counts["180"])
	}
	if counts["190"] < total*9/10 { // RTCP (SRTCP) packets make up the rest
		t.Errorf("captured packet sizes (UDP length): %v; want SRTP (182-byte payloads)", counts)
	}

	e.Stop()
	for _, r := range e.CDRs() {
		if r.Trunk == "acme" && (r.CallerMedia != "srtp:AES_CM_128_HMAC_SHA1_80" || !strings.HasPrefix(r.CalleeMedia, "srtp:")) {
			t.Errorf("CDR media: caller %q callee %q", r.CallerMedia, r.CalleeMedia)
		}
	}
}
