package sip

import (
	"testing"

	sipgo "github.com/emiago/sipgo/sip"
)

func BenchmarkParseInvite(b *testing.B) {
	var m Msg
	b.ReportAllocs()
	b.SetBytes(int64(len(invite)))
	for b.Loop() {
		if err := m.Parse(invite); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseAndEdit is what the proxy does to forward an INVITE: parse,
// read the top Via, add its own Via and a Record-Route, decrement
// Max-Forwards, write the result.
func BenchmarkParseAndEdit(b *testing.B) {
	var m Msg
	var e Editor
	out := make([]byte, 0, 4096)
	via := []byte("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-sw.1a2b3c4d.0.1f;rport")
	rr := []byte("<sip:192.0.2.1:5060;lr>")
	b.ReportAllocs()
	for b.Loop() {
		if err := m.Parse(invite); err != nil {
			b.Fatal(err)
		}
		if _, err := m.TopVia(); err != nil {
			b.Fatal(err)
		}
		e.Reset(&m)
		e.InsertHeader(0, "Via", via)
		e.InsertHeader(0, "Record-Route", rr)
		e.SetMaxForwards(m.MaxForwards() - 1)
		var err error
		if out, err = e.AppendTo(out[:0]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTopVia(b *testing.B) {
	var m Msg
	_ = m.Parse(invite)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.TopVia(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendResponse(b *testing.B) {
	var m Msg
	_ = m.Parse(invite)
	out := make([]byte, 0, 2048)
	b.ReportAllocs()
	for b.Loop() {
		out = AppendResponse(out[:0], &m, 180, "Ringing", []byte("abc"), "", nil)
	}
}

func BenchmarkScanCallID(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if ScanCallID(invite) == nil {
			b.Fatal("no Call-ID")
		}
	}
}

// BenchmarkSipgoParseInvite is the reference: a general-purpose Go SIP parser
// (emiago/sipgo) on the same bytes.
func BenchmarkSipgoParseInvite(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := sipgo.ParseMessage(invite); err != nil {
			b.Fatal(err)
		}
	}
}
