package e2e

import (
	"github.com/sipwarden/sipwarden/test/testbed"

	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/cdr"
	"github.com/sipwarden/sipwarden/internal/sip"
)

// TestUnknownSourceGetsSilence sends requests and garbage from an address
// that is on no trunk: nothing at all may come back, and the drops are counted.
func TestUnknownSourceGetsSilence(t *testing.T) {
	pbxPort := testbed.FreePort(t)
	pbx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.3"), Port: pbxPort})
	if err != nil {
		t.Fatal(err)
	}
	defer pbx.Close()
	e := testbed.StartEdge(t, baseConfig, pbxPort, params("udp"))
	stranger := testbed.NewRawUA(t, "udp", "127.0.0.9")
	target := e.SIPAddr()
	stranger.Send(target, stranger.InviteText(target, "stranger-1", "z9hG4bK-s1", 1))
	stranger.Send(target, strings.Replace(stranger.InviteText(target, "stranger-2", "z9hG4bK-s2", 1), "INVITE", "OPTIONS", 2))
	stranger.Send(target, "REGISTER sip:127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bK-r\nFrom: <sip:100@127.0.0.1>;tag=1\nTo: <sip:100@127.0.0.1>\nCall-ID: reg-1\nCSeq: 1 REGISTER\nContent-Length: 0\n\n")
	stranger.Send(target, "\x16\x03\x01 garbage that is no SIP at all")
	// All four are accounted for as drops: the three requests by the
	// source check (a drop verdict: no reply, nothing forwarded), the
	// garbage by the transport. Nothing could have come back.
	waitSum(t, e, 3, "sipwarden_chain_verdicts_total", `action="drop"`, `reason="unknown_source"`, `stage="acl"`)
	waitMetric(t, e, `sipwarden_transport_dropped_total{reason="garbage",transport="UDP"}`, 1)
	if m := stranger.Recv(time.Millisecond); m != nil {
		t.Fatalf("unknown source got a reply:\n%s", m.Raw)
	}
	_ = pbx.SetReadDeadline(time.Now().Add(time.Millisecond))
	if n, _, err := pbx.ReadFromUDP(make([]byte, 4096)); err == nil {
		t.Fatalf("a request from an unknown source reached the PBX (%d bytes)", n)
	}
	if v := e.Metric(`sipwarden_acl_unknown_source_total{transport="UDP"}`); v < 3 {
		t.Errorf("unknown-source drops counted: %v, want >= 3", v)
	}
	if v := e.Metric(`sipwarden_transport_dropped_total{reason="garbage",transport="UDP"}`); v < 1 {
		t.Errorf("garbage drops counted: %v, want >= 1", v)
	}
}

// TestRetransmissionsAbsorbed sends one INVITE three times: the PBX (which
// rings at once, so the proxy's own retransmission timer stays quiet) sees it
// once, the caller gets 100 Trying for each copy.
func TestRetransmissionsAbsorbed(t *testing.T) {
	pbxPort := testbed.FreePort(t)
	pbx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.3"), Port: pbxPort})
	if err != nil {
		t.Fatal(err)
	}
	defer pbx.Close()
	var invites atomic.Int32
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := pbx.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			var m sip.Msg
			if m.Parse(buf[:n]) != nil || m.Method() != sip.INVITE || !m.IsRequest() {
				continue
			}
			invites.Add(1)
			_, _ = pbx.WriteToUDPAddrPort(sip.AppendResponse(nil, &m, 180, "Ringing", []byte("pbx1"), "", nil), from)
		}
	}()
	e := testbed.StartEdge(t, baseConfig, pbxPort, params("udp"))
	ua := testbed.NewRawUA(t, "udp", "127.0.0.2")
	inv := ua.InviteText(e.SIPAddr(), "retrans-1", "z9hG4bK-retrans-1", 1)
	next := func() int {
		t.Helper()
		m := ua.Recv(5 * time.Second)
		if m == nil {
			t.Fatal("no answer within 5s")
		}
		return m.Code
	}
	// The first copy gets our 100 Trying and then the PBX's 180; each
	// retransmission, sent once the 180 is the transaction's last
	// response, gets the 180 again.
	ua.Send(e.SIPAddr(), inv)
	if a, b := next(), next(); a != 100 || b != 180 {
		t.Fatalf("answers to the first copy: %d, %d; want 100, 180", a, b)
	}
	for i := range 2 {
		ua.Send(e.SIPAddr(), inv)
		if c := next(); c != 180 {
			t.Fatalf("answer to retransmission %d: %d, want 180", i+1, c)
		}
	}
	// Both copies were answered from the transaction, not relayed: the
	// proxy counts each absorbed copy before it answers it.
	if v := e.Metric("sipwarden_proxy_retransmissions_absorbed_total"); v != 2 {
		t.Errorf("retransmissions absorbed: %v, want 2", v)
	}
	if n := invites.Load(); n != 1 {
		t.Fatalf("INVITEs at the PBX: %d, want 1", n)
	}
}

// writeCert writes a self-signed ECDSA certificate for 127.0.0.1 into dir.
func writeCert(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "sipwarden e2e"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("127.0.0.23")}, // .23: a TLS "PBX" (srtp_tls_test.go)
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	c, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(c)
	return certFile, keyFile, pool
}

const tlsConfig = baseConfig + `
tls: {cert: "{{index .Extra "cert"}}", key: "{{index .Extra "key"}}"}
`

// TestTLSCall places a whole call over TLS (a Go client: Debian's SIPp has
// no TLS) to the PBX on UDP, and checks its CDR.
func TestTLSCall(t *testing.T) {
	certFile, keyFile, pool := writeCert(t, t.TempDir())
	pbxPort := testbed.FreePort(t)
	testbed.StartUAS(t, "uas.xml", pbxPort)
	p := params("udp")
	p["cert"], p["key"] = certFile, keyFile
	cfg := strings.Replace(tlsConfig, "  - tcp://127.0.0.1:{{.SIPPort}}\n", "  - tcp://127.0.0.1:{{.SIPPort}}\n  - tls://127.0.0.1:{{.TLSPort}}\n", 1)
	e := testbed.StartEdge(t, cfg, pbxPort, p)
	target := fmt.Sprintf("127.0.0.1:%d", e.TLSPort)

	ua := testbed.NewRawUA(t, "tls", "127.0.0.2")
	ua.TLSConf = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	ua.Send(target, ua.InviteText(target, "tls-call-1", "z9hG4bK-tls-1", 1))
	var ok *testbed.RawMsg
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		m := ua.Recv(time.Until(deadline))
		if m == nil {
			break
		}
		if m.Code == 200 {
			ok = m
			break
		}
	}
	if ok == nil {
		t.Fatal("no 200 OK over TLS")
	}
	// The route set is the Record-Route of the 200, in order.
	routes := ok.Headers["record-route"]
	if len(routes) == 0 {
		t.Fatalf("200 OK without Record-Route:\n%s", ok.Raw)
	}
	toTag := ok.Get("To")
	// the remote target is the 200's Contact: sipwarden's, with topology hiding
	remote := strings.Trim(ok.Get("Contact"), "<>")
	inDialog := func(method, branch string, cseq int) string {
		return fmt.Sprintf("%s %s SIP/2.0\nVia: %s\nRoute: %s\nFrom: <sip:+15550001000@127.0.0.2>;tag=f-tls-call-1\nTo: %s\nCall-ID: tls-call-1\nCSeq: %d %s\nMax-Forwards: 70\nContent-Length: 0\n\n",
			method, remote, ua.Via(branch), strings.Join(routes, ", "), toTag, cseq, method)
	}
	ua.Send(target, inDialog("ACK", "z9hG4bK-tls-ack", 1))
	waitMetric(t, e, `sipwarden_proxy_requests_total{method="ACK"}`, 1) // the ACK goes first
	ua.Send(target, inDialog("BYE", "z9hG4bK-tls-bye", 2))
	var byeOK bool
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		m := ua.Recv(time.Until(deadline))
		if m == nil {
			break
		}
		if m.Code == 200 && strings.Contains(m.Get("CSeq"), "BYE") {
			byeOK = true
			break
		}
	}
	if !byeOK {
		t.Fatal("no 200 OK for BYE over TLS")
	}
	e.Stop()
	recs := e.CDRs()
	if len(recs) != 1 || recs[0].Disposition != cdr.Answered || recs[0].Transport != "TLS" {
		t.Fatalf("CDRs: %+v, want one answered TLS call", recs)
	}
}

// TestScannerFromTrunkIsDroppedNotBanned: a request with a scanner's
// User-Agent from a trunk's address gets no reply, but the trunk is not
// banned (anyone can forge its address over UDP): its next call rings. A
// peer is cut off only by an operator: `sipwarden ban add` bans it while the
// process runs, `sipwarden ban remove` lifts the ban.
func TestScannerFromTrunkIsDroppedNotBanned(t *testing.T) {
	pbx := testbed.FreePort(t)
	testbed.StartUAS(t, "uas_ring.xml", pbx)
	e := testbed.StartEdge(t, baseConfig, pbx, params("udp"))
	ua := testbed.NewRawUA(t, "udp", "127.0.0.2")
	ua.Send(e.SIPAddr(), "OPTIONS sip:100@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP "+ua.LocalAddr()+";branch=z9hG4bK-scan\nFrom: <sip:100@1.1.1.1>;tag=1\nTo: <sip:100@127.0.0.1>\nCall-ID: scan-1\nCSeq: 1 OPTIONS\nUser-Agent: friendly-scanner\nContent-Length: 0\n\n")
	if r := ua.Invite(e.SIPAddr(), "after-scan"); r.Code != 180 {
		t.Fatalf("the trunk's call after a scanner request from its address got %d, want 180", r.Code)
	}
	if v := e.Metric(`sipwarden_scanner_dropped_total`); v != 1 {
		t.Fatalf("scanner drops: %v, want 1 (the scanner request got no reply)", v)
	}
	banCmd := func(args ...string) {
		t.Helper()
		cmd := exec.Command(testbed.Binary, append([]string{"ban"}, append(args, "--config", filepath.Join(e.Dir, "sipwarden.yaml"))...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ban %v: %v\n%s", args, err, out)
		}
	}
	banCmd("add", "127.0.0.2", "--for", "1h", "--reason", "e2e")
	e.WaitLog("ban list reloaded from the store", 1)
	if r := ua.Invite(e.SIPAddr(), "after-ban"); r.Code != 0 {
		t.Fatalf("the trunk banned by the operator got %d", r.Code)
	}
	if v := e.Metric(`sipwarden_transport_dropped_total{reason="blocked",transport="UDP"}`); v < 1 {
		t.Fatalf("blocked drops: %v", v)
	}
	banCmd("remove", "127.0.0.2")
	deadline := time.Now().Add(6 * time.Second)
	for n := 0; ; n++ {
		if r := ua.Invite(e.SIPAddr(), "after-unban-"+strconv.Itoa(n)); r.Code == 180 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the ban was not lifted within 6 s of `sipwarden ban remove`")
		}
	}
}

// TestProbingStrangerIsBanned: an unknown source that keeps sending (more
// than 20 requests at once with the default rule) is banned; from then on
// its packets are dropped before parsing. It never gets a reply.
func TestProbingStrangerIsBanned(t *testing.T) {
	e := testbed.StartEdge(t, baseConfig, testbed.FreePort(t), params("udp"))
	stranger := testbed.NewRawUA(t, "udp", "127.0.0.9")
	probe := func(i int) {
		stranger.Send(e.SIPAddr(), strings.Replace(stranger.InviteText(e.SIPAddr(), "probe-"+strconv.Itoa(i), "z9hG4bK-p"+strconv.Itoa(i), 1), "INVITE", "OPTIONS", 2))
	}
	for i := range 30 {
		probe(i)
	}
	// the first 30 may all have passed the gate in one batch: the next
	// ones go once the ban is in place
	waitMetric(t, e, `sipwarden_banlist_bans_total{reason="unknown_source_probe"}`, 1)
	for i := 30; i < 40; i++ {
		probe(i)
	}
	// Every probe is accounted for: dropped by the chain's source check
	// (which never answers) or at the gate. None was answered.
	blocked := `sipwarden_transport_dropped_total{reason="blocked",transport="UDP"}`
	dropped := `sipwarden_chain_verdicts_total{action="drop",reason="unknown_source",stage="acl"}`
	deadline := time.Now().Add(10 * time.Second)
	for e.Metric(blocked)+e.Metric(dropped) < 40 {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: %v probes dropped by the chain, %v at the gate, want 40 in all", e.Metric(dropped), e.Metric(blocked))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if m := stranger.Recv(time.Millisecond); m != nil {
		t.Fatalf("stranger got an answer:\n%s", m.Raw)
	}
	if v := e.Metric(blocked); v < 10 {
		t.Fatalf("blocked drops after the ban: %v, want >= 10", v)
	}
	if v := e.Metric(`sipwarden_banlist_bans_total{reason="unknown_source_probe"}`); v != 1 {
		t.Fatalf("probe bans: %v, want 1", v)
	}
}

// TestFeedNeverBlocksPeers: a reputation feed that lists a stranger and, by
// mistake, the trunk: the stranger is dropped before parsing, the trunk's
// calls still go through.
func TestFeedNeverBlocksPeers(t *testing.T) {
	feed := filepath.Join(t.TempDir(), "feed.txt")
	if err := os.WriteFile(feed, []byte("127.0.0.9\n127.0.0.2/32\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pbx := testbed.FreePort(t)
	testbed.StartUAS(t, "uas_ring.xml", pbx)
	p := params("udp")
	p["feed"] = feed
	e := testbed.StartEdge(t, baseConfig+"bans: {feeds: [{name: test, file: \"{{index .Extra \"feed\"}}\", refresh: 1m}]}\n", pbx, p)
	e.WaitLog("reputation feed refreshed", 1)
	stranger := testbed.NewRawUA(t, "udp", "127.0.0.9")
	stranger.Send(e.SIPAddr(), stranger.InviteText(e.SIPAddr(), "feed-1", "z9hG4bK-feed1", 1))
	waitMetric(t, e, `sipwarden_transport_dropped_total{reason="blocked",transport="UDP"}`, 1) // dropped at the gate
	if m := stranger.Recv(time.Millisecond); m != nil {
		t.Fatalf("stranger got an answer:\n%s", m.Raw)
	}
	if v := e.Metric(`sipwarden_transport_dropped_total{reason="blocked",transport="UDP"}`); v != 1 {
		t.Fatalf("blocked drops: %v, want 1 (the stranger, before parsing)", v)
	}
	ua := testbed.NewRawUA(t, "udp", "127.0.0.2")
	if r := ua.Invite(e.SIPAddr(), "feed-trunk"); r.Code != 180 {
		t.Fatalf("trunk listed in a feed got %d, want 180: feeds never block peers", r.Code)
	}
}
