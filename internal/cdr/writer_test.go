package cdr_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sipwarden/sipwarden/internal/cdr"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// memStore records inserts and fails the first failN of them. While it
// fails it does not answer pings either (it is down); refuse makes it refuse
// matching records while it answers. Like the real stores, it keeps one
// record per UID.
type memStore struct {
	mu      sync.Mutex
	recs    []cdr.Record
	uids    map[string]bool
	batches int
	failN   int
	busyN   int // inserts that fail with a busy store that still answers pings
	refuse  func(cdr.Record) bool
	block   chan struct{} // when set, Insert waits for it to close
}

func (s *memStore) Insert(_ context.Context, recs []cdr.Record) error {
	s.mu.Lock()
	block := s.block
	s.mu.Unlock()
	if block != nil {
		<-block
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failN > 0 {
		s.failN--
		return errors.New("database is down")
	}
	if s.busyN > 0 {
		s.busyN--
		return cdr.Unavailable(errors.New("database is locked"))
	}
	for _, r := range recs {
		if s.refuse != nil && s.refuse(r) {
			return errors.New("invalid byte sequence for encoding \"UTF8\": 0xff")
		}
	}
	s.batches++
	if s.uids == nil {
		s.uids = map[string]bool{}
	}
	for _, r := range recs {
		if r.UID != "" && s.uids[r.UID] {
			continue
		}
		s.uids[r.UID] = true
		s.recs = append(s.recs, r)
	}
	return nil
}

func (s *memStore) Ping(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failN > 0 {
		return errors.New("connection refused")
	}
	return nil
}

func (s *memStore) List(context.Context, cdr.Filter) ([]cdr.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]cdr.Record(nil), s.recs...), nil
}

func (s *memStore) Close() error { return nil }

func (s *memStore) count() (int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.recs), s.batches
}

func (s *memStore) setFail(n int) {
	s.mu.Lock()
	s.failN = n
	s.mu.Unlock()
}

func TestWriterBatchesAndFlushesOnClose(t *testing.T) {
	st := &memStore{}
	w := cdr.NewWriter(st, cdr.WriterOptions{BatchSize: 10, FlushInterval: time.Hour})
	for i := range 25 {
		w.Write(cdr.Record{CallID: string(rune('a' + i))})
	}
	deadline := time.Now().Add(2 * time.Second)
	for n, _ := st.count(); n < 20 && time.Now().Before(deadline); n, _ = st.count() {
		time.Sleep(5 * time.Millisecond)
	}
	if n, b := st.count(); n != 20 || b != 2 {
		t.Fatalf("before Close: %d records in %d batches, want 20 in 2 (full batches only)", n, b)
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n, _ := st.count(); n != 25 {
		t.Fatalf("after Close: %d records, want 25", n)
	}
}

func TestWriterFlushInterval(t *testing.T) {
	st := &memStore{}
	w := cdr.NewWriter(st, cdr.WriterOptions{BatchSize: 100, FlushInterval: 20 * time.Millisecond})
	defer w.Close(context.Background())
	w.Write(cdr.Record{CallID: "x"})
	deadline := time.Now().Add(2 * time.Second)
	for n, _ := st.count(); n < 1; n, _ = st.count() {
		if time.Now().After(deadline) {
			t.Fatal("record not flushed by the interval")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWriterRetriesWithoutLoss(t *testing.T) {
	st := &memStore{failN: 3}
	w := cdr.NewWriter(st, cdr.WriterOptions{BatchSize: 5, FlushInterval: 10 * time.Millisecond})
	for range 12 {
		w.Write(cdr.Record{CallID: "r"})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := st.count(); n != 12 {
		t.Fatalf("%d records stored after 3 failed inserts, want all 12", n)
	}
}

func TestDispositionFor(t *testing.T) {
	for _, tc := range []struct {
		code      int
		cancelled bool
		want      cdr.Disposition
	}{
		{200, false, cdr.Answered}, {486, false, cdr.Busy}, {600, false, cdr.Busy}, {408, false, cdr.NoAnswer},
		{480, false, cdr.NoAnswer}, {487, false, cdr.NoAnswer}, {487, true, cdr.Cancelled}, {404, false, cdr.Failed},
		{503, false, cdr.Failed},
	} {
		if got := cdr.DispositionFor(tc.code, tc.cancelled); got != tc.want {
			t.Errorf("DispositionFor(%d, %v) = %s, want %s", tc.code, tc.cancelled, got, tc.want)
		}
	}
}

type nopStore struct{}

func (nopStore) Insert(context.Context, []cdr.Record) error             { return nil }
func (nopStore) List(context.Context, cdr.Filter) ([]cdr.Record, error) { return nil, nil }
func (nopStore) Close() error                                           { return nil }

// BenchmarkWriterWrite is the proxy's side of a CDR: Write, and the
// writer's batching behind it, over a store that costs nothing. It lets the
// writer catch up every 1024 records, so that it measures the common path
// (the queue has room), not the overflow.
func BenchmarkWriterWrite(b *testing.B) {
	w := cdr.NewWriter(nopStore{}, cdr.WriterOptions{})
	n := 0
	r := cdr.Record{CallID: "a84b4c76e66710@pc33.example.com", Trunk: "acme", Upstream: "pbx", Direction: "originating",
		SrcAddr: "192.0.2.10:5060", Transport: "UDP", From: "+15550001000", To: "+15551230001", Start: time.Now(),
		End: time.Now(), FinalCode: 200, Disposition: cdr.Answered}
	b.ReportAllocs()
	for b.Loop() {
		w.Write(r)
		if n++; n%1024 == 0 {
			for w.QueueDepth() > 0 {
				runtime.Gosched()
			}
		}
	}
	if err := w.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
}

// Records written while Close runs are stored, never dropped between the
// last drain and the end of the writer.
func TestWriterCloseRacesWrites(t *testing.T) {
	st := &memStore{}
	w := cdr.NewWriter(st, cdr.WriterOptions{BatchSize: 7, FlushInterval: time.Millisecond})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				w.Write(cdr.Record{CallID: fmt.Sprintf("%d-%d", g, i)})
			}
		}()
	}
	waitFor(t, "writes under way", func() bool { n, _ := st.count(); return n > 0 || w.Backlog() > 0 })
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if n, _ := st.count(); n != 2000 {
		t.Fatalf("%d records stored, want 2000", n)
	}
}
