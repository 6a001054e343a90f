package identity

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/events"
	"github.com/sipwarden/sipwarden/internal/sip"
)

const testConfig = `
listen: [udp://127.0.0.1:5060]
upstreams: [{name: pbx, targets: [udp://192.0.2.10:5060]}]
shaken: {country_code: "1"}
trunks:
  - {name: cust, allow: [198.51.100.7], upstream: pbx, numbers: ["+15551230000/4"]}
  - {name: carrier, allow: [203.0.113.1], upstream: pbx, trust_identity: true}
  - name: phones
    auth: digest
    realm: phones.example
    algorithms: [SHA-256]
    upstream: pbx
    numbers: ["+15557770000/2"]
    accounts:
      - {username: "1001", ha1: {sha-256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}, numbers: ["+15551110001", "+1555222*"]}
      - {username: "1002", ha1: {sha-256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}}
  - name: rewriters
    auth: digest
    realm: rw.example
    algorithms: [SHA-256]
    upstream: pbx
    caller_id: rewrite
    trust_identity: true
    accounts:
      - {username: "2001", ha1: {sha-256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}, numbers: ["+15553330000/4", "+15553330001"]}
  - name: open
    auth: digest
    realm: open.example
    algorithms: [SHA-256]
    upstream: pbx
    accounts:
      - {username: "3001", ha1: {sha-256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}}
`

func parseMsg(t testing.TB, method, from string, extra ...string) *sip.Msg {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%s sip:+15559870002@pbx SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-1\r\n", method)
	fmt.Fprintf(&b, "From: %s\r\nTo: <sip:+15559870002@pbx>\r\nCall-ID: c1@x\r\nCSeq: 1 %s\r\nMax-Forwards: 70\r\n", from, method)
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	m := new(sip.Msg)
	if err := m.Parse([]byte(b.String())); err != nil {
		t.Fatal(err)
	}
	return m
}

// forwarded applies req's edits as the proxy does.
func forwarded(t *testing.T, req *chain.Request) string {
	t.Helper()
	var ed sip.Editor
	ed.Reset(req.Msg)
	for _, e := range req.HeaderEdits() {
		switch e.Kind {
		case chain.EditAdd:
			ed.InsertHeader(req.Msg.NumHeaders(), e.Name, e.Value)
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
	return string(out)
}

func TestStage(t *testing.T) {
	cfg, err := config.Parse([]byte(testConfig), "id.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bus := events.NewBus()
	sub := bus.Subscribe("test", 64)
	s := NewStage(cfg, nil, bus)
	forged := []string{"P-Asserted-Identity: <sip:+15550000001@evil>", "P-Preferred-Identity: <tel:+15550000002>",
		"Diversion: <sip:+15550000003@evil>;reason=unconditional", "remote-party-id: <sip:+15550000004@evil>;party=calling",
		"X-Other: kept"}
	tests := []struct {
		name, trunk, account, method, from string
		headers                            []string
		inDialog                           bool
		code                               uint16 // 0: continue
		reason                             string
		absent, present                    []string // in the forwarded request
		event                              bool
	}{
		{name: "untrusted trunk: identities removed", trunk: "cust", method: "INVITE", from: "<sip:+15551230001@a>;tag=1", headers: forged,
			absent: []string{"+15550000001", "+15550000002", "+15550000003", "+15550000004"}, present: []string{"X-Other: kept", "From: <sip:+15551230001@a>;tag=1"}},
		{name: "untrusted trunk: MESSAGE too", trunk: "cust", method: "MESSAGE", from: "<sip:+15551230001@a>;tag=1", headers: forged[:1],
			absent: []string{"P-Asserted-Identity"}},
		{name: "in-dialog requests too", trunk: "cust", method: "INVITE", from: "<sip:a@a>;tag=1", headers: forged[:1], inDialog: true,
			absent: []string{"P-Asserted-Identity"}},
		{name: "an in-dialog INVITE of an account is not a new call", trunk: "phones", account: "1001", method: "INVITE", from: "<sip:+15551230001@a>;tag=1", inDialog: true},
		{name: "ACK is relayed as it is", trunk: "cust", method: "ACK", from: "<sip:a@a>;tag=1", headers: forged[:1],
			present: []string{"P-Asserted-Identity"}},
		{name: "trusted trunk: identities kept", trunk: "carrier", method: "INVITE", from: "<sip:+15551230001@a>;tag=1", headers: forged,
			present: []string{"+15550000001", "+15550000002", "+15550000003", "+15550000004"}},
		{name: "too many identity headers", trunk: "cust", method: "INVITE", from: "<sip:a@a>;tag=1",
			headers: strings.Split(strings.Repeat("Diversion: <sip:1@a>\n", MaxRemoved+1), "\n")[:MaxRemoved+1], code: 403, reason: ReasonTooMany},
		{name: "account calls with its number", trunk: "phones", account: "1001", method: "INVITE", from: `"Bob" <sip:+15551110001@phones.example>;tag=1`,
			present: []string{"+15551110001"}},
		{name: "account calls with a number of its prefix, national form", trunk: "phones", account: "1001", method: "INVITE", from: "<sip:5552229999@phones.example>;tag=1"},
		{name: "account claims another DID", trunk: "phones", account: "1001", method: "INVITE", from: "<sip:+15551230001@phones.example>;tag=1",
			code: 403, reason: ReasonNotOwned, event: true},
		{name: "account with the trunk's numbers", trunk: "phones", account: "1002", method: "INVITE", from: "<sip:+15557770042@phones.example>;tag=1"},
		{name: "account outside the trunk's numbers", trunk: "phones", account: "1002", method: "INVITE", from: "<sip:+15551110001@phones.example>;tag=1",
			code: 403, reason: ReasonNotOwned, event: true},
		{name: "a caller that is no number", trunk: "phones", account: "1001", method: "INVITE", from: "<sip:bob@phones.example>;tag=1",
			code: 403, reason: ReasonNotOwned, event: true},
		{name: "REGISTER is not a call", trunk: "phones", account: "1001", method: "REGISTER", from: "<sip:1001@phones.example>;tag=1"},
		{name: "forged PAI of an account removed before the check", trunk: "phones", account: "1001", method: "INVITE",
			from: "<sip:+15551110001@phones.example>;tag=1", headers: forged[:1], absent: []string{"P-Asserted-Identity"}},
		{name: "rewrite: From gets the account's number", trunk: "rewriters", account: "2001", method: "INVITE",
			from:    `"+15550000009" <sip:+15550000009@rw.example;user=phone>;tag=xyz`,
			present: []string{"From: <sip:+15553330001@rw.example;user=phone>;tag=xyz"}, absent: []string{"+15550000009"}, event: true},
		{name: "rewrite: own number kept", trunk: "rewriters", account: "2001", method: "INVITE", from: "<sip:+15553331234@rw.example>;tag=1",
			present: []string{"From: <sip:+15553331234@rw.example>;tag=1"}},
		{name: "rewrite, trusted: a foreign asserted identity removed", trunk: "rewriters", account: "2001", method: "INVITE",
			from: "<sip:+15553331234@rw.example>;tag=1", headers: []string{"P-Asserted-Identity: <sip:+15550000001@x>", "P-Asserted-Identity: <sip:+15553330002@x>"},
			absent: []string{"+15550000001"}, present: []string{"P-Asserted-Identity: <sip:+15553330002@x>"}},
		{name: "no numbers anywhere: any caller ID", trunk: "open", account: "3001", method: "INVITE", from: "<sip:+15551230001@open.example>;tag=1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for len(sub.C) > 0 {
				<-sub.C
			}
			req := &chain.Request{Msg: parseMsg(t, tc.method, tc.from, tc.headers...), PeerKind: chain.PeerTrunk, Trunk: cfg.Trunk(tc.trunk),
				Account: tc.account, InDialog: tc.inDialog, Src: netip.MustParseAddrPort("198.51.100.7:5060")}
			v := s.Handle(req)
			if v.Code != tc.code || v.Reason != tc.reason {
				t.Fatalf("verdict %+v, want %d %q", v, tc.code, tc.reason)
			}
			if v.Action != chain.Continue {
				if got := len(sub.C) > 0; got != tc.event {
					t.Errorf("event %v, want %v", got, tc.event)
				}
				return
			}
			out := forwarded(t, req)
			for _, a := range tc.absent {
				if strings.Contains(out, a) {
					t.Errorf("%q forwarded:\n%s", a, out)
				}
			}
			for _, p := range tc.present {
				if !strings.Contains(out, p) {
					t.Errorf("%q not forwarded:\n%s", p, out)
				}
			}
			if got := len(sub.C) > 0; got != tc.event {
				t.Errorf("event %v, want %v", got, tc.event)
			}
		})
	}
	// upstreams are inside the trust domain
	req := &chain.Request{Msg: parseMsg(t, "INVITE", "<sip:a@a>;tag=1", forged...), PeerKind: chain.PeerUpstream, Upstream: &cfg.Upstreams[0]}
	if v := s.Handle(req); v.Action != chain.Continue || len(req.HeaderEdits()) != 0 {
		t.Fatalf("upstream: %+v, %d edits", v, len(req.HeaderEdits()))
	}
}

func TestRewriteConfig(t *testing.T) {
	_, err := config.Parse([]byte(`
listen: [udp://127.0.0.1:5060]
upstreams: [{name: pbx, targets: [udp://192.0.2.10:5060]}]
trunks:
  - name: rw
    auth: digest
    realm: rw.example
    algorithms: [SHA-256]
    upstream: pbx
    caller_id: rewrite
    accounts:
      - {username: "1", ha1: {sha-256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}, numbers: ["+15553330000/4"]}
  - {name: ip, allow: [192.0.2.1], upstream: pbx, caller_id: refuse}
  - {name: bad, allow: [192.0.2.2], upstream: pbx, caller_id: maybe}
  - name: badnum
    auth: digest
    realm: bad.example
    algorithms: [SHA-256]
    upstream: pbx
    accounts:
      - {username: "1", ha1: {sha-256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}, numbers: ["5551234"]}
`), "rw.yaml")
	for _, want := range []string{
		`rw.yaml:12:116: trunks[0].accounts[0].numbers: caller_id: rewrite needs one single number`,
		`trunks[1].caller_id: applies to the accounts of a digest trunk`,
		`trunks[2].caller_id: must be refuse (403) or rewrite`,
		`trunks[3].accounts[0].numbers[0]: must be an E.164 number with its '+'`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in %v", want, err)
		}
	}
}

// BenchmarkStrip: a trunk without trust_identity sending one
// P-Asserted-Identity.
func BenchmarkStrip(b *testing.B) {
	cfg, err := config.Parse([]byte(testConfig), "id.yaml")
	if err != nil {
		b.Fatal(err)
	}
	s := NewStage(cfg, nil, nil)
	m := parseMsg(b, "INVITE", "<sip:+15551230001@a>;tag=1", "P-Asserted-Identity: <sip:+15550000001@evil>")
	tr := cfg.Trunk("cust")
	var req chain.Request
	b.ReportAllocs()
	for b.Loop() {
		req.Reset()
		req.Msg, req.PeerKind, req.Trunk = m, chain.PeerTrunk, tr
		s.Handle(&req)
	}
}

// BenchmarkAccountCallerID: a digest account calling with its own number.
func BenchmarkAccountCallerID(b *testing.B) {
	cfg, err := config.Parse([]byte(testConfig), "id.yaml")
	if err != nil {
		b.Fatal(err)
	}
	s := NewStage(cfg, nil, nil)
	m := parseMsg(b, "INVITE", "<sip:+15551110001@phones.example>;tag=1")
	tr := cfg.Trunk("phones")
	var req chain.Request
	b.ReportAllocs()
	for b.Loop() {
		req.Reset()
		req.Msg, req.PeerKind, req.Trunk, req.Account = m, chain.PeerTrunk, tr, "1001"
		s.Handle(&req)
	}
}

// FuzzRewriteFrom: any From value gives an error or a From whose URI
// carries the number, and never panics.
func FuzzRewriteFrom(f *testing.F) {
	for _, s := range []string{`"Bob" <sip:+15550000009@rw.example;user=phone>;tag=xyz`, "<tel:+15550000009>;tag=1",
		"sip:bob@x;tag=1", "<sip:@x>", `"a" <sips:+1%32@[::1]:5061;transport=tls?x=y>;tag=a;x`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		out, err := rewriteFrom([]byte(v), "+15553330001")
		if err != nil {
			return
		}
		na, _, err := sip.ParseNameAddr(out)
		if err != nil {
			t.Fatalf("%q -> %q does not parse: %v", v, out, err)
		}
		u, err := sip.ParseURI(na.URI)
		if err != nil || string(u.User) != "+15553330001" {
			t.Fatalf("%q -> %q: user %q %v", v, out, u.User, err)
		}
	})
}
