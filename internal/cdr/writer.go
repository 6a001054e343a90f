package cdr

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipwarden/sipwarden/internal/events"
)

// Files a Writer keeps in WriterOptions.Dir.
const (
	JournalFile    = "cdr-journal.jsonl"     // records not yet stored, replayed in order
	DeadLetterFile = "cdr-dead-letter.jsonl" // records the store refused, with the error
)

// WriterOptions tune a Writer. Zero values take defaults: BatchSize 256,
// FlushInterval 1s, QueueSize 65536, JournalMaxBytes 1 GiB.
type WriterOptions struct {
	BatchSize     int
	FlushInterval time.Duration
	QueueSize     int
	// Dir holds the journal and the dead-letter file (storage.path). Without
	// it there is no journal: a record that finds the queue full is lost
	// (counted and logged), a batch is retried in memory while the store is
	// down, and a refused record is only logged.
	Dir string
	// JournalMaxBytes bounds the journal file.
	JournalMaxBytes int64
	Logger          *slog.Logger
	Registerer      prometheus.Registerer
	// Bus receives the cdr_store events (nil: none are published).
	Bus *events.Bus
}

// Writer stores records asynchronously, in batches, without losing any and
// without making its callers wait (see the package documentation).
type Writer struct {
	store Store
	opt   WriterOptions
	in    chan Record
	done  chan struct{}
	wg    sync.WaitGroup
	log   *slog.Logger
	jrn   *journal // nil without Dir

	// Owned by the run goroutine.
	batch     []Record
	down      bool // the last insert failed and the store did not answer
	backoff   time.Duration
	retryAt   time.Time
	replayOff int64 // journal offset up to which records are stored
	dead      *os.File
	uidRaw    []byte

	inBatch atomic.Int64
	writing atomic.Int64 // Writes under way

	written, errors, full, lost, deadLetters prometheus.Counter
	storeUp                                  prometheus.Gauge
	depth, backlog, journalBytes             prometheus.GaugeFunc
	closeOnce                                sync.Once
	closeErr                                 error
	flushCtx                                 context.Context
	flushCancel                              context.CancelFunc
}

// NewWriter starts a writer over s. If the journal in o.Dir cannot be
// opened it logs why and runs without one; OpenWriter returns the error.
func NewWriter(s Store, o WriterOptions) *Writer {
	w, err := OpenWriter(s, o)
	if err != nil {
		o.Dir = ""
		w, _ = OpenWriter(s, o)
		w.log.Error("CDR journal unavailable; running without it", "err", err)
	}
	return w
}

// OpenWriter starts a writer over s with its journal in o.Dir. A journal
// left there by an earlier run is replayed first.
func OpenWriter(s Store, o WriterOptions) (*Writer, error) {
	if o.BatchSize <= 0 {
		o.BatchSize = 256
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = time.Second
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 65536
	}
	if o.JournalMaxBytes <= 0 {
		o.JournalMaxBytes = 1 << 30
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	w := &Writer{store: s, opt: o, in: make(chan Record, o.QueueSize), done: make(chan struct{}), log: o.Logger,
		batch:       make([]Record, 0, o.BatchSize),
		written:     prometheus.NewCounter(prometheus.CounterOpts{Name: "sipwarden_cdr_written_total", Help: "CDRs stored."}),
		errors:      prometheus.NewCounter(prometheus.CounterOpts{Name: "sipwarden_cdr_write_errors_total", Help: "Failed CDR inserts (retried, split or journaled)."}),
		full:        prometheus.NewCounter(prometheus.CounterOpts{Name: "sipwarden_cdr_queue_full_total", Help: "Writes that found the CDR queue full (journaled, or lost without a journal)."}),
		lost:        prometheus.NewCounter(prometheus.CounterOpts{Name: "sipwarden_cdr_lost_total", Help: "CDRs lost: the journal was full, or the queue was full without a journal."}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{Name: "sipwarden_cdr_dead_letters_total", Help: "CDRs the store refused, set aside in the dead-letter file."}),
		storeUp:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "sipwarden_cdr_store_up", Help: "1 while the CDR store accepts inserts, 0 while records go to the journal."}),
	}
	w.storeUp.Set(1)
	if o.Dir != "" {
		if err := os.MkdirAll(o.Dir, 0o750); err != nil {
			return nil, fmt.Errorf("CDR journal directory: %w", err)
		}
		path := filepath.Join(o.Dir, JournalFile)
		j, torn, err := openJournal(path, o.JournalMaxBytes)
		if err != nil {
			return nil, err
		}
		if torn > 0 {
			w.log.Warn("CDR journal ended in a torn line (a crash while appending); cut it off", "file", path, "bytes", torn)
		}
		if n := j.pending.Load(); n > 0 {
			w.log.Info("CDR journal holds records of an earlier run; replaying them", "file", path, "records", n)
		}
		w.jrn = j
	}
	w.depth = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sipwarden_cdr_queue_depth", Help: "CDRs waiting in memory to be stored."},
		func() float64 { return float64(len(w.in)) })
	w.backlog = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sipwarden_cdr_backlog", Help: "CDRs not yet stored: queued, batched or in the journal."},
		func() float64 { return float64(w.Backlog()) })
	w.journalBytes = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sipwarden_cdr_journal_bytes", Help: "Size of the CDR journal file."},
		func() float64 {
			if w.jrn == nil {
				return 0
			}
			return float64(w.jrn.size.Load())
		})
	w.flushCtx, w.flushCancel = context.WithCancel(context.Background())
	if o.Registerer != nil {
		o.Registerer.MustRegister(w.written, w.errors, w.full, w.lost, w.deadLetters, w.storeUp, w.depth, w.backlog, w.journalBytes)
	}
	w.wg.Add(1)
	go w.run()
	return w, nil
}

var errQueueFull = errors.New("CDR queue full and no journal")

// Write queues r. It never waits: when the queue is full, r goes to the
// journal. A record written after Close is stored synchronously.
func (w *Writer) Write(r Record) {
	w.writing.Add(1) // Close's drain waits for this Write to hand r over
	defer w.writing.Add(-1)
	select {
	case <-w.done:
		w.log.Error("CDR written after close; storing it synchronously", "call_id", EscapeText(r.CallID))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if r.UID == "" {
			r.UID = NewUID()
		}
		if err := w.store.Insert(ctx, []Record{r}); err != nil {
			w.lose([]Record{r}, err)
		}
		return
	default:
	}
	select {
	case w.in <- r:
		return
	default:
	}
	w.full.Inc()
	if w.jrn == nil {
		w.lose([]Record{r}, errQueueFull)
		return
	}
	if r.UID == "" {
		r.UID = NewUID()
	}
	if _, err := w.jrn.append([]Record{r}); err != nil {
		w.lose([]Record{r}, err)
	}
}

// QueueDepth returns how many records wait in memory to be stored.
func (w *Writer) QueueDepth() int { return len(w.in) }

// Backlog returns how many records are not yet stored: queued, in the batch
// being written, or in the journal.
func (w *Writer) Backlog() int64 {
	n := int64(len(w.in)) + w.inBatch.Load()
	if w.jrn != nil {
		n += w.jrn.pending.Load()
	}
	return n
}

var ready = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (w *Writer) run() {
	defer w.wg.Done()
	tick := time.NewTicker(w.opt.FlushInterval)
	defer tick.Stop()
	for {
		var replay <-chan struct{}
		if w.replayDue() {
			replay = ready
		}
		select {
		case r := <-w.in:
			w.add(r)
		case <-tick.C:
			w.flush()
			w.syncJournal()
		case <-replay:
			w.replayStep()
		case <-w.done:
			w.finish()
			return
		}
	}
}

func (w *Writer) add(r Record) {
	w.batch = append(w.batch, r)
	w.inBatch.Store(int64(len(w.batch)))
	if len(w.batch) >= w.opt.BatchSize {
		w.flush()
	}
}

// finish stores (or journals) what is queued when Close is called, and
// empties the journal if the store answers; what it cannot store stays in
// the journal for the next start.
func (w *Writer) finish() {
	for w.writing.Load() > 0 { // a Write that saw the writer open hands its record over
		select {
		case r := <-w.in:
			w.add(r)
		default:
			runtime.Gosched()
		}
	}
	for {
		select {
		case r := <-w.in:
			w.add(r)
			continue
		default:
		}
		break
	}
	w.flush()
	if w.dead != nil {
		_ = w.dead.Close()
	}
	if w.jrn == nil {
		return
	}
	for w.jrn.size.Load() > 0 && !w.down && w.flushCtx.Err() == nil {
		w.replayStep()
	}
	if n := w.jrn.pending.Load(); n > 0 {
		w.log.Warn("CDRs left in the journal; the next start stores them", "file", w.jrn.path, "records", n)
	}
	if err := w.jrn.close(); err != nil {
		w.log.Error("CDR journal close", "err", err)
		w.closeErr = err
	}
}

// flush stores the batch, or journals it while the journal holds older
// records or the store is down.
func (w *Writer) flush() {
	if len(w.batch) == 0 {
		return
	}
	defer func() {
		clear(w.batch) // drop the strings
		w.batch = w.batch[:0]
		w.inBatch.Store(0)
	}()
	w.assignUIDs(w.batch)
	if w.jrn != nil {
		if w.down || w.jrn.size.Load() > 0 {
			w.journal(w.batch)
			return
		}
		if err := w.storeBatch(w.batch); err != nil {
			w.storeDown(err)
			w.journal(w.batch)
		}
		return
	}
	// No journal: retry in memory until stored or Close's deadline.
	for {
		err := w.storeBatch(w.batch)
		if err == nil {
			return
		}
		w.storeDown(err)
		if w.flushCtx.Err() != nil {
			w.lose(w.batch, err)
			w.closeErr = err
			return
		}
		select {
		case <-time.After(time.Until(w.retryAt)):
		case <-w.flushCtx.Done():
		}
	}
}

// assignUIDs gives each record without one a UID, with one allocation for
// the batch.
func (w *Writer) assignUIDs(recs []Record) {
	n := 0
	for i := range recs {
		if recs[i].UID == "" {
			n++
		}
	}
	if n == 0 {
		return
	}
	if cap(w.uidRaw) < 16*n {
		w.uidRaw = make([]byte, 16*n)
	}
	raw := w.uidRaw[:16*n]
	_, _ = rand.Read(raw) // crypto/rand.Read never fails
	var b strings.Builder
	b.Grow(32 * n)
	for _, c := range raw {
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	s := b.String()
	for i := range recs {
		if recs[i].UID == "" {
			recs[i].UID, s = s[:32], s[32:]
		}
	}
}

// storeBatch inserts recs. When the store fails but still answers, the
// batch is split in halves until each refused record is alone; those go to
// the dead-letter file. It returns an error only when the store is down
// (or the dead-letter file cannot be written): then none of recs counts as
// stored, and inserting them again stores each once (UID).
func (w *Writer) storeBatch(recs []Record) error {
	err := w.insert(recs)
	if err == nil {
		return nil
	}
	w.errors.Inc()
	if w.unavailable(err) {
		return err
	}
	if len(recs) == 1 {
		if err = w.insert(recs); err == nil { // a passing fault
			return nil
		}
		w.errors.Inc()
		if w.unavailable(err) {
			return err
		}
		return w.deadLetter(recs[0], err)
	}
	mid := len(recs) / 2
	if err := w.storeBatch(recs[:mid]); err != nil {
		return err
	}
	return w.storeBatch(recs[mid:])
}

func (w *Writer) insert(recs []Record) error {
	ctx, cancel := context.WithTimeout(w.flushCtx, 30*time.Second)
	defer cancel()
	if err := w.store.Insert(ctx, recs); err != nil {
		return err
	}
	w.written.Add(float64(len(recs)))
	w.storeAnswers()
	return nil
}

// unavailable tells a store that is down (or busy) from one that refused
// the records: the store's own word (ErrUnavailable), a timeout, or a ping
// that fails.
func (w *Writer) unavailable(err error) bool {
	return errors.Is(err, ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		!w.reachable()
}

func (w *Writer) reachable() bool {
	p, ok := w.store.(Pinger)
	if !ok {
		return true
	}
	ctx, cancel := context.WithTimeout(w.flushCtx, 5*time.Second)
	defer cancel()
	return p.Ping(ctx) == nil
}

func (w *Writer) storeDown(err error) {
	w.backoff = min(max(2*w.backoff, 100*time.Millisecond), 10*time.Second)
	w.retryAt = time.Now().Add(w.backoff)
	if w.down {
		w.log.Debug("CDR store still unavailable", "err", err, "retry_in", w.backoff.String())
		return
	}
	w.down = true
	w.storeUp.Set(0)
	where := "keeping the batch in memory"
	if w.jrn != nil {
		where = "records go to the journal " + w.jrn.path
	}
	w.log.Warn("CDR store unavailable; "+where, "err", err, "retry_in", w.backoff.String())
	w.publish(events.Event{Reason: "store_unavailable", Detail: shorten(err.Error())})
}

func (w *Writer) storeAnswers() {
	if !w.down {
		return
	}
	w.down, w.backoff = false, 0
	w.storeUp.Set(1)
	var n int64
	if w.jrn != nil {
		n = w.jrn.pending.Load()
	}
	w.log.Info("CDR store answers again", "journaled", n)
	w.publish(events.Event{Reason: "store_recovered", Detail: fmt.Sprintf("%d records in the journal to replay", n)})
}

// journal appends recs to the journal and syncs it; what does not fit is lost.
func (w *Writer) journal(recs []Record) {
	n, err := w.jrn.append(recs)
	if err != nil {
		w.lose(recs[n:], err)
	}
	w.syncJournal()
}

func (w *Writer) syncJournal() {
	if w.jrn == nil {
		return
	}
	if err := w.jrn.sync(); err != nil {
		w.log.Error("CDR journal sync", "file", w.jrn.path, "err", err)
	}
}

func (w *Writer) replayDue() bool {
	return w.jrn != nil && w.jrn.size.Load() > 0 && !time.Now().Before(w.retryAt)
}

// replayStep stores the next batch of the journal, and empties the journal
// when it has all been stored.
func (w *Writer) replayStep() {
	w.syncJournal() // records a full queue appended
	recs, bad, next, err := w.jrn.read(w.replayOff, w.opt.BatchSize)
	if err != nil {
		w.log.Error("CDR journal read", "file", w.jrn.path, "err", err)
		w.storeDown(err) // try again later
		return
	}
	if len(recs) == 0 && len(bad) == 0 && next < w.jrn.size.Load() {
		// Bytes without a line end where a line should be: wait rather than spin.
		w.log.Error("CDR journal has an incomplete line", "file", w.jrn.path, "offset", next)
		w.retryAt = time.Now().Add(w.opt.FlushInterval)
		return
	}
	for _, line := range bad {
		if err := w.deadLetterLine(line); err != nil {
			w.storeDown(err)
			return
		}
	}
	if len(recs) > 0 {
		if err := w.storeBatch(recs); err != nil {
			w.storeDown(err)
			return
		}
	}
	w.jrn.replayed(len(recs) + len(bad))
	w.replayOff = next
	if next >= w.jrn.size.Load() {
		ok, err := w.jrn.truncateAt(next)
		if err != nil {
			w.log.Error("CDR journal truncate", "file", w.jrn.path, "err", err)
			w.storeDown(err)
			return
		}
		if ok {
			w.replayOff = 0
			w.log.Info("CDR journal replayed")
		}
	}
}

// deadLine is one line of the dead-letter file.
type deadLine struct {
	Time   time.Time       `json:"time"`
	Error  string          `json:"error"`
	Record *Record         `json:"record,omitempty"` // escaped (EscapeRecord)
	Line   json.RawMessage `json:"journal_line,omitempty"`
}

func (w *Writer) deadLetter(r Record, cause error) error {
	e := EscapeRecord(r)
	if err := w.appendDead(deadLine{Time: time.Now().UTC(), Error: cause.Error(), Record: &e}); err != nil {
		return err
	}
	w.deadLetters.Inc()
	w.log.Error("CDR refused by the store; set aside in the dead-letter file", "call_id", e.CallID, "trunk", e.Trunk,
		"uid", e.UID, "err", cause, "file", filepath.Join(w.opt.Dir, DeadLetterFile))
	w.publish(events.Event{Reason: "dead_letter", CallID: e.CallID, Trunk: e.Trunk, Detail: shorten(cause.Error())})
	return nil
}

func (w *Writer) deadLetterLine(line []byte) error {
	raw := json.RawMessage(EscapeText(string(line)))
	if !json.Valid(raw) {
		b, _ := json.Marshal(string(raw))
		raw = b
	}
	if err := w.appendDead(deadLine{Time: time.Now().UTC(), Error: "journal line unreadable", Line: raw}); err != nil {
		return err
	}
	w.deadLetters.Inc()
	w.log.Error("CDR journal line unreadable; set aside in the dead-letter file", "file", filepath.Join(w.opt.Dir, DeadLetterFile))
	w.publish(events.Event{Reason: "dead_letter", Detail: "journal line unreadable"})
	return nil
}

func (w *Writer) appendDead(d deadLine) error {
	if w.opt.Dir == "" {
		b, _ := json.Marshal(d)
		w.log.Error("CDR set aside (no storage directory for the dead-letter file)", "dead_letter", string(b))
		return nil
	}
	if w.dead == nil {
		f, err := os.OpenFile(filepath.Join(w.opt.Dir, DeadLetterFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("CDR dead-letter file: %w", err)
		}
		w.dead = f
	}
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	if _, err := w.dead.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("CDR dead-letter file: %w", err)
	}
	if err := w.dead.Sync(); err != nil {
		return fmt.Errorf("CDR dead-letter file: %w", err)
	}
	return nil
}

// lose reports records that could not be kept anywhere.
func (w *Writer) lose(recs []Record, err error) {
	if len(recs) == 0 {
		return
	}
	w.lost.Add(float64(len(recs)))
	for _, r := range recs {
		w.log.Error("CDR lost", "call_id", EscapeText(r.CallID), "trunk", EscapeText(r.Trunk), "from", EscapeText(r.From),
			"to", EscapeText(r.To), "start", r.Start, "end", r.End, "disposition", EscapeText(string(r.Disposition)), "err", err)
	}
	reason := "journal_full"
	if errors.Is(err, errQueueFull) {
		reason = "queue_full"
	}
	w.publish(events.Event{Reason: reason, Detail: fmt.Sprintf("%d CDRs lost: %s", len(recs), shorten(err.Error()))})
}

func (w *Writer) publish(e events.Event) {
	if w.opt.Bus == nil {
		return
	}
	e.Time, e.Kind, e.Stage = time.Now(), events.CDRStore, "cdr"
	w.opt.Bus.Publish(e)
}

func shorten(s string) string {
	s = EscapeText(s)
	if len(s) > 200 {
		i := 200
		for i > 0 && !utf8.RuneStart(s[i]) {
			i--
		}
		s = s[:i] + "…"
	}
	return s
}

// Close stores every queued record and stops the writer. What the store
// does not take before ctx ends stays in the journal for the next start
// (without a journal it is lost, and the error says so).
func (w *Writer) Close(ctx context.Context) error {
	w.closeOnce.Do(func() {
		close(w.done)
		finished := make(chan struct{})
		go func() {
			w.wg.Wait()
			close(finished)
		}()
		select {
		case <-finished:
		case <-ctx.Done():
			w.flushCancel()
			<-finished
		}
		w.flushCancel()
	})
	return w.closeErr
}
