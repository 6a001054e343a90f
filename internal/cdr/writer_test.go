package cdr_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sipwarden/sipwarden/internal/cdr"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// memStore records inserts and fails the first failN of them.
type memStore struct {
	mu      sync.Mutex
	recs    []cdr.Record
	batches int
	failN   int
}

func (s *memStore) Insert(_ context.Context, recs []cdr.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failN > 0 {
		s.failN--
		return errors.New("database is down")
	}
	s.batches++
	s.recs = append(s.recs, recs...)
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

func TestWriterBlocksWhenFull(t *testing.T) {
	st := &memStore{failN: 1 << 30} // the store is down
	w := cdr.NewWriter(st, cdr.WriterOptions{BatchSize: 1, QueueSize: 2, FlushInterval: time.Millisecond})
	done := make(chan struct{})
	go func() {
		for range 10 {
			w.Write(cdr.Record{CallID: "q"})
		}
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("10 writes into a queue of 2 with the store down returned: records would be lost")
	case <-time.After(200 * time.Millisecond):
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	st.mu.Lock()
	st.failN = 0
	st.mu.Unlock()
	<-done
	if err := w.Close(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Logf("close: %v", err)
	}
	if n, _ := st.count(); n != 10 {
		t.Fatalf("%d records, want 10", n)
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
