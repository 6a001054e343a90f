package e2e

import (
	"github.com/sipwarden/sipwarden/test/testbed"

	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/cdr"
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
    # Only the per-call hard cap acts: the test's domestic range costs 60.00 a
    # minute (to reach the cap in a second), which the built-in score rules
    # would rightly block as costly domestic at its first attempt.
    fraud:
      max_call_cost: 0.5
      rules: [{name: calls_1m, metric: calls, window: 1m, limit: 100, action: alert}]
`

// TestFraudThroughSipp: through the real binary, with SIPp on both sides.
// (a) A call abroad from a trunk without international dialling is refused
// with 403 and a Warning (the SIPp caller checks both and ACKs), and its CDR
// names the stage and the reason. (b) A domestic call to a costly range is
// answered by the SIPp PBX and ended mid-call by the trunk's per-call cap:
// sipwarden sends BYE to both SIPp sides with Reason fraud_hangup:... (each
// scenario checks it and answers 200), and the CDR says why, with a talk
// time bounded by the cap and the engine's tick.
func TestFraudThroughSipp(t *testing.T) {
	dir := t.TempDir()
	deck := filepath.Join(dir, "deck.csv")
	if err := os.WriteFile(deck, []byte("# currency: USD\nprefix,description,rate,connect_fee,initial_increment,subsequent_increment,effective_from,effective_to,risk\n1212,New York,60.00,0,1,1,,,\n44,United Kingdom,0.01,0,1,1,,,\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pbxPort := testbed.FreePort(t)
	e := testbed.StartEdge(t, fraudConfig, pbxPort, map[string]any{"deck": deck})
	pbx := testbed.StartUAS(t, "uas_hungup.xml", pbxPort, "-m", "1") // one call, then it exits

	// (a) abroad: 403, and nothing reaches the PBX (it would answer).
	res := testbed.RunSipp(t, 30*time.Second, withService(testbed.UACArgs("uac_refused.xml", e.SIPAddr(), 1, 1), "+442079460000")...)
	if res.Successful != 1 || res.Failed != 0 {
		t.Fatalf("the call abroad: %s, want it refused with 403 and a Warning\n%s", testbed.FmtCalls(res), res.Screen)
	}

	// (b) a costly domestic call: 0.50 at 60.00 a minute is half a second of talk.
	start := time.Now()
	res = testbed.RunSipp(t, 60*time.Second, withService(testbed.UACArgs("uac_hungup.xml", e.SIPAddr(), 1, 1), "+12124567890")...)
	if res.Successful != 1 || res.Failed != 0 {
		t.Fatalf("the costly call: %s, want it answered and ended by sipwarden's BYE\n%s", testbed.FmtCalls(res), res.Screen)
	}
	t.Logf("the costly call ran %v from INVITE to the end of the caller's scenario", time.Since(start).Round(100*time.Millisecond))
	select {
	case <-pbx.Done:
		if code := pbx.Cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("the PBX's SIPp exited with %d: its call did not end with sipwarden's BYE\n%s", code, pbx.Out.String())
		}
	case <-time.After(15 * time.Second):
		t.Errorf("the PBX's SIPp did not finish its call within 15 s of the caller's:\n%s", pbx.Out.String())
	}

	e.Stop()
	recs := e.CDRs()
	if len(recs) != 2 {
		t.Fatalf("%d CDRs, want 2: %+v", len(recs), recs)
	}
	var abroad, costly = recs[0], recs[1]
	if abroad.Start.After(costly.Start) {
		abroad, costly = costly, abroad
	}
	if abroad.Disposition != cdr.Blocked || abroad.FinalCode != 403 || abroad.Stage != "fraud" || abroad.Reason != "international_disabled" {
		t.Errorf("CDR of the call abroad: %s %d %s/%s, want blocked 403 fraud/international_disabled",
			abroad.Disposition, abroad.FinalCode, abroad.Stage, abroad.Reason)
	}
	// The cap is reached after 0.5 s of talk; the engine looks every 5 s.
	if costly.Answer.IsZero() || costly.Stage != "fraud" || costly.Reason != "fraud_hangup:max_call_cost" ||
		costly.Duration < 500*time.Millisecond || costly.Duration > 12*time.Second {
		t.Errorf("CDR of the costly call: answered %v, %s/%s after %v; want fraud/fraud_hangup:max_call_cost within 0.5-12 s",
			!costly.Answer.IsZero(), costly.Stage, costly.Reason, costly.Duration)
	}
	t.Logf("the costly call was ended after %v of talk", costly.Duration.Round(10*time.Millisecond))
}

// withService makes a SIPp caller of uacArgs dial number.
func withService(args []string, number string) []string {
	for i := range args {
		if args[i] == "-s" && i+1 < len(args) {
			args[i+1] = number
		}
	}
	return args
}

// irsfConfig: one rule, the ClearIP-style score (the $/min of the ranges
// dialled) over 5 minutes, blocks the trunk above 20 and ends its calls;
// the webhook only when the test gives one (Extra "hook").
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
{{with index .Extra "hook"}}notify:
  webhooks: [{url: "{{.}}", kinds: [fraud_incident]}]
{{end}}upstreams:
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
// calls, the calls already up are ended (SIPp checks the BYE's Reason), every later attempt is refused with
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
	pbxPort := testbed.FreePort(t)
	e := testbed.StartEdge(t, irsfConfig, pbxPort, map[string]any{"deck": deck, "hook": hook.URL})
	testbed.StartUAS(t, "uas.xml", pbxPort)
	const calls = 20
	// Each SIPp call stays up until sipwarden ends it (BYE with Reason
	// fraud_hangup:irsf) or is refused with 403; anything else fails it.
	res := testbed.RunSipp(t, 90*time.Second, withService(testbed.UACArgs("uac_hungup.xml", e.SIPAddr(), calls, 10), "+442079460000")...)
	if res.Successful != calls || res.Failed != 0 {
		t.Errorf("burst: %s, want every call ended by the rule or refused\n%s", testbed.FmtCalls(res), res.Screen)
	}

	e.Stop()
	var answered, hungUp, blocked int
	for _, r := range e.CDRs() {
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

// releaseConfig: the IRSF score rule of irsfConfig, without the webhook.

// TestIncidentReleaseThroughSipp: an IRSF burst from SIPp opens an incident
// (every SIPp call either answered and ended by sipwarden, or refused with
// 403); the incident is listed by GET /api/v1/incidents and keeps refusing
// calls; `sipwarden incidents release` ends it through the admin API with the
// token sipwarden created, the release is an event naming the operator, and
// the next call to the same range goes through.
func TestIncidentReleaseThroughSipp(t *testing.T) {
	dir := t.TempDir()
	deck := filepath.Join(dir, "deck.csv")
	if err := os.WriteFile(deck, []byte("# currency: USD\nprefix,description,rate\n4420794,London premium (fiction range),5.00\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pbxPort := testbed.FreePort(t)
	e := testbed.StartEdge(t, irsfConfig, pbxPort, map[string]any{"deck": deck})
	testbed.StartUAS(t, "uas.xml", pbxPort)
	const costly = "+442079460000"

	// The burst: 20 long calls at 10 a second; the 5th passes the score limit.
	const calls = 20
	res := testbed.RunSipp(t, 90*time.Second, withService(testbed.UACArgs("uac_hungup.xml", e.SIPAddr(), calls, 10), costly)...)
	if res.Successful != calls || res.Failed != 0 {
		t.Fatalf("burst: %s, want every call answered and ended by the rule, or refused\n%s", testbed.FmtCalls(res), res.Screen)
	}

	var list struct {
		Incidents []struct {
			ID, Trunk, Rule, Action, Opened, Expires string
			Breaches, Escalation                     int
			Peak                                     float64
		}
	}
	// reads need a token too (the full one reads)
	listReq, err := http.NewRequest(http.MethodGet, "http://"+e.Admin+"/api/v1/incidents", nil)
	if err != nil {
		t.Fatal(err)
	}
	listReq.Header.Set("Authorization", "Bearer "+e.AdminToken())
	resp, err := http.DefaultClient.Do(listReq)
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /api/v1/incidents: %d %v", resp.StatusCode, err)
	}
	if len(list.Incidents) != 1 {
		t.Fatalf("incidents %+v, want the one the burst opened", list.Incidents)
	}
	in := list.Incidents[0]
	opened, _ := time.Parse(time.RFC3339, in.Opened)
	expires, _ := time.Parse(time.RFC3339, in.Expires)
	if in.ID != "acme:irsf" || in.Trunk != "acme" || in.Rule != "irsf" || in.Action != "block" || in.Breaches < calls-6 ||
		in.Peak < 20 || in.Escalation != 0 || !expires.After(opened) {
		t.Fatalf("incident %+v, want acme:irsf blocking, with a breach per refused attempt", in)
	}

	// Still open: a call to the range is refused.
	if res := testbed.RunSipp(t, 30*time.Second, withService(testbed.UACArgs("uac_refused.xml", e.SIPAddr(), 1, 1), costly)...); res.Successful != 1 {
		t.Fatalf("a call during the incident: %s, want 403\n%s", testbed.FmtCalls(res), res.Screen)
	}

	// A release needs the token: without it the API refuses.
	resp, err = http.Post("http://"+e.Admin+"/api/v1/incidents/acme:irsf/release", "application/json", strings.NewReader(`{"by":"mallory"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("release without the token: %d, want 401", resp.StatusCode)
	}
	cfg := filepath.Join(e.Dir, "sipwarden.yaml")
	out, err := exec.Command(testbed.Binary, "incidents", "release", "acme:irsf", "--config", cfg, "--by", "e2e-operator").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "released acme:irsf (block, opened") {
		t.Fatalf("sipwarden incidents release: %v\n%s", err, out)
	}
	e.WaitLog("released by e2e-operator via admin API from 127.0.0.1", 1)
	out, err = exec.Command(testbed.Binary, "incidents", "list", "--config", cfg).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "(0 incidents)") {
		t.Fatalf("sipwarden incidents list after the release: %v\n%s", err, out)
	}

	// The next call to the same range goes through, answered and ended by the caller.
	if res := testbed.RunSipp(t, 30*time.Second, withService(testbed.UACArgs("uac.xml", e.SIPAddr(), 1, 1), costly)...); res.Successful != 1 || res.Failed != 0 {
		t.Fatalf("a call after the release: %s, want it through\n%s", testbed.FmtCalls(res), res.Screen)
	}

	e.Stop()
	recs := e.CDRs()
	slices.SortFunc(recs, func(a, b cdr.Record) int { return a.Start.Compare(b.Start) })
	var answered, hungUp, blocked int
	for _, r := range recs[:len(recs)-1] {
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
	if answered == 0 || hungUp != answered || blocked != calls-answered+1 {
		t.Errorf("before the release: %d answered, %d ended by the rule, %d refused; want every answered call ended, the rest of %d refused",
			answered, hungUp, blocked, calls+1)
	}
	if last := recs[len(recs)-1]; last.Answer.IsZero() || last.Disposition != cdr.Answered || last.Stage != "" {
		t.Errorf("the call after the release: %s %s/%s answered=%v, want answered normally",
			last.Disposition, last.Stage, last.Reason, !last.Answer.IsZero())
	}
}
