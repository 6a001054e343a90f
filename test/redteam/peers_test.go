package redteam

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/icholy/digest"

	"github.com/sipwarden/sipwarden/internal/auth"
	"github.com/sipwarden/sipwarden/test/testbed"
)

// The attacks of this file turn the edge against the peers it protects: a
// configured trunk or upstream banned for an hour on evidence a stranger can
// forge from its address (UDP is spoofed at will) or a customer triggers by
// accident. sipwarden never bans a configured peer automatically; it sheds
// the excess of a peer over budget.
//
// Addresses: the trunk sends from 127.0.0.2, the PBX (the upstream) is at
// 127.0.0.3, a digest customer with a fixed address at 127.0.0.4.

// peersConfig: one IP trunk (acme) whose calls go to the PBX and whose
// numbers the PBX calls; a flood profile of 100 INVITE/s under the trunk's
// own limits.cps of 300.
const peersConfig = `
listen: [udp://127.0.0.1:{{.SIPPort}}]
admin: {listen: "127.0.0.1:{{.AdminPort}}"}
storage: {path: "{{.Dir}}/data"}
log: {level: info}
sip: {drain_timeout: 1s}
flood:
  trunk: {invite: 100/1s}
upstreams:
  - name: pbx
    targets: ["udp://127.0.0.3:{{.PBXPort}}"]
trunks:
  - name: acme
    allow: [127.0.0.2/32]
    upstream: pbx
    numbers: ["+15551230000/4"]
    targets: ["udp://127.0.0.2:{{index .Extra "trunkPort"}}"]
    limits: {cps: 300}
{{index .Extra "more"}}`

// peerBed is an edge between a trunk and a PBX that are raw user agents.
type peerBed struct {
	e          *testbed.Edge
	trunk, pbx *testbed.RawUA
}

func startPeerBed(t *testing.T, more string) *peerBed {
	t.Helper()
	b := &peerBed{trunk: testbed.NewRawUA(t, "udp", "127.0.0.2"), pbx: testbed.NewRawUA(t, "udp", "127.0.0.3")}
	b.e = testbed.StartEdge(t, peersConfig, port(t, b.pbx), map[string]any{"trunkPort": port(t, b.trunk), "more": more})
	return b
}

func port(t *testing.T, ua *testbed.RawUA) int {
	t.Helper()
	_, p, err := net.SplitHostPort(ua.LocalAddr())
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// inviteFrom is an INVITE to +15551230001 with a From display name.
func inviteFrom(ua *testbed.RawUA, target, callID, display string) string {
	return strings.Replace(ua.InviteText(target, callID, "z9hG4bK-"+callID, 1), "From: <sip:", "From: \""+display+"\" <sip:", 1)
}

// expectRequest waits for a request of the call callID at ua (skipping
// anything else, such as answers to an attack); when none comes, the test
// fails (and goes on) and it returns nil. The call is recognised by the
// From tag InviteText gives it ("f-" and the Call-ID): topology hiding
// replaces the Call-ID of the PBX's calls on their way to a trunk.
func expectRequest(t *testing.T, ua *testbed.RawUA, method, callID, why string) *testbed.RawMsg {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		m := ua.Recv(time.Until(deadline))
		if m == nil {
			break
		}
		if m.Method == method && (m.Get("Call-ID") == callID || strings.HasSuffix(m.Get("From"), ";tag=f-"+callID)) {
			return m
		}
	}
	t.Errorf("%s: no %s %s within 3 s", why, method, callID)
	return nil
}

// bans lists the bans in force, as `sipwarden ban list` prints them.
func bans(t *testing.T, e *testbed.Edge) []struct{ Prefix, Reason string } {
	t.Helper()
	out, err := exec.Command(testbed.Binary, "ban", "list", "--config", filepath.Join(e.Dir, "sipwarden.yaml"), "--format", "json").CombinedOutput()
	if err != nil {
		t.Fatalf("ban list: %v\n%s", err, out)
	}
	var list []struct{ Prefix, Reason string }
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatalf("ban list: %v\n%s", err, out)
	}
	return list
}

func expectNoBans(t *testing.T, e *testbed.Edge) {
	t.Helper()
	if list := bans(t, e); len(list) != 0 {
		t.Errorf("bans in force: %+v, want none", list)
	}
}

// TestDisplayNameDoesNotBanTrunk: a trunk relays calls of customers named
// "Anil Tiwari" and "Siwar Ben Salah" ("iwar" is the name of a scanner).
// Display names are no evidence: both calls reach the PBX, nothing is banned.
func TestDisplayNameDoesNotBanTrunk(t *testing.T) {
	b := startPeerBed(t, "")
	for i, name := range []string{"Anil Tiwari", "Siwar Ben Salah"} {
		id := fmt.Sprintf("display-trunk-%d", i)
		b.trunk.Send(b.e.SIPAddr(), inviteFrom(b.trunk, b.e.SIPAddr(), id, name))
		m := expectRequest(t, b.pbx, "INVITE", id, "a call from "+name+" through the trunk")
		if m != nil && !strings.Contains(m.Get("From"), name) {
			t.Errorf("From at the PBX: %q", m.Get("From"))
		}
	}
	expectNoBans(t, b.e)
}

// TestDisplayNameDoesNotBanUpstream: the PBX forwards a call from "Siwar
// Ben Salah" to a trunk's number; it reaches the trunk, and the PBX (whose
// ban would cut off every call of every trunk) is not banned.
func TestDisplayNameDoesNotBanUpstream(t *testing.T) {
	b := startPeerBed(t, "")
	for i, name := range []string{"Siwar Ben Salah", "Anil Tiwari"} {
		id := fmt.Sprintf("display-pbx-%d", i)
		b.pbx.Send(b.e.SIPAddr(), inviteFrom(b.pbx, b.e.SIPAddr(), id, name))
		expectRequest(t, b.trunk, "INVITE", id, "a call from "+name+" forwarded by the PBX")
	}
	expectNoBans(t, b.e)
}

// TestTrunkWithinItsCPSIsNotBannedByFloodProfile: a trunk with limits.cps
// 300 sends 300 calls/s for 10 s, three times the flood profile's 100
// INVITE/s. Its own limits set the floor of its flood budget: at least
// 99.9 % of the calls complete through SIPp, nothing is shed or banned, and
// the trunk's calls go on afterwards.
func TestTrunkWithinItsCPSIsNotBannedByFloodProfile(t *testing.T) {
	const rate, calls = 300, 3000
	pbx := testbed.FreePort(t)
	testbed.StartUAS(t, "uas.xml", pbx)
	e := testbed.StartEdge(t, peersConfig, pbx, map[string]any{"trunkPort": 5070, "more": ""})
	res := testbed.RunSipp(t, 60*time.Second, testbed.UACArgs("uac.xml", e.SIPAddr(), calls, rate)...)
	if min := calls * 999 / 1000; res.Successful < min {
		t.Errorf("calls at 3x the flood profile within limits.cps: %s, want >= %d successful", testbed.FmtCalls(res), min)
	}
	t.Logf("%d calls at %d/s: %s", calls, rate, testbed.FmtCalls(res))
	expectNoBans(t, e)
	if v := e.Metric(`sipwarden_flood_shed_total{class="invite",trunk="acme"}`); v > 0 {
		t.Errorf("%v INVITEs shed within the trunk's limits.cps", v)
	}
	ua := testbed.NewRawUA(t, "udp", "127.0.0.2")
	if r := ua.Invite(e.SIPAddr(), "after-load"); r.Code != 180 {
		t.Errorf("the trunk's call after the load got %d, want 180", r.Code)
	}
}

// TestTrunkOverItsBudgetIsShedNotBanned: a trunk (a customer's PBX gone
// wild, or a stranger spoofing its address) sends 1,000 INVITEs at once,
// beyond its budget of 300 at once. The excess is answered 503 with
// Retry-After, counted and raised as a peer_over_budget alert (a webhook
// with the default kinds gets it); the trunk is not banned and its next
// call goes through.
func TestTrunkOverItsBudgetIsShedNotBanned(t *testing.T) {
	// the alert: a webhook with the default kinds
	alerts := make(chan string, 16)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Events []struct{ Kind, Trunk, Reason string }
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		for _, e := range body.Events {
			select {
			case alerts <- e.Kind + " " + e.Trunk + " " + e.Reason:
			default:
			}
		}
	}))
	defer hook.Close()
	b := startPeerBed(t, "notify: {webhooks: [{url: \""+hook.URL+"/alerts\"}]}\n")
	for i := range 1000 {
		id := "burst-" + strconv.Itoa(i)
		b.trunk.Send(b.e.SIPAddr(), b.trunk.InviteText(b.e.SIPAddr(), id, "z9hG4bK-"+id, 1))
	}
	var shed *testbed.RawMsg
	for deadline := time.Now().Add(5 * time.Second); shed == nil && time.Now().Before(deadline); {
		if m := b.trunk.Recv(time.Until(deadline)); m != nil && m.Code == 503 {
			shed = m
		}
	}
	if shed == nil || shed.RetryAfter == "" {
		t.Fatalf("no 503 with Retry-After for the INVITEs over budget: %v", shed)
	}
	select {
	case a := <-alerts:
		if a != "peer_over_budget acme flood_shed_invite" {
			t.Errorf("alert %q, want peer_over_budget acme flood_shed_invite", a)
		}
	case <-time.After(5 * time.Second):
		t.Error("no peer_over_budget alert at the webhook within 5 s")
	}
	if v := b.e.Metric(`sipwarden_flood_shed_total{class="invite",trunk="acme"}`); v < 1 {
		t.Errorf("shed INVITEs: %v", v)
	}
	// the budget refills: a call a little later goes through
	ok := false
	for n := 0; !ok && n < 20; n++ {
		id := "after-burst-" + strconv.Itoa(n)
		b.trunk.Send(b.e.SIPAddr(), b.trunk.InviteText(b.e.SIPAddr(), id, "z9hG4bK-"+id, 1))
		for deadline := time.Now().Add(200 * time.Millisecond); time.Now().Before(deadline); {
			m := b.pbx.Recv(time.Until(deadline))
			if m == nil {
				break
			}
			if m.Method == "INVITE" && m.Get("Call-ID") == id {
				ok = true
				break
			}
		}
	}
	if !ok {
		t.Error("the trunk's calls did not go on after the burst")
	}
	expectNoBans(t, b.e)
}

// malformed is an OPTIONS that does not parse (a header line without a colon).
func malformed(ua *testbed.RawUA, i int) string {
	return fmt.Sprintf("OPTIONS sip:100@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-m%d\nFrom: <sip:a@127.0.0.9>;tag=%d\nTo: <sip:100@127.0.0.1>\nCall-ID: malformed-%d\nCSeq: 1 OPTIONS\nthis line is no header\nContent-Length: 0\n\n",
		ua.LocalAddr(), i, i, i)
}

// TestSpoofedMalformedFromPeerDoesNotBanIt: 300 malformed datagrams from
// the trunk's address and 300 from the PBX's address and port (a spoofer
// needs neither's cooperation) go over both malformed budgets (20/10s and
// 100/10s). The excess is shed; neither peer is banned; a call from the
// trunk then reaches the PBX and a call from the PBX reaches the trunk.
func TestSpoofedMalformedFromPeerDoesNotBanIt(t *testing.T) {
	b := startPeerBed(t, "")
	for i := range 300 {
		b.trunk.Send(b.e.SIPAddr(), malformed(b.trunk, i))
		b.pbx.Send(b.e.SIPAddr(), malformed(b.pbx, 1000+i))
	}
	// both went over budget
	deadline := time.Now().Add(5 * time.Second)
	for b.e.Metric(`sipwarden_flood_exceeded_total{class="malformed",scope="address"}`) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the malformed datagrams did not go over the budgets within 5 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.trunk.Send(b.e.SIPAddr(), b.trunk.InviteText(b.e.SIPAddr(), "after-malformed-trunk", "z9hG4bK-amt", 1))
	expectRequest(t, b.pbx, "INVITE", "after-malformed-trunk", "the trunk's call after malformed datagrams from its address")
	b.pbx.Send(b.e.SIPAddr(), b.pbx.InviteText(b.e.SIPAddr(), "after-malformed-pbx", "z9hG4bK-amp", 1))
	expectRequest(t, b.trunk, "INVITE", "after-malformed-pbx", "the PBX's call after malformed datagrams from its address")
	expectNoBans(t, b.e)
	for _, peer := range []string{"acme", "pbx"} {
		if v := b.e.Metric(`sipwarden_flood_shed_total{class="malformed",trunk="` + peer + `"}`); v < 1 {
			t.Errorf("%s: %v malformed requests shed, want the excess counted", peer, v)
		}
	}
}

// TestSpoofedScannerFromPeerDoesNotBanIt: an OPTIONS with a scanner's
// User-Agent from the trunk's address and one from the PBX's address and
// port (forged by a stranger, or relayed from a scanner by the PBX). Each
// is dropped without a reply, neither peer is banned, and their calls go
// on both ways.
func TestSpoofedScannerFromPeerDoesNotBanIt(t *testing.T) {
	b := startPeerBed(t, "")
	for _, ua := range []*testbed.RawUA{b.trunk, b.pbx} {
		ua.Send(b.e.SIPAddr(), "OPTIONS sip:100@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP "+ua.LocalAddr()+";branch=z9hG4bK-scan\n"+
			"From: <sip:100@1.1.1.1>;tag=1\nTo: <sip:100@127.0.0.1>\nCall-ID: scan-"+ua.LocalAddr()+"\nCSeq: 1 OPTIONS\n"+
			"User-Agent: friendly-scanner\nContent-Length: 0\n\n")
	}
	deadline := time.Now().Add(5 * time.Second)
	for b.e.Metric(`sipwarden_scanner_dropped_total`) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the scanner requests were not seen within 5 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.trunk.Send(b.e.SIPAddr(), b.trunk.InviteText(b.e.SIPAddr(), "after-scan-trunk", "z9hG4bK-ast", 1))
	expectRequest(t, b.pbx, "INVITE", "after-scan-trunk", "the trunk's call after a scanner request from its address")
	b.pbx.Send(b.e.SIPAddr(), b.pbx.InviteText(b.e.SIPAddr(), "after-scan-pbx", "z9hG4bK-asp", 1))
	expectRequest(t, b.trunk, "INVITE", "after-scan-pbx", "the PBX's call after a scanner request from its address")
	expectNoBans(t, b.e)
}

// digestPeers adds a digest trunk found by its domain (phones anywhere) and
// a digest customer with a fixed address.
const digestPeers = `
  - name: phones
    auth: digest
    realm: phones.example.test
    algorithms: [SHA-256]
    upstream: pbx
    accounts:
      - {username: "1001", ha1: {%s: %s}}
  - name: cust
    auth: digest
    allow: [127.0.0.4/32]
    realm: cust.example.test
    algorithms: [SHA-256]
    upstream: pbx
    accounts:
      - {username: "2001", ha1: {%s: %s}}
`

// guess sends one REGISTER for user@realm with a wrong password, the way a
// guesser does: a REGISTER, the challenge, an answer to it. It returns
// sipwarden's answer to the guess (nil: silence).
func guess(t *testing.T, ua *testbed.RawUA, target, realm, user string, n int) *testbed.RawMsg {
	t.Helper()
	reg := func(authz string, k int) string {
		return fmt.Sprintf("REGISTER sip:%s SIP/2.0\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-g%d-%d\nMax-Forwards: 70\n"+
			"From: <sip:%s@%s>;tag=g%d\nTo: <sip:%s@%s>\nCall-ID: guess-%d@x\nCSeq: %d REGISTER\n%sContent-Length: 0\n\n",
			realm, ua.LocalAddr(), n, k, user, realm, n, user, realm, n, k, authz)
	}
	ua.Send(target, reg("", 1))
	ch := ua.Recv(2 * time.Second)
	if ch == nil || ch.Code != 401 {
		t.Fatalf("guess %d from %s: no challenge (%v): the address is banned", n, ua.LocalAddr(), ch)
	}
	c, err := digest.ParseChallenge(ch.Get("WWW-Authenticate"))
	if err != nil {
		t.Fatal(err)
	}
	cred, err := digest.Digest(c, digest.Options{Method: "REGISTER", URI: "sip:" + realm, Username: user, Password: "Wrong-guess-" + strconv.Itoa(n), Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	ua.Send(target, reg("Authorization: "+cred.String()+"\n", 2))
	return ua.Recv(2 * time.Second)
}

// TestSpoofedWrongDigestsFromPeerDoNotBanIt: wrong passwords sent from a
// digest customer's fixed address go past the brute-force threshold (5
// failures of one account from one source). Anyone can send them with a
// spoofed source, so the customer is not banned: it is still challenged,
// and the PBX's calls still reach the other trunk. (The PBX's address never
// reaches the auth stage: from any port it is the upstream.)
func TestSpoofedWrongDigestsFromPeerDoNotBanIt(t *testing.T) {
	pass := "gR8%xk2Lq!vT9#mZ"
	more := fmt.Sprintf(digestPeers, auth.SHA256.Key(), auth.HA1(auth.SHA256, "1001", "phones.example.test", pass),
		auth.SHA256.Key(), auth.HA1(auth.SHA256, "2001", "cust.example.test", pass))
	b := startPeerBed(t, more)
	cust := testbed.NewRawUA(t, "udp", "127.0.0.4")
	for n := 1; n <= 8; n++ {
		if r := guess(t, cust, b.e.SIPAddr(), "cust.example.test", "2001", n); r == nil || r.Code != 401 {
			t.Fatalf("wrong password %d from the customer's address: %v, want 401 (the address is not banned)", n, r)
		}
	}
	// the guesses from the PBX's address are the upstream's: never challenged
	spoofedPBX := testbed.NewRawUA(t, "udp", "127.0.0.3")
	spoofedPBX.Send(b.e.SIPAddr(), "REGISTER sip:phones.example.test SIP/2.0\nVia: SIP/2.0/UDP "+spoofedPBX.LocalAddr()+
		";branch=z9hG4bK-sp\nMax-Forwards: 70\nFrom: <sip:1001@phones.example.test>;tag=sp\nTo: <sip:1001@phones.example.test>\n"+
		"Call-ID: spoofed-pbx@x\nCSeq: 1 REGISTER\nContent-Length: 0\n\n")
	if r := spoofedPBX.Recv(2 * time.Second); r == nil || r.Code == 401 {
		t.Fatalf("a REGISTER from the PBX's address on another port: %v, want the upstream's answer (no challenge)", r)
	}
	b.pbx.Send(b.e.SIPAddr(), b.pbx.InviteText(b.e.SIPAddr(), "after-guesses-pbx", "z9hG4bK-agp", 1))
	expectRequest(t, b.trunk, "INVITE", "after-guesses-pbx", "the PBX's call after wrong passwords")
	expectNoBans(t, b.e)
	if v := b.e.Metric(`sipwarden_bruteforce_bans_total{reason="auth_bruteforce"}`); v > 0 {
		t.Errorf("%v brute-force bans", v)
	}
}
