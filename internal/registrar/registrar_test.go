package registrar

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/events"
	"github.com/sipwarden/sipwarden/internal/sip"
)

var t0 = time.Unix(1_800_000_000, 0)

func reqFrom(src string, cseq uint32, expires int64, contacts ...Contact) *Request {
	return &Request{Contacts: contacts, Expires: expires, CallID: "c1", CSeq: cseq, Source: netip.MustParseAddrPort(src), Transport: sip.UDP}
}

func TestApply(t *testing.T) {
	o := Options{MinExpires: time.Minute, MaxExpires: time.Hour, DefaultExpires: 30 * time.Minute, MaxContacts: 2}
	r := New()
	c1 := Contact{URI: "sip:1001@10.0.0.1:5060", Expires: -1}
	c2 := Contact{URI: "sip:1001@10.0.0.2:5060", Expires: 120}
	c3 := Contact{URI: "sip:1001@10.0.0.3:5060", Expires: -1}
	steps := []struct {
		name     string
		req      *Request
		at       time.Duration
		code     int
		err      error
		bindings []string // contact=seconds left
	}{
		{"default expiry", reqFrom("192.0.2.1:5060", 1, -1, c1), 0, 200, nil, []string{"sip:1001@10.0.0.1:5060=1800"}},
		{"contact expires wins over the header", reqFrom("192.0.2.1:5060", 2, 3000, c2), 0, 200, nil, []string{"sip:1001@10.0.0.1:5060=1800", "sip:1001@10.0.0.2:5060=120"}},
		{"one more than max_contacts", reqFrom("192.0.2.1:5060", 3, -1, c3), 0, 403, ErrTooMany, nil},
		{"too brief", reqFrom("192.0.2.1:5060", 4, 59, c1), 0, 423, ErrTooBrief, nil},
		{"longer than max is shortened", reqFrom("192.0.2.1:5060", 5, 999999, c1), 0, 200, nil, []string{"sip:1001@10.0.0.1:5060=3600", "sip:1001@10.0.0.2:5060=120"}},
		{"CSeq not higher on the same Call-ID", reqFrom("192.0.2.1:5060", 5, -1, c1), 0, 500, ErrOutOfOrder, nil},
		{"query", reqFrom("192.0.2.1:5060", 6, -1), 0, 200, nil, []string{"sip:1001@10.0.0.1:5060=3600", "sip:1001@10.0.0.2:5060=120"}},
		{"c2 expires by itself", reqFrom("192.0.2.1:5060", 7, -1), 121 * time.Second, 200, nil, []string{"sip:1001@10.0.0.1:5060=3479"}},
		{"remove with expires=0 and add in one request", reqFrom("192.0.2.1:5060", 8, -1, Contact{URI: c1.URI, Expires: 0}, c3, c2), 121 * time.Second, 200, nil, []string{"sip:1001@10.0.0.3:5060=1800", "sip:1001@10.0.0.2:5060=120"}},
		{"zero expiry is no too-brief", reqFrom("192.0.2.1:5060", 9, 0, c3), 121 * time.Second, 200, nil, []string{"sip:1001@10.0.0.2:5060=120"}},
		{"wildcard with expires", &Request{Wildcard: true, Expires: 60, CallID: "c1", CSeq: 10, Source: netip.MustParseAddrPort("192.0.2.1:5060")}, 0, 400, ErrBadWildcard, nil},
		{"wildcard removes all", &Request{Wildcard: true, Expires: 0, CallID: "c1", CSeq: 11, Source: netip.MustParseAddrPort("192.0.2.1:5060")}, 0, 200, nil, []string{}},
	}
	for _, s := range steps {
		now := t0.Add(s.at)
		res := r.Apply("t\x001001", o, s.req, now)
		if res.Code != s.code || !errors.Is(res.Err, s.err) {
			t.Fatalf("%s: %d %v, want %d %v", s.name, res.Code, res.Err, s.code, s.err)
		}
		if s.bindings == nil {
			continue
		}
		var got []string
		for _, b := range r.Bindings("t\x001001", now) {
			got = append(got, fmt.Sprintf("%s=%d", b.Contact, int(b.Expires.Sub(now).Seconds())))
		}
		if strings.Join(got, " ") != strings.Join(s.bindings, " ") && !sameSet(got, s.bindings) {
			t.Fatalf("%s: bindings %v, want %v", s.name, got, s.bindings)
		}
	}
	if r.Len() != 0 {
		t.Fatalf("%d bindings left", r.Len())
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]bool{}
	for _, x := range a {
		m[x] = true
	}
	for _, x := range b {
		if !m[x] {
			return false
		}
	}
	return true
}

func TestSourceChanges(t *testing.T) {
	o := Options{}
	r := New()
	inst := Contact{URI: "sip:1001@10.0.0.1", Instance: "<urn:uuid:1>", Expires: -1}
	kinds := func(res Result) string {
		var s []string
		for _, c := range res.Changes {
			s = append(s, c.Kind.String())
		}
		return strings.Join(s, ",")
	}
	steps := []struct {
		src  string
		c    Contact
		want string
	}{
		{"192.0.2.1:5060", inst, ""},                              // first registration: nothing to compare
		{"192.0.2.1:5062", inst, ""},                              // same address, other port
		{"192.0.2.77:5060", inst, "new_address,binding_replaced"}, // same /24, takes the binding over
		{"198.51.100.9:5060", Contact{URI: "sip:1001@10.9.9.9", Instance: "<urn:uuid:1>", Expires: -1}, "new_prefix,binding_replaced"}, // same instance, new contact URI
		{"192.0.2.1:5060", Contact{URI: "sip:1001@10.0.0.5", Expires: -1}, ""},
	}
	for i, s := range steps {
		res := r.Apply("k", o, reqFrom(s.src, uint32(i+1), -1, s.c), t0)
		if res.Code != 200 || kinds(res) != s.want {
			t.Fatalf("step %d from %s: %d %q, want %q", i, s.src, res.Code, kinds(res), s.want)
		}
	}
	if bs := r.Bindings("k", t0); len(bs) != 2 {
		t.Fatalf("the instance's binding was not replaced: %+v", bs)
	}
}

const stageCfg = `
listen: [udp://127.0.0.1:5060]
upstreams: [{name: pbx, targets: [udp://127.0.0.1:5080]}]
trunks:
  - name: phones
    auth: digest
    realm: r
    upstream: pbx
    registrar: {enabled: true, min_expires: 2m, max_contacts: 2}
    accounts: [{username: "1001", ha1: {md5: 00000000000000000000000000000000, sha-256: 0000000000000000000000000000000000000000000000000000000000000000, sha-512-256: 0000000000000000000000000000000000000000000000000000000000000000}}]
  - name: other
    auth: digest
    realm: o
    upstream: pbx
    accounts: [{username: "1001", ha1: {md5: 00000000000000000000000000000000, sha-256: 0000000000000000000000000000000000000000000000000000000000000000, sha-512-256: 0000000000000000000000000000000000000000000000000000000000000000}}]
`

var cseq int

func register(t testing.TB, contact, expires string) *sip.Msg {
	t.Helper()
	cseq++
	s := "REGISTER sip:r SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK" + fmt.Sprint(cseq) + "\r\nFrom: <sip:1001@r>;tag=1\r\nTo: <sip:1001@r>\r\n" +
		"Call-ID: reg1\r\nCSeq: " + fmt.Sprint(cseq) + " REGISTER\r\nUser-Agent: Phone/1.0\r\n"
	if contact != "" {
		s += "Contact: " + contact + "\r\n"
	}
	if expires != "" {
		s += "Expires: " + expires + "\r\n"
	}
	s += "Content-Length: 0\r\n\r\n"
	var m sip.Msg
	if err := m.Parse([]byte(s)); err != nil {
		t.Fatal(err)
	}
	return &m
}

func TestStage(t *testing.T) {
	cfg, err := config.Parse([]byte(stageCfg), "r.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bus := events.NewBus()
	sub := bus.Subscribe("t", 16)
	s, _ := NewStage(cfg, New(), nil, bus)
	s.now = func() time.Time { return t0 }
	if !s.Enabled() {
		t.Fatal("not enabled")
	}
	handle := func(m *sip.Msg, src, trunk, account string) chain.Verdict {
		return s.Handle(&chain.Request{Msg: m, Src: netip.MustParseAddrPort(src), Transport: sip.UDP, PeerKind: chain.PeerTrunk,
			Trunk: cfg.Trunk(trunk), Account: account})
	}
	tests := []struct {
		name, contact, expires, src, trunk, account string
		code                                        uint16
		header                                      string
	}{
		{"not authenticated: auth's business", "<sip:1001@10.0.0.1>", "", "192.0.2.1:5060", "phones", "", 0, ""},
		{"trunk without registrar: forwarded", "<sip:1001@10.0.0.1>", "", "192.0.2.1:5060", "other", "1001", 0, ""},
		{"register", `"Phone" <sip:1001@10.0.0.1:5060;transport=udp>;+sip.instance="<urn:uuid:a>"`, "600", "192.0.2.1:5060", "phones", "1001", 200, "Contact: <sip:1001@10.0.0.1:5060;transport=udp>;expires=600"},
		{"too brief", "<sip:1001@10.0.0.2>;expires=60", "", "192.0.2.1:5060", "phones", "1001", 423, "Min-Expires: 120"},
		{"two in one field", "<sip:1001@10.0.0.2>, <sip:1001@10.0.0.3>", "", "192.0.2.1:5060", "phones", "1001", 403, ""},
		{"bad expires", "<sip:1001@10.0.0.2>", "soon", "192.0.2.1:5060", "phones", "1001", 400, ""},
		{"bad contact", "<sip:1001@10.0.0.2", "", "192.0.2.1:5060", "phones", "1001", 400, ""},
		{"query", "", "", "192.0.2.1:5060", "phones", "1001", 200, "Contact: <sip:1001@10.0.0.1:5060;transport=udp>;expires=600"},
		{"from elsewhere", "<sip:1001@10.0.0.1:5060;transport=udp>", "", "203.0.113.5:5060", "phones", "1001", 200, "Contact: <sip:1001@10.0.0.1:5060;transport=udp>;expires=3600"},
		{"wildcard", "*", "0", "192.0.2.1:5060", "phones", "1001", 200, ""},
	}
	for _, tc := range tests {
		v := handle(register(t, tc.contact, tc.expires), tc.src, tc.trunk, tc.account)
		switch {
		case tc.code == 0 && v.Action != chain.Continue:
			t.Errorf("%s: %+v", tc.name, v)
		case tc.code != 0 && (v.Code != tc.code || v.Header != tc.header):
			t.Errorf("%s: %+v, want %d %q", tc.name, v, tc.code, tc.header)
		}
	}
	var got []string
	for len(sub.C) > 0 {
		e := <-sub.C
		got = append(got, e.Kind.String()+":"+e.Reason)
	}
	if strings.Join(got, " ") != "registration_new_source:new_prefix binding_replaced:binding_replaced" {
		t.Fatalf("events: %v", got)
	}
}

func FuzzParseRegister(f *testing.F) {
	f.Add([]byte(`"A" <sip:a@b;transport=tcp>;expires=60;+sip.instance="<urn:uuid:1>", <sip:c@d>`), []byte("3600"))
	f.Add([]byte("*"), []byte("0"))
	f.Fuzz(func(t *testing.T, contact, expires []byte) {
		s := "REGISTER sip:r SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@r>;tag=1\r\nTo: <sip:a@r>\r\nCall-ID: x\r\nCSeq: 1 REGISTER\r\nContact: " +
			string(contact) + "\r\nExpires: " + string(expires) + "\r\nContent-Length: 0\r\n\r\n"
		var m sip.Msg
		if m.Parse([]byte(s)) != nil {
			return
		}
		r, bad := parseRegister(&chain.Request{Msg: &m, Src: netip.MustParseAddrPort("192.0.2.1:5060")})
		if bad == "" && len(r.Contacts) > maxContactsPerRequest {
			t.Fatalf("%d contacts", len(r.Contacts))
		}
		if bad == "" {
			New().Apply("k", Options{}, &r, time.Now())
		}
	})
}

// With a GeoIP lookup, an account registering from a country it never
// registered from is reported once; known countries are rebuilt from the
// remembered sources (after a restart the country list is empty).
func TestNewCountry(t *testing.T) {
	country := func(a netip.Addr) string {
		switch {
		case netip.MustParsePrefix("192.0.2.0/24").Contains(a):
			return "US"
		case netip.MustParsePrefix("198.51.100.0/24").Contains(a):
			return "FR"
		case netip.MustParsePrefix("203.0.113.0/24").Contains(a):
			return "US"
		}
		return ""
	}
	r := New()
	o := Options{Country: country}
	c := Contact{URI: "sip:1001@10.0.0.5", Expires: -1}
	var got []string
	for i, src := range []string{"192.0.2.1:5060", "203.0.113.5:5060", "198.51.100.9:5060", "198.51.100.10:5060", "10.1.1.1:5060"} {
		res := r.Apply("k", o, reqFrom(src, uint32(i+1), -1, c), t0)
		for _, ch := range res.Changes {
			if ch.Kind == NewCountry {
				got = append(got, fmt.Sprintf("%s from %s after %v", ch.Country, src, ch.Countries))
			}
		}
	}
	if want := []string{"FR from 198.51.100.9:5060 after [US]"}; !slices.Equal(got, want) {
		t.Fatalf("new countries: %q, want %q", got, want)
	}
	// the country list is rebuilt from the known sources when empty
	r.aors["k"].countries = nil
	res := r.Apply("k", o, reqFrom("198.51.100.11:5060", 9, -1, c), t0)
	for _, ch := range res.Changes {
		if ch.Kind == NewCountry {
			t.Fatalf("a country known from the remembered sources was reported again: %+v", ch)
		}
	}
}

// A registration over TCP or TLS holds its connection until the binding
// expires; unregistering ends the hold; UDP has no connection to hold.
func TestStageHoldsRegisteredFlow(t *testing.T) {
	cfg, err := config.Parse([]byte(stageCfg), "r.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := NewStage(cfg, New(), nil, events.NewBus())
	s.now = func() time.Time { return t0 }
	type hold struct {
		t     sip.Transport
		src   string
		until time.Time
	}
	var holds []hold
	s.SetFlowHold(func(tr sip.Transport, src netip.AddrPort, until time.Time) {
		holds = append(holds, hold{tr, src.String(), until})
	})
	handle := func(m *sip.Msg, tr sip.Transport) chain.Verdict {
		return s.Handle(&chain.Request{Msg: m, Src: netip.MustParseAddrPort("192.0.2.1:40000"), Transport: tr,
			PeerKind: chain.PeerTrunk, Trunk: cfg.Trunk("phones"), Account: "1001"})
	}
	if v := handle(register(t, "<sip:1001@10.0.0.1:5062;transport=udp>", "600"), sip.UDP); v.Code != 200 || len(holds) != 0 {
		t.Fatalf("UDP: %+v, holds %v", v, holds)
	}
	if v := handle(register(t, "<sip:1001@10.0.0.1:5061;transport=tls>", "600"), sip.TLS); v.Code != 200 {
		t.Fatalf("TLS: %+v", v)
	}
	if want := (hold{sip.TLS, "192.0.2.1:40000", t0.Add(600 * time.Second)}); len(holds) != 1 || holds[0] != want {
		t.Fatalf("holds %v, want %v", holds, want)
	}
	if v := handle(register(t, "<sip:1001@10.0.0.1:5061;transport=tls>", "0"), sip.TLS); v.Code != 200 {
		t.Fatalf("unregister: %+v", v)
	}
	if len(holds) != 2 || !holds[1].until.IsZero() {
		t.Fatalf("after unregistering: holds %v, want the hold ended", holds)
	}
}

// TestList: every binding in force, by trunk and account, newest first
// within an account; expired ones are left out.
func TestList(t *testing.T) {
	o := Options{MinExpires: time.Minute, MaxExpires: time.Hour, DefaultExpires: 30 * time.Minute, MaxContacts: 5}
	r := New()
	r.Apply("phones\x001002", o, reqFrom("192.0.2.2:5060", 1, 600, Contact{URI: "sip:1002@10.0.0.2", Expires: -1}), t0)
	r.Apply("phones\x001001", o, reqFrom("192.0.2.1:5060", 1, 600, Contact{URI: "sip:1001@10.0.0.1", Expires: -1}), t0)
	r.Apply("phones\x001001", o, reqFrom("192.0.2.1:5060", 2, 600, Contact{URI: "sip:1001@10.0.0.9", Expires: 60}), t0.Add(time.Second))
	r.Apply("alpha\x00pbx", o, reqFrom("192.0.2.3:5060", 1, 60, Contact{URI: "sip:pbx@10.0.0.3", Expires: -1}), t0)
	var got []string
	for _, g := range r.List(t0.Add(2 * time.Second)) {
		got = append(got, g.Trunk+"/"+g.Account+"="+g.Contact)
	}
	want := []string{"alpha/pbx=sip:pbx@10.0.0.3", "phones/1001=sip:1001@10.0.0.9", "phones/1001=sip:1001@10.0.0.1", "phones/1002=sip:1002@10.0.0.2"}
	if !slices.Equal(got, want) {
		t.Fatalf("List:\n%v\nwant\n%v", got, want)
	}
	got = got[:0]
	for _, g := range r.List(t0.Add(90 * time.Second)) {
		got = append(got, g.Trunk+"/"+g.Account+"="+g.Contact)
	}
	if want := []string{"phones/1001=sip:1001@10.0.0.1", "phones/1002=sip:1002@10.0.0.2"}; !slices.Equal(got, want) {
		t.Fatalf("List after expiry: %v, want %v", got, want)
	}
}
