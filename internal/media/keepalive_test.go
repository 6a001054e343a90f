package media

import (
	"net/netip"
	"testing"
)

// stunBinding is a STUN Binding Request without attributes, as Linphone
// (mediastreamer2) sends on its RTP and RTCP ports to keep a NAT open.
func stunBinding() []byte {
	return []byte{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42,
		1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
}

func TestIsKeepalive(t *testing.T) {
	withAttr := append(stunBinding(), 0x80, 0x22, 0x00, 0x04, 'l', 'i', 'n', 'p') // SOFTWARE
	withAttr[3] = 8
	badLen := append([]byte(nil), withAttr...)
	badLen[3] = 12
	rtp := []byte{0x80, 0x0d, 0, 1, 0, 0, 0, 160, 0xde, 0xad, 0xbe, 0xef, 0x40} // PT 13 (CN): real media, relayed
	rtcp := []byte{0x80, 200, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	for _, tc := range []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"empty", nil, true},
		{"CRLF", []byte("\r\n"), true},
		{"three zero bytes", []byte{0, 0, 0}, true},
		{"STUN binding request", stunBinding(), true},
		{"STUN with an attribute", withAttr, true},
		{"STUN length that does not match", badLen, false},
		{"no magic cookie", append([]byte{0, 1, 0, 0, 1, 2, 3, 4}, make([]byte, 12)...), false},
		{"RTP comfort noise", rtp, false},
		{"RTCP sender report", rtcp, false},
		{"garbage of 8 bytes", []byte{0xff, 1, 2, 3, 4, 5, 6, 7}, false},
	} {
		if got := isKeepalive(tc.pkt); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestKeepaliveCounted: a keep-alive is counted as such, before and after
// the answer, never relayed and never latched; one from a stranger at a
// latched socket is a source drop; garbage stays malformed.
func TestKeepaliveCounted(t *testing.T) {
	p := &relayParams{}
	phone := netip.MustParseAddrPort("198.51.100.7:4000")
	s := &socket{}
	if r := s.handle(p, stunBinding(), nil, nil, phone, 0); r != dropKeepalive {
		t.Fatalf("STUN before the answer: %v", r)
	}
	if r := s.handle(p, nil, nil, nil, phone, 0); r != dropKeepalive {
		t.Fatalf("empty datagram: %v", r)
	}
	if s.latched.Load() != nil {
		t.Fatal("a keep-alive latched the socket")
	}
	s.latched.Store(&phone)
	if r := s.handle(p, stunBinding(), nil, nil, phone, 0); r != dropKeepalive {
		t.Fatalf("STUN from the latched phone: %v", r)
	}
	if r := s.handle(p, stunBinding(), nil, nil, netip.MustParseAddrPort("203.0.113.66:4000"), 0); r != dropSource {
		t.Fatalf("STUN from a stranger: %v", r)
	}
	if dropKeepalive.String() != "keepalive" || dropMalformed.String() != "malformed" {
		t.Fatal("labels")
	}
}
