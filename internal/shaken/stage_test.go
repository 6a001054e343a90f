package shaken

import (
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/events"
	"github.com/sipwarden/sipwarden/internal/sip"
)

const stageConfig = `
listen: [udp://127.0.0.1:5060]
upstreams: [{name: core, targets: [udp://192.0.2.10:5060]}]
trunks:
  - {name: acme, allow: [198.51.100.7], upstream: core, numbers: ["+15551230000/4"]}
  - {name: gw, allow: [198.51.100.8], upstream: core}
  - {name: carrier, allow: [203.0.113.1], upstream: core}
  - {name: strict, allow: [203.0.113.2], upstream: core}
  - {name: plain, allow: [203.0.113.3], upstream: core}
`

type stageLab struct {
	*lab
	cfg   *config.Config
	sh    config.Shaken
	stage *Stage
	bus   *events.Bus
	reg   *prometheus.Registry
	st    *State
}

func newStageLab(t *testing.T) *stageLab {
	t.Helper()
	l := &stageLab{lab: newLab(t)}
	var err error
	if l.cfg, err = config.Parse([]byte(stageConfig), "stage.yaml"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyPEM, _ := KeyPEM(l.pki.LeafKey)
	keyFile := filepath.Join(dir, "sp.key")
	rootFile := filepath.Join(dir, "root.pem")
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rootFile, CertPEM(l.pki.Root), 0o644); err != nil {
		t.Fatal(err)
	}
	l.sh = config.Shaken{
		TrustAnchors: rootFile, MaxAge: time.Minute, FutureSkew: 5 * time.Second, FetchBudget: 5 * time.Second, RelaxX5U: true,
		Signers: []config.ShakenSigner{{Name: "main", Key: keyFile, X5U: l.x5u}},
		Trunks: []config.ShakenTrunk{
			{Trunk: "acme", Signer: "main"},
			{Trunk: "gw", Signer: "main", Gateway: true},
			{Trunk: "carrier", Verify: config.ShakenMark},
			{Trunk: "strict", Verify: config.ShakenReject},
		},
	}
	l.reg = prometheus.NewRegistry()
	l.st = NewState(l.reg)
	t.Cleanup(l.st.Close)
	l.bus = events.NewBus()
	// the stage's cache must trust the lab's HTTPS server: swap in the lab's cache
	l.st.cache = l.cache
	if l.stage, err = NewStage(l.cfg, &l.sh, l.st, l.bus); err != nil {
		t.Fatal(err)
	}
	l.stage.verifier.cfg.Now = l.clk.Now
	return l
}

// run passes m from trunk through the stage and returns the verdict and the
// message as the proxy would forward it (edits applied).
func (l *stageLab) run(t *testing.T, trunk string, m *sip.Msg) (chain.Verdict, *sip.Msg) {
	t.Helper()
	return l.runAfter(t, trunk, m, nil)
}

// runAfter is run with the edits of an earlier stage (before) asked first.
func (l *stageLab) runAfter(t *testing.T, trunk string, m *sip.Msg, before func(*chain.Request)) (chain.Verdict, *sip.Msg) {
	t.Helper()
	req := &chain.Request{Msg: m, PeerKind: chain.PeerTrunk, Trunk: l.cfg.Trunk(trunk), Src: netip.MustParseAddrPort("198.51.100.7:5060")}
	if before != nil {
		before(req)
	}
	v := l.stage.Handle(req)
	var ed sip.Editor
	ed.Reset(m)
	for _, e := range req.HeaderEdits() {
		switch e.Kind {
		case chain.EditAdd:
			ed.InsertHeader(m.NumHeaders(), e.Name, e.Value)
		case chain.EditSet:
			ed.SetHeaderValue(e.Index, e.Value)
		case chain.EditDelete:
			ed.DeleteHeader(e.Index)
		}
	}
	out, err := ed.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	fwd := new(sip.Msg)
	if err := fwd.Parse(out); err != nil {
		t.Fatalf("edited message does not parse: %v\n%s", err, out)
	}
	return v, fwd
}

func TestStageSign(t *testing.T) {
	l := newStageLab(t)
	l.stage.trunks[l.cfg.Trunk("acme")].signer.Now = l.clk.Now
	l.stage.trunks[l.cfg.Trunk("gw")].signer.Now = l.clk.Now
	tests := []struct {
		trunk, from, pai, attest string
	}{
		{"acme", "<sip:+15551230001@pbx>;tag=1", "", "A"},                              // owns the number
		{"acme", "<sip:+15559990001@pbx>;tag=1", "", "B"},                              // does not
		{"acme", "<sip:+15559990001@pbx>;tag=1", "<sip:+1-555-123-0002@pbx>", "A"},     // PAI first
		{"gw", "<sip:+15551230001@pbx>;tag=1", "", "C"},                                // gateway
		{"acme", "<sip:+15551230001;verstat=TN-Validation-Passed@pbx>;tag=1", "", "A"}, // forged verstat stripped
	}
	for _, tc := range tests {
		m := inviteFrom(t, tc.from, "<sip:+15559870002@carrier>", "sip:+15559870002@carrier", tc.pai,
			"forged.by.pbx;info=<https://evil.example/x.pem>;ppt=shaken")
		v, fwd := l.run(t, tc.trunk, m)
		if v.Action != chain.Continue {
			t.Fatalf("%+v: verdict %+v", tc, v)
		}
		if fwd.Count(sip.HdrIdentity) != 1 || strings.Contains(string(fwd.Get(sip.HdrIdentity)), "forged") {
			t.Fatalf("%+v: Identity headers:\n%s", tc, fwd.Bytes())
		}
		if strings.Contains(string(fwd.Bytes()), "verstat") {
			t.Fatalf("%+v: verstat left in:\n%s", tc, fwd.Bytes())
		}
		d, err := http.ParseTime(string(fwd.Get(sip.HdrDate)))
		if err != nil || d.Unix() != l.clk.Now().Unix() {
			t.Fatalf("%+v: Date %q", tc, fwd.Get(sip.HdrDate))
		}
		// what we signed verifies against the forwarded message
		r := l.v.VerifyMsg(fwd)
		if !r.Passed() || r.Attest != tc.attest {
			t.Fatalf("%+v: signed call verifies as %+v", tc, r)
		}
	}
	if got := counterValue(l.st.Metrics.signed.WithLabelValues("A", "acme")); got != 3 {
		t.Errorf("signed A acme = %v", got)
	}
	// no telephone number: not signed, call continues
	v, fwd := l.run(t, "acme", inviteFrom(t, "<sip:alice@pbx>;tag=1", "<sip:+15559870002@c>", "sip:+15559870002@c", ""))
	if v.Action != chain.Continue || fwd.Get(sip.HdrIdentity) != nil {
		t.Fatalf("no TN: %+v\n%s", v, fwd.Bytes())
	}
	// a stale Date is refused (RFC 8224 section 4.1)
	stale := inviteWithDate(t, l.clk.Now().Add(-5*time.Minute))
	if v, _ := l.run(t, "acme", stale); v.Action != chain.Reply || v.Code != 403 || v.Reason != "shaken_stale_date" {
		t.Fatalf("stale Date: %+v", v)
	}
	// a fresh Date is kept and becomes the iat
	fresh := inviteWithDate(t, l.clk.Now().Add(-10*time.Second))
	_, fwd = l.run(t, "acme", fresh)
	if fwd.Count(sip.HdrDate) != 1 {
		t.Fatalf("Date duplicated:\n%s", fwd.Bytes())
	}
	id, _ := ParseIdentity(fwd.Get(sip.HdrIdentity))
	p, _ := ParsePASSporT(id.Token)
	if p.Claims.IAT != l.clk.Now().Add(-10*time.Second).Unix() {
		t.Fatalf("iat %d is not the Date", p.Claims.IAT)
	}
}

func inviteWithDate(t *testing.T, d time.Time) *sip.Msg {
	raw := "INVITE sip:+15559870002@c SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK1\r\nFrom: <sip:+15551230001@pbx>;tag=1\r\n" +
		"To: <sip:+15559870002@c>\r\nCall-ID: d1\r\nCSeq: 1 INVITE\r\nDate: " + d.UTC().Format(http.TimeFormat) + "\r\nContent-Length: 0\r\n\r\n"
	m := new(sip.Msg)
	if err := m.Parse([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestStageVerify(t *testing.T) {
	l := newStageLab(t)
	sub := l.bus.Subscribe("test", 16)
	good := l.identity(t, l.pki.LeafKey, l.x5u, l.claims())
	c := l.claims()
	c.IAT -= 120
	stale := l.identity(t, l.pki.LeafKey, l.x5u, c)

	// valid: verstat on P-Asserted-Identity (the peer's own verstat replaced), none on From
	m := inviteFrom(t, "<sip:+15551230001;verstat=TN-Validation-Passed@carrier>;tag=1", "<sip:+15559870002@pbx>",
		"sip:+15559870002@pbx", "<sip:+15551230001;verstat=No-TN-Validation@carrier>", good)
	v, fwd := l.run(t, "carrier", m)
	if v.Action != chain.Continue || string(fwd.Get(sip.HdrPAssertedIdentity)) != "<sip:+15551230001;verstat=TN-Validation-Passed@carrier>" ||
		strings.Contains(string(fwd.Get(sip.HdrFrom)), "verstat") || fwd.Get(sip.HdrReason) != nil {
		t.Fatalf("valid: %+v\n%s", v, fwd.Bytes())
	}
	// no identity: No-TN-Validation on From
	_, fwd = l.run(t, "carrier", invite(t))
	if !strings.Contains(string(fwd.Get(sip.HdrFrom)), "verstat=No-TN-Validation") {
		t.Fatalf("no identity:\n%s", fwd.Bytes())
	}
	// mark: a stale one passes, marked failed, with a Reason header
	v, fwd = l.run(t, "carrier", invite(t, stale))
	if v.Action != chain.Continue || !strings.Contains(string(fwd.Get(sip.HdrFrom)), "verstat=TN-Validation-Failed") ||
		string(fwd.Get(sip.HdrReason)) != `SIP ;cause=403 ;text="Stale Date"` {
		t.Fatalf("mark: %+v\n%s", v, fwd.Bytes())
	}
	// RFC 9410 form
	l.stage.reasonProto = "STIR"
	_, fwd = l.run(t, "carrier", invite(t, stale))
	if string(fwd.Get(sip.HdrReason)) != `STIR ;cause=403 ;text="Stale Date"` {
		t.Fatalf("RFC 9410 Reason:\n%s", fwd.Bytes())
	}
	l.stage.reasonProto = "SIP"
	// reject: the RFC 8224 code, a stable reason, and an event
	v, _ = l.run(t, "strict", invite(t, stale))
	if v.Action != chain.Reply || v.Code != 403 || v.Reason != "shaken_stale_date" || v.Warning != "Stale Date" {
		t.Fatalf("reject: %+v", v)
	}
	select {
	case e := <-sub.C:
		if e.Kind != events.Shaken || e.Reason != ReasonStale || e.Trunk != "carrier" {
			t.Fatalf("event %+v", e)
		}
	case <-time.After(time.Second):
		t.Fatal("no event")
	}
	if got := counterValue(l.st.Metrics.verified.WithLabelValues(VerstatPassed, ReasonPassed, "carrier")); got != 1 {
		t.Errorf("verified passed = %v", got)
	}
	// a trunk without policy: verstat stripped, nothing else
	_, fwd = l.run(t, "plain", inviteFrom(t, "<sip:+15551230001;verstat=TN-Validation-Passed@x>;tag=1", "<sip:+15559870002@pbx>", "sip:+15559870002@pbx", "", good))
	if strings.Contains(string(fwd.Bytes()), "verstat") || fwd.Get(sip.HdrIdentity) == nil {
		t.Fatalf("plain trunk:\n%s", fwd.Bytes())
	}
	// calls from upstreams are not touched
	req := &chain.Request{Msg: invite(t, stale), PeerKind: chain.PeerUpstream}
	if v := l.stage.Handle(req); v.Action != chain.Continue || len(req.HeaderEdits()) != 0 {
		t.Fatalf("upstream: %+v %d edits", v, len(req.HeaderEdits()))
	}
}

// TestVerstatOnTheVerifiedIdentity: verstat goes on the identity whose
// number the PASSporT's orig matched (ATIS-1000074), never on an unsigned
// P-Asserted-Identity beside a From that verified; a P-Asserted-Identity
// that an earlier stage removes verifies nothing.
func TestVerstatOnTheVerifiedIdentity(t *testing.T) {
	l := newStageLab(t)
	good := l.identity(t, l.pki.LeafKey, l.x5u, l.claims()) // orig +15551230001
	const (
		from     = "<sip:+15551230001@carrier>;tag=1"
		otherPAI = "<sip:+15559990009@carrier>"
		ownPAI   = "<sip:+15551230001@carrier>"
		to, ruri = "<sip:+15559870002@pbx>", "sip:+15559870002@pbx"
	)
	removePAI := func(req *chain.Request) { req.DeleteHeader(req.Msg.Find(sip.HdrPAssertedIdentity, 0)) }
	tests := []struct {
		name, pai string
		before    func(*chain.Request)
		wantFrom  string // verstat value on From ("" none)
		wantPAI   string // verstat value on P-Asserted-Identity ("" none)
		noPAI     bool   // the P-Asserted-Identity is not forwarded
	}{
		{"orig matched From, PAI unsigned", otherPAI, nil, VerstatPassed, "", false},
		{"orig matched PAI", ownPAI, nil, "", VerstatPassed, false},
		{"no PAI", "", nil, VerstatPassed, "", true},
		{"PAI removed by an earlier stage, From matches", otherPAI, removePAI, VerstatPassed, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, fwd := l.runAfter(t, "carrier", inviteFrom(t, from, to, ruri, tc.pai, good), tc.before)
			if got := verstatOf(fwd.Get(sip.HdrFrom)); got != tc.wantFrom {
				t.Errorf("From verstat %q, want %q\n%s", got, tc.wantFrom, fwd.Bytes())
			}
			pai := fwd.Get(sip.HdrPAssertedIdentity)
			if tc.noPAI != (pai == nil) {
				t.Fatalf("P-Asserted-Identity forwarded: %v\n%s", pai != nil, fwd.Bytes())
			}
			if got := verstatOf(pai); got != tc.wantPAI {
				t.Errorf("P-Asserted-Identity verstat %q, want %q\n%s", got, tc.wantPAI, fwd.Bytes())
			}
		})
	}
	// orig matched only a P-Asserted-Identity that is removed: nothing verified
	m := inviteFrom(t, "<sip:+15559990009@carrier>;tag=1", to, ruri, ownPAI, good)
	_, fwd := l.runAfter(t, "carrier", m, removePAI)
	if fwd.Get(sip.HdrPAssertedIdentity) != nil || verstatOf(fwd.Get(sip.HdrFrom)) != VerstatFailed {
		t.Fatalf("orig only in a removed PAI:\n%s", fwd.Bytes())
	}
}

// TestSignReadsTheForwardedIdentity: the signer attests the caller that
// will be forwarded: From as an earlier stage rewrote it, not a removed
// P-Asserted-Identity.
func TestSignReadsTheForwardedIdentity(t *testing.T) {
	l := newStageLab(t)
	l.stage.trunks[l.cfg.Trunk("acme")].signer.Now = l.clk.Now
	m := inviteFrom(t, "<sip:+15559990001@pbx>;tag=1", "<sip:+15559870002@pbx>", "sip:+15559870002@pbx", "<sip:+15551230002@pbx>", "")
	_, fwd := l.runAfter(t, "acme", m, func(req *chain.Request) {
		req.DeleteHeader(req.Msg.Find(sip.HdrPAssertedIdentity, 0))
		req.SetHeader(req.Msg.Find(sip.HdrFrom, 0), []byte("<sip:+15551230007@pbx>;tag=1"))
	})
	id, err := ParseIdentity(fwd.Get(sip.HdrIdentity))
	if err != nil {
		t.Fatalf("%v\n%s", err, fwd.Bytes())
	}
	p, err := ParsePASSporT(id.Token)
	if err != nil || p.Claims.Orig != "15551230007" || p.Claims.Attest != "A" || fwd.Get(sip.HdrPAssertedIdentity) != nil {
		t.Fatalf("signed %+v %v\n%s", p, err, fwd.Bytes())
	}
}

// TestIdentityHeadersBeyondTheEdits: identity headers that the edits of
// one request cannot all remove or fix (a forged verstat, the customer's
// own PASSporTs) refuse the request instead of passing some on; a verstat
// in a P-Asserted-Identity that does not parse removes the field.
func TestIdentityHeadersBeyondTheEdits(t *testing.T) {
	l := newStageLab(t)
	ids := make([]string, chain.MaxEdits+1)
	for i := range ids {
		ids[i] = "forged.identity.token;info=<https://evil.example/x>"
	}
	m := inviteFrom(t, "<sip:+15551230001@pbx>;tag=1", "<sip:+15559870002@pbx>", "sip:+15559870002@pbx", "", ids...)
	if v, _ := l.run(t, "acme", m); v.Action != chain.Reply || v.Code != 403 || v.Reason != "shaken_too_many_headers" {
		t.Fatalf("%d Identity headers from a signing trunk: %+v", len(ids), v)
	}
	var b strings.Builder
	for range chain.MaxEdits + 1 {
		b.WriteString("P-Asserted-Identity: <sip:+15551230001;verstat=TN-Validation-Passed@x>\r\n")
	}
	raw := strings.Replace(string(inviteFrom(t, "<sip:+15551230001@pbx>;tag=1", "<sip:+15559870002@pbx>", "sip:+15559870002@pbx", "").Bytes()),
		"Call-ID:", strings.TrimSuffix(b.String(), "\r\n")+"\r\nCall-ID:", 1)
	m = new(sip.Msg)
	if err := m.Parse([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	if v, _ := l.run(t, "plain", m); v.Action != chain.Reply || v.Code != 403 {
		t.Fatalf("%d forged verstats from a trunk without policy: %+v", chain.MaxEdits+1, v)
	}
	m = inviteFrom(t, "<sip:+15551230001@pbx>;tag=1", "<sip:+15559870002@pbx>", "sip:+15559870002@pbx", "<sip:+15551230001;verstat=TN-Validation-Passed@x")
	v, fwd := l.run(t, "plain", m)
	if v.Action != chain.Continue || strings.Contains(string(fwd.Bytes()), "verstat") {
		t.Fatalf("a forged verstat in a P-Asserted-Identity that does not parse: %+v\n%s", v, fwd.Bytes())
	}
}

// verstatOf is the verstat parameter in a From or P-Asserted-Identity value.
func verstatOf(v []byte) string {
	_, after, ok := strings.Cut(string(v), "verstat=")
	if !ok {
		return ""
	}
	end := strings.IndexAny(after, ";@>")
	if end < 0 {
		return after
	}
	return after[:end]
}

func TestNewStageRefuses(t *testing.T) {
	l := newStageLab(t)
	sh := l.sh
	if err := os.Chmod(sh.Signers[0].Key, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := NewStage(l.cfg, &sh, nil, nil); err == nil || !strings.Contains(err.Error(), "other users") {
		t.Fatalf("world-readable key: %v", err)
	}
	_ = os.Chmod(sh.Signers[0].Key, 0o600)
	sh.TrustAnchors = filepath.Join(t.TempDir(), "missing.pem")
	if _, err := NewStage(l.cfg, &sh, nil, nil); err == nil {
		t.Fatal("missing trust anchors accepted")
	}
	if s, err := NewStage(l.cfg, &config.Shaken{}, nil, nil); err != nil || s.Handle(&chain.Request{Msg: invite(t), PeerKind: chain.PeerTrunk, Trunk: l.cfg.Trunk("acme")}).Action != chain.Continue {
		t.Fatalf("disabled stage: %v", err)
	}
}

func TestOwnsNumber(t *testing.T) {
	tr := &config.Trunk{Numbers: []config.NumberRange{{Prefix: "+1555123", Digits: 4}, {Prefix: "+15559990000", Digits: 0}, {Prefix: "+44", Digits: -1}}}
	for tn, want := range map[string]bool{"15551230001": true, "155512300011": false, "1555123000": false, "15559990000": true,
		"15559990001": false, "442079460000": true, "4": false} {
		if got := ownsNumber(tr, tn); got != want {
			t.Errorf("ownsNumber(%s) = %v", tn, got)
		}
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// A reload builds a new stage over the same State: the certificate cache
// (and what it holds) is kept.
func TestStageReloadKeepsCache(t *testing.T) {
	l := newStageLab(t)
	s2, err := NewStage(l.cfg, &l.sh, l.st, l.bus)
	if err != nil {
		t.Fatal(err)
	}
	if s2.verifier.cfg.Certs != l.stage.verifier.cfg.Certs {
		t.Fatal("the reloaded stage has another certificate cache")
	}
}
