package proxy

import (
	"bytes"
	"fmt"
	"hash/maphash"
	"net/netip"
	"strings"
	"testing"

	"github.com/sipwarden/sipwarden/internal/acl"
	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/limits"
	"github.com/sipwarden/sipwarden/internal/route"
	"github.com/sipwarden/sipwarden/internal/sanity"
	"github.com/sipwarden/sipwarden/internal/sip"
)

// phone is where the trunk's calls go in these tests (the trunk's target).
var phone = netip.MustParseAddrPort("127.0.0.2:5070")

const topoConfig = `
listen: [udp://127.0.0.1:5060]
upstreams: [{name: pbx, targets: [udp://127.0.0.3:5080]}]
trunks: [{name: acme, allow: [127.0.0.2/32], upstream: pbx, numbers: ["+15551230000/4"], targets: [udp://127.0.0.2:5070]%s}]
`

// newTopoProxy is newTestProxy with a trunk that has targets and the given
// extra trunk keys.
func newTopoProxy(t testing.TB, trunkExtra string) (*worker, *recorder) {
	p, w, rec, _ := newTestProxy(t)
	cfg, err := config.Parse(fmt.Appendf(nil, topoConfig, trunkExtra), "topo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := acl.NewStage(cfg, nil, nil, nil, nil)
	lim, _ := limits.NewStage(cfg, limits.NewRegistry(nil), nil)
	rt, _ := route.NewStage(cfg, nil, nil)
	p.SetRuntime(&Runtime{Config: cfg, Chain: chain.New(nil, a, sanity.New(), lim, rt), Alternates: rt.Alternates})
	rec.keep = true
	return w, rec
}

func msg(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

// lastTo returns the last message sent to dst, parsed, and its bytes.
func lastTo(t *testing.T, rec *recorder, dst netip.AddrPort) (*sip.Msg, []byte) {
	t.Helper()
	for i := len(rec.sent) - 1; i >= 0; i-- {
		if rec.sent[i].dst == dst {
			m := &sip.Msg{}
			if err := m.Parse(rec.sent[i].b); err != nil {
				t.Fatalf("unparseable: %v\n%s", err, rec.sent[i].b)
			}
			return m, rec.sent[i].b
		}
	}
	t.Fatalf("nothing sent to %v", dst)
	return nil, nil
}

// hidden are bytes of the protected side that must never reach the trunk.
var hidden = []string{"127.0.0.3", "5080", "10.9.9.", "Asterisk", "internal-warning", "::3"}

// checkHidden fails when anything sent to dst holds a byte string of the protected side.
func checkHidden(t *testing.T, rec *recorder, dst netip.AddrPort) {
	t.Helper()
	for _, s := range rec.sent {
		if s.dst != dst {
			continue
		}
		for _, h := range hidden {
			if bytes.Contains(s.b, []byte(h)) {
				t.Errorf("%q reached %v:\n%s", h, dst, s.b)
			}
		}
	}
}

// pbxResponse is the PBX's answer to req (as the proxy sent it), with the
// PBX's own Record-Route entries on top and its product headers.
func pbxResponse(req *sip.Msg, code int) []byte {
	extra := "Server: Asterisk PBX 20.1\r\nWarning: 399 10.9.9.7 \"internal-warning\"\r\nContact: <sip:pbx@127.0.0.3:5080>\r\n"
	if rr := req.Get(sip.HdrRecordRoute); rr != nil {
		// two proxies of the PBX's side, the nearest to us lower
		extra = "Record-Route: <sip:10.9.9.2;lr>, <sip:10.9.9.1;lr>\r\nRecord-Route: " + string(rr) + "\r\n" + extra
	}
	return sip.AppendResponse(nil, req, code, sip.ReasonText(code), []byte("t1"), "", []byte(extra))
}

// TestTopologyHidingCallToUpstream: a trunk calls the PBX; nothing of the
// PBX's addresses reaches the trunk, in-dialog requests both ways still
// find their way (the trunk's through the handle in our Contact, mapped
// back to the PBX's Contact and route set), and a forged handle is refused.
func TestTopologyHidingCallToUpstream(t *testing.T) {
	w, rec := newTopoProxy(t, "")
	var c callBufs
	c.build(1)
	w.feed(uac, c.invite)
	inv, _ := lastTo(t, rec, uas)
	for _, code := range []int{180, 200} {
		w.feed(uas, pbxResponse(inv, code))
	}
	resp, _ := lastTo(t, rec, uac)
	c.target(rec.resp)
	checkHidden(t, rec, uac)
	na, _, err := sip.ParseNameAddr(resp.Get(sip.HdrContact))
	if err != nil || !bytes.HasPrefix(na.URI, []byte("sip:swt-")) || !bytes.HasSuffix(na.URI, []byte("@127.0.0.1:5060")) {
		t.Fatalf("Contact of the 200 to the trunk: %q", resp.Get(sip.HdrContact))
	}
	if rr := string(resp.Get(sip.HdrRecordRoute)); rr != "<sip:127.0.0.1:5060;lr>" || resp.Count(sip.HdrRecordRoute) != 1 {
		t.Errorf("Record-Route to the trunk: %d fields, first %q", resp.Count(sip.HdrRecordRoute), rr)
	}
	if resp.Get(sip.HdrServer) != nil || resp.Get(sip.HdrWarning) != nil || resp.Count(sip.HdrVia) != 1 {
		t.Errorf("200 to the trunk:\n%s", resp.Bytes())
	}

	// The trunk's BYE with a forged handle is refused, and goes nowhere.
	forged := bytes.Replace(c.bye, []byte(" sip:swt-"), []byte(" sip:swt-0"), 1)
	if bytes.Equal(forged, c.bye) {
		t.Fatalf("the BYE does not use our Contact:\n%s", c.bye)
	}
	n := len(rec.sent)
	w.feed(uac, forged)
	if len(rec.sent) != n+1 || rec.sent[n].dst != uac || !bytes.HasPrefix(rec.sent[n].b, []byte("SIP/2.0 404 ")) {
		t.Fatalf("forged handle: want one 404 to the trunk, got %d messages", len(rec.sent)-n)
	}

	// The PBX re-INVITEs: the trunk sees our Via and Contact only; its 200
	// reaches the PBX with the PBX's own Vias.
	reinv := msg("INVITE sip:caller@127.0.0.2:5060 SIP/2.0\n" +
		"Via: SIP/2.0/UDP 127.0.0.3:5080;branch=z9hG4bK-re1\nVia: SIP/2.0/UDP 10.9.9.1;branch=z9hG4bK-re0\n" +
		"Route: <sip:127.0.0.1:5060;lr>\nFrom: <sip:+15551230001@127.0.0.1>;tag=t1\nTo: <sip:+15550001000@127.0.0.2>;tag=f1\n" +
		"Call-ID: c1\nCSeq: 7 INVITE\nContact: <sip:pbx2@127.0.0.3:5080>\nUser-Agent: Asterisk PBX 20.1\nMax-Forwards: 70\nContent-Length: 0\n\n")
	w.feed(uas, reinv)
	fwd, _ := lastTo(t, rec, uac)
	checkHidden(t, rec, uac)
	if fwd.Method() != sip.INVITE || fwd.Count(sip.HdrVia) != 1 {
		t.Fatalf("re-INVITE to the trunk:\n%s", fwd.Bytes())
	}
	ok := sip.AppendResponse(nil, fwd, 200, "OK", nil, "", []byte("Contact: <sip:caller@127.0.0.2:5060>\r\n"))
	w.feed(uac, ok)
	back, _ := lastTo(t, rec, uas)
	if back.StatusCode() != 200 || back.Count(sip.HdrVia) != 1 ||
		string(back.Get(sip.HdrVia)) != "SIP/2.0/UDP 127.0.0.3:5080;branch=z9hG4bK-re1, SIP/2.0/UDP 10.9.9.1;branch=z9hG4bK-re0" {
		t.Fatalf("200 to the PBX lost its Vias:\n%s", back.Bytes())
	}

	// The trunk's BYE goes to the PBX's refreshed Contact through its proxies.
	w.feed(uac, c.bye)
	bye, _ := lastTo(t, rec, uas)
	if bye.Method() != sip.BYE || string(bye.RequestURI()) != "sip:pbx2@127.0.0.3:5080" ||
		string(bye.Get(sip.HdrRoute)) != "<sip:10.9.9.1;lr>, <sip:10.9.9.2;lr>" {
		t.Fatalf("BYE to the PBX:\n%s", bye.Bytes())
	}
	checkHidden(t, rec, uac)
}

// TestTopologyHidingCallFromUpstream: the PBX calls a trunk; the trunk sees
// our Via, Contact and Record-Route only, the PBX gets its Vias and route
// set back, and the trunk's BYE reaches the PBX through its proxy.
func TestTopologyHidingCallFromUpstream(t *testing.T) {
	w, rec := newTopoProxy(t, "")
	inv := msg("INVITE sip:+15551230001@127.0.0.1:5060 SIP/2.0\n" +
		"Via: SIP/2.0/UDP 127.0.0.3:5080;branch=z9hG4bK-u1;rport\nVia: SIP/2.0/UDP 10.9.9.5:5060;branch=z9hG4bK-u0\n" +
		"Record-Route: <sip:10.9.9.1;lr>\nFrom: \"Alice\" <sip:+15550009999@127.0.0.3:5080;user=phone>;tag=pf1\nTo: <sip:+15551230001@example.net>\n" +
		"Call-ID: u1@127.0.0.3\nCSeq: 1 INVITE\nContact: <sip:pbx@127.0.0.3:5080>\nP-Asserted-Identity: <sip:+15550009999@[::3]>\n" +
		"User-Agent: Asterisk PBX 20.1\nMax-Forwards: 70\nContent-Length: 0\n\n")
	w.feed(uas, inv)
	fwd, _ := lastTo(t, rec, phone)
	checkHidden(t, rec, phone)
	if fwd.Method() != sip.INVITE || fwd.Count(sip.HdrVia) != 1 || string(fwd.Get(sip.HdrRecordRoute)) != "<sip:127.0.0.1:5060;lr>" ||
		!bytes.HasPrefix(fwd.Get(sip.HdrContact), []byte("<sip:swt-")) {
		t.Fatalf("INVITE to the trunk:\n%s", fwd.Bytes())
	}
	contact := fwd.Get(sip.HdrContact)
	handle := string(contact[1 : len(contact)-1])
	callID := string(fwd.CallID())
	if !strings.HasPrefix(callID, "swc") || string(fwd.Get(sip.HdrFrom)) != `"Alice" <sip:+15550009999@127.0.0.1:5060;user=phone>;tag=pf1` ||
		string(fwd.Get(sip.HdrPAssertedIdentity)) != "<sip:+15550009999@127.0.0.1:5060>" {
		t.Fatalf("Call-ID, From or P-Asserted-Identity of the INVITE to the trunk:\n%s", fwd.Bytes())
	}

	// The trunk answers, reflecting the Record-Route it got.
	ok := sip.AppendResponse(nil, fwd, 200, "OK", []byte("tt"), "",
		[]byte("Record-Route: "+string(fwd.Get(sip.HdrRecordRoute))+"\r\nContact: <sip:phone@127.0.0.2:5070>\r\n"))
	w.feed(phone, ok)
	back, _ := lastTo(t, rec, uas)
	if back.StatusCode() != 200 || back.Count(sip.HdrVia) != 1 ||
		string(back.Get(sip.HdrVia)) != "SIP/2.0/UDP 127.0.0.3:5080;branch=z9hG4bK-u1;rport, SIP/2.0/UDP 10.9.9.5:5060;branch=z9hG4bK-u0" {
		t.Fatalf("200 to the PBX lost its Vias:\n%s", back.Bytes())
	}
	if string(back.CallID()) != "u1@127.0.0.3" || string(back.Get(sip.HdrFrom)) != `"Alice" <sip:+15550009999@127.0.0.3:5080;user=phone>;tag=pf1` {
		t.Fatalf("200 to the PBX lost its Call-ID or From:\n%s", back.Bytes())
	}
	var rrs []string
	for i := back.Find(sip.HdrRecordRoute, 0); i >= 0; i = back.Find(sip.HdrRecordRoute, i+1) {
		rrs = append(rrs, string(back.Header(i).Value))
	}
	if strings.Join(rrs, ", ") != "<sip:127.0.0.1:5060;lr>, <sip:10.9.9.1;lr>" {
		t.Errorf("Record-Route to the PBX: %q, want ours then its proxy's", rrs)
	}

	// The trunk's BYE (callee to caller) goes to the PBX's Contact through its proxy.
	bye := msg("BYE " + handle + " SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bK-tb1\nRoute: <sip:127.0.0.1:5060;lr>\n" +
		"From: <sip:+15551230001@example.net>;tag=tt\nTo: " + string(fwd.Get(sip.HdrFrom)) + "\nCall-ID: " + callID + "\nCSeq: 1 BYE\nMax-Forwards: 70\nContent-Length: 0\n\n")
	w.feed(phone, bye)
	fbye, _ := lastTo(t, rec, uas)
	if fbye.Method() != sip.BYE || string(fbye.RequestURI()) != "sip:pbx@127.0.0.3:5080" || string(fbye.Get(sip.HdrRoute)) != "<sip:10.9.9.1;lr>" ||
		string(fbye.CallID()) != "u1@127.0.0.3" || string(fbye.Get(sip.HdrTo)) != `"Alice" <sip:+15550009999@127.0.0.3:5080;user=phone>;tag=pf1` {
		t.Fatalf("BYE to the PBX:\n%s", fbye.Bytes())
	}
	w.feed(uas, sip.AppendResponse(nil, fbye, 200, "OK", nil, "Asterisk PBX 20.1", nil))
	ok200, _ := lastTo(t, rec, phone)
	if ok200.StatusCode() != 200 || string(ok200.CallID()) != callID || string(ok200.Get(sip.HdrTo)) != string(fwd.Get(sip.HdrFrom)) {
		t.Errorf("200 for the BYE to the trunk:\n%s", ok200.Bytes())
	}
	checkHidden(t, rec, phone)
	if len(w.topo.byCallID) != 0 {
		t.Errorf("%d masked Call-IDs left after the call", len(w.topo.byCallID))
	}
}

// TestTopologyHidingOff: with topology_hiding: false the PBX's Contact and
// Record-Route reach the trunk as before.
func TestTopologyHidingOff(t *testing.T) {
	w, rec := newTopoProxy(t, ", topology_hiding: false")
	var c callBufs
	c.build(1)
	w.feed(uac, c.invite)
	inv, _ := lastTo(t, rec, uas)
	w.feed(uas, pbxResponse(inv, 200))
	resp, _ := lastTo(t, rec, uac)
	if string(resp.Get(sip.HdrContact)) != "<sip:pbx@127.0.0.3:5080>" || resp.Count(sip.HdrRecordRoute) != 2 {
		t.Errorf("200 to the trunk:\n%s", resp.Bytes())
	}
	w.feed(uac, c.bye)
	if bye, _ := lastTo(t, rec, uas); bye.Method() != sip.BYE {
		t.Errorf("BYE not relayed")
	}
}

func TestTrimListEntry(t *testing.T) {
	for in, want := range map[string]string{"<sip:a;lr>, ": "<sip:a;lr>", "<sip:a>": "<sip:a>", " ,\t": "", "": ""} {
		if got := string(trimListEntry([]byte(in))); got != want {
			t.Errorf("trimListEntry(%q) = %q, want %q", in, got, want)
		}
	}
}

// BenchmarkRelayCallTopologyHiding compares BenchmarkRelayCall's call with
// topology hiding on (the default) and off.
func BenchmarkRelayCallTopologyHiding(b *testing.B) {
	for _, mode := range []string{"on", "off"} {
		b.Run(mode, func(b *testing.B) {
			extra := ""
			if mode == "off" {
				extra = ", topology_hiding: false"
			}
			w, rec := newTopoProxy(b, extra)
			rec.keep = false
			var c callBufs
			n := 0
			b.ReportAllocs()
			for b.Loop() {
				n++
				relayCall(w, rec, &c, n)
			}
		})
	}
}

// answeredCall runs an INVITE from the trunk answered by the PBX (with its
// proxy's Record-Route) and returns the caller's buffers, aimed at the
// Contact the trunk got.
func answeredCall(t *testing.T, w *worker, rec *recorder, n int) *callBufs {
	t.Helper()
	c := &callBufs{}
	c.build(n)
	w.feed(uac, c.invite)
	inv, _ := lastTo(t, rec, uas)
	w.feed(uas, pbxResponse(inv, 200))
	c.target(rec.resp)
	return c
}

// inDialogFromTrunk is a request of call n from the trunk (the caller) to ruri.
func inDialogFromTrunk(method, ruri string, n, cseq int) []byte {
	return msg(fmt.Sprintf("%s %s SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-%s%d\nRoute: <sip:127.0.0.1:5060;lr>\n"+
		"From: <sip:+15550001000@127.0.0.2>;tag=f1\nTo: <sip:+15551230001@127.0.0.1>;tag=t1\nCall-ID: c%d\nCSeq: %d %s\n"+
		"Contact: <sip:caller@127.0.0.2:5060>\nMax-Forwards: 70\nContent-Length: 0\n\n", method, ruri, method, cseq, n, cseq, method))
}

// inDialogFromPBX is a request of call n from the PBX (the callee) to the trunk.
func inDialogFromPBX(method string, n, cseq int) []byte {
	return msg(fmt.Sprintf("%s sip:caller@127.0.0.2:5060 SIP/2.0\n"+
		"Via: SIP/2.0/UDP 127.0.0.3:5080;branch=z9hG4bK-p%s%d\nVia: SIP/2.0/UDP 10.9.9.1;branch=z9hG4bK-p0\n"+
		"Route: <sip:127.0.0.1:5060;lr>\nFrom: <sip:+15551230001@127.0.0.1>;tag=t1\nTo: <sip:+15550001000@127.0.0.2>;tag=f1\n"+
		"Call-ID: c%d\nCSeq: %d %s\nContact: <sip:pbx@127.0.0.3:5080>\nUser-Agent: Asterisk PBX 20.1\nMax-Forwards: 70\nContent-Length: 0\n\n",
		method, method, cseq, n, cseq, method))
}

// TestTopologyHidingRequestURI: what an in-dialog request from the trunk
// may carry as Request-URI towards the hidden PBX. Whatever it carries,
// the PBX gets its own Contact.
func TestTopologyHidingRequestURI(t *testing.T) {
	tests := []struct {
		name, ruri string // "" for the Contact the trunk got
		code       int    // the answer to the trunk; 0: relayed to the PBX
	}{
		{"our Contact with the dialog's handle", "", 0},
		{"our address without a handle (SIPp's built-in uac)", "sip:+15551230001@127.0.0.1:5060", 0},
		{"another dialog's handle", "sip:swt-00000000000000000000@127.0.0.1:5060", 404},
		{"a host behind the edge", "sip:admin@10.20.30.40", 404},
		{"the PBX's own Contact", "sip:pbx@127.0.0.3:5080", 404},
		{"not a URI", "garbage", 400}, // sanity, before
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, rec := newTopoProxy(t, "")
			c := answeredCall(t, w, rec, i)
			ruri := tc.ruri
			if ruri == "" {
				var m sip.Msg
				_ = m.Parse(c.bye)
				ruri = string(m.RequestURI())
			}
			n := len(rec.sent)
			w.feed(uac, inDialogFromTrunk("INFO", ruri, i, 5))
			if len(rec.sent) != n+1 {
				t.Fatalf("%d messages sent, want 1", len(rec.sent)-n)
			}
			got := rec.sent[n]
			var m sip.Msg
			if err := m.Parse(got.b); err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.code == 0 && (got.dst != uas || m.Method() != sip.INFO || string(m.RequestURI()) != "sip:pbx@127.0.0.3:5080"):
				t.Errorf("want the INFO relayed to the PBX's Contact, got to %v:\n%s", got.dst, got.b)
			case tc.code != 0 && (got.dst != uac || m.StatusCode() != tc.code):
				t.Errorf("want %d to the trunk, got to %v:\n%s", tc.code, got.dst, got.b)
			}
		})
	}
}

// TestTopologyHidingInDialogMethods: re-INVITE, UPDATE and INFO both ways
// in a call from the trunk to the hidden PBX, each answered with 200.
func TestTopologyHidingInDialogMethods(t *testing.T) {
	for i, method := range []string{"INVITE", "UPDATE", "INFO"} {
		t.Run(method, func(t *testing.T) {
			w, rec := newTopoProxy(t, "")
			c := answeredCall(t, w, rec, i)
			var m sip.Msg
			_ = m.Parse(c.bye)
			handle := string(m.RequestURI())

			// from the trunk
			w.feed(uac, inDialogFromTrunk(method, handle, i, 5))
			req, _ := lastTo(t, rec, uas)
			if req.Method().String() != method || string(req.RequestURI()) != "sip:pbx@127.0.0.3:5080" ||
				string(req.Get(sip.HdrRoute)) != "<sip:10.9.9.1;lr>, <sip:10.9.9.2;lr>" {
				t.Fatalf("%s from the trunk, at the PBX:\n%s", method, req.Bytes())
			}
			w.feed(uas, pbxResponse(req, 200))
			resp, _ := lastTo(t, rec, uac)
			if resp.StatusCode() != 200 || !bytes.HasPrefix(resp.Get(sip.HdrContact), []byte("<sip:swt-")) {
				t.Fatalf("200 to the trunk:\n%s", resp.Bytes())
			}

			// from the PBX
			w.feed(uas, inDialogFromPBX(method, i, 9))
			fwd, _ := lastTo(t, rec, uac)
			if fwd.Method().String() != method || fwd.Count(sip.HdrVia) != 1 || fwd.Get(sip.HdrUserAgent) != nil ||
				!bytes.HasPrefix(fwd.Get(sip.HdrContact), []byte("<sip:swt-")) {
				t.Fatalf("%s from the PBX, at the trunk:\n%s", method, fwd.Bytes())
			}
			w.feed(uac, sip.AppendResponse(nil, fwd, 200, "OK", nil, "", nil))
			back, _ := lastTo(t, rec, uas)
			if back.StatusCode() != 200 || !bytes.Contains(back.Get(sip.HdrVia), []byte("10.9.9.1;branch=z9hG4bK-p0")) {
				t.Fatalf("200 to the PBX:\n%s", back.Bytes())
			}
			checkHidden(t, rec, uac)
		})
	}
}

// TestTopologyHidingHangupFromUpstream: when sipwarden ends a call the PBX
// made (a fraud rule), the BYE to the trunk carries the Call-ID and From
// the trunk knows, the BYE to the PBX its own.
func TestTopologyHidingHangupFromUpstream(t *testing.T) {
	w, rec := newTopoProxy(t, "")
	w.feed(uas, msg("INVITE sip:+15551230001@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.3:5080;branch=z9hG4bK-h1\n"+
		"From: <sip:+15550009999@127.0.0.3>;tag=pf1\nTo: <sip:+15551230001@example.net>\nCall-ID: h1@127.0.0.3\nCSeq: 1 INVITE\n"+
		"Contact: <sip:pbx@127.0.0.3:5080>\nMax-Forwards: 70\nContent-Length: 0\n\n"))
	fwd, _ := lastTo(t, rec, phone)
	w.feed(phone, sip.AppendResponse(nil, fwd, 200, "OK", []byte("tt"), "", []byte("Contact: <sip:phone@127.0.0.2:5070>\r\n")))
	w.hangup("h1@127.0.0.3", "fraud", "test_rule")
	toTrunk, _ := lastTo(t, rec, phone)
	toPBX, _ := lastTo(t, rec, uas)
	if toTrunk.Method() != sip.BYE || string(toTrunk.CallID()) != string(fwd.CallID()) || string(toTrunk.Get(sip.HdrFrom)) != string(fwd.Get(sip.HdrFrom)) {
		t.Errorf("BYE to the trunk:\n%s", toTrunk.Bytes())
	}
	if toPBX.Method() != sip.BYE || string(toPBX.CallID()) != "h1@127.0.0.3" || string(toPBX.Get(sip.HdrTo)) != "<sip:+15550009999@127.0.0.3>;tag=pf1" {
		t.Errorf("BYE to the PBX:\n%s", toPBX.Bytes())
	}
	checkHidden(t, rec, phone)
}

// TestMaskedCallIDStaysOnItsWorker: the Call-ID a trunk sees for a call from
// the upstream brings the trunk's messages to the worker that owns the call.
func TestMaskedCallIDStaysOnItsWorker(t *testing.T) {
	p, _, rec, _ := newTestProxy(t)
	q, err := New(Options{Sender: rec, Runtime: p.Runtime(), Workers: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	seen := map[string]bool{}
	for i := range 64 {
		inv := msg(fmt.Sprintf("INVITE sip:+15551230001@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.3:5080;branch=z9hG4bK-%d\n"+
			"From: <sip:a@127.0.0.3>;tag=t%d\nTo: <sip:b@example.net>\nCall-ID: %d@127.0.0.3\nCSeq: 1 INVITE\nContent-Length: 0\n\n", i, i, i))
		w := q.workers[maphash.Bytes(q.seed, sip.ScanCallID(inv))%4]
		var m sip.Msg
		if err := m.Parse(inv); err != nil {
			t.Fatal(err)
		}
		d := &dialog{}
		w.topoHandle(d, m.CallID(), m.FromTag())
		w.topoMaskCallID(&m, d, nil)
		masked := []byte("BYE sip:x SIP/2.0\r\nCall-ID: " + d.topo.callID + "\r\n\r\n")
		if got := q.workers[maphash.Bytes(q.seed, sip.ScanCallID(masked))%4]; got != w || !strings.HasPrefix(d.topo.callID, "swc") || seen[d.topo.callID] {
			t.Fatalf("Call-ID %d: masked %q goes to worker %d, the call is on %d", i, d.topo.callID, got.id, w.id)
		}
		seen[d.topo.callID] = true
		w.topoEnd(d)
	}
}

func TestTopoHostRewrite(t *testing.T) {
	_, w, _, _ := newTestProxy(t)
	l := w.p.opt.Sender.ListenerFor(sip.UDP, uas.Addr())
	for in, want := range map[string]string{
		`<sip:+1555@10.0.0.5>;tag=a`:                   `<sip:+1555@127.0.0.1:5060>;tag=a`,
		`"Al" <sip:al@10.0.0.5:5080;user=phone>;tag=a`: `"Al" <sip:al@127.0.0.1:5060;user=phone>;tag=a`,
		`<sip:al@[2001:db8::5]:5080>`:                  `<sip:al@127.0.0.1:5060>`,
		`sip:al@10.0.0.5;tag=a`:                        `sip:al@127.0.0.1:5060;tag=a`,
		`"10.0.0.5" <sip:al@10.0.0.5>`:                 `"10.0.0.5" <sip:al@127.0.0.1:5060>`,
		`<sip:al@pbx.example.net>;tag=a`:               "", // a name stays
		`<tel:+15551234567>`:                           "",
		`garbage`:                                      "",
	} {
		got, ok := w.topoHostRewrite([]byte(in), l)
		if (want == "") == ok || ok && string(got) != want {
			t.Errorf("topoHostRewrite(%s) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

// FuzzTopoHostRewrite: any From value is either left alone or rewritten
// into a value that still parses, without the old host.
func FuzzTopoHostRewrite(f *testing.F) {
	for _, s := range []string{`<sip:+1555@10.0.0.5>;tag=a`, `"x" <sip:a@[::1]:5>`, `sip:a@1.2.3.4:5;x`, `<sips:a:b@1.2.3.4:99?h=v>`} {
		f.Add(s)
	}
	_, w, _, _ := newTestProxy(f)
	l := w.p.opt.Sender.ListenerFor(sip.UDP, uas.Addr())
	f.Fuzz(func(t *testing.T, in string) {
		got, ok := w.topoHostRewrite([]byte(in), l)
		if !ok {
			return
		}
		if _, _, err := sip.ParseNameAddr(got); err != nil {
			t.Fatalf("%q became %q, which does not parse: %v", in, got, err)
		}
	})
}
