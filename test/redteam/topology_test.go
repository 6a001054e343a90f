package redteam

import (
	"encoding/hex"
	"fmt"
	"net"
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

// topologyConfig: the trunk acme (127.0.0.2) calls the PBX (127.0.0.3) and
// takes the PBX's calls to its numbers on 127.0.0.2:trunkPort; media is
// anchored, so that the SDP shows the relay, not the PBX. topology_hiding
// is left at its default.
const topologyConfig = `
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
    targets: ["udp://127.0.0.2:{{index .Extra "trunkPort"}}"]
`

// TestTrunkLearnsUpstreamTopology: a trunk (or a scanner that got a trunk's
// address, or a phone) learns the protected PBX's address from the calls it
// makes and takes: the PBX's Contact (the remote target), Via, its proxy's
// Record-Route, its Server and User-Agent. A capture on the trunk's side of
// three calls through sipwarden (SIPp's built-in uac and uas, each way; and
// one from the trunk with a re-INVITE from either side and a Record-Route
// entry on the PBX's side; BYE from either side) holds no byte of the PBX's
// address or port, although the PBX writes it into its Contact, Via,
// Record-Route, Server and User-Agent, and (SIPp's built-in uac) into its
// Call-ID and From; every call completes with SIPp on both sides.
func TestTrunkLearnsUpstreamTopology(t *testing.T) {
	tshark := testbed.RequireTool(t, "tshark", "tshark")
	testenv.Root(t, "capturing with tshark")
	base := 44000 + os.Getpid()%100*100
	pbxPort := testbed.FreePort(t)
	trunkPort := testbed.FreePort(t)
	e := testbed.StartEdge(t, topologyConfig, pbxPort, map[string]any{
		"ports": fmt.Sprintf("%d-%d", base, base+99), "trunkPort": trunkPort})

	// Capture everything between the trunk's address and the edge's SIP
	// port and media ports (other tests on this machine use 127.0.0.2 too).
	dir := t.TempDir()
	pcap := filepath.Join(dir, "trunk.pcap")
	capture := exec.Command(tshark, "-i", "lo", "-w", pcap, "-f",
		fmt.Sprintf("host 127.0.0.2 and (port %d or portrange %d-%d)", e.SIPPort, base, base+99))
	var capOut testbed.SyncBuffer
	capture.Stdout, capture.Stderr = &capOut, &capOut
	if err := capture.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = capture.Process.Signal(os.Interrupt) // flushes the file
			_ = capture.Wait()
		}
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(capOut.String(), "Capturing on") {
		if time.Now().After(deadline) {
			t.Fatalf("tshark did not start:\n%s", capOut.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Call 0, trunk to PBX, with SIPp's built-in scenarios (their ACK and
	// BYE go to the address the INVITE went to, not to the remote target).
	pbx0 := startBuiltinUAS(t, "127.0.0.3", pbxPort)
	res := testbed.RunSipp(t, 60*time.Second, "-sn", "uac", "-i", "127.0.0.2", "-p", "0", "-s", "+15551230001", "-m", "1",
		"-timeout", "60s", "-timeout_error", "-recv_timeout", "10000", "-d", "200", e.SIPAddr())
	if res.Successful != 1 || res.Failed != 0 {
		t.Fatalf("call from the trunk (built-in scenarios): %s\n%s\nPBX:\n%s", testbed.FmtCalls(res), res.Screen, pbx0.Out.String())
	}
	waitDone(t, pbx0, "the PBX's side of call 0")

	// Call 1, trunk to PBX: re-INVITE both ways, the trunk hangs up.
	pbx := testbed.StartUAS(t, "topo_pbx_uas.xml", pbxPort, "-m", "1")
	res = testbed.RunSipp(t, 60*time.Second, testbed.UACArgs("topo_trunk_uac.xml", e.SIPAddr(), 1, 1)...)
	if res.Successful != 1 || res.Failed != 0 {
		t.Fatalf("call from the trunk: %s\n%s\nPBX:\n%s", testbed.FmtCalls(res), res.Screen, pbx.Out.String())
	}
	waitDone(t, pbx, "the PBX's side of call 1")

	// Call 2, PBX to trunk, with SIPp's built-in scenarios: the PBX writes
	// its address into the Call-ID and the From too; it hangs up.
	phone := startBuiltinUAS(t, "127.0.0.2", trunkPort)
	res = testbed.RunSipp(t, 60*time.Second, "-sn", "uac", "-i", "127.0.0.3", "-p", strconv.Itoa(pbxPort), "-s", "+15551230001", "-m", "1",
		"-timeout", "60s", "-timeout_error", "-recv_timeout", "10000", "-d", "200", e.SIPAddr())
	if res.Successful != 1 || res.Failed != 0 {
		t.Fatalf("call from the PBX (built-in scenarios): %s\n%s\ntrunk:\n%s", testbed.FmtCalls(res), res.Screen, phone.Out.String())
	}
	waitDone(t, phone, "the trunk's side of call 2")
	stop()

	// Every payload to and from the trunk, as text.
	out, err := exec.Command(tshark, "-r", pcap, "-T", "fields", "-e", "udp.payload").Output()
	if err != nil {
		t.Fatalf("read the capture: %v", err)
	}
	var wire strings.Builder
	packets := 0
	for _, line := range strings.Fields(string(out)) {
		b, err := hex.DecodeString(strings.ReplaceAll(line, ":", ""))
		if err != nil {
			t.Fatalf("capture field %q: %v", line, err)
		}
		wire.Write(b)
		wire.WriteByte('\n')
		packets++
	}
	text := wire.String()
	t.Logf("%d packets captured on the trunk's side", packets)
	// The capture saw both calls, each way: requests and answers.
	for _, want := range []string{"INVITE sip:", "SIP/2.0 180 ", "SIP/2.0 200 OK", "ACK sip:", "BYE sip:", "CSeq: 2 INVITE", "Contact: <sip:"} {
		if !strings.Contains(text, want) {
			t.Fatalf("the capture (%d packets) lacks %q: it did not see the calls\n%s", packets, want, text)
		}
	}
	port := strconv.Itoa(pbxPort)
	for _, leak := range []string{"127.0.0.3", ":" + port, "=" + port, "PBX-Sim"} {
		if i := strings.Index(text, leak); i >= 0 {
			from := max(0, strings.LastIndex(text[:i], "\n\n"))
			t.Errorf("%q reached the trunk (%d packets captured), in:\n%s", leak, packets, text[from:min(len(text), i+400)])
		}
	}
}

// topologyRawConfig: the trunk acme (127.0.0.2) calls the PBX (127.0.0.3).
const topologyRawConfig = `
listen: [udp://127.0.0.1:{{.SIPPort}}]
admin: {listen: "127.0.0.1:{{.AdminPort}}"}
storage: {path: "{{.Dir}}/data"}
log: {level: info}
upstreams:
  - name: pbx
    targets: ["udp://127.0.0.3:{{.PBXPort}}"]
trunks:
  - {name: acme, auth: ip, allow: [127.0.0.2/32], upstream: pbx}
`

// TestInDialogRequestURISteering: a trunk answered by the PBX sends an
// in-dialog request whose Request-URI names a host of its choosing behind
// the edge (sip:admin@10.20.30.40), hoping the PBX or a proxy in front of
// it routes by Request-URI. The edge relays in-dialog requests by dialog,
// so the request would reach the PBX carrying that target. With topology
// hiding the Request-URI must be the dialog handle sipwarden gave the
// trunk: the forged one gets 404 and the PBX never sees it (the next
// request it gets is the trunk's real BYE, mapped back to its Contact).
func TestInDialogRequestURISteering(t *testing.T) {
	pbxPort := testbed.FreePort(t)
	e := testbed.StartEdge(t, topologyRawConfig, pbxPort, nil)
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.3"), Port: pbxPort})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	pbx := &testbed.RawUA{T: t, Network: "udp", IP: "127.0.0.3", UDP: conn}
	pbxContact := fmt.Sprintf("sip:pbx@127.0.0.3:%d", pbxPort)
	trunk := testbed.NewRawUA(t, "udp", "127.0.0.2")

	trunk.Send(e.SIPAddr(), trunk.InviteText(e.SIPAddr(), "steer-1", "z9hG4bK-steer-1", 1))
	inv := recvRequest(t, pbx, "INVITE")
	pbx.Send(e.SIPAddr(), fmt.Sprintf("SIP/2.0 200 OK\n%sFrom: %s\nTo: %s;tag=pbx1\nCall-ID: %s\nCSeq: %s\nRecord-Route: %s\nContact: <%s>\nContent-Length: 0\n\n",
		viaLines(inv), inv.Get("From"), inv.Get("To"), inv.Get("Call-ID"), inv.Get("CSeq"), inv.Get("Record-Route"), pbxContact))
	var ok *testbed.RawMsg
	for deadline := time.Now().Add(5 * time.Second); ok == nil && time.Now().Before(deadline); {
		if m := trunk.Recv(time.Until(deadline)); m != nil && m.Code == 200 {
			ok = m
		}
	}
	if ok == nil {
		t.Fatal("the trunk got no 200 for its INVITE")
	}
	target := strings.TrimSuffix(strings.TrimPrefix(ok.Get("Contact"), "<"), ">")
	inDialog := func(method, ruri string, cseq int, branch string) string {
		return fmt.Sprintf("%s %s SIP/2.0\nVia: %s\nRoute: <sip:%s;lr>\nFrom: %s\nTo: %s\nCall-ID: steer-1\nCSeq: %d %s\nMax-Forwards: 70\nContent-Length: 0\n\n",
			method, ruri, trunk.Via(branch), e.SIPAddr(), "<sip:+15550001000@127.0.0.2>;tag=f-steer-1", ok.Get("To"), cseq, method)
	}
	trunk.Send(e.SIPAddr(), inDialog("ACK", target, 1, "z9hG4bK-steer-ack"))

	// The forged Request-URI: refused at the edge.
	trunk.Send(e.SIPAddr(), inDialog("BYE", "sip:admin@10.20.30.40:5060", 2, "z9hG4bK-steer-forged"))
	if m := recvResponse(trunk, "z9hG4bK-steer-forged", 2*time.Second); m == nil || m.Code != 404 {
		t.Errorf("in-dialog BYE with a Request-URI of the trunk's choosing: %v, want a 404", m)
	}
	// The sentinel: the trunk's real BYE, which the PBX must get next.
	trunk.Send(e.SIPAddr(), inDialog("BYE", target, 3, "z9hG4bK-steer-bye"))
	bye := recvRequest(t, pbx, "BYE")
	if ruri := strings.Fields(bye.Raw)[1]; ruri != pbxContact || bye.Get("CSeq") != "3 BYE" {
		t.Fatalf("the PBX got BYE %s (CSeq %s), want the trunk's real BYE to %s:\n%s", ruri, bye.Get("CSeq"), pbxContact, bye.Raw)
	}
}

// startBuiltinUAS starts SIPp's built-in uas scenario on ip:port for one call.
func startBuiltinUAS(t *testing.T, ip string, port int) *testbed.UAS {
	t.Helper()
	sipp := testbed.RequireTool(t, "sipp", "sip-tester")
	u := &testbed.UAS{Cmd: exec.Command(sipp, "-sn", "uas", "-i", ip, "-p", strconv.Itoa(port), "-nostdin", "-m", "1"),
		Done: make(chan struct{}), Out: &testbed.SyncBuffer{}}
	u.Cmd.Dir = t.TempDir()
	u.Cmd.Stdout, u.Cmd.Stderr = u.Out, u.Out
	if err := u.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = u.Cmd.Wait(); close(u.Done) }()
	t.Cleanup(func() { _ = u.Cmd.Process.Kill(); <-u.Done })
	time.Sleep(300 * time.Millisecond) // let it bind, as testbed.StartUAS does
	return u
}

// waitDone waits for a one-call SIPp UAS to end.
func waitDone(t *testing.T, u *testbed.UAS, what string) {
	t.Helper()
	select {
	case <-u.Done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not end:\n%s", what, u.Out.String())
	}
}

// recvRequest returns the next request with method that ua receives (fatal after 5 s).
func recvRequest(t *testing.T, ua *testbed.RawUA, method string) *testbed.RawMsg {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if m := ua.Recv(time.Until(deadline)); m != nil && m.Method == method {
			return m
		}
	}
	t.Fatalf("no %s received", method)
	return nil
}

// recvResponse returns the next final response to the request with branch
// (nil after timeout).
func recvResponse(ua *testbed.RawUA, branch string, timeout time.Duration) *testbed.RawMsg {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); {
		if m := ua.Recv(time.Until(deadline)); m != nil && m.Code >= 200 && strings.Contains(m.Get("Via"), branch) {
			return m
		}
	}
	return nil
}

// viaLines are the Via fields of m, to copy into a response.
func viaLines(m *testbed.RawMsg) string {
	var b strings.Builder
	for _, v := range m.Headers["via"] {
		b.WriteString("Via: " + v + "\n")
	}
	return b.String()
}
