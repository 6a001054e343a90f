package cdr

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// WriterOptions tune a Writer. Zero values take defaults: BatchSize 256,
// FlushInterval 1s, QueueSize 65536.
type WriterOptions struct {
	BatchSize     int
	FlushInterval time.Duration
	QueueSize     int
	Logger        *slog.Logger
	Registerer    prometheus.Registerer
}

// Writer stores records asynchronously, in batches, without losing any.
type Writer struct {
	store Store
	opt   WriterOptions
	in    chan Record
	done  chan struct{}
	wg    sync.WaitGroup
	log   *slog.Logger

	written, errors, full prometheus.Counter
	depth                 prometheus.GaugeFunc
	closeOnce             sync.Once
	closeErr              error
	flushCtx              context.Context
	flushCancel           context.CancelFunc
}

// NewWriter starts a writer over s.
func NewWriter(s Store, o WriterOptions) *Writer {
	if o.BatchSize <= 0 {
		o.BatchSize = 256
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = time.Second
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 65536
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	w := &Writer{store: s, opt: o, in: make(chan Record, o.QueueSize), done: make(chan struct{}), log: o.Logger,
		written: prometheus.NewCounter(prometheus.CounterOpts{Name: "sipwarden_cdr_written_total", Help: "CDRs stored."}),
		errors:  prometheus.NewCounter(prometheus.CounterOpts{Name: "sipwarden_cdr_write_errors_total", Help: "Failed CDR batch inserts (retried)."}),
		full:    prometheus.NewCounter(prometheus.CounterOpts{Name: "sipwarden_cdr_queue_full_total", Help: "Writes that waited because the CDR queue was full."}),
	}
	w.depth = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sipwarden_cdr_queue_depth", Help: "CDRs waiting to be stored."},
		func() float64 { return float64(len(w.in)) })
	w.flushCtx, w.flushCancel = context.WithCancel(context.Background())
	if o.Registerer != nil {
		o.Registerer.MustRegister(w.written, w.errors, w.full, w.depth)
	}
	w.wg.Add(1)
	go w.run()
	return w
}

// Write queues r. It waits when the queue is full rather than drop a record.
// A record written after Close is stored synchronously.
func (w *Writer) Write(r Record) {
	select {
	case <-w.done:
		w.log.Error("CDR written after close; storing it synchronously", "call_id", r.CallID)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := w.store.Insert(ctx, []Record{r}); err != nil {
			w.log.Error("CDR lost", "call_id", r.CallID, "err", err)
		}
		return
	default:
	}
	select {
	case w.in <- r:
	default:
		w.full.Inc()
		w.in <- r
	}
}

// QueueDepth returns how many records wait to be stored.
func (w *Writer) QueueDepth() int { return len(w.in) }

func (w *Writer) run() {
	defer w.wg.Done()
	batch := make([]Record, 0, w.opt.BatchSize)
	tick := time.NewTicker(w.opt.FlushInterval)
	defer tick.Stop()
	for {
		select {
		case r := <-w.in:
			batch = append(batch, r)
			if len(batch) >= w.opt.BatchSize {
				batch = w.flush(batch)
			}
		case <-tick.C:
			if len(batch) > 0 {
				batch = w.flush(batch)
			}
		case <-w.done:
			for {
				select {
				case r := <-w.in:
					batch = append(batch, r)
					if len(batch) >= w.opt.BatchSize {
						batch = w.flush(batch)
					}
					continue
				default:
				}
				break
			}
			if len(batch) > 0 {
				w.flush(batch)
			}
			return
		}
	}
}

// flush inserts batch, retrying with backoff until it succeeds or Close's
// deadline ends the wait. It returns the emptied batch.
func (w *Writer) flush(batch []Record) []Record {
	backoff := 100 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(w.flushCtx, 30*time.Second)
		err := w.store.Insert(ctx, batch)
		cancel()
		if err == nil {
			w.written.Add(float64(len(batch)))
			return batch[:0]
		}
		w.errors.Inc()
		if w.flushCtx.Err() != nil {
			w.log.Error("CDR batch lost at shutdown", "records", len(batch), "err", err)
			w.closeErr = err
			return batch[:0]
		}
		w.log.Warn("CDR insert failed; retrying", "records", len(batch), "err", err, "retry_in", backoff.String())
		select {
		case <-time.After(backoff):
		case <-w.flushCtx.Done():
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// Close stores every queued record and stops the writer. If ctx ends first,
// records still failing to store are reported as lost in the error.
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
