package fraud

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sipwarden/sipwarden/internal/events"
)

func TestBaselinesSaveLoad(t *testing.T) {
	e, clk, _ := newTestEngine(t)
	feedWeeks(e, clk, 3, 5, intlDest)
	var buf bytes.Buffer
	if err := e.SaveBaselines(&buf); err != nil {
		t.Fatal(err)
	}
	e2 := NewEngine(Options{})
	if err := e2.LoadBaselines(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	a, b := e.account("acme"), e2.account("acme")
	if a.baseline != b.baseline {
		t.Fatal("baselines differ after a round trip")
	}
	slot := b.baseline[hourOfWeek(t0, time.UTC)]
	if slot.n != 3 || slot.calls != 5 || slot.risky != 5 {
		t.Fatalf("slot %+v", slot)
	}
	for _, bad := range []string{"", "{", `{"version":3,"accounts":{}}`, `{"version":0,"accounts":{}}`, `{"version":1,"accounts":{"x":{"slots":[[1,2,3,4]]}}}`,
		`{"version":1,"accounts":{"x":{"slots":[]}},"extra":1}`,
		`{"version":1,"accounts":{"acme":{"slots":[` + strings.Repeat(`[-1,0,0,0],`, 167) + `[0,0,0,0]]}}}`} {
		if err := e2.LoadBaselines(strings.NewReader(bad)); err == nil {
			t.Errorf("accepted %.60q", bad)
		}
	}
	if b.baseline != a.baseline {
		t.Fatal("a rejected file changed the baselines")
	}
}

func TestBaselineFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "baselines.json")
	e, clk, _ := newTestEngine(t)
	if err := e.SetBaselineFile(path); err != nil { // missing: a first start
		t.Fatal(err)
	}
	feedWeeks(e, clk, 1, 2, homeDest)
	if err := e.saveBaselines(); err != nil {
		t.Fatal(err)
	}
	e2 := NewEngine(Options{})
	if err := e2.SetBaselineFile(path); err != nil {
		t.Fatal(err)
	}
	if e2.account("acme").baseline != e.account("acme").baseline {
		t.Fatal("not restored")
	}
	_ = os.WriteFile(path, []byte("garbage"), 0o600)
	if err := NewEngine(Options{}).SetBaselineFile(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("garbage: %v", err)
	}
}

// TestRunSavesBaselines: Run saves every hour; a failure is an event.
func TestRunSavesBaselines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "b.json")
		bus := events.NewBus()
		sub := bus.Subscribe("t", 10)
		e := NewEngine(Options{Tick: time.Minute, Bus: bus})
		if err := e.SetBaselineFile(path); err != nil {
			t.Fatal(err)
		}
		e.Check("acme", intlDest, 0)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { e.Run(ctx); close(done) }()
		time.Sleep(time.Hour + time.Second) // virtual time
		synctest.Wait()
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("not saved after an hour: %v", err)
		}
		_ = e.SetBaselineFile(filepath.Join(dir, "missing-dir", "b.json")) // missing: nothing to load
		time.Sleep(time.Hour)
		synctest.Wait()
		cancel()
		<-done
		select {
		case ev := <-sub.C:
			if ev.Kind != events.FraudError || ev.Reason != "baseline_save_failed" {
				t.Fatalf("event %+v", ev)
			}
		default:
			t.Fatal("no event for a failed save")
		}
	})
}

func FuzzLoadBaselines(f *testing.F) {
	clk := &fakeClock{t: t0}
	e := NewEngine(Options{Now: clk.Now})
	feedWeeks(e, clk, 1, 1, intlDest)
	var buf bytes.Buffer
	_ = e.SaveBaselines(&buf)
	f.Add(buf.Bytes())
	f.Add([]byte(`{"version":1,"accounts":{}}`))
	a := e.account("acme")
	a.learn("GB", rangeKey(&Destination{Digits: 442079460000, NDigits: 12}), t0.Unix())
	buf.Reset()
	_ = e.SaveBaselines(&buf)
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		e := NewEngine(Options{})
		if err := e.LoadBaselines(bytes.NewReader(data)); err != nil {
			return
		}
		var out bytes.Buffer
		if err := e.SaveBaselines(&out); err != nil {
			t.Fatal(err)
		}
		// What was saved loads again (the learned ranges survive their text form).
		if err := NewEngine(Options{}).LoadBaselines(&out); err != nil {
			t.Fatalf("saved file does not load: %v", err)
		}
	})
}
