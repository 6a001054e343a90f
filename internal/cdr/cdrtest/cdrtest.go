// Package cdrtest is the conformance suite every cdr.Store must pass.
package cdrtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

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
	t.Run("EscapedText", func(t *testing.T) {
		s := newStore(t)
		defer s.Close()
		for i, tc := range []struct{ in, stored string }{
			{"plain@example.com", "plain@example.com"},
			{"\xffcall@x", `\xffcall@x`},
			{"a\x00b", `a\x00b`},
			{`back\slash`, `back\\slash`},
			{`\x41 looks escaped`, `\\x41 looks escaped`},
			{"Zoë ☎ \ufffd", "Zoë ☎ \ufffd"},
			{"\xed\xa0\x80", `\xed\xa0\x80`}, // an encoded surrogate is not UTF-8
			{"\xc3", `\xc3`},                 // a truncated sequence
			{"tab\tand\x7f", "tab\tand\x7f"},
		} {
			r := rec(i, tc.in)
			r.CallID, r.From, r.Identity = tc.in, tc.in, tc.in
			if err := s.Insert(ctx, []cdr.Record{r}); err != nil {
				t.Fatalf("%q: %v", tc.in, err)
			}
			got, err := s.List(ctx, cdr.Filter{Trunk: tc.in})
			if err != nil || len(got) != 1 {
				t.Fatalf("%q: %d records by trunk, err %v", tc.in, len(got), err)
			}
			g := got[0]
			for _, f := range []string{g.CallID, g.Trunk, g.From, g.Identity} {
				if f != tc.stored {
					t.Errorf("%q stored as %q, want %q", tc.in, f, tc.stored)
				}
				if back := cdr.UnescapeText(f); back != tc.in {
					t.Errorf("%q: unescaped %q", tc.in, back)
				}
			}
		}
	})
	t.Run("IdempotentUID", func(t *testing.T) {
		s := newStore(t)
		defer s.Close()
		var batch []cdr.Record
		for i := range 20 {
			r := rec(i, "acme")
			r.UID = fmt.Sprintf("uid-%03d", i)
			batch = append(batch, r)
		}
		if err := s.Insert(ctx, batch[:12]); err != nil {
			t.Fatal(err)
		}
		// A replay of the whole batch after a crash that came after the
		// first insert: the 12 already stored are skipped, not doubled.
		if err := s.Insert(ctx, batch); err != nil {
			t.Fatal(err)
		}
		if err := s.Insert(ctx, batch[5:7]); err != nil {
			t.Fatal(err)
		}
		// Records without a UID (older rows) are never taken for duplicates.
		noUID := rec(100, "acme")
		if err := s.Insert(ctx, []cdr.Record{noUID, noUID}); err != nil {
			t.Fatal(err)
		}
		got, err := s.List(ctx, cdr.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 22 {
			t.Fatalf("%d records, want 20 (each UID once) + 2 without UID", len(got))
		}
		for i, g := range got[:20] {
			if want := fmt.Sprintf("uid-%03d", i); g.UID != want {
				t.Errorf("record %d: UID %q, want %q", i, g.UID, want)
			}
		}
	})
	t.Run("HostileBytesThroughWriter", func(t *testing.T) {
		s := newStore(t)
		defer s.Close()
		dir := t.TempDir()
		w, err := cdr.OpenWriter(s, cdr.WriterOptions{Dir: dir, BatchSize: 256, FlushInterval: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(4475, 1))
		hostile := func() string {
			b := make([]byte, rng.IntN(48))
			for i := range b {
				switch rng.IntN(4) {
				case 0:
					b[i] = byte(rng.IntN(256)) // anything, NUL and 0xff included
				case 1:
					b[i] = "\\x\x00\xff\xc3\xa9"[rng.IntN(6)]
				default:
					b[i] = byte(0x20 + rng.IntN(0x5f))
				}
			}
			return string(b)
		}
		const n = 10000
		want := make([]cdr.Record, n)
		for i := range want {
			start := base.Add(time.Duration(i) * time.Millisecond)
			want[i] = cdr.Record{CallID: hostile(), Trunk: hostile(), Upstream: hostile(), Direction: hostile(),
				SrcAddr: hostile(), Transport: hostile(), From: hostile(), To: hostile(), Start: start,
				Answer: start.Add(time.Second), End: start.Add(3 * time.Second), Duration: 2 * time.Second, FinalCode: 200,
				Disposition: cdr.Disposition(hostile()), Stage: hostile(), Reason: hostile(), CallerMedia: hostile(),
				CalleeMedia: hostile(), Identity: hostile()}
			w.Write(want[i])
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		if err := w.Close(cctx); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(filepath.Join(dir, cdr.DeadLetterFile)); err == nil {
			t.Fatalf("records set aside:\n%.2000s", b)
		}
		got, err := s.List(ctx, cdr.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != n {
			t.Fatalf("%d records stored, want %d", len(got), n)
		}
		for i, g := range got {
			for _, f := range []string{g.CallID, g.Trunk, g.Upstream, g.Direction, g.SrcAddr, g.Transport, g.From, g.To,
				string(g.Disposition), g.Stage, g.Reason, g.CallerMedia, g.CalleeMedia, g.Identity} {
				if !utf8.ValidString(f) || strings.IndexByte(f, 0) >= 0 {
					t.Fatalf("record %d: stored text %q is not valid text", i, f)
				}
			}
			if len(g.UID) != 32 {
				t.Fatalf("record %d: UID %q", i, g.UID)
			}
			u := cdr.UnescapeRecord(g)
			u.ID, u.UID = 0, ""
			wr := want[i]
			if !u.Start.Equal(wr.Start) || !u.Answer.Equal(wr.Answer) || !u.End.Equal(wr.End) {
				t.Fatalf("record %d times differ", i)
			}
			u.Start, u.Answer, u.End = wr.Start, wr.Answer, wr.End
			if u != wr {
				t.Fatalf("record %d after unescaping:\n got %+v\nwant %+v", i, u, wr)
			}
		}
	})
}
