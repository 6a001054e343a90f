package audit

import "testing"

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		in   string
		host string
		port int
		ok   bool
	}{
		{"sip:127.0.0.1", "127.0.0.1", 5060, true},
		{"sip:127.0.0.1:5080", "127.0.0.1", 5080, true},
		{"sip:pbx.example.net:5062", "pbx.example.net", 5062, true},
		{"sip:[::1]:5060", "::1", 5060, true},
		{"sip:[::1]", "::1", 5060, true},
		{"sips:127.0.0.1", "", 0, false},
		{"sip:", "", 0, false},
		{"sip:100@127.0.0.1", "", 0, false},
		{"sip:127.0.0.1:0", "", 0, false},
		{"sip:127.0.0.1:70000", "", 0, false},
		{"sip:127.0.0.1;transport=tcp", "", 0, false},
		{"127.0.0.1:5060", "", 0, false},
	} {
		host, port, err := ParseTarget(tc.in)
		if (err == nil) != tc.ok || host != tc.host || port != tc.port {
			t.Errorf("ParseTarget(%q) = %q, %d, %v", tc.in, host, port, err)
		}
	}
}

func TestParseResponse(t *testing.T) {
	r := parseResponse([]byte("SIP/2.0 401 Unauthorized\r\nv: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-1\r\nServer: X 1\r\n" +
		"WWW-Authenticate: Digest realm=\"a\", algorithm=MD5\r\nt: <sip:a@b>;tag=9\r\n\r\n"))
	if r == nil || r.code != 401 || r.reason != "Unauthorized" || r.get("via") == "" || r.get("server") != "X 1" ||
		tagOf(r.get("to")) != "9" || r.get("www-authenticate") == "" {
		t.Errorf("parsed %+v", r)
	}
	for _, bad := range []string{"", "INVITE sip:a SIP/2.0\r\n\r\n", "SIP/2.0 abc x\r\n\r\n", "SIP/2.0\r\n"} {
		if parseResponse([]byte(bad)) != nil {
			t.Errorf("%q parsed as a response", bad)
		}
	}
}

// FuzzParseResponse: answers come from the network; reading them must never panic.
func FuzzParseResponse(f *testing.F) {
	f.Add([]byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x;branch=z9hG4bK-a\r\nTo: <sip:a@b>;tag=1\r\n\r\n"))
	f.Add([]byte("SIP/2.0 401\r\nWWW-Authenticate: Digest\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if r := parseResponse(b); r != nil {
			_ = tagOf(r.get("to"))
			_ = signature([]*response{r})
		}
	})
}
