package proxy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/sipwarden/sipwarden/internal/sip"
)

// sentSince returns the messages sent to dst (any destination when dst is
// the zero value), from index from of rec.sent.
func sentSince(rec *recorder, from int, dst netip.AddrPort) []sip.Msg {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []sip.Msg
	for _, s := range rec.sent[from:] {
		if dst.IsValid() && s.dst != dst {
			continue
		}
		var m sip.Msg
		if m.Parse(s.b) == nil {
			out = append(out, m)
		}
	}
	return out
}

func numSent(rec *recorder) int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return len(rec.sent)
}

// An INVITE without To tag that reuses an answered call's Call-ID and From
// tag is refused with 482 and reaches nobody; the first call keeps its
// dialog and what the stages hold for it (slot, meter) until its own BYE.
func TestReusedCallIdentityRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(string) string
	}{
		{"same CSeq (a merged request)", func(s string) string { return strings.Replace(s, "branch=z9hG4bK-i1", "branch=z9hG4bK-replay", 1) }},
		{"new CSeq", func(s string) string {
			return strings.Replace(strings.Replace(s, "branch=z9hG4bK-i1", "branch=z9hG4bK-replay", 1), "CSeq: 1 INVITE", "CSeq: 7 INVITE", 1)
		}},
		{"another port of the same peer", func(s string) string {
			return strings.Replace(strings.Replace(s, "branch=z9hG4bK-i1", "branch=z9hG4bK-replay", 1), "127.0.0.2:5060;", "127.0.0.2:5062;", 1)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms := &meterStage{}
			p, w, rec, store := newTestProxyWith(t, ms)
			rec.keep = true
			var c callBufs
			c.build(1)
			w.feed(uac, c.invite)
			respond(w, rec, &c, 200)
			w.feed(uac, c.ack)

			mark := numSent(rec)
			w.feed(uac, []byte(tc.mutate(string(c.invite))))
			if got := sentSince(rec, mark, uas); len(got) != 0 {
				t.Fatalf("the replayed INVITE reached the PBX: %s", got[0].Bytes())
			}
			got := sentSince(rec, mark, uac)
			if len(got) != 1 || got[0].StatusCode() != 482 {
				t.Fatalf("to the caller: %d messages, want one 482", len(got))
			}
			if p.ActiveCalls() != 1 {
				t.Fatalf("active calls %d, want 1 (the first call goes on)", p.ActiveCalls())
			}
			if got, want := ms.events(), "INVITE c1 answered, INVITE c1 released"; got != want {
				t.Fatalf("holds: %q, want %q (the replay's meter released, the first call's kept)", got, want)
			}
			// The first call still ends by its own BYE, with one answered CDR.
			w.feed(uac, c.bye)
			if bye := sentSince(rec, mark, uas); len(bye) != 1 || bye[0].Method() != sip.BYE {
				t.Fatalf("the first call's BYE was not relayed")
			}
			respond(w, rec, &c, 200)
			if p.ActiveCalls() != 0 || !strings.HasSuffix(ms.events(), "INVITE c1 released, INVITE c1 released") {
				t.Fatalf("after BYE: active %d, holds %q", p.ActiveCalls(), ms.events())
			}
			if len(store.recs) != 2 || store.recs[0].FinalCode != 482 || store.recs[0].Reason != "merged_request" || store.recs[1].Disposition != "answered" {
				t.Fatalf("CDRs %+v", store.recs)
			}
		})
	}
}

// A trunk with several addresses, and an upstream that also sends from a
// second node.
const flowsConfig = `
listen: [udp://127.0.0.1:5060]
upstreams: [{name: pbx, targets: [udp://127.0.0.3:5080], allow: [127.0.0.5/32]}]
trunks: [{name: acme, allow: [127.0.0.0/29], upstream: pbx, numbers: ["+15551230000/4"]}]
`

// In-dialog requests are relayed only from the dialog's own flows and with
// the dialog's own tags: the right Call-ID and tags from another address of
// the same trunk, or the callee's tags from the caller's side, get 481 and
// the call goes on.
func TestInDialogOnlyFromDialogFlows(t *testing.T) {
	other := netip.MustParseAddrPort("127.0.0.4:5060")
	pbx2 := netip.MustParseAddrPort("127.0.0.5:5080")
	calleeBye := "BYE sip:caller@127.0.0.2:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.3:5080;branch=z9hG4bK-pbx\r\nFrom: <sip:+15551230001@127.0.0.1>;tag=t1\r\nTo: <sip:+15550001000@127.0.0.2>;tag=f1\r\nCall-ID: c1\r\nCSeq: 9 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
	for _, tc := range []struct {
		name    string
		src     netip.AddrPort
		msg     func(c *callBufs) string
		relayed bool // else 481 to the sender
	}{
		{"caller's BYE from the caller", uac, func(c *callBufs) string { return string(c.bye) }, true},
		{"caller's BYE from another address of the trunk", other, func(c *callBufs) string { return string(c.bye) }, false},
		{"caller's re-INVITE from another address of the trunk", other, func(c *callBufs) string {
			s := strings.Replace(strings.Replace(string(c.bye), "BYE", "INVITE", 1), "CSeq: 2 BYE", "CSeq: 3 INVITE", 1)
			return strings.Replace(s, "Max-Forwards", "Contact: <sip:caller@127.0.0.4:5060>\r\nMax-Forwards", 1)
		}, false},
		{"caller's BYE with another To tag", uac, func(c *callBufs) string { return strings.Replace(string(c.bye), "tag=t1", "tag=t2", 1) }, false},
		{"callee's BYE from the caller's trunk", uac, func(*callBufs) string { return calleeBye }, false},
		{"callee's BYE from the PBX", uas, func(*callBufs) string { return calleeBye }, true},
		{"callee's BYE from another node of the upstream", pbx2, func(*callBufs) string { return calleeBye }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, w, rec, _ := newTestProxyCfg(t, flowsConfig)
			rec.keep = true
			var c callBufs
			c.build(1)
			w.feed(uac, c.invite)
			respond(w, rec, &c, 200)
			w.feed(uac, c.ack)
			mark := numSent(rec)
			w.feed(tc.src, []byte(tc.msg(&c)))
			// Requests sent on, and responses (the 481 goes where the Via says).
			var out, back []sip.Msg
			for _, m := range sentSince(rec, mark, netip.AddrPort{}) {
				if !m.IsRequest() {
					back = append(back, m)
				} else {
					out = append(out, m)
				}
			}
			if tc.relayed {
				if len(out) != 1 || out[0].Method() == 0 || p.ActiveCalls() != 0 {
					t.Fatalf("not relayed: %d messages on, active %d", len(out), p.ActiveCalls())
				}
				return
			}
			if len(out) != 0 {
				t.Fatalf("relayed to the other side: %s", out[0].Bytes())
			}
			if len(back) != 1 || back[0].StatusCode() != 481 {
				t.Fatalf("%d responses, want one 481", len(back))
			}
			if p.ActiveCalls() != 1 {
				t.Fatal("the call ended")
			}
			// The call goes on: the caller's own BYE still ends it.
			w.feed(uac, c.bye)
			if p.ActiveCalls() != 0 {
				t.Fatal("the caller's BYE did not end the call")
			}
		})
	}
}
