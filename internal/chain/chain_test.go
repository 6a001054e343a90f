package chain

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
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
	want := []string{"acl", "flood", "sanity", "scanner", "auth", "limits", "registrar", "fraud", "shaken", "media", "route"}
	if len(Order) != len(want) {
		t.Fatalf("Order %v", Order)
	}
	for i := range want {
		if Order[i] != want[i] {
			t.Fatalf("Order %v, want %v", Order, want)
		}
	}
}
