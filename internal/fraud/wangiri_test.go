package fraud

import (
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/sip"
)

// inboundFrom is an INVITE from an upstream to a customer, from caller.
func inboundFrom(t *testing.T, caller, callID string) *sip.Msg {
	t.Helper()
	var m sip.Msg
	raw := "INVITE sip:+12125550100@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:" + caller + "@carrier>;tag=1\r\n" +
		"To: <sip:+12125550100@x>\r\nCall-ID: " + callID + "\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
	if err := m.Parse([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	return &m
}

// A number abroad that rings customers once and hangs up three times is a
// Wangiri number: the customers' call-backs to it are refused. Answered
// calls and long rings do not count; domestic callers are not watched.
func TestWangiri(t *testing.T) {
	f := newStageFixture(t, map[string]*config.TrunkFraud{"office": {Country: "US", International: true, Unrated: config.FraudAllow}}, nil)
	f.st.Wangiri.Configure(3, 10*time.Second, 24*time.Hour)
	const scam = "+2348031234567"
	n := 0
	ring := func(caller string, ringFor time.Duration, answer bool) {
		t.Helper()
		n++
		req := &chain.Request{Msg: inboundFrom(t, caller, "in-"+string(rune('a'+n))), PeerKind: chain.PeerUpstream, Upstream: &config.Upstream{Name: "carrier"}}
		if v := f.s.Handle(req); v.Action != chain.Continue {
			t.Fatalf("inbound call: %+v", v)
		}
		var holds [chain.MaxHolds]chain.Releaser
		k := req.TakeHolds(&holds)
		f.clk.t = f.clk.t.Add(ringFor)
		for _, h := range holds[:k] {
			if a, ok := h.(chain.Answerer); ok && answer {
				a.Answered(f.clk.t)
				f.clk.t = f.clk.t.Add(time.Minute)
			}
			h.Release()
		}
	}
	callBack := func() chain.Verdict {
		t.Helper()
		v, req := f.call(t, "office", "sip:"+scam+"@x", "back")
		req.ReleaseHolds()
		return v
	}

	ring(scam, 3*time.Second, false)
	ring(scam, 2*time.Second, true)   // answered: no one-ring call
	ring(scam, 30*time.Second, false) // rang long: someone was not there
	ring(scam, 4*time.Second, false)
	ring("+12125550199", time.Second, false) // domestic callers are not watched
	if v := callBack(); v.Action == chain.Reply {
		t.Fatalf("call-back after two short rings: %+v", v)
	}
	ring(scam, time.Second, false) // the third short ring
	if v := callBack(); v.Code != 403 || v.Reason != ReasonWangiri {
		t.Fatalf("call-back to a Wangiri number: %+v, want 403 %s", v, ReasonWangiri)
	}
	f.clk.t = f.clk.t.Add(25 * time.Hour)
	if v := callBack(); v.Action == chain.Reply {
		t.Fatalf("call-back a day later: %+v", v)
	}
	f.st.Wangiri.Configure(0, 0, 0)
	ring(scam, time.Second, false)
	ring(scam, time.Second, false)
	ring(scam, time.Second, false)
	if v := callBack(); v.Action == chain.Reply {
		t.Fatalf("detection off: %+v", v)
	}
}
