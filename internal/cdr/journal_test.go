package cdr_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipwarden/sipwarden/internal/cdr"
	"github.com/sipwarden/sipwarden/internal/events"
)

// waitFor polls cond (the writer's state is seen through its store and
// files) until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func callIDs(recs []cdr.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.CallID
	}
	return out
}

// A batch with records the store refuses (while it answers) is split until
// the refused ones are alone; they go to the dead-letter file with the
// error and an event, and every other record is stored.
func TestWriterSplitsRefusedBatch(t *testing.T) {
	st := &memStore{refuse: func(r cdr.Record) bool { return strings.Contains(r.CallID, "\xff") }}
	dir := t.TempDir()
	bus := events.NewBus()
	sub := bus.Subscribe("test", 16)
	reg := prometheus.NewRegistry()
	w, err := cdr.OpenWriter(st, cdr.WriterOptions{Dir: dir, BatchSize: 100, FlushInterval: time.Hour, Bus: bus, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		id := fmt.Sprintf("call-%d", i)
		if i == 17 || i == 80 {
			id += "\xff"
		}
		w.Write(cdr.Record{CallID: id, Trunk: "acme"})
	}
	waitFor(t, "98 records stored", func() bool { n, _ := st.count(); return n == 98 })
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, cdr.DeadLetterFile))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 {
		t.Fatalf("dead letters:\n%s", b)
	}
	for i, want := range []string{`call-17\xff`, `call-80\xff`} {
		var d struct {
			Error  string
			Record cdr.Record
		}
		if err := json.Unmarshal([]byte(lines[i]), &d); err != nil {
			t.Fatal(err)
		}
		if d.Record.CallID != want || !strings.Contains(d.Error, "invalid byte sequence") || d.Record.UID == "" {
			t.Errorf("dead letter %d: %s", i, lines[i])
		}
	}
	if v := gaugeValue(t, reg, "sipwarden_cdr_dead_letters_total"); v != 2 {
		t.Errorf("dead letters metric %v", v)
	}
	var got []events.Event
	for len(got) < 2 {
		select {
		case e := <-sub.C:
			if e.Kind == events.CDRStore && e.Reason == "dead_letter" {
				got = append(got, e)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("dead_letter events: %+v", got)
		}
	}
	if got[0].CallID != `call-17\xff` {
		t.Errorf("event call-id %q", got[0].CallID)
	}
}

// A store that answers but says it cannot take the batch now (busy,
// locked, full: cdr.ErrUnavailable) is not a bad record: the batch is kept
// whole, journaled and retried, and nothing is set aside.
func TestWriterKeepsBatchWhenStoreBusy(t *testing.T) {
	st := &memStore{busyN: 3}
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	w, err := cdr.OpenWriter(st, cdr.WriterOptions{Dir: dir, BatchSize: 8, FlushInterval: time.Millisecond, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		w.Write(cdr.Record{CallID: fmt.Sprintf("b%d", i)})
	}
	waitFor(t, "8 records stored", func() bool { n, _ := st.count(); return n == 8 })
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, cdr.DeadLetterFile)); err == nil {
		t.Error("records of a busy store were set aside")
	}
	if v := gaugeValue(t, reg, "sipwarden_cdr_write_errors_total"); v != 3 {
		t.Errorf("%v failed inserts, want 3 (the batch whole each time, never split)", v)
	}
}

// While the store is down, Write returns at once, records go to the
// journal, and when the store is back they arrive once each, in order.
func TestWriterJournalsWhileDownAndReplaysInOrder(t *testing.T) {
	st := &memStore{failN: 1 << 30}
	dir := t.TempDir()
	bus := events.NewBus()
	sub := bus.Subscribe("test", 64)
	reg := prometheus.NewRegistry()
	w, err := cdr.OpenWriter(st, cdr.WriterOptions{Dir: dir, BatchSize: 16, QueueSize: 8, FlushInterval: 5 * time.Millisecond,
		Bus: bus, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	start := time.Now()
	for i := range n {
		w.Write(cdr.Record{CallID: fmt.Sprintf("c%05d", i)})
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("%d writes with the store down took %v", n, d)
	}
	waitFor(t, "store_unavailable event", func() bool {
		for {
			select {
			case e := <-sub.C:
				if e.Reason == "store_unavailable" {
					return true
				}
			default:
				return false
			}
		}
	})
	waitFor(t, "the backlog in the journal", func() bool {
		return gaugeValue(t, reg, "sipwarden_cdr_backlog") == n && gaugeValue(t, reg, "sipwarden_cdr_journal_bytes") > 0
	})
	if gaugeValue(t, reg, "sipwarden_cdr_store_up") != 0 {
		t.Error("store_up not 0 while down")
	}
	st.setFail(0)
	waitFor(t, "every record stored", func() bool { c, _ := st.count(); return c == n })
	waitFor(t, "the journal emptied", func() bool { return gaugeValue(t, reg, "sipwarden_cdr_journal_bytes") == 0 })
	recs, _ := st.List(context.Background(), cdr.Filter{})
	ids := callIDs(recs)
	// Records that found the queue full were journaled ahead of those
	// still queued; everything else is in order. Each is there once.
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("%s stored twice", id)
		}
		seen[id] = true
	}
	inversions := 0
	for i := 1; i < len(ids); i++ {
		if ids[i] < ids[i-1] {
			inversions++
		}
	}
	if inversions > n/8+8 {
		t.Errorf("%d order inversions", inversions)
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if gaugeValue(t, reg, "sipwarden_cdr_store_up") != 1 || gaugeValue(t, reg, "sipwarden_cdr_lost_total") != 0 {
		t.Error("store_up or lost after recovery")
	}
}

// Records written while a slow store holds the writer do not wait for it:
// those that find the queue full go to the journal.
func TestWriterNeverBlocksOnFullQueue(t *testing.T) {
	block := make(chan struct{})
	st := &memStore{block: block}
	w, err := cdr.OpenWriter(st, cdr.WriterOptions{Dir: t.TempDir(), BatchSize: 1, QueueSize: 2, FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		for i := range 50 {
			w.Write(cdr.Record{CallID: fmt.Sprintf("q%02d", i)})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Write waited for a stuck store")
	}
	waitFor(t, "a backlog of 50", func() bool { return w.Backlog() == 50 })
	st.mu.Lock()
	st.block = nil
	st.mu.Unlock()
	close(block)
	waitFor(t, "all 50 stored", func() bool { n, _ := st.count(); return n == 50 })
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A journal left by a stop with the store down (or a crash) is replayed by
// the next writer; records it already stored before the crash (insert done,
// journal not yet truncated) are not stored twice.
func TestWriterReplaysJournalAtStart(t *testing.T) {
	dir := t.TempDir()
	down := &memStore{failN: 1 << 30}
	w, err := cdr.OpenWriter(down, cdr.WriterOptions{Dir: dir, BatchSize: 4, FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		w.Write(cdr.Record{CallID: fmt.Sprintf("r%d\x00\xfe", i)})
	}
	waitFor(t, "10 records journaled", func() bool { return w.Backlog() == 10 })
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, cdr.JournalFile))
	if err != nil || strings.Count(string(b), "\n") != 10 {
		t.Fatalf("journal after a stop with the store down: %q %v", b, err)
	}
	// The crash: the first 3 records reached the store, the journal stayed.
	var first []cdr.Record
	for _, line := range strings.SplitN(string(b), "\n", 4)[:3] {
		var r cdr.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		first = append(first, cdr.UnescapeRecord(r))
	}
	up := &memStore{}
	if err := up.Insert(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	// and a torn line at the end.
	f, err := os.OpenFile(filepath.Join(dir, cdr.JournalFile), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(`{"CallID":"torn`)
	f.Close()
	w2, err := cdr.OpenWriter(up, cdr.WriterOptions{Dir: dir, BatchSize: 4, FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the journal replayed", func() bool { n, _ := up.count(); return n == 10 && w2.Backlog() == 0 })
	if err := w2.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	recs, _ := up.List(context.Background(), cdr.Filter{})
	for i, r := range recs {
		if want := fmt.Sprintf("r%d\x00\xfe", i); r.CallID != want {
			t.Errorf("record %d: %q, want %q (bytes kept, in order, once)", i, r.CallID, want)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, cdr.JournalFile)); err != nil || fi.Size() != 0 {
		t.Errorf("journal after replay: %v %v", fi, err)
	}
}

// A full journal loses records, but says so: counted and reported.
func TestWriterJournalFull(t *testing.T) {
	st := &memStore{failN: 1 << 30}
	bus := events.NewBus()
	sub := bus.Subscribe("test", 64)
	reg := prometheus.NewRegistry()
	w, err := cdr.OpenWriter(st, cdr.WriterOptions{Dir: t.TempDir(), BatchSize: 1, FlushInterval: time.Millisecond,
		JournalMaxBytes: 2000, Bus: bus, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		w.Write(cdr.Record{CallID: fmt.Sprintf("f%d", i)})
	}
	waitFor(t, "journal_full", func() bool {
		for {
			select {
			case e := <-sub.C:
				if e.Kind == events.CDRStore && e.Reason == "journal_full" {
					return true
				}
			default:
				return false
			}
		}
	})
	waitFor(t, "all 40 journaled or lost", func() bool {
		return gaugeValue(t, reg, "sipwarden_cdr_lost_total")+gaugeValue(t, reg, "sipwarden_cdr_backlog") == 40
	})
	if gaugeValue(t, reg, "sipwarden_cdr_journal_bytes") > 2000 {
		t.Error("journal past its bound")
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestEscapeText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"abc@host", "abc@host"},
		{"\xff", `\xff`},
		{"\x00", `\x00`},
		{`\`, `\\`},
		{`\xff`, `\\xff`},
		{"é\xe9", `é\xe9`},
		{"\xf0\x9f\x98", `\xf0\x9f\x98`},
		{"😀", "😀"},
	} {
		if got := cdr.EscapeText(tc.in); got != tc.want {
			t.Errorf("EscapeText(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if back := cdr.UnescapeText(tc.want); back != tc.in {
			t.Errorf("UnescapeText(%q) = %q, want %q", tc.want, back, tc.in)
		}
	}
	if a := testing.AllocsPerRun(100, func() { _ = cdr.EscapeText("sipp-1234@192.0.2.1 Zoë") }); a != 0 {
		t.Errorf("EscapeText of clean text allocates %v", a)
	}
}

func FuzzEscapeText(f *testing.F) {
	for _, s := range []string{"", "\xff", `\x41`, "a\x00b", `\\`, "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := cdr.EscapeText(s)
		if !utf8ValidNoNUL(e) {
			t.Fatalf("EscapeText(%q) = %q: not valid text", s, e)
		}
		if back := cdr.UnescapeText(e); back != s {
			t.Fatalf("round trip of %q: %q -> %q", s, e, back)
		}
	})
}

func utf8ValidNoNUL(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

// A journal line that does not decode (the file was edited or damaged) does
// not stop the replay: it goes to the dead-letter file as it was.
func TestWriterSetsAsideDamagedJournalLine(t *testing.T) {
	dir := t.TempDir()
	good := func(id string) string {
		b, _ := json.Marshal(cdr.Record{UID: id, CallID: id})
		return string(b) + "\n"
	}
	if err := os.WriteFile(filepath.Join(dir, cdr.JournalFile), []byte(good("a")+"{\"CallID\": 12, garbage\xff\n"+good("b")), 0o600); err != nil {
		t.Fatal(err)
	}
	st := &memStore{}
	w, err := cdr.OpenWriter(st, cdr.WriterOptions{Dir: dir, FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the two good records", func() bool { n, _ := st.count(); return n == 2 && w.Backlog() == 0 })
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, cdr.DeadLetterFile))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Error string
		Line  string `json:"journal_line"`
	}
	if err := json.Unmarshal(b, &d); err != nil || d.Error != "journal line unreadable" || d.Line != `{"CallID": 12, garbage\xff` {
		t.Fatalf("dead letter %q: %+v %v", b, d, err)
	}
}
