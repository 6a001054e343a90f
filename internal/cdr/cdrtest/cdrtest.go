// Package cdrtest is the conformance suite every cdr.Store must pass.
package cdrtest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/cdr"
)

// Run runs the suite; newStore returns a fresh, empty store for each subtest.
func Run(t *testing.T, newStore func(t *testing.T) cdr.Store) {
	ctx := context.Background()
	base := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	rec := func(i int, trunk string) cdr.Record {
		start := base.Add(time.Duration(i) * time.Second)
		return cdr.Record{CallID: fmt.Sprintf("call-%d@example.com", i), Trunk: trunk, Upstream: "pbx", Direction: "originating",
			SrcAddr: "192.0.2.10:5060", Transport: "UDP", From: "+15550001000", To: "+15551230001",
			Start: start, Answer: start.Add(2 * time.Second), End: start.Add(62 * time.Second), Duration: 60 * time.Second,
			FinalCode: 200, Disposition: cdr.Answered}
	}
	t.Run("RoundTrip", func(t *testing.T) {
		s := newStore(t)
		defer s.Close()
		a := rec(1, "acme")
		a.Start = a.Start.Add(123456 * time.Nanosecond)
		a.From = `"Zoë" 'quoted' ü`
		a.CallerMedia, a.CalleeMedia = "srtp:AES_CM_128_HMAC_SHA1_80", "rtp"
		a.Identity = "TN-Validation-Failed:438:bad_signature"
		b := cdr.Record{CallID: "blocked-1", Trunk: "acme", Direction: "originating", SrcAddr: "[2001:db8::1]:5060",
			Transport: "TLS", Start: base, End: base.Add(time.Millisecond), FinalCode: 503,
			Disposition: cdr.Blocked, Stage: "limits", Reason: "cps_limit"}
		if err := s.Insert(ctx, []cdr.Record{a, b}); err != nil {
			t.Fatal(err)
		}
		got, err := s.List(ctx, cdr.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 {
			t.Fatalf("%d records, want 2", len(got))
		}
		if got[0].CallID != "blocked-1" || got[1].CallID != a.CallID {
			t.Fatalf("order: %q, %q", got[0].CallID, got[1].CallID)
		}
		for i, want := range []cdr.Record{b, a} {
			g := got[i]
			if g.ID == 0 {
				t.Errorf("record %d: no ID", i)
			}
			g.ID = 0
			want.Start = want.Start.Truncate(time.Microsecond)
			g.Start = g.Start.Truncate(time.Microsecond)
			if !g.Start.Equal(want.Start) || !g.Answer.Equal(want.Answer) || !g.End.Equal(want.End) {
				t.Errorf("record %d times: got %v %v %v, want %v %v %v", i, g.Start, g.Answer, g.End, want.Start, want.Answer, want.End)
			}
			if g.Answer.IsZero() != want.Answer.IsZero() {
				t.Errorf("record %d: answer zero = %v, want %v", i, g.Answer.IsZero(), want.Answer.IsZero())
			}
			g.Start, g.Answer, g.End = want.Start, want.Answer, want.End
			if g != want {
				t.Errorf("record %d:\n got %+v\nwant %+v", i, g, want)
			}
		}
	})
	t.Run("Filters", func(t *testing.T) {
		s := newStore(t)
		defer s.Close()
		var recs []cdr.Record
		for i := range 10 {
			trunk := "acme"
			if i%2 == 1 {
				trunk = "globex"
			}
			recs = append(recs, rec(i, trunk))
		}
		if err := s.Insert(ctx, recs); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			f    cdr.Filter
			want int
		}{
			{"all", cdr.Filter{}, 10},
			{"trunk", cdr.Filter{Trunk: "globex"}, 5},
			{"since", cdr.Filter{Since: base.Add(5 * time.Second)}, 5},
			{"until", cdr.Filter{Until: base.Add(3 * time.Second)}, 3},
			{"window+trunk", cdr.Filter{Since: base.Add(2 * time.Second), Until: base.Add(8 * time.Second), Trunk: "acme"}, 3},
			{"limit", cdr.Filter{Limit: 4}, 4},
			{"none", cdr.Filter{Trunk: "nobody"}, 0},
		} {
			got, err := s.List(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.want {
				t.Errorf("%s: %d records, want %d", tc.name, len(got), tc.want)
			}
			for i := 1; i < len(got); i++ {
				if got[i].Start.Before(got[i-1].Start) {
					t.Errorf("%s: not ordered by start", tc.name)
				}
			}
		}
	})
	t.Run("LargeBatchAndConcurrency", func(t *testing.T) {
		s := newStore(t)
		defer s.Close()
		batch := make([]cdr.Record, 10000)
		for i := range batch {
			batch[i] = rec(i, "acme")
		}
		if err := s.Insert(ctx, batch); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range 25 {
					if err := s.Insert(ctx, []cdr.Record{rec(100000+g*100+j, "globex")}); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		all, err := s.List(ctx, cdr.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 10000+200 {
			t.Fatalf("%d records, want 10200", len(all))
		}
	})
}
