package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fraudConfig: acme (127.0.0.2) may not call abroad, and a call that has
// cost 0.50 is ended (+1212 costs 60.00 a minute in the deck).
const fraudConfig = `
listen: [udp://127.0.0.1:{{.SIPPort}}]
admin: {listen: "127.0.0.1:{{.AdminPort}}"}
storage: {path: "{{.Dir}}/data"}
log: {level: info}
sip: {drain_timeout: 1s}
fraud:
  enabled: true
  rate_deck: "{{index .Extra "deck"}}"
  default: {country: US, international: false}
upstreams:
  - name: pbx
    targets: ["udp://127.0.0.3:{{.PBXPort}}"]
trunks:
  - name: acme
    allow: [127.0.0.2/32]
    upstream: pbx
    fraud: {max_call_cost: 0.5}
`

// TestFraudThroughTheBinary: a call abroad from a trunk without
// international dialling is refused with 403 and never reaches the PBX; a
// domestic call is relayed, answered, and ended by sipwarden (BYE both ways)
// once its live cost passes the trunk's per-call cap; both CDRs say why.
func TestFraudThroughTheBinary(t *testing.T) {
	dir := t.TempDir()
	deck := filepath.Join(dir, "deck.csv")
	if err := os.WriteFile(deck, []byte("# currency: USD\nprefix,description,rate,connect_fee,initial_increment,subsequent_increment,effective_from,effective_to,risk\n1212,New York,60.00,0,1,1,,,\n44,United Kingdom,0.01,0,1,1,,,\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pbxPort := freePort(t)
	pbxConn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.3"), Port: pbxPort})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pbxConn.Close() })
	pbx := &rawUA{t: t, network: "udp", ip: "127.0.0.3", udp: pbxConn}
	e := startEdge(t, fraudConfig, pbxPort, map[string]any{"deck": deck})
	caller := newRawUA(t, "udp", "127.0.0.2")

	call := func(callID, number string) {
		caller.send(e.sipAddr(), fmt.Sprintf(`INVITE sip:%[1]s@127.0.0.1 SIP/2.0
Via: %[2]s
From: <sip:+12125550100@127.0.0.2>;tag=f-%[3]s
To: <sip:%[1]s@127.0.0.1>
Call-ID: %[3]s
CSeq: 1 INVITE
Contact: <sip:caller@%[4]s>
Max-Forwards: 70
Content-Length: 0

`, number, caller.via("z9hG4bK-"+callID), callID, caller.localAddr()))
	}

	call("abroad", "+442079460000")
	if m := waitCode(caller, "abroad", 0); m == nil || m.code != 403 || m.get("Warning") == "" || strings.Contains(m.get("Warning"), "2079460000") {
		t.Fatalf("a call abroad: %+v, want 403 with a Warning that does not repeat the number", m)
	}

	call("costly", "+12124567890")
	inv := waitMethod(pbx, "costly", "INVITE")
	if inv == nil {
		t.Fatal("the domestic call did not reach the PBX")
	}
	pbx.send(e.sipAddr(), strings.Replace(responseTo(inv, 200, "OK"), "Content-Length: 0\n\n",
		fmt.Sprintf("Contact: <sip:pbx@127.0.0.3:%d>\nContent-Length: 0\n\n", pbxPort), 1))
	ok := waitCode(caller, "costly", 200)
	if ok == nil {
		t.Fatal("the caller got no 200")
	}
	var routes []string
	for _, rr := range ok.headers["record-route"] {
		routes = append([]string{rr}, routes...)
	}
	caller.send(e.sipAddr(), fmt.Sprintf("ACK sip:pbx@127.0.0.3:%d SIP/2.0\nVia: %s\nRoute: %s\nFrom: <sip:+12125550100@127.0.0.2>;tag=f-costly\nTo: %s\nCall-ID: costly\nCSeq: 1 ACK\nMax-Forwards: 70\nContent-Length: 0\n\n",
		pbxPort, caller.via("z9hG4bK-costly-ack"), strings.Join(routes, ", "), ok.get("To")))

	// 0.50 at 60.00 a minute is half a second of talk; the engine costs calls
	// in progress every few seconds.
	start := time.Now()
	for _, side := range []struct {
		name string
		ua   *rawUA
	}{{"PBX", pbx}, {"caller", caller}} {
		var bye *rawMsg
		deadline := time.Now().Add(15 * time.Second)
		for bye == nil && time.Now().Before(deadline) {
			if m := side.ua.recv(time.Until(deadline)); m != nil && m.method == "BYE" {
				bye = m
			}
		}
		if bye == nil {
			t.Fatalf("the %s got no BYE within 15 s", side.name)
		}
		if !strings.Contains(bye.get("Reason"), "fraud_hangup:max_call_cost") {
			t.Errorf("BYE to the %s: Reason %q", side.name, bye.get("Reason"))
		}
		side.ua.send(e.sipAddr(), responseTo(bye, 200, "OK"))
	}
	t.Logf("the call was ended %v after its answer", time.Since(start).Round(100*time.Millisecond))

	e.stop()
	got := map[string]string{}
	for _, r := range e.cdrs() {
		got[r.CallID] = r.Stage + "/" + r.Reason
	}
	if !strings.HasPrefix(got["abroad"], "fraud/") {
		t.Errorf("CDR of the call abroad: %q", got["abroad"])
	}
	if got["costly"] != "fraud/fraud_hangup:max_call_cost" {
		t.Errorf("CDR of the costly call: %q", got["costly"])
	}
}

// irsfConfig: one rule, the ClearIP-style score (the $/min of the ranges
// dialled) over 5 minutes, blocks the trunk above 20 and ends its calls.
const irsfConfig = `
listen: [udp://127.0.0.1:{{.SIPPort}}]
admin: {listen: "127.0.0.1:{{.AdminPort}}"}
storage: {path: "{{.Dir}}/data"}
log: {level: info}
sip: {drain_timeout: 1s}
fraud:
  enabled: true
  rate_deck: "{{index .Extra "deck"}}"
  default: {country: US, international: false}
notify:
  webhooks: [{url: "{{index .Extra "hook"}}", kinds: [fraud_incident]}]
upstreams:
  - name: pbx
    targets: ["udp://127.0.0.3:{{.PBXPort}}"]
trunks:
  - name: acme
    allow: [127.0.0.2/32]
    upstream: pbx
    fraud:
      international: true
      rules: [{name: irsf, metric: score, window: 5m, limit: 20, action: block, end_calls: true}]
`

// TestIRSFBurstThroughSipp: SIPp places a burst of long international calls
// to a costly range (5.00 a minute); the score rule blocks the trunk after a handful of
// calls, the calls already up are ended, every later attempt is refused with
// a CDR naming the rule, and the webhook hears of one incident, not of every call.
func TestIRSFBurstThroughSipp(t *testing.T) {
	dir := t.TempDir()
	deck := filepath.Join(dir, "deck.csv")
	if err := os.WriteFile(deck, []byte("# currency: USD\nprefix,description,rate\n4420794,London premium (fiction range),5.00\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var incidents []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Events []struct{ Kind, Reason, Trunk string }
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		for _, e := range body.Events {
			incidents = append(incidents, e.Kind+"/"+e.Reason+"/"+e.Trunk)
		}
		mu.Unlock()
	}))
	defer hook.Close()
	pbxPort := freePort(t)
	e := startEdge(t, irsfConfig, pbxPort, map[string]any{"deck": deck, "hook": hook.URL})
	startUAS(t, "uas.xml", pbxPort)
	const calls = 20
	args := uacArgs("uac.xml", e.sipAddr(), calls, 10, "-d", "30000")
	for i := range args {
		if args[i] == "+15551230001" { // the service: a number in the costly range
			args[i] = "+442079460000"
		}
	}
	runSipp(t, 90*time.Second, args...) // SIPp sees 403s and BYEs: its own counts say little here

	e.stop()
	var answered, hungUp, blocked int
	for _, r := range e.cdrs() {
		switch {
		case r.Reason == "fraud_hangup:irsf":
			hungUp++
		case r.Stage == "fraud" && r.Reason == "fraud_block:irsf":
			blocked++
		}
		if !r.Answer.IsZero() {
			answered++
		}
	}
	t.Logf("%d calls answered, %d ended by the rule, %d attempts refused", answered, hungUp, blocked)
	if answered == 0 || answered > 6 || hungUp != answered || blocked < calls-6 {
		t.Errorf("burst of %d: %d answered, %d ended by the rule, %d refused; want a handful answered and all of them ended, the rest refused",
			calls, answered, hungUp, blocked)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(incidents) != 1 || incidents[0] != "fraud_incident/irsf/acme" {
		t.Errorf("webhook events: %v, want one fraud_incident for irsf on acme", incidents)
	}
}
