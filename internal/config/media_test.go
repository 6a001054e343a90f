package config

import (
	"strings"
	"testing"
	"time"
)

const mediaBase = "listen: [udp://127.0.0.1:5060]\nupstreams: [{name: pbx, targets: [udp://127.0.0.1:5080]}]\n"

func TestMediaConfig(t *testing.T) {
	c, err := Parse([]byte(mediaBase+"media: {enabled: true, address: 127.0.0.1, advertise: 203.0.113.5, ports: 20000-20999, timeout: 30s, max_packet_rate: 100, measure_delay: true}\n"+
		"trunks:\n- {name: a, allow: [127.0.0.2], upstream: pbx, media: {srtp: bridge, offer_keying: dtls}}\n- {name: b, allow: [127.0.0.3], upstream: pbx, media: {mode: direct, srtp: required, ice: keep}}\n- {name: c, allow: [127.0.0.4], upstream: pbx}\n"), "m")
	if err != nil {
		t.Fatal(err)
	}
	m := c.Media
	if !m.Enabled || m.Addr.String() != "127.0.0.1" || m.Advertise.String() != "203.0.113.5" || m.PortMin != 20000 || m.PortMax != 20999 || m.Timeout != 30*time.Second || m.MaxPacketRate != 100 || !m.MeasureDelay {
		t.Errorf("media %+v", m)
	}
	if got := c.Trunk("a").Media; got != (TrunkMedia{Mode: MediaRelay, SRTP: SRTPBridge, ICE: ICEStrip, OfferKeying: KeyingDTLS}) {
		t.Errorf("trunk a %+v", got)
	}
	if got := c.Trunk("b").Media; got != (TrunkMedia{Mode: MediaDirect, SRTP: SRTPRequired, ICE: ICEKeep}) {
		t.Errorf("trunk b %+v", got)
	}
	if got := c.Trunk("c").Media; got != (TrunkMedia{Mode: MediaRelay, SRTP: SRTPOptional, ICE: ICEStrip}) {
		t.Errorf("trunk c %+v", got)
	}
	// Defaults.
	c, err = Parse([]byte(mediaBase), "d")
	if err != nil {
		t.Fatal(err)
	}
	if c.Media.Enabled || c.Media.PortMin != DefaultMediaPortMin || c.Media.Timeout != DefaultMediaTimeout || c.Media.Addr.String() != "127.0.0.1" {
		t.Errorf("defaults %+v", c.Media)
	}
}

func TestMediaConfigErrors(t *testing.T) {
	tests := []struct {
		yaml, want string
	}{
		{"media: {enabled: true, address: nowhere}\n", "media.address: must be an IP address"},
		{"media: {enabled: true, address: 0.0.0.0}\n", "media.advertise: is required when media.address is 0.0.0.0"},
		{"media: {enabled: true, ports: 20000}\n", "media.ports: must be a range min-max"},
		{"media: {enabled: true, ports: 80-90}\n", "media.ports: must lie within 1024-65535"},
		{"media: {enabled: true, timeout: 10ms}\n", "media.timeout: must be at least 1s"},
		{"media: {enabled: true, max_packet_rate: -1}\n", "media.max_packet_rate: must be a number"},
		{"media: {enabled: true, prots: 1-2}\n", `unknown key (did you mean "ports"?)`},
		{"trunks: [{name: a, allow: [127.0.0.2], upstream: pbx, media: {srtp: required}}]\n", "trunks[0].media: needs media.enabled: true"},
		{"media: {enabled: true}\ntrunks: [{name: a, allow: [127.0.0.2], upstream: pbx, media: {srtp: always}}]\n", "trunks[0].media.srtp: must be optional, required or bridge"},
		{"media: {enabled: true}\ntrunks: [{name: a, allow: [127.0.0.2], upstream: pbx, media: {mode: proxy}}]\n", "trunks[0].media.mode: must be relay or direct"},
		{"media: {enabled: true}\ntrunks: [{name: a, allow: [127.0.0.2], upstream: pbx, media: {mode: direct, srtp: bridge}}]\n", "trunks[0].media.srtp: bridge needs mode: relay"},
		{"media: {enabled: true}\ntrunks: [{name: a, allow: [127.0.0.2], upstream: pbx, media: {ice: keep}}]\n", "trunks[0].media.ice: keep needs mode: direct"},
		{"media: {enabled: true}\ntrunks: [{name: a, allow: [127.0.0.2], upstream: pbx, media: {ice: maybe}}]\n", "trunks[0].media.ice: must be strip or keep"},
		{"media: {enabled: true}\ntrunks: [{name: a, allow: [127.0.0.2], upstream: pbx, media: {offer_keying: zrtp}}]\n", "trunks[0].media.offer_keying: must be sdes or dtls"},
		{"media: {enabled: true}\ntrunks: [{name: a, allow: [127.0.0.2], upstream: pbx, media: {mode: direct, offer_keying: dtls}}]\n", "trunks[0].media.offer_keying: dtls needs mode: relay"},
	}
	for _, tt := range tests {
		_, err := Parse([]byte(mediaBase+tt.yaml), "m.yaml")
		if err == nil {
			t.Errorf("accepted:\n%s", tt.yaml)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want %q", tt.yaml, err, tt.want)
		}
	}
}
