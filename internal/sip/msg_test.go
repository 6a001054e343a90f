package sip

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// invite is a typical INVITE as a PBX sends it (about 800 bytes with SDP).
var invite = crlf(`INVITE sip:+15551230001@192.0.2.1:5060 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds;rport
Max-Forwards: 70
To: <sip:+15551230001@192.0.2.1>
From: "Alice" <sip:+15550001000@198.51.100.7>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.example.com
CSeq: 314159 INVITE
Contact: <sip:alice@198.51.100.7:5060>
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY
Supported: replaces, timer
User-Agent: ExamplePBX 1.0
Content-Type: application/sdp
Content-Length: 140

v=0
o=alice 2890844526 2890844526 IN IP4 198.51.100.7
s=-
c=IN IP4 198.51.100.7
t=0 0
m=audio 49170 RTP/AVP 0 8
a=rtpmap:0 PCMU/8000
`)

func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

func TestParseInvite(t *testing.T) {
	var m Msg
	if err := m.Parse(invite); err != nil {
		t.Fatal(err)
	}
	if !m.IsRequest() || m.Method() != INVITE || string(m.MethodName()) != "INVITE" {
		t.Fatalf("method %v %q", m.Method(), m.MethodName())
	}
	checks := []struct{ got, want string }{
		{string(m.RequestURI()), "sip:+15551230001@192.0.2.1:5060"},
		{string(m.Version()), "SIP/2.0"},
		{string(m.CallID()), "a84b4c76e66710@pc33.example.com"},
		{string(m.FromTag()), "1928301774"},
		{string(m.ToTag()), ""},
		{string(m.Get(HdrUserAgent)), "ExamplePBX 1.0"},
		{string(m.GetName("supported")), "replaces, timer"},
		{string(m.Body()[:3]), "v=0"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	if n, meth := m.CSeq(); n != 314159 || meth != INVITE {
		t.Errorf("CSeq %d %v", n, meth)
	}
	if m.MaxForwards() != 70 || m.ContentLength() != 140 || len(m.Body()) != 140 {
		t.Errorf("Max-Forwards %d, Content-Length %d, body %d", m.MaxForwards(), m.ContentLength(), len(m.Body()))
	}
	v, err := m.TopVia()
	if err != nil {
		t.Fatal(err)
	}
	if v.Transport != UDP || string(v.Host) != "198.51.100.7" || v.Port != 5060 || string(v.Branch) != "z9hG4bK776asdhds" || !v.RPort {
		t.Errorf("Via %+v", v)
	}
}

func TestParseForms(t *testing.T) {
	msg := crlf("OPTIONS sip:x@example.com SIP/2.0\n" +
		"v: SIP/2.0/TCP [2001:db8::1]:5070 ;branch=z9hG4bK1 , SIP/2.0/UDP h2;branch=z9hG4bK2;received=192.0.2.9;rport=1234\n" +
		"f: <sip:a@example.com>;tag=ft\n" +
		"t: sip:x@example.com\n" +
		"i: cid-1\n" +
		"CSEQ:   7\n   OPTIONS\n" +
		"l: 0\n\n")
	var m Msg
	if err := m.Parse(msg); err != nil {
		t.Fatal(err)
	}
	if string(m.CallID()) != "cid-1" || m.Count(HdrVia) != 1 {
		t.Fatalf("compact forms: Call-ID %q, Via fields %d", m.CallID(), m.Count(HdrVia))
	}
	if n, meth := m.CSeq(); n != 7 || meth != OPTIONS {
		t.Errorf("folded CSeq: %d %v", n, meth)
	}
	v, rest, err := ParseVia(m.Get(HdrVia))
	if err != nil || v.Transport != TCP || string(v.Host) != "2001:db8::1" || v.Port != 5070 {
		t.Fatalf("first via %+v %v", v, err)
	}
	v2, rest2, err := ParseVia(rest)
	if err != nil || rest2 != nil || string(v2.Received) != "192.0.2.9" || v2.RPortValue != 1234 {
		t.Fatalf("second via %+v rest %q %v", v2, rest2, err)
	}
	if string(m.FromTag()) != "ft" {
		t.Errorf("from tag %q", m.FromTag())
	}
	if ScanCallID(msg) == nil || string(ScanCallID(msg)) != "cid-1" {
		t.Errorf("ScanCallID %q", ScanCallID(msg))
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		msg  string
		want error
	}{
		{"empty", "\r\n\r\n", ErrEmpty},
		{"no line end", "INVITE sip:a@b SIP/2.0", ErrStartLine},
		{"bad version", "INVITE sip:a@b SIP/3.0\r\nCall-ID: x\r\n\r\n", ErrVersion},
		{"no colon", "INVITE sip:a@b SIP/2.0\r\nVia SIP/2.0/UDP h\r\n\r\n", ErrHeader},
		{"NUL", "INVITE sip:a@b SIP/2.0\r\nX: a\x00b\r\n\r\n", ErrHeader},
		{"short body", "INVITE sip:a@b SIP/2.0\r\nContent-Length: 10\r\n\r\nabc", ErrTruncated},
		{"negative CL", "INVITE sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n", ErrContentLength},
		{"two CLs", "INVITE sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\nab", ErrContentLength},
		{"status", "SIP/2.0 99 Low\r\n\r\n", ErrStartLine},
		{"continuation first", "INVITE sip:a@b SIP/2.0\r\n folded\r\n\r\n", ErrHeader},
		{"bare LF in headers", "INVITE sip:a@b SIP/2.0\r\nCall-ID:\nCSeq: 1 INVITE\r\n\r\n", ErrHeader},
		{"bare LF start line", "INVITE sip:a@b SIP/2.0\nCall-ID: x\r\n\r\n", ErrStartLine},
	}
	for _, tc := range tests {
		var m Msg
		if err := m.Parse([]byte(tc.msg)); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	var m Msg
	many := "OPTIONS sip:a@b SIP/2.0\r\n" + strings.Repeat("X: y\r\n", MaxHeaders+1) + "\r\n"
	if err := m.Parse([]byte(many)); !errors.Is(err, ErrTooManyHeaders) {
		t.Errorf("too many headers: %v", err)
	}
}

// TestExtraDatagramBytes: bytes after Content-Length are not part of the message (RFC 3261 18.3).
func TestExtraDatagramBytes(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "rfc4475", "dblreq.dat"))
	if err != nil {
		t.Fatal(err)
	}
	var m Msg
	if err := m.Parse(b); err != nil {
		t.Fatal(err)
	}
	var e Editor
	e.Reset(&m)
	out, err := e.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out, []byte("INVITE")) {
		t.Fatalf("the second request leaked into the output:\n%s", out)
	}
}

func TestURIAndNameAddr(t *testing.T) {
	u, err := ParseURI([]byte("sips:alice:secret@[2001:db8::2]:5061;transport=tcp;lr?subject=hi"))
	if err != nil {
		t.Fatal(err)
	}
	if string(u.User) != "alice" || string(u.Password) != "secret" || string(u.Host) != "2001:db8::2" || u.Port != 5061 ||
		string(u.Headers) != "subject=hi" || u.Transport() != TCP {
		t.Errorf("%+v", u)
	}
	if v, ok := u.Param("LR"); !ok || len(v) != 0 {
		t.Errorf("lr param: %q %v", v, ok)
	}
	tel, err := ParseURI([]byte("tel:+1-555-123;phone-context=example.com"))
	if err != nil || string(tel.User) != "+1-555-123" {
		t.Errorf("tel %+v %v", tel, err)
	}
	for _, bad := range []string{"", "sip:", "sip:@host", "sip:host:99999", "1sip:x", "sip:a b"} {
		if _, err := ParseURI([]byte(bad)); err == nil {
			t.Errorf("ParseURI(%q) accepted", bad)
		}
	}
	na, rest, err := ParseNameAddr([]byte(`"Bob \"B\"" <sip:bob@example.com;transport=udp>;tag=abc;x="q;v" , <sip:c@d>`))
	if err != nil || string(na.Display) != `Bob \"B\"` || string(na.URI) != "sip:bob@example.com;transport=udp" || string(rest) != "<sip:c@d>" {
		t.Fatalf("%+v rest %q %v", na, rest, err)
	}
	if v, _ := Param(na.Params, "x"); string(v) != "q;v" {
		t.Errorf("quoted param %q", v)
	}
	na, _, err = ParseNameAddr([]byte("sip:carol@example.com;tag=9"))
	if err != nil || string(na.URI) != "sip:carol@example.com" || string(na.Params) != ";tag=9" {
		t.Errorf("addr-spec %+v %v", na, err)
	}
}

func TestEditor(t *testing.T) {
	var m Msg
	if err := m.Parse(invite); err != nil {
		t.Fatal(err)
	}
	var e Editor
	e.Reset(&m)
	e.InsertHeader(0, "Via", []byte("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-sw.1"))
	e.InsertHeader(0, "Record-Route", []byte("<sip:192.0.2.1:5060;lr>"))
	e.SetMaxForwards(69)
	e.DeleteHeader(m.Find(HdrUserAgent, 0))
	e.SetRequestURI([]byte("sip:+15551230001@10.0.0.1"))
	out, err := e.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	var o Msg
	if err := o.Parse(out); err != nil {
		t.Fatalf("edited message does not parse: %v\n%s", err, out)
	}
	v, _ := o.TopVia()
	if string(v.Branch) != "z9hG4bK-sw.1" || o.Count(HdrVia) != 2 || o.MaxForwards() != 69 ||
		o.Get(HdrUserAgent) != nil || string(o.RequestURI()) != "sip:+15551230001@10.0.0.1" ||
		!bytes.Equal(o.Body(), m.Body()) || string(o.Get(HdrRecordRoute)) != "<sip:192.0.2.1:5060;lr>" {
		t.Errorf("edited message:\n%s", out)
	}
	// a second AppendTo gives the same bytes
	out2, err := e.AppendTo(nil)
	if err != nil || !bytes.Equal(out, out2) {
		t.Errorf("second AppendTo differs: %v", err)
	}
	// body replacement fixes Content-Length; a missing one is added
	e.Reset(&m)
	e.SetBody([]byte("v=0\r\n"))
	out, _ = e.AppendTo(nil)
	if err := o.Parse(out); err != nil || o.ContentLength() != 5 || string(o.Body()) != "v=0\r\n" {
		t.Errorf("body replace: %v\n%s", err, out)
	}
	var noCL Msg
	_ = noCL.Parse([]byte("BYE sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n"))
	e.Reset(&noCL)
	out, _ = e.AppendTo(nil)
	if !bytes.Contains(out, []byte("Content-Length: 0\r\n\r\n")) {
		t.Errorf("Content-Length not added:\n%s", out)
	}
}

func TestReplies(t *testing.T) {
	var m Msg
	if err := m.Parse(invite); err != nil {
		t.Fatal(err)
	}
	out := AppendResponse(nil, &m, 503, ReasonText(503), []byte("t1"), "sipwarden", []byte("Retry-After: 5\r\n"))
	var r Msg
	if err := r.Parse(out); err != nil {
		t.Fatal(err)
	}
	if r.StatusCode() != 503 || string(r.ToTag()) != "t1" || string(r.CallID()) != string(m.CallID()) ||
		string(r.Get(HdrRetryAfter)) != "5" || string(r.Get(HdrServer)) != "sipwarden" {
		t.Errorf("response:\n%s", out)
	}
	if n, meth := r.CSeq(); n != 314159 || meth != INVITE {
		t.Errorf("CSeq %d %v", n, meth)
	}
	cancel := AppendCancel(nil, &m)
	var c Msg
	if err := c.Parse(cancel); err != nil || c.Method() != CANCEL || c.Count(HdrVia) != 1 {
		t.Fatalf("CANCEL %v:\n%s", err, cancel)
	}
	if n, meth := c.CSeq(); n != 314159 || meth != CANCEL {
		t.Errorf("CANCEL CSeq %d %v", n, meth)
	}
	ack := AppendAck(nil, &m, &r)
	var a Msg
	if err := a.Parse(ack); err != nil || a.Method() != ACK || string(a.ToTag()) != "t1" {
		t.Fatalf("ACK %v:\n%s", err, ack)
	}
}

// TestZeroAlloc keeps the hot path honest: parse, read and edit allocate nothing.
func TestZeroAlloc(t *testing.T) {
	var m Msg
	var e Editor
	buf := make([]byte, 0, 4096)
	via := []byte("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-sw.1")
	for name, f := range map[string]func(){
		"Parse": func() { _ = m.Parse(invite) },
		"Read": func() {
			_ = m.Get(HdrCallID)
			_, _ = m.TopVia()
			_ = m.FromTag()
			_, _ = ParseURI(m.RequestURI())
			_ = ScanCallID(invite)
		},
		"Edit": func() {
			e.Reset(&m)
			e.InsertHeader(0, "Via", via)
			e.SetMaxForwards(69)
			buf, _ = e.AppendTo(buf[:0])
		},
		"Reply": func() { buf = AppendResponse(buf[:0], &m, 100, "Trying", nil, "", nil) },
	} {
		_ = m.Parse(invite)
		if n := testing.AllocsPerRun(200, f); n != 0 {
			t.Errorf("%s: %v allocations per run, want 0", name, n)
		}
	}
}

// TestControlBytesEverywhere checks the word-at-a-time control-byte scan at every offset.
func TestControlBytesEverywhere(t *testing.T) {
	for pos := 0; pos < 20; pos++ {
		for _, c := range []byte{0x00, 0x01, 0x1f, 0x7f} {
			v := []byte(strings.Repeat("a", 20))
			v[pos] = c
			var m Msg
			if err := m.Parse([]byte("OPTIONS sip:a@b SIP/2.0\r\nX: " + string(v) + "\r\n\r\n")); !errors.Is(err, ErrHeader) {
				t.Errorf("byte 0x%02x at %d: %v, want ErrHeader", c, pos, err)
			}
			if pos > 0 && c != 0x00 {
				v[pos-1] = '\\'
				if err := m.Parse([]byte("OPTIONS sip:a@b SIP/2.0\r\nX: \"" + string(v) + "\"\r\n\r\n")); err != nil {
					t.Errorf("quoted-pair 0x%02x at %d: %v", c, pos, err)
				}
			}
		}
	}
	var m Msg
	if err := m.Parse([]byte("OPTIONS sip:a@b SIP/2.0\r\nX: caf\xc3\xa9 \xe2\x82\xac\ttab\r\n\r\n")); err != nil {
		t.Errorf("UTF-8 and HTAB rejected: %v", err)
	}
}
