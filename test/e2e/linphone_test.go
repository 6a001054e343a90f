package e2e

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/auth"
	"github.com/sipwarden/sipwarden/internal/cdr"
	"github.com/sipwarden/sipwarden/test/testbed"
)

// linphoneConfig: a hosted phone trunk on TLS with sipwarden's registrar and
// the default challenge (no algorithms key: SHA-256 alone), SDES SRTP
// required towards the phones and plain RTP towards the PBX (bridge).
const linphoneConfig = `
listen: [udp://127.0.0.1:{{.SIPPort}}, tls://127.0.0.1:{{.TLSPort}}]
tls: {cert: "{{index .Extra "cert"}}", key: "{{index .Extra "key"}}"}
admin: {listen: "127.0.0.1:{{.AdminPort}}"}
storage: {path: "{{.Dir}}/data"}
log: {level: info}
sip: {drain_timeout: 1s}
media: {enabled: true, address: 127.0.0.1, ports: "{{index .Extra "ports"}}"}
upstreams:
  - name: pbx
    targets: ["udp://127.0.0.3:{{.PBXPort}}"]
trunks:
  - name: phones
    auth: digest
    realm: phones.example.test
    require_tls: true
    upstream: pbx
    registrar: {enabled: true}
    media: {srtp: bridge}
    accounts:
      - {username: "1001", ha1: {sha-256: {{index .Extra "ha1"}}}}
`

// linphonerc is the configuration of a headless linphonec (Debian's
// linphone-cli 5.1): TLS only to sipwarden with the test CA, SDES SRTP
// mandatory, PCMU, no ICE, no video.
func linphonerc(ca, proxy string, rtpPort int) string {
	return fmt.Sprintf(`[sip]
sip_port=-1
sip_tcp_port=-1
sip_tls_port=-1
root_ca=%[1]s
verify_server_certs=1
verify_server_cn=1
media_encryption=srtp
media_encryption_mandatory=1
default_proxy=0
[rtp]
audio_rtp_port=%[3]d
[sound]
echocancellation=0
[video]
enabled=0
capture=0
display=0
[net]
firewall_policy=0
auto_net_state_mon=0
[proxy_0]
reg_proxy=<%[2]s>
reg_route=<%[2]s>
reg_identity="1001" <sip:1001@phones.example.test>
reg_expires=600
reg_sendregister=1
[auth_info_0]
username=1001
passwd=%[4]s
realm=phones.example.test
domain=phones.example.test
[audio_codec_0]
mime=PCMU
rate=8000
enabled=1
`, ca, proxy, rtpPort, e2ePass)
}

// TestLinphoneRegistersOverTLSAndCallsWithSRTP: Linphone (linphonec 5.1),
// which answers only the first challenge of a 401, registers over TLS
// with sipwarden's default challenge (SHA-256), shows up in `sipwarden
// registrations list`, and calls the PBX with SDES SRTP through the relay:
// the PBX gets plain RTP from the relay (bridge), and the phone's media
// keep-alives are counted as keepalive, never as malformed.
func TestLinphoneRegistersOverTLSAndCallsWithSRTP(t *testing.T) {
	linphonec := testbed.RequireTool(t, "linphonec", "linphone-cli")
	const realm = "phones.example.test"
	dir := t.TempDir()
	// The certificates come from `sipwarden certs`, as a new user's would.
	certs := filepath.Join(dir, "certs")
	if out, err := exec.Command(testbed.Binary, "certs", "--hosts", "127.0.0.1,"+realm, certs).CombinedOutput(); err != nil {
		t.Fatalf("sipwarden certs: %v\n%s", err, out)
	}
	pbxPort := testbed.FreePort(t)
	pbxConn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.3"), Port: pbxPort})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pbxConn.Close() })
	pbx := &testbed.RawUA{T: t, Network: "udp", IP: "127.0.0.3", UDP: pbxConn}
	// The PBX's media socket: the relay sends it the phone's audio as plain RTP.
	pbxRTP, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.3")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pbxRTP.Close() })
	base := 43000 + os.Getpid()%100*40
	e := testbed.StartEdge(t, linphoneConfig, pbxPort, map[string]any{
		"cert": filepath.Join(certs, "server.pem"), "key": filepath.Join(certs, "server-key.pem"),
		"ports": fmt.Sprintf("%d-%d", base, base+39), "ha1": auth.HA1(auth.SHA256, "1001", realm, e2ePass)})

	rc := filepath.Join(dir, "linphonerc")
	writeFile(t, rc, linphonerc(filepath.Join(certs, "ca.pem"), fmt.Sprintf("sip:127.0.0.1:%d;transport=tls", e.TLSPort), testbed.FreePort(t)))
	send, _ := startLinphone(t, linphonec, dir, rc)

	// It registers at the first try, with the default challenge.
	deadline := time.Now().Add(15 * time.Second)
	for e.Metric(`sipwarden_registrar_bindings`) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("linphonec did not register within 15 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if v := e.Metric(`sipwarden_auth_requests_total{result="success",trunk="phones"}`); v < 1 {
		t.Errorf("auth successes: %v", v)
	}
	if v := e.Metric(`sipwarden_auth_requests_total{result="failure",trunk="phones"}`); v != 0 {
		t.Errorf("auth failures: %v, want 0", v)
	}
	// The registration is listed, with its transport and user agent.
	list, err := exec.Command(testbed.Binary, "registrations", "list", "--config", filepath.Join(e.Dir, "sipwarden.yaml")).CombinedOutput()
	if err != nil || !strings.Contains(string(list), "phones  1001") || !strings.Contains(string(list), "tls") ||
		!strings.Contains(strings.ToLower(string(list)), "linphone") {
		t.Errorf("sipwarden registrations list: %v\n%s", err, list)
	}
	// A successful login is logged at INFO.
	if !strings.Contains(e.Logs.String(), `"level":"INFO","msg":"event","kind":"auth_success"`) {
		t.Errorf("no auth_success event at INFO in the log")
	}

	// The phone calls the PBX: the INVITE arrives authenticated, with a
	// plain RTP offer from the relay (the phone offered SRTP).
	// No sound card here: the phone's audio is a WAV file, played once
	// the call is up.
	tone := filepath.Join(dir, "tone.wav")
	writeFile(t, tone, string(sineWAV(8000, 440, 10*time.Second)))
	send("soundcard use files")
	send("call sip:+15559990000@" + realm)
	var inv *testbed.RawMsg
	deadline = time.Now().Add(15 * time.Second)
	for inv == nil && time.Now().Before(deadline) {
		if m := pbx.Recv(time.Until(deadline)); m != nil && m.Method == "INVITE" {
			inv = m
		}
	}
	if inv == nil {
		t.Fatal("Linphone's call did not reach the PBX")
	}
	if inv.Get("Proxy-Authorization") != "" || !strings.Contains(inv.Raw, "RTP/AVP") || strings.Contains(inv.Raw, "a=crypto") {
		t.Fatalf("the INVITE at the PBX:\n%s", inv.Raw)
	}
	pbxMedia := pbxRTP.LocalAddr().(*net.UDPAddr)
	answer := fmt.Sprintf("v=0\r\no=pbx 2 2 IN IP4 127.0.0.3\r\ns=-\r\nc=IN IP4 127.0.0.3\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n", pbxMedia.Port)
	pbx.Send(e.SIPAddr(), strings.Replace(responseTo(inv, 200, "OK"), "Content-Length: 0\n\n",
		fmt.Sprintf("Contact: <sip:pbx@127.0.0.3:%d>\nContent-Type: application/sdp\nContent-Length: %d\n\n", pbxPort, len(answer))+
			strings.ReplaceAll(answer, "\r\n", "\n"), 1))
	if ack := waitMethodFor(pbx, inv.Get("Call-ID"), "ACK", 10*time.Second); ack == nil {
		t.Fatal("Linphone did not ACK the PBX's 200")
	}
	send("play " + tone)
	// Linphone's SRTP reaches the PBX as plain RTP (version 2, PCMU).
	buf := make([]byte, 2048)
	got := 0
	_ = pbxRTP.SetReadDeadline(time.Now().Add(10 * time.Second))
	for got < 20 {
		n, _, err := pbxRTP.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("plain RTP packets at the PBX: %d, want 20: %v", got, err)
		}
		if n >= 12 && buf[0]>>6 == 2 && buf[1]&0x7f == 0 {
			got++
		}
	}
	send("terminate")
	bye := waitMethodFor(pbx, inv.Get("Call-ID"), "BYE", 10*time.Second)
	if bye == nil {
		t.Fatal("Linphone's BYE did not reach the PBX")
	}
	pbx.Send(e.SIPAddr(), responseTo(bye, 200, "OK"))
	// The relay's counters are flushed when the call's streams close.
	waitMetric(t, e, `sipwarden_media_packets_forwarded_total{kind="rtp"}`, 20)
	// Linphone's keep-alives (STUN binding requests on both ports, as it
	// sends without ICE) are counted as such; nothing it sent is malformed.
	for _, k := range []string{"rtp", "rtcp"} {
		if v := e.Metric(fmt.Sprintf(`sipwarden_media_packets_dropped_total{kind=%q,reason="malformed"}`, k)); v != 0 {
			t.Errorf("%s malformed drops: %v, want 0", k, v)
		}
		if v := e.Metric(fmt.Sprintf(`sipwarden_media_packets_dropped_total{kind=%q,reason="keepalive"}`, k)); v < 1 {
			t.Errorf("%s keep-alives counted: %v, want some", k, v)
		}
	}
	// The CDR: answered, SRTP on the phone's leg, plain RTP to the PBX.
	e.Stop()
	var call *cdr.Record
	for _, r := range e.CDRs() {
		if r.CallID == inv.Get("Call-ID") || r.Trunk == "phones" {
			call = &r
		}
	}
	if call == nil || call.Disposition != cdr.Answered || !strings.Contains(strings.ToLower(call.CallerMedia), "srtp") ||
		strings.Contains(strings.ToLower(call.CalleeMedia), "srtp") {
		t.Errorf("CDR of Linphone's call: %+v", call)
	}
}

// sineWAV returns a WAV file of d of a sine tone at freq Hz: 16-bit mono PCM
// at rate samples a second.
func sineWAV(rate, freq int, d time.Duration) []byte {
	n := int(int64(rate) * int64(d) / int64(time.Second))
	b := make([]byte, 44+2*n)
	le32 := func(off int, v uint32) { binary.LittleEndian.PutUint32(b[off:], v) }
	le16 := func(off int, v uint16) { binary.LittleEndian.PutUint16(b[off:], v) }
	copy(b[0:], "RIFF")
	le32(4, uint32(36+2*n))
	copy(b[8:], "WAVEfmt ")
	le32(16, 16)
	le16(20, 1) // PCM
	le16(22, 1) // mono
	le32(24, uint32(rate))
	le32(28, uint32(2*rate))
	le16(32, 2)
	le16(34, 16)
	copy(b[36:], "data")
	le32(40, uint32(2*n))
	for i := range n {
		v := int16(8000 * math.Sin(2*math.Pi*float64(freq)*float64(i)/float64(rate)))
		le16(44+2*i, uint16(v))
	}
	return b
}

// startLinphone starts linphonec on the configuration rc, with its home in
// dir; it returns a function that sends it a command line, and its output.
func startLinphone(t *testing.T, linphonec, dir, rc string) (send func(string), out *testbed.SyncBuffer) {
	t.Helper()
	// Without its database directory linphonec never starts its core
	// (no listening point, no REGISTER, no word of why on the console).
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(filepath.Join(home, ".local", "share", "linphone"), 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(linphonec, "-c", rc, "-d", "6", "-l", filepath.Join(dir, "linphone.log"))
	cmd.Env = append(os.Environ(), "HOME="+home)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out = &testbed.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// linphonec runs its SIP stack only between two lines of its input
	// when that is no terminal: a line every 100 ms keeps it going.
	var stdinMu sync.Mutex
	send = func(line string) {
		stdinMu.Lock()
		defer stdinMu.Unlock()
		_, _ = io.WriteString(stdin, line+"\n")
	}
	pump := make(chan struct{})
	pumped := make(chan struct{})
	go func() {
		defer close(pumped)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-pump:
				return
			case <-tick.C:
				send("")
			}
		}
	}()
	t.Cleanup(func() {
		close(pump)
		<-pumped
		send("quit")
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "linphone.log"))
			if len(log) > 20000 {
				log = log[len(log)-20000:]
			}
			t.Logf("linphonec output:\n%s\nlinphone.log (end):\n%s", out.String(), log)
		}
	})
	return send, out
}

// linphoneOrderConfig: a digest trunk on TLS whose challenge order the
// test chooses (none: the default), every HA1 given.
const linphoneOrderConfig = `
listen: [udp://127.0.0.1:{{.SIPPort}}, tls://127.0.0.1:{{.TLSPort}}]
tls: {cert: "{{index .Extra "cert"}}", key: "{{index .Extra "key"}}"}
admin: {listen: "127.0.0.1:{{.AdminPort}}"}
storage: {path: "{{.Dir}}/data"}
log: {level: info}
upstreams:
  - name: pbx
    targets: ["udp://127.0.0.3:{{.PBXPort}}"]
trunks:
  - name: phones
    auth: digest
    realm: phones.example.test
{{- with index .Extra "domains"}}
    domains: {{.}}
{{- end}}
{{- with index .Extra "algs"}}
    algorithms: {{.}}
{{- end}}
    require_tls: {{if index .Extra "udp"}}false{{else}}true{{end}}
    upstream: pbx
    registrar: {enabled: true}
    accounts:
      - {username: "1001", ha1: {sha-256: {{index .Extra "sha256"}}, sha-512-256: {{index .Extra "sha512"}}, md5: {{index .Extra "md5"}}}}
`

// TestLinphoneChallengeOrders is the Linphone row of docs/clients.md:
// linphonec answers only the first challenge of a 401. It registers when
// that one is SHA-256 (the default) or MD5, and never when it is
// SHA-512-256 (sipwarden's default before), which it does not know.
func TestLinphoneChallengeOrders(t *testing.T) {
	linphonec := testbed.RequireTool(t, "linphonec", "linphone-cli")
	cases := []orderCase{
		{"", true},
		{"[MD5]", true},
		{"[SHA-256, MD5]", true},
		{"[SHA-512-256, SHA-256, MD5]", false},
	}
	challengeOrders(t, "Linphone", cases, nil, func(t *testing.T, e *testbed.Edge, certs string) func() bool {
		sub := t.TempDir()
		rc := filepath.Join(sub, "linphonerc")
		writeFile(t, rc, linphonerc(filepath.Join(certs, "ca.pem"), fmt.Sprintf("sip:127.0.0.1:%d;transport=tls", e.TLSPort), testbed.FreePort(t)))
		startLinphone(t, linphonec, sub, rc)
		// Linphone's own word (in its log) that it cannot answer the first challenge.
		return func() bool {
			log, _ := os.ReadFile(filepath.Join(sub, "linphone.log"))
			return strings.Contains(string(log), "Given algorithm is not correct")
		}
	})
}
