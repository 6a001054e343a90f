package media

import (
	"strconv"
	"strings"
	"testing"

	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/events"
	"github.com/sipwarden/sipwarden/internal/sip"
)

func invite(t *testing.T, method, ctype string, body []byte) *sip.Msg {
	t.Helper()
	s := method + " sip:+15551230001@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: 1\r\nCSeq: 1 " + method + "\r\n"
	if ctype != "" {
		s += "Content-Type: " + ctype + "\r\n"
	}
	s += "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + string(body)
	var m sip.Msg
	if err := m.Parse([]byte(s)); err != nil {
		t.Fatal(err)
	}
	return &m
}

func TestStage(t *testing.T) {
	yaml := "listen: [udp://127.0.0.1:5060]\nupstreams: [{name: pbx, targets: [udp://127.0.0.1:5080]}]\nmedia: {enabled: true}\n" +
		"trunks:\n- {name: secure, allow: [127.0.0.2], upstream: pbx, media: {srtp: required}}\n- {name: bridged, allow: [127.0.0.3], upstream: pbx, media: {srtp: bridge}}\n- {name: open, allow: [127.0.0.4], upstream: pbx}\n"
	cfg, err := config.Parse([]byte(yaml), "t")
	if err != nil {
		t.Fatal(err)
	}
	bus := events.NewBus()
	sub := bus.Subscribe("test", 8)
	st, err := NewStage(cfg, bus, nil)
	if err != nil {
		t.Fatal(err)
	}
	plain := sdpBody("192.0.2.10", "m=audio 49170 RTP/AVP 0")
	srtp := sdpBody("192.0.2.10", "m=audio 49170 RTP/SAVP 0\n"+cryptoLine(1, AES_CM_128_HMAC_SHA1_80))
	tests := []struct {
		name   string
		trunk  int
		peer   chain.PeerKind
		method string
		ctype  string
		body   []byte
		code   uint16
	}{
		{"required, plain offer", 0, chain.PeerTrunk, "INVITE", "application/sdp", plain, 488},
		{"required, plain UPDATE", 0, chain.PeerTrunk, "UPDATE", "Application/SDP; charset=x", plain, 488},
		{"bridge, plain offer", 1, chain.PeerTrunk, "INVITE", "application/sdp", plain, 488},
		{"required, garbage SDP", 0, chain.PeerTrunk, "INVITE", "application/sdp", []byte("v=0\r\nnonsense"), 488},
		{"required, SRTP offer", 0, chain.PeerTrunk, "INVITE", "application/sdp", srtp, 0},
		{"required, offerless INVITE", 0, chain.PeerTrunk, "INVITE", "", nil, 0},
		{"required, not SDP", 0, chain.PeerTrunk, "INVITE", "text/plain", plain, 0},
		{"required, OPTIONS", 0, chain.PeerTrunk, "OPTIONS", "application/sdp", plain, 0},
		{"optional trunk, plain offer", 2, chain.PeerTrunk, "INVITE", "application/sdp", plain, 0},
		{"from an upstream", 0, chain.PeerUpstream, "INVITE", "application/sdp", plain, 0},
	}
	for _, tt := range tests {
		req := &chain.Request{Msg: invite(t, tt.method, tt.ctype, tt.body), PeerKind: tt.peer, Trunk: &cfg.Trunks[tt.trunk]}
		v := st.Handle(req)
		if tt.code == 0 {
			if v.Action != chain.Continue {
				t.Errorf("%s: %+v, want continue", tt.name, v)
			}
			continue
		}
		if v.Action != chain.Reply || v.Code != tt.code || v.Warning == "" || v.Reason == "" {
			t.Errorf("%s: %+v, want %d with a Warning", tt.name, v, tt.code)
			continue
		}
		e := <-sub.C
		if e.Kind != events.MediaRefused || e.Code != int(tt.code) || e.Trunk == "" {
			t.Errorf("%s: event %+v", tt.name, e)
		}
	}
	if v := st.Handle(&chain.Request{Msg: invite(t, "INVITE", "application/sdp", plain), PeerKind: chain.PeerTrunk, Trunk: &cfg.Trunks[0]}); !strings.Contains(v.Warning, "SRTP required") {
		t.Errorf("warning %q", v.Warning)
	}
}

func BenchmarkStageSRTPOffer(b *testing.B) {
	cfg, _ := config.Parse([]byte("listen: [udp://127.0.0.1:5060]\nupstreams: [{name: pbx, targets: [udp://127.0.0.1:5080]}]\nmedia: {enabled: true}\ntrunks: [{name: s, allow: [127.0.0.2], upstream: pbx, media: {srtp: required}}]\n"), "b")
	st, _ := NewStage(cfg, nil, nil)
	t := &testing.T{}
	req := &chain.Request{Msg: invite(t, "INVITE", "application/sdp", sdpBody("192.0.2.10", "m=audio 49170 RTP/SAVP 0\n"+cryptoLine(1, AES_CM_128_HMAC_SHA1_80))), PeerKind: chain.PeerTrunk, Trunk: &cfg.Trunks[0]}
	b.ReportAllocs()
	for b.Loop() {
		if v := st.Handle(req); v.Action != chain.Continue {
			b.Fatal(v)
		}
	}
}

func TestRelayConfigFromFile(t *testing.T) {
	cfg, err := config.Parse([]byte("listen: [udp://127.0.0.1:5060]\nupstreams: [{name: pbx, targets: [udp://127.0.0.1:5080]}]\n"+
		"media: {enabled: true, ports: 36000-36099, timeout: 5s}\ntrunks: [{name: s, allow: [127.0.0.2], upstream: pbx, media: {srtp: bridge}}]\n"), "t")
	if err != nil {
		t.Fatal(err)
	}
	rc := RelayConfig(cfg.Media)
	r, err := New(rc)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Shutdown()
	if r.ports.Cap() != 50 || r.cfg.Timeout.String() != "5s" || r.cfg.MaxPacketRate != 400 {
		t.Errorf("relay config %+v", r.cfg)
	}
	pol, err := PolicyFor(&cfg.Trunks[0], LegB)
	if err != nil || pol.Legs[LegB].SRTP != SRTPRequired || pol.Legs[LegA].SRTP != SRTPPlain {
		t.Errorf("policy %+v %v", pol, err)
	}
}
