package redteam

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/test/testbed"
)

// dialogsConfig: the trunk acme (127.0.0.2) may hold 2 calls at once, may
// not call premium numbers (the fraud default policy: US, domestic only),
// and pays 6.00 a minute to +1201555 (the callers here dial +12015550123); mallory (127.0.0.4) is another
// customer. Extra: deck, transfers ("" for the default), media ports (""
// for no media relay).
const dialogsConfig = `
listen: [udp://127.0.0.1:{{.SIPPort}}]
admin: {listen: "127.0.0.1:{{.AdminPort}}"}
storage: {path: "{{.Dir}}/data"}
log: {level: info}
sip: {drain_timeout: 1s}
{{with index .Extra "ports"}}media: {enabled: true, address: 127.0.0.1, ports: "{{.}}"}
{{end}}fraud:
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
    limits: {concurrent: 2}
{{with index .Extra "transfers"}}    transfers: {{.}}
{{end}}    fraud:
      rules: [{name: calls_1m, metric: calls, window: 1m, limit: 100, action: alert}]
  - name: mallory
    allow: [127.0.0.4/32]
    upstream: pbx
`

// startDialogsEdge starts a SIPp PBX (scenario, its messages logged to a
// file) and sipwarden in front of it.
func startDialogsEdge(t *testing.T, scenario string, extra map[string]any) (*testbed.Edge, *pbxLog) {
	t.Helper()
	dir := t.TempDir()
	deck := filepath.Join(dir, "deck.csv")
	if err := os.WriteFile(deck, []byte("# currency: USD\nprefix,description,rate\n1201555,test range,6.00\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := map[string]any{"deck": deck, "transfers": "", "ports": ""}
	for k, v := range extra {
		p[k] = v
	}
	pbxPort := testbed.FreePort(t)
	log := &pbxLog{t: t, path: filepath.Join(dir, "pbx-messages.log")}
	testbed.StartUAS(t, scenario, pbxPort, "-trace_msg", "-message_file", log.path)
	return testbed.StartEdge(t, dialogsConfig, pbxPort, p), log
}

// pbxLog reads the SIPp PBX's message log.
type pbxLog struct {
	t    *testing.T
	path string
}

// entries returns the messages the PBX sent (sent) or received.
func (l *pbxLog) entries(sent bool) []*testbed.RawMsg {
	b, _ := os.ReadFile(l.path)
	var out []*testbed.RawMsg
	for _, block := range strings.Split(string(b), "----------------------------------------------- ") {
		head, msg, ok := strings.Cut(block, "\n\n")
		if !ok || strings.Contains(head, "message sent") != sent {
			continue
		}
		msg = strings.ReplaceAll(strings.TrimLeft(msg, "\r\n"), "\r\n", "\n")
		out = append(out, testbed.ParseRaw([]byte(strings.ReplaceAll(msg, "\n", "\r\n"))))
	}
	return out
}

// answered counts the call legs the PBX answered: distinct (Call-ID, To
// tag) of the 200s it sent to an INVITE (retransmissions counted once).
func (l *pbxLog) answered() int {
	legs := map[string]bool{}
	for _, m := range l.entries(true) {
		if m.Code == 200 && strings.HasSuffix(m.Get("CSeq"), "INVITE") {
			legs[m.Get("Call-ID")+" "+m.Get("To")] = true
		}
	}
	return len(legs)
}

// received counts the requests of method the PBX received.
func (l *pbxLog) received(method string) int {
	n := 0
	for _, m := range l.entries(false) {
		if m.Method == method {
			n++
		}
	}
	return n
}

// waitFor polls cond (the PBX's log is written as it goes) for up to 5s.
func (l *pbxLog) waitFor(what string, cond func() bool) {
	l.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(l.path)
			l.t.Fatalf("the PBX's log never showed %s:\n%s", what, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// leg is one call of a raw UA through the edge, as the caller sees it.
type leg struct {
	ua      *testbed.RawUA
	edge    string
	callID  string
	fromTag string
	cseq    int
	to      string // the To of the final response (with the callee's tag)
	route   string // the Record-Route of the 2xx
	contact string // the callee's Contact URI
}

// invite sends an INVITE of l (a new branch each time) and waits for its
// final response, which it acknowledges; it returns the final status.
func (l *leg) invite(t *testing.T) *testbed.RawMsg {
	t.Helper()
	l.cseq++
	branch := fmt.Sprintf("z9hG4bK-%s-%s-%d", l.callID, l.fromTag, l.cseq)
	msg := l.ua.InviteText(l.edge, l.callID, branch, l.cseq)
	msg = strings.Replace(msg, "tag=f-"+l.callID, "tag="+l.fromTag, 1)
	msg = strings.Replace(msg, "INVITE sip:+15551230001@", "INVITE sip:+12015550123@", 1) // a valid domestic number
	l.ua.Send(l.edge, msg)
	final := l.await(t, "INVITE")
	if final.Code == 0 {
		return final
	}
	if final.Code < 300 {
		l.to, l.route = final.Get("To"), final.Get("Record-Route")
		l.contact = strings.Trim(strings.SplitN(final.Get("Contact"), ";", 2)[0], "<>")
		l.inDialog(t, "ACK", l.cseq, "", false)
		return final
	}
	// a non-2xx is acknowledged hop by hop, in its transaction
	l.ua.Send(l.edge, fmt.Sprintf("ACK sip:+12015550123@%s SIP/2.0\nVia: %s\nFrom: <sip:+15550001000@127.0.0.2>;tag=%s\nTo: %s\nCall-ID: %s\nCSeq: %d ACK\nMax-Forwards: 70\nContent-Length: 0\n\n",
		l.edge, l.ua.Via(branch), l.fromTag, final.Get("To"), l.callID, l.cseq))
	return final
}

// await returns the first final response to method for the leg's Call-ID
// (code 0 after 5s).
func (l *leg) await(t *testing.T, method string) *testbed.RawMsg {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		m := l.ua.Recv(time.Until(deadline))
		if m == nil {
			break
		}
		if m.Code >= 200 && m.Get("Call-ID") == l.callID && strings.HasSuffix(m.Get("CSeq"), " "+method) {
			return m
		}
	}
	return &testbed.RawMsg{}
}

// inDialog sends a request of the leg's dialog (ACK, BYE, REFER, re-INVITE)
// with extra header lines; with wait it returns the final response.
func (l *leg) inDialog(t *testing.T, method string, cseq int, extra string, wait bool) *testbed.RawMsg {
	t.Helper()
	if cseq == 0 {
		l.cseq++
		cseq = l.cseq
	}
	body := ""
	if method == "INVITE" {
		extra += "Contact: <sip:caller@" + l.ua.LocalAddr() + ">\nContent-Type: application/sdp\n"
		body = "v=0\no=- 1 2 IN IP4 127.0.0.2\ns=-\nc=IN IP4 127.0.0.2\nt=0 0\nm=audio 40002 RTP/AVP 0\n"
	}
	l.ua.Send(l.edge, fmt.Sprintf("%s %s SIP/2.0\nVia: %s\nRoute: %s\nFrom: <sip:+15550001000@127.0.0.2>;tag=%s\nTo: %s\nCall-ID: %s\nCSeq: %d %s\nMax-Forwards: 70\n%sContent-Length: %d\n\n%s",
		method, l.contact, l.ua.Via(fmt.Sprintf("z9hG4bK-%s-%d", strings.ToLower(method), time.Now().UnixNano())), l.route, l.fromTag, l.to, l.callID, cseq, method,
		extra, len(strings.ReplaceAll(body, "\n", "\r\n")), body))
	if !wait {
		return nil
	}
	return l.await(t, method)
}

// TestReplayedInviteExceedsConcurrentLimit: a trunk limited to 2 calls
// re-sends an answered call's Call-ID and From tag in a new INVITE (no To
// tag). sipwarden used to take it for a replacement: it ended its record of
// the first call (slot, fraud meter) without a BYE while the PBX kept both
// up, so every replay was one more call at the PBX. Now the replay gets 482
// and the PBX, a SIPp UAS that answers every INVITE it is sent, never holds
// more calls than the trunk's limit.
func TestReplayedInviteExceedsConcurrentLimit(t *testing.T) {
	e, pbx := startDialogsEdge(t, "uas_pbx.xml", nil)
	ua := testbed.NewRawUA(t, "udp", "127.0.0.2")
	codes := []string{}
	answered := 0
	for i := range 4 {
		l := &leg{ua: ua, edge: e.SIPAddr(), callID: "replay-" + strconv.Itoa(i), fromTag: "ft" + strconv.Itoa(i)}
		r := l.invite(t)
		codes = append(codes, strconv.Itoa(r.Code))
		if r.Code == 200 {
			answered++
		}
		replay := *l // the same Call-ID and From tag, a new branch and CSeq, no To tag
		r = replay.invite(t)
		codes = append(codes, "replay:"+strconv.Itoa(r.Code))
		if r.Code == 200 {
			answered++
		}
	}
	// Every 200 the attacker saw was sent by the PBX: wait until its log
	// shows them all, then count what it holds (nothing was hung up).
	pbx.waitFor(strconv.Itoa(answered)+" answered legs", func() bool { return pbx.answered() >= answered })
	if held := pbx.answered(); held > 2 {
		t.Fatalf("the PBX holds %d calls of a trunk limited to 2 (answers seen by the caller: %v)", held, codes)
	}
	if codes[0] != "200" || codes[1] != "replay:482" {
		t.Fatalf("answers %v, want the first call answered and its replay refused with 482", codes)
	}
	if got := e.Metric(`sipwarden_limits_active_calls{trunk="acme"}`); got != 2 {
		t.Fatalf("sipwarden counts %v calls of acme, want 2", got)
	}
}

// TestReferToPremiumNumberRefused: inside a cheap domestic call, the trunk
// sends a REFER whose Refer-To is a premium-rate number; the PBX would dial
// it. With transfers denied (the default) the REFER gets 403; with
// transfers: allow, the destination policy refuses the premium target with
// its own 403. The PBX never sees the REFER, and the call goes on (the
// caller's BYE, sent after, reaches it).
func TestReferToPremiumNumberRefused(t *testing.T) {
	for _, tc := range []struct{ name, transfers, warning string }{
		{"default", "", "not enabled for this trunk"},
		{"allow", "allow", "premium"},
	} {
		t.Run("transfers_"+tc.name, func(t *testing.T) {
			e, pbx := startDialogsEdge(t, "uas_pbx.xml", map[string]any{"transfers": tc.transfers})
			ua := testbed.NewRawUA(t, "udp", "127.0.0.2")
			l := &leg{ua: ua, edge: e.SIPAddr(), callID: "refer-" + tc.name, fromTag: "ft"}
			if r := l.invite(t); r.Code != 200 {
				t.Fatalf("the cheap call: %d", r.Code)
			}
			r := l.inDialog(t, "REFER", 0, "Refer-To: <sip:+19005550100@127.0.0.3>\nReferred-By: <sip:+15550001000@127.0.0.2>\n", true)
			if r.Code != 403 || !strings.Contains(r.Get("Warning"), tc.warning) {
				t.Fatalf("REFER to a premium number: %d %q, want 403 with a Warning about %q", r.Code, r.Get("Warning"), tc.warning)
			}
			if bye := l.inDialog(t, "BYE", 0, "", true); bye.Code != 200 {
				t.Fatalf("the call's BYE after the refused REFER: %d", bye.Code)
			}
			pbx.waitFor("the BYE", func() bool { return pbx.received("BYE") == 1 })
			if n := pbx.received("REFER"); n != 0 {
				t.Fatalf("the PBX received %d REFER", n)
			}
		})
	}
}

// TestRedirectToPremiumNumberNotPassed: the PBX answers a trunk's cheap call
// with a 302 to a premium-rate number; the trunk would follow it. sipwarden
// acknowledges the 302 and answers the trunk 403 with the destination
// policy's Warning instead; the CDR says blocked by fraud.
func TestRedirectToPremiumNumberNotPassed(t *testing.T) {
	e, pbx := startDialogsEdge(t, "uas_redirect.xml", nil)
	ua := testbed.NewRawUA(t, "udp", "127.0.0.2")
	l := &leg{ua: ua, edge: e.SIPAddr(), callID: "redirect", fromTag: "ft"}
	r := l.invite(t)
	if r.Code != 403 || !strings.Contains(r.Get("Warning"), "premium") || r.Get("Contact") != "" {
		t.Fatalf("302 to a premium number: %d %q (Contact %q), want 403 with the policy's Warning", r.Code, r.Get("Warning"), r.Get("Contact"))
	}
	pbx.waitFor("the ACK of its 302", func() bool { return pbx.received("ACK") == 1 })
	e.Stop()
	recs := e.CDRs()
	if len(recs) != 1 || recs[0].Disposition != "blocked" || recs[0].Stage != "fraud" || recs[0].Reason != "premium_blocked" {
		t.Fatalf("CDRs %+v", recs)
	}
}

// TestInDialogRequestFromThirdAddress: another customer (mallory, a known
// peer) who learnt an answered call's Call-ID and tags sends a re-INVITE and
// a BYE for it from its own address. sipwarden used to match in-dialog
// requests by Call-ID and tags alone and relayed both to the PBX (the BYE
// ended the call there and in sipwarden's books). Now each gets 481, the PBX
// sees neither, and the call goes on: the caller's own BYE still ends it.
func TestInDialogRequestFromThirdAddress(t *testing.T) {
	e, pbx := startDialogsEdge(t, "uas_pbx.xml", nil)
	caller := testbed.NewRawUA(t, "udp", "127.0.0.2")
	l := &leg{ua: caller, edge: e.SIPAddr(), callID: "third", fromTag: "ft"}
	if r := l.invite(t); r.Code != 200 {
		t.Fatalf("the call: %d", r.Code)
	}
	pbx.waitFor("the ACK", func() bool { return pbx.received("ACK") == 1 })
	m := *l
	m.ua = testbed.NewRawUA(t, "udp", "127.0.0.4")
	if r := m.inDialog(t, "INVITE", 5, "", true); r.Code != 481 {
		t.Fatalf("re-INVITE from a third address: %d, want 481", r.Code)
	}
	if r := m.inDialog(t, "BYE", 6, "", true); r.Code != 481 {
		t.Fatalf("BYE from a third address: %d, want 481", r.Code)
	}
	if got := e.Metric(`sipwarden_limits_active_calls{trunk="acme"}`); got != 1 {
		t.Fatalf("acme's calls: %v, want 1 (the call goes on)", got)
	}
	if bye := l.inDialog(t, "BYE", 3, "", true); bye.Code != 200 {
		t.Fatalf("the caller's own BYE: %d", bye.Code)
	}
	pbx.waitFor("the caller's BYE", func() bool { return pbx.received("BYE") >= 1 })
	if n, inv := pbx.received("BYE"), pbx.received("INVITE"); n != 1 || inv != 1 {
		t.Fatalf("the PBX received %d BYE and %d INVITE, want only the caller's", n, inv)
	}
}

// twoCallsOneCallID places two answered calls that share a Call-ID but not
// a From tag (two dialogs), and returns them.
func twoCallsOneCallID(t *testing.T, e *testbed.Edge) (first, second *leg) {
	t.Helper()
	ua := testbed.NewRawUA(t, "udp", "127.0.0.2")
	first = &leg{ua: ua, edge: e.SIPAddr(), callID: "shared", fromTag: "first"}
	if r := first.invite(t); r.Code != 200 {
		t.Fatalf("first call: %d", r.Code)
	}
	second = &leg{ua: ua, edge: e.SIPAddr(), callID: "shared", fromTag: "second"}
	if r := second.invite(t); r.Code != 200 {
		t.Fatalf("second call: %d", r.Code)
	}
	return first, second
}

// TestCallIDReuseTakesOverMediaSession: a second call that reuses an
// answered call's Call-ID (with its own From tag: another dialog) used to
// take over the first call's media session: the relay keyed sessions by
// Call-ID, so the second call's offer updated the first call's streams and
// the second call's end closed them. Now each call has its own session, and
// the first keeps it when the second ends.
func TestCallIDReuseTakesOverMediaSession(t *testing.T) {
	base := 52000 + os.Getpid()%100*40
	e, _ := startDialogsEdge(t, "uas_pbx.xml", map[string]any{"ports": fmt.Sprintf("%d-%d", base, base+39)})
	_, second := twoCallsOneCallID(t, e)
	if got := e.Metric("sipwarden_media_sessions"); got != 2 {
		t.Fatalf("media sessions with both calls up: %v, want 2", got)
	}
	if bye := second.inDialog(t, "BYE", 0, "", true); bye.Code != 200 {
		t.Fatalf("second call's BYE: %d", bye.Code)
	}
	if got := e.Metric("sipwarden_media_sessions"); got != 1 {
		t.Fatalf("media sessions after the second call ended: %v, want 1 (the first call's)", got)
	}
}

// TestCallIDReuseTakesOverFraudMeter: the fraud engine kept calls by
// Call-ID and ended a call's meter when another call with the same Call-ID
// started, so a second call under a live call's Call-ID took the first out
// of the trunk's burn rate and per-call cap while it went on. Now both are
// metered: the burn rate is both calls' rates.
func TestCallIDReuseTakesOverFraudMeter(t *testing.T) {
	e, _ := startDialogsEdge(t, "uas_pbx.xml", nil)
	twoCallsOneCallID(t, e)
	// The engine publishes the burn rate on its tick (5s).
	deadline := time.Now().Add(12 * time.Second)
	for e.Metric(`sipwarden_fraud_burn_per_minute{trunk="acme"}`) != 12 {
		if time.Now().After(deadline) {
			t.Fatalf("acme's burn rate %v, want 12 (two answered calls at 6.00 a minute)", e.Metric(`sipwarden_fraud_burn_per_minute{trunk="acme"}`))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
