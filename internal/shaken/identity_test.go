package shaken

import (
	"strings"
	"testing"
)

func TestParseIdentity(t *testing.T) {
	const tok = "aGVhZGVy.Y2xhaW1z.c2ln"
	tests := []struct {
		in            string
		info, alg, pp string
		bad           bool
	}{
		{tok + ";info=<https://cert.example.org/a.pem>;alg=ES256;ppt=shaken", "https://cert.example.org/a.pem", "ES256", "shaken", false},
		{tok + ";info=<https://c/a.pem>;alg=ES256;ppt=\"shaken\"", "https://c/a.pem", "ES256", "shaken", false},
		{tok + " ; INFO = <https://c/a;b.pem> ; Alg=ES256 ; PPT = shaken ", "https://c/a;b.pem", "ES256", "shaken", false},
		{tok + ";info=https://c/a.pem;ppt=div;x=1;flag", "https://c/a.pem", "", "div", false},
		{tok + ";\r\n info=<https://c/a.pem>;alg=\r\n\tES256 ;\r\n ppt=shaken\r\n ", "https://c/a.pem", "ES256", "shaken", false}, // folded
		{tok + ";info=<https://c/\r\n a.pem>", "", "", "", true},
		{tok, "", "", "", false},
		{tok + ";info=<https://c/a.pem", "", "", "", true},
		{tok + ";ppt=\"shaken", "", "", "", true},
		{tok + ";info=<https://c/a.pem>junk", "", "", "", true},
		{"tok en;info=<x>", "", "", "", true},
		{";info=<x>", "", "", "", true},
		{tok + ";info=<https://c/\x01>", "", "", "", true},
		{tok + strings.Repeat("A", MaxIdentityLen), "", "", "", true},
	}
	for _, tc := range tests {
		id, err := ParseIdentity([]byte(tc.in))
		if tc.bad {
			if err == nil {
				t.Errorf("ParseIdentity(%q) accepted: %+v", tc.in, id)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseIdentity(%q): %v", tc.in, err)
			continue
		}
		if string(id.Token) != tok || id.Info != tc.info || id.Alg != tc.alg || id.PPT != tc.pp {
			t.Errorf("ParseIdentity(%q) = %q %q %q %q", tc.in, id.Token, id.Info, id.Alg, id.PPT)
		}
	}
}

func TestIdentityRoundTrip(t *testing.T) {
	key := testKey(t)
	tok, err := Sign(key, "https://cert.example.org/sp.pem", testClaims())
	if err != nil {
		t.Fatal(err)
	}
	v := AppendIdentity(nil, tok, "https://cert.example.org/sp.pem")
	id, err := ParseIdentity(v)
	if err != nil || string(id.Token) != tok || id.Info != "https://cert.example.org/sp.pem" || id.PPT != "shaken" || id.Alg != "ES256" {
		t.Fatalf("round trip: %+v %v", id, err)
	}
}

func TestSplitIdentities(t *testing.T) {
	var got []string
	SplitIdentities([]byte(`a.b.c;info=<https://x/1,2>, d.e.f;info="q,r" ,, g.h.i`), func(v []byte) bool {
		got = append(got, string(v))
		return true
	})
	want := []string{`a.b.c;info=<https://x/1,2>`, `d.e.f;info="q,r"`, `g.h.i`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q", got)
	}
}
