package scanner

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/sipwarden/sipwarden/internal/banlist"
	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/sip"
)

func msg(t testing.TB, ua, from string) *sip.Msg {
	b := "OPTIONS sip:100@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.9:5060;branch=z9hG4bK1\r\nFrom: " + from +
		"\r\nTo: <sip:100@192.0.2.1>\r\nCall-ID: 1\r\nCSeq: 1 OPTIONS\r\n"
	if ua != "" {
		b += "User-Agent: " + ua + "\r\n"
	}
	var m sip.Msg
	if err := m.Parse([]byte(b + "Content-Length: 0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	return &m
}

func TestMatch(t *testing.T) {
	mt := NewMatcher(nil)
	for _, tc := range []struct{ ua, from, want string }{
		{"friendly-scanner", "<sip:100@x>;tag=1", "friendly-scanner"},
		{"SIPVicious 0.3.4", "<sip:100@x>;tag=1", "sipvicious"},
		{"VaxSIPUserAgent/3.1", "<sip:100@x>;tag=1", "vaxsipuseragent"},
		{"sipcli/v1.8", "<sip:100@x>;tag=1", "sipcli"},
		{"iWar", "<sip:100@x>;tag=1", "iwar"},
		{"Mozilla/5.0 (smap 0.6.0)", "<sip:100@x>;tag=1", "smap"},
		{"  pplsip_2  ", "<sip:100@x>;tag=1", "pplsip"},
		// display names are no evidence, whatever they say
		{"", `"sipvicious"<sip:100@1.1.1.1>;tag=3`, ""},
		{"Asterisk PBX 18.2", `"Anil Tiwari" <sip:+15551230001@x>;tag=1`, ""},
		{"Asterisk PBX 18.2", `"Siwar Ben Salah" <sip:+15551230001@x>;tag=1`, ""},
		{"Asterisk PBX 18.2", `"friendly-scanner" <sip:100@x>;tag=1`, ""},
		// a tool name inside a word is no token
		{"Siwar-Phone 2.1", "<sip:100@x>;tag=1", ""},
		{"Tiwari SoftPhone", "<sip:100@x>;tag=1", ""},
		{"Bismapper/1.0", "<sip:100@x>;tag=1", ""},
		{"friendly-scanners-are-bad", "<sip:100@x>;tag=1", ""},
		{"nmapper 2", "<sip:100@x>;tag=1", ""},
		{"Ñiwar-Phone", "<sip:100@x>;tag=1", ""},
		{"Téléphone sipcliént", "<sip:100@x>;tag=1", ""},
		{"Asterisk PBX 18.2", `"Alice" <sip:100@x>;tag=1`, ""},
		{"", "<sip:100@x>;tag=1", ""},
	} {
		if got := mt.Match(msg(t, tc.ua, tc.from)); got != tc.want {
			t.Errorf("UA %q From %q: %q, want %q", tc.ua, tc.from, got, tc.want)
		}
	}
	custom := NewMatcher([]string{"EvilTool", "=Bad UA 1.0", "sip scanner"})
	for _, tc := range []struct{ ua, want string }{
		{"eviltool/1", "eviltool"},
		{"friendly-scanner", ""},
		{"bad ua 1.0", "bad ua 1.0"},
		{"Bad UA 1.0 (really)", ""},
		{"my sip scanner v2", "sip scanner"},
		{"sip scanners", ""},
	} {
		if got := custom.Match(msg(t, tc.ua, "<sip:a@b>")); got != tc.want {
			t.Errorf("custom signatures, UA %q: %q, want %q", tc.ua, got, tc.want)
		}
	}
	for _, ua := range []string{"Asterisk PBX 18.2", "friendly-scanner"} {
		m := msg(t, ua, `"Anil Tiwari" <sip:a@b>;tag=1`)
		if n := testing.AllocsPerRun(1000, func() { mt.Match(m) }); n != 0 {
			t.Errorf("UA %q: %v allocations per match", ua, n)
		}
	}
}

func TestStageDropsAndBans(t *testing.T) {
	cfg, _ := config.Parse([]byte("listen: [udp://127.0.0.1:5060]\nscanner: {ban_after: 2}\n"), "t")
	bans := banlist.New(nil, banlist.Options{})
	st, _ := NewStage(cfg, bans, nil, nil)
	src := netip.MustParseAddrPort("203.0.113.7:5060")
	m := msg(t, "friendly-scanner", "<sip:100@x>;tag=1")
	for i := 1; i <= 2; i++ {
		v := st.Handle(&chain.Request{Msg: m, Src: src})
		if v.Action != chain.Drop || v.Reason != "scanner" {
			t.Fatalf("hit %d: %+v", i, v)
		}
		if banned := bans.Blocked(src.Addr()); banned != (i == 2) {
			t.Fatalf("after hit %d banned=%v", i, banned)
		}
	}
	clean := msg(t, "Yealink T46", "<sip:100@x>;tag=1")
	if v := st.Handle(&chain.Request{Msg: clean, Src: netip.MustParseAddrPort("203.0.113.8:5060")}); v.Action != chain.Continue {
		t.Fatalf("clean request: %+v", v)
	}
}

// A configured peer is never banned for a signature (its address can be
// spoofed): the request is dropped, the source stays in.
func TestStageNeverBansPeers(t *testing.T) {
	cfg, _ := config.Parse([]byte("listen: [udp://127.0.0.1:5060]\n"), "t")
	bans := banlist.New(nil, banlist.Options{})
	peer := netip.MustParseAddrPort("192.0.2.10:5060")
	bans.SetPeerCheck(func(a netip.Addr) bool { return a == peer.Addr() })
	st, _ := NewStage(cfg, bans, nil, nil)
	m := msg(t, "friendly-scanner", "<sip:100@x>;tag=1")
	for i := range 3 {
		if v := st.Handle(&chain.Request{Msg: m, Src: peer, PeerKind: chain.PeerTrunk, Trunk: &config.Trunk{Name: "acme"}}); v.Action != chain.Drop {
			t.Fatalf("hit %d: %+v", i, v)
		}
	}
	if bans.Blocked(peer.Addr()) || len(bans.List(false)) != 0 {
		t.Fatalf("a peer banned: %v", bans.List(false))
	}
}

// BenchmarkMatch is the cost of looking for the built-in signatures in a
// clean User-Agent (the common case) and in a scanner's.
func BenchmarkMatch(b *testing.B) {
	mt := NewMatcher(nil)
	for _, ua := range []string{"Asterisk PBX 18.2.0~dfsg+~cs6.12.40431414-1", "friendly-scanner"} {
		m := msg(b, ua, `"Anil Tiwari" <sip:+15551230001@x>;tag=1`)
		b.Run(strings.Fields(ua)[0], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				mt.Match(m)
			}
		})
	}
}
