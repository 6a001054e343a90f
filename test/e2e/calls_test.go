package e2e

import (
	"github.com/sipwarden/sipwarden/test/testbed"

	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/cdr"
)

// baseConfig is a trunk "acme" on 127.0.0.2 in front of the PBX on 127.0.0.3.
const baseConfig = `
listen:
  - udp://127.0.0.1:{{.SIPPort}}
  - tcp://127.0.0.1:{{.SIPPort}}
admin: {listen: "127.0.0.1:{{.AdminPort}}"}
storage: {path: "{{.Dir}}/data"}
log: {level: info}
sip: {drain_timeout: 2s}
unknown_sources: drop
upstreams:
  - name: pbx
    targets: ["{{index .Extra "pbxTransport"}}://127.0.0.3:{{.PBXPort}}"]
trunks:
  - name: acme
    auth: ip
    allow: [127.0.0.2/32]
    upstream: pbx
    numbers: ["+15551230000/4"]
    targets: ["udp://127.0.0.2:{{index .Extra "trunkPort"}}"]
    limits: {cps: {{index .Extra "cps"}}, concurrent: {{index .Extra "concurrent"}}}
`

func params(pbxTransport string) map[string]any {
	return map[string]any{"pbxTransport": pbxTransport, "cps": 0, "concurrent": 0, "trunkPort": 5070}
}

// TestCallsComplete relays whole calls (INVITE/100/180/200/ACK/BYE/200) from
// SIPp on the trunk to SIPp as the PBX, over UDP and TCP, and checks that
// every call has an answered CDR.
func TestCallsComplete(t *testing.T) {
	for _, tc := range []struct {
		name, sippTransport, pbxTransport string
	}{
		{"udp", "u1", "udp"},
		{"tcp", "t1", "tcp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const calls = 20
			pbx := testbed.FreePort(t)
			testbed.StartUAS(t, "uas.xml", pbx, "-t", tc.sippTransport)
			e := testbed.StartEdge(t, baseConfig, pbx, params(tc.pbxTransport))
			res := testbed.RunSipp(t, 60*time.Second, testbed.UACArgs("uac.xml", e.SIPAddr(), calls, 20, "-t", tc.sippTransport)...)
			if res.Successful != calls || res.Failed != 0 {
				t.Fatalf("calls: %s, want %d successful\n%s", testbed.FmtCalls(res), calls, res.Screen)
			}
			if v := e.Metric(`sipwarden_events_lost_total{subscriber="log"}`); v != 0 {
				t.Errorf("events lost by the log sink: %v, want 0 (-1: not exported)", v)
			}
			e.Stop()
			recs := e.CDRs()
			if len(recs) != calls || testbed.CountDisposition(recs, cdr.Answered) != calls {
				t.Fatalf("CDRs: %d records, %d answered; want %d answered: %+v", len(recs), testbed.CountDisposition(recs, cdr.Answered), calls, recs)
			}
			r := recs[0]
			if r.Trunk != "acme" || r.Upstream != "pbx" || r.Direction != "originating" || r.FinalCode != 200 ||
				r.Answer.IsZero() || r.End.Before(r.Answer) || r.Duration <= 0 || r.To != "+15551230001" {
				t.Errorf("CDR fields: %+v", r)
			}
		})
	}
}

// TestCancelRinging cancels calls while they ring: the caller gets 200 for
// its CANCEL and 487 for the INVITE, the PBX sees the CANCEL, the CDR says cancelled.
func TestCancelRinging(t *testing.T) {
	const calls = 5
	pbx := testbed.FreePort(t)
	testbed.StartUAS(t, "uas_ring.xml", pbx)
	e := testbed.StartEdge(t, baseConfig, pbx, params("udp"))
	res := testbed.RunSipp(t, 60*time.Second, testbed.UACArgs("uac_cancel.xml", e.SIPAddr(), calls, 5)...)
	if res.Successful != calls {
		t.Fatalf("cancelled calls: %s\n%s", testbed.FmtCalls(res), res.Screen)
	}
	e.Stop()
	recs := e.CDRs()
	if n := testbed.CountDisposition(recs, cdr.Cancelled); n != calls {
		t.Fatalf("CDRs: %d cancelled of %d records, want %d: %+v", n, len(recs), calls, recs)
	}
}

// TestSIGTERMMidCall stops sipwarden while calls are up: every call still has
// a CDR, marked interrupted.
func TestSIGTERMMidCall(t *testing.T) {
	const calls = 4
	pbx := testbed.FreePort(t)
	testbed.StartUAS(t, "uas.xml", pbx)
	e := testbed.StartEdge(t, baseConfig, pbx, params("udp"))
	// Callers that stay on the line for 20 s; sipwarden's drain timeout is 2 s.
	done := make(chan testbed.SippResult, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		done <- testbed.RunSippCtx(ctx, t, 40*time.Second, testbed.UACArgs("uac.xml", e.SIPAddr(), calls, 10, "-d", "20000")...)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for e.Metric("sipwarden_proxy_active_calls") < calls {
		if time.Now().After(deadline) {
			t.Fatalf("calls not up: active=%v", e.Metric("sipwarden_proxy_active_calls"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// answered, not only early: each caller's ACK for its 200 has reached sipwarden
	waitMetric(t, e, `sipwarden_proxy_requests_total{method="ACK"}`, calls)
	e.Stop()
	recs := e.CDRs()
	if n := testbed.CountDisposition(recs, cdr.Interrupted); n != calls {
		t.Fatalf("CDRs after SIGTERM: %d interrupted of %d records, want %d: %+v", n, len(recs), calls, recs)
	}
	for _, r := range recs {
		if r.Answer.IsZero() || r.End.IsZero() {
			t.Errorf("interrupted call without answer/end time: %+v", r)
		}
	}
	cancel() // the callers would wait for answers to their BYEs
	<-done
}

// TestLimits checks the per-trunk concurrent-call and calls-per-second limits
// answer 503 with Retry-After, and record blocked CDRs.
func TestLimits(t *testing.T) {
	t.Run("concurrent", func(t *testing.T) {
		pbx := testbed.FreePort(t)
		testbed.StartUAS(t, "uas_ring.xml", pbx)
		p := params("udp")
		p["concurrent"] = 3
		e := testbed.StartEdge(t, baseConfig, pbx, p)
		ua := testbed.NewRawUA(t, "udp", "127.0.0.2")
		var codes []int
		for i := range 5 {
			resp := ua.Invite(e.SIPAddr(), "conc-"+strconv.Itoa(i))
			codes = append(codes, resp.Code)
			if resp.Code == 503 && resp.RetryAfter == "" {
				t.Errorf("503 without Retry-After")
			}
		}
		want := []int{180, 180, 180, 503, 503}
		for i := range want {
			if codes[i] != want[i] {
				t.Fatalf("final-or-ringing codes %v, want %v", codes, want)
			}
		}
		e.Stop()
		if n := testbed.CountDisposition(e.CDRs(), cdr.Blocked); n != 2 {
			t.Errorf("blocked CDRs: %d, want 2", n)
		}
	})
	t.Run("cps", func(t *testing.T) {
		pbx := testbed.FreePort(t)
		testbed.StartUAS(t, "uas_ring.xml", pbx)
		p := params("udp")
		p["cps"] = 2
		e := testbed.StartEdge(t, baseConfig, pbx, p)
		ua := testbed.NewRawUA(t, "udp", "127.0.0.2")
		got503 := 0
		for i := range 8 {
			if ua.Invite(e.SIPAddr(), "cps-"+strconv.Itoa(i)).Code == 503 {
				got503++
			}
		}
		// burst defaults to ceil(cps) = 2: 8 calls within well under a second leave at most 2-3 through.
		if got503 < 5 {
			t.Fatalf("503s: %d of 8, want >= 5", got503)
		}
	})
}

// TestTerminatingCall places calls from the PBX to a number of the trunk: they
// reach the trunk's phone system, and the CDRs say "terminating".
func TestTerminatingCall(t *testing.T) {
	const calls = 5
	pbxPort, phonePort := testbed.FreePort(t), testbed.FreePort(t)
	testbed.StartUASAt(t, "127.0.0.2", "uas.xml", phonePort)
	p := params("udp")
	p["trunkPort"] = phonePort
	e := testbed.StartEdge(t, baseConfig, pbxPort, p)
	// the PBX calls from its own address, so sipwarden knows it as the upstream
	args := testbed.UACArgs("uac.xml", e.SIPAddr(), calls, 10)
	for i, a := range args {
		if a == "127.0.0.2" && args[i-1] == "-i" {
			args[i] = "127.0.0.3"
		}
		if a == "0" && args[i-1] == "-p" {
			args[i] = strconv.Itoa(pbxPort)
		}
	}
	res := testbed.RunSipp(t, 60*time.Second, args...)
	if res.Successful != calls {
		t.Fatalf("calls: %s\n%s", testbed.FmtCalls(res), res.Screen)
	}
	// a number no trunk owns gets 404 and never leaves
	for i, a := range args {
		if a == "+15551230001" {
			args[i] = "+16175550000"
		}
	}
	args = append(args[:len(args)-1], "-m", "1", args[len(args)-1])
	res = testbed.RunSipp(t, 30*time.Second, args...)
	if res.Successful != 0 || res.Failed != 1 {
		t.Fatalf("call to an unknown number: %s", testbed.FmtCalls(res))
	}
	e.Stop()
	recs := e.CDRs()
	n := 0
	for _, r := range recs {
		if r.Direction == "terminating" && r.Trunk == "acme" && r.Disposition == cdr.Answered {
			n++
		}
	}
	if n != calls {
		t.Fatalf("terminating answered CDRs: %d, want %d: %+v", n, calls, recs)
	}
}

// TestReload changes the configuration under a running sipwarden: a call in
// progress keeps going, the new limit applies to the next call, and a broken
// file is refused while the running configuration stays.
func TestReload(t *testing.T) {
	pbx := testbed.FreePort(t)
	testbed.StartUAS(t, "uas_ring.xml", pbx)
	e := testbed.StartEdge(t, baseConfig, pbx, params("udp"))
	ua := testbed.NewRawUA(t, "udp", "127.0.0.2")
	if r := ua.Invite(e.SIPAddr(), "reload-1"); r.Code != 180 {
		t.Fatalf("first call: %d, want 180", r.Code)
	}
	p := params("udp")
	p["concurrent"] = 1
	e.Reload(baseConfig, p)
	e.WaitLog("configuration reloaded", 1)
	if r := ua.Invite(e.SIPAddr(), "reload-2"); r.Code != 503 {
		t.Fatalf("second call after the reload to concurrent: 1 (one call up): %d, want 503", r.Code)
	}
	e.Reload("listen: [udp://127.0.0.1:{{.SIPPort}}\ntrunks: {broken", p)
	e.WaitLog("configuration reload refused", 1)
	if r := ua.Invite(e.SIPAddr(), "reload-3"); r.Code != 503 {
		t.Fatalf("after a refused reload the old limit must hold: %d, want 503", r.Code)
	}
	// the first call, ringing through both reloads, can still be cancelled
	ua.Send(e.SIPAddr(), strings.Replace(strings.Replace(ua.InviteText(e.SIPAddr(), "reload-1", "z9hG4bK-reload-1", 1),
		"INVITE sip:", "CANCEL sip:", 1), "CSeq: 1 INVITE", "CSeq: 1 CANCEL", 1))
	got200, got487 := false, false
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) && !(got200 && got487); {
		m := ua.Recv(time.Until(deadline))
		if m == nil {
			break
		}
		if m.Get("Call-ID") != "reload-1" {
			continue
		}
		got200 = got200 || (m.Code == 200 && strings.Contains(m.Get("CSeq"), "CANCEL"))
		got487 = got487 || m.Code == 487
	}
	if !got200 || !got487 {
		t.Fatalf("CANCEL of the call in progress: 200=%v 487=%v", got200, got487)
	}
}
