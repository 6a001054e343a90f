package route

import (
	"net/netip"
	"testing"

	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/sip"
)

const hostedYAML = `
listen: [udp://127.0.0.1:5060]
upstreams:
  - {name: pbx, targets: [udp://127.0.0.3:5080]}
  - {name: other, targets: [udp://127.0.0.4:5080]}
trunks:
  - name: phones
    auth: digest
    realm: hosted.example
    upstream: pbx
    algorithms: [SHA-256]
    registrar: {enabled: true}
    accounts:
      - {username: "1001", ha1: {sha-256: 1e0e1cbd5c76f3ff5a0a3ea2f38c6c1dbd0fd5a5d5c3b2e2f7b25d1c5a3b8f11}}
      - {username: "1002", ha1: {sha-256: 2e0e1cbd5c76f3ff5a0a3ea2f38c6c1dbd0fd5a5d5c3b2e2f7b25d1c5a3b8f22}}
      - {username: "1003", ha1: {sha-256: 3e0e1cbd5c76f3ff5a0a3ea2f38c6c1dbd0fd5a5d5c3b2e2f7b25d1c5a3b8f33}}
  - {name: acme, allow: [10.0.0.1], upstream: pbx, numbers: ["+15551230000/4"], targets: [udp://10.0.0.1:5060]}
`

// Calls from a registrar trunk's upstream to sip:user@its-domain go to the
// account's registration, with the registered contact as Request-URI.
func TestRouteToRegistration(t *testing.T) {
	cfg, err := config.Parse([]byte(hostedYAML), "t")
	if err != nil {
		t.Fatal(err)
	}
	st, _ := NewStage(cfg, nil, nil)
	behindNAT := netip.MustParseAddrPort("198.51.100.7:40123")
	st.SetLocator(func(tr *config.Trunk, user string) (Location, bool) {
		switch user {
		case "1001":
			return Location{URI: "sip:1001@192.168.1.20:5060;transport=tcp", Transport: sip.TCP, Addr: behindNAT}, true
		case "1003":
			return Location{URI: "sip:1003@192.168.1.21 evil", Transport: sip.UDP, Addr: behindNAT}, true
		}
		return Location{}, false
	})
	call := func(ruri string, upstream int) (chain.Verdict, *chain.Request) {
		var m sip.Msg
		if err := m.Parse([]byte("INVITE " + ruri + " SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.3:5080;branch=z9hG4bK1\r\nFrom: <sip:pbx@x>;tag=1\r\nTo: <" + ruri + ">\r\nCall-ID: 1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		req := &chain.Request{Msg: &m, PeerKind: chain.PeerUpstream, Upstream: &cfg.Upstreams[upstream]}
		return st.Handle(req), req
	}

	v, req := call("sip:1001@Hosted.Example", 0)
	if v.Action != chain.Forward || req.DestTrunk == nil || req.DestTrunk.Name != "phones" ||
		req.Target != (chain.Target{Transport: sip.TCP, Addr: behindNAT}) || req.RequestURI != "sip:1001@192.168.1.20:5060;transport=tcp" {
		t.Fatalf("registered account: %+v, trunk %v, target %+v, R-URI %q", v, req.DestTrunk, req.Target, req.RequestURI)
	}
	if v, _ := call("sip:1002@hosted.example", 0); v.Code != 480 || v.Reason != "not_registered" {
		t.Errorf("account without a registration: %+v, want 480", v)
	}
	if v, _ := call("sip:1003@hosted.example", 0); v.Code != 480 {
		t.Errorf("a contact that cannot be a Request-URI: %+v, want 480", v)
	}
	if v, _ := call("sip:1001@hosted.example", 1); v.Code != 404 {
		t.Errorf("another upstream reaches the trunk's phones: %+v, want 404", v)
	}
	if v, _ := call("sip:9999@hosted.example", 0); v.Code != 404 {
		t.Errorf("unknown account: %+v, want 404 (number routing finds nothing)", v)
	}
	if v, req := call("sip:+15551230001@edge.example", 0); v.Action != chain.Forward || req.DestTrunk.Name != "acme" || req.RequestURI != "" {
		t.Errorf("number routing still works: %+v %v %q", v, req.DestTrunk, req.RequestURI)
	}
}
