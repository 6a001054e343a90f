package proxy

import (
	"bytes"
	"strings"
	"testing"

	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/sip"
)

// premiumPolicy refuses targets whose number starts with +1900, as the
// fraud stage's destination policy would.
type premiumPolicy struct{ checked []string }

func (p *premiumPolicy) CheckTransfer(req *chain.Request, target []byte) chain.Verdict {
	p.checked = append(p.checked, req.Trunk.Name+" "+string(target))
	if strings.Contains(string(target), "+1900") {
		return chain.Verdict{Action: chain.Reply, Code: 403, Reason: "premium_blocked", Warning: "premium numbers are not enabled"}
	}
	return chain.Next()
}

func transfersConfig(mode string) string {
	return strings.Replace(testConfig, "limits: {concurrent: 100000}", "transfers: "+mode, 1)
}

// A REFER from a trunk is refused (403) unless the trunk allows transfers,
// and then only to targets the destination policy accepts.
func TestReferFromTrunk(t *testing.T) {
	ruri := "sip:pbx@127.0.0.3:5080" // the remote target: the 200's Contact, set below
	refer := func(target string) string {
		return "REFER " + ruri + " SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-refer\r\nFrom: <sip:+15550001000@127.0.0.2>;tag=f1\r\nTo: <sip:+15551230001@127.0.0.1>;tag=t1\r\nCall-ID: c1\r\nCSeq: 3 REFER\r\nRefer-To: " +
			target + "\r\nContact: <sip:caller@127.0.0.2:5060>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
	}
	for _, tc := range []struct {
		name, mode, target string
		code               int // 0: relayed to the PBX
		reason             string
	}{
		{"deny by default", "deny", "<sip:+15551230002@127.0.0.3>", 403, "transfer (REFER) is not enabled"},
		{"allowed, cheap target", "allow", "<sip:+15551230002@127.0.0.3>", 0, ""},
		{"allowed, premium target", "allow", "<sip:+19005550100@127.0.0.3>", 403, "premium"},
		{"allowed, Refer-To unparseable", "allow", "<sip:+1900", 400, "Refer-To"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, w, rec, _ := newTestProxyCfg(t, transfersConfig(tc.mode))
			pol := &premiumPolicy{}
			rt := *p.Runtime()
			rt.Transfers = pol
			p.SetRuntime(&rt)
			rec.keep = true
			var c callBufs
			c.build(1)
			w.feed(uac, c.invite)
			respond(w, rec, &c, 200)
			w.feed(uac, c.ack)
			ruri = string(c.ack[len("ACK "):bytes.Index(c.ack, []byte(" SIP/2.0"))]) // sipwarden's Contact (topology hiding)
			mark := numSent(rec)
			w.feed(uac, []byte(refer(tc.target)))
			toPBX := sentSince(rec, mark, uas)
			back := sentSince(rec, mark, uac)
			if tc.code == 0 {
				if len(toPBX) != 1 || toPBX[0].Method() != sip.REFER {
					t.Fatalf("REFER not relayed (%d to the PBX, %d back)", len(toPBX), len(back))
				}
			} else {
				if len(toPBX) != 0 {
					t.Fatalf("REFER relayed to the PBX")
				}
				if len(back) != 1 || back[0].StatusCode() != tc.code || !strings.Contains(string(back[0].Get(sip.HdrWarning)), tc.reason) {
					t.Fatalf("to the trunk: %d messages, want one %d with a Warning about %q", len(back), tc.code, tc.reason)
				}
				if p.ActiveCalls() != 1 {
					t.Fatal("the call ended")
				}
			}
			// The same REFER outside any dialog (no To tag, a Call-ID of its own).
			mark = numSent(rec)
			ood := strings.Replace(strings.Replace(refer(tc.target), ";tag=t1", "", 1), "Call-ID: c1", "Call-ID: ood", 1)
			w.feed(uac, []byte(strings.Replace(ood, "z9hG4bK-refer", "z9hG4bK-ood", 1)))
			toPBX = sentSince(rec, mark, uas)
			back = sentSince(rec, mark, uac)
			if tc.code == 0 {
				if len(toPBX) != 1 || toPBX[0].Method() != sip.REFER {
					t.Fatalf("out-of-dialog REFER not relayed (%d to the PBX, %d back)", len(toPBX), len(back))
				}
				return
			}
			if len(toPBX) != 0 {
				t.Fatalf("out-of-dialog REFER relayed to the PBX")
			}
			if len(back) != 1 || back[0].StatusCode() != tc.code || !strings.Contains(string(back[0].Get(sip.HdrWarning)), tc.reason) {
				t.Fatalf("out-of-dialog REFER: %d messages, want one %d with a Warning about %q", len(back), tc.code, tc.reason)
			}
		})
	}
}

// A 3xx from the upstream reaches the trunk only when every Contact passes
// the trunk's destination policy; otherwise the trunk gets 403 with the
// policy's Warning and the CDR says blocked.
func TestRedirectFromUpstream(t *testing.T) {
	for _, tc := range []struct {
		name, contacts string
		code           int
	}{
		{"cheap target", "Contact: <sip:+15551230002@127.0.0.3>\r\n", 302},
		{"premium target", "Contact: <sip:+19005550100@127.0.0.3>\r\n", 403},
		{"premium among others", "Contact: <sip:+15551230002@127.0.0.3>, <sip:+19005550100@127.0.0.3>\r\n", 403},
		{"premium in a second header", "Contact: <sip:+15551230002@127.0.0.3>\r\nContact: <tel:+19005550100>\r\n", 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, w, rec, store := newTestProxy(t)
			pol := &premiumPolicy{}
			rt := *p.Runtime()
			rt.Transfers = pol
			p.SetRuntime(&rt)
			rec.keep = true
			var c callBufs
			c.build(1)
			w.feed(uac, c.invite)
			mark := numSent(rec)
			var m sip.Msg
			_ = m.Parse(rec.last)
			w.feed(uas, sip.AppendResponse(nil, &m, 302, "Moved Temporarily", []byte("t1"), "", []byte(tc.contacts)))
			back := sentSince(rec, mark, uac)
			if len(back) != 1 || back[0].StatusCode() != tc.code {
				t.Fatalf("to the trunk: %d messages (%v), want one %d", len(back), back, tc.code)
			}
			if acks := sentSince(rec, mark, uas); len(acks) != 1 || acks[0].Method() != sip.ACK {
				t.Fatalf("the 302 was not acknowledged")
			}
			if p.ActiveCalls() != 0 || len(store.recs) != 1 {
				t.Fatalf("active %d, CDRs %d", p.ActiveCalls(), len(store.recs))
			}
			if tc.code == 403 && (store.recs[0].Disposition != "blocked" || store.recs[0].Reason != "premium_blocked" ||
				!strings.Contains(string(back[0].Get(sip.HdrWarning)), "premium")) {
				t.Fatalf("CDR %+v", store.recs[0])
			}
		})
	}
}
