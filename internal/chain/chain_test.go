package chain

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sipwarden/sipwarden/internal/sip"
)

type stageFunc struct {
	name string
	f    func(*Request) Verdict
}

func (s stageFunc) Name() string              { return s.name }
func (s stageFunc) Handle(r *Request) Verdict { return s.f(r) }

type releaser struct{ n *int }

func (r releaser) Release() { *r.n++ }

func TestRunStopsAtFirstVerdict(t *testing.T) {
	var ran []string
	mk := func(name string, v Verdict) Stage {
		return stageFunc{name, func(*Request) Verdict { ran = append(ran, name); return v }}
	}
	c := New(NewMetrics(nil), mk("a", Next()), mk("b", ReplyRetry(503, 5, "busy")), mk("c", Next()))
	v, stage := c.Run(&Request{})
	if stage != "b" || v.Code != 503 || v.RetryAfter != 5 || v.Reason != "busy" || len(ran) != 2 {
		t.Fatalf("verdict %+v from %q, ran %v", v, stage, ran)
	}
	c = New(nil, mk("x", Next()))
	if v, stage := c.Run(&Request{}); v.Action != Continue || stage != "" {
		t.Fatalf("all continue: %+v %q", v, stage)
	}
}

// TestStagePanicIsADrop: a stage that panics costs its request, not the process.
func TestStagePanicIsADrop(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	c := New(m, stageFunc{"boom", func(*Request) Verdict { panic("bug") }})
	v, stage := c.Run(&Request{})
	if v.Action != Drop || v.Reason != "stage_panic" || stage != "boom" {
		t.Fatalf("verdict %+v from %q", v, stage)
	}
	var d dto.Metric
	_ = m.panics.WithLabelValues("boom").Write(&d)
	if d.GetCounter().GetValue() != 1 {
		t.Fatal("panic not counted")
	}
}

func TestHolds(t *testing.T) {
	n := 0
	r := &Request{}
	for i := 0; i < MaxHolds; i++ {
		if !r.Hold(releaser{&n}) {
			t.Fatal("hold refused below the limit")
		}
	}
	if r.Hold(releaser{&n}) || n != 1 {
		t.Fatalf("hold beyond MaxHolds: must be refused and released at once (released %d)", n)
	}
	var dst [MaxHolds]Releaser
	if got := r.TakeHolds(&dst); got != MaxHolds {
		t.Fatalf("took %d", got)
	}
	r.ReleaseHolds() // nothing left
	if n != 1 {
		t.Fatalf("released %d after TakeHolds", n)
	}
	r.Hold(releaser{&n})
	r.ReleaseHolds()
	if n != 2 {
		t.Fatalf("ReleaseHolds released %d", n)
	}
}

func TestOrderNamesStages(t *testing.T) {
	want := []string{"acl", "flood", "sanity", "scanner", "auth", "identity", "limits", "registrar", "fraud", "shaken", "media", "route"}
	if len(Order) != len(want) {
		t.Fatalf("Order %v", Order)
	}
	for i := range want {
		if Order[i] != want[i] {
			t.Fatalf("Order %v, want %v", Order, want)
		}
	}
}

// TestEditsOfOneField: a field has at most one edit (two edits of the same
// bytes would make the proxy send the original): a second SetHeader
// replaces the value, DeleteHeader wins over SetHeader in either order,
// and ForwardedValue says what will be sent.
func TestEditsOfOneField(t *testing.T) {
	m := new(sip.Msg)
	raw := "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:1@a>;tag=1\r\nTo: <sip:2@b>\r\n" +
		"Call-ID: c\r\nCSeq: 1 INVITE\r\nP-Asserted-Identity: <sip:3@a>\r\nContent-Length: 0\r\n\r\n"
	if err := m.Parse([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	from, pai := m.Find(sip.HdrFrom, 0), m.Find(sip.HdrPAssertedIdentity, 0)
	var r Request
	r.Msg = m
	steps := []struct {
		name  string
		do    func() bool
		field int
		want  string // forwarded value; "-" removed
		edits int
	}{
		{"untouched", func() bool { return true }, from, "<sip:1@a>;tag=1", 0},
		{"set", func() bool { return r.SetHeader(from, []byte("<sip:9@a>;tag=1")) }, from, "<sip:9@a>;tag=1", 1},
		{"set again", func() bool { return r.SetHeader(from, []byte("<sip:8@a>;tag=1")) }, from, "<sip:8@a>;tag=1", 1},
		{"delete", func() bool { return r.DeleteHeader(pai) }, pai, "-", 2},
		{"set after delete", func() bool { return r.SetHeader(pai, []byte("<sip:7@a>")) }, pai, "-", 2},
		{"delete after set", func() bool { return r.DeleteHeader(from) }, from, "-", 2},
		{"add does not count as an edit of a field", func() bool { return r.AddHeader("Date", []byte("x")) }, from, "-", 3},
	}
	for _, s := range steps {
		if !s.do() {
			t.Fatalf("%s: refused", s.name)
		}
		got := string(r.ForwardedValue(s.field))
		if r.ForwardedValue(s.field) == nil {
			got = "-"
		}
		if got != s.want || len(r.HeaderEdits()) != s.edits || r.Deleted(s.field) != (s.want == "-") {
			t.Fatalf("%s: forwarded %q with %d edits, want %q with %d", s.name, got, len(r.HeaderEdits()), s.want, s.edits)
		}
	}
	if r.ForwardedValue(-1) != nil || r.ForwardedValue(99) != nil {
		t.Fatal("ForwardedValue of no field")
	}
}
