package events

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// This file holds what the notification sinks (webhook.go, email.go) share:
// the choice of kinds, de-duplication, batching with a minimum interval,
// retries with backoff, and the one-line human summary of an event. Each sink
// only encodes and delivers a batch.

// DefaultDedupWindow is how long a sink remembers an event it sent, so that
// the same event again (same kind, stage, reason, trunk, source address,
// method, code and detail) is not sent twice.
const DefaultDedupWindow = 10 * time.Minute

// notice is an event a sink delivers, with how many copies of it were held
// back by de-duplication in the window before it.
type notice struct {
	Event
	repeats int
}

// dedup remembers what a sink sent within a window. The same key within the
// window is suppressed (and counted, the count rides on the next copy sent
// after the window). Memory is bounded: at maxDedupKeys the expired keys are
// swept, and if none expired the oldest is forgotten (its next copy is
// sent: de-duplication fails open, never silent).
type dedup struct {
	window time.Duration
	seen   map[string]*dedupEntry
}

type dedupEntry struct {
	sent       time.Time
	suppressed int
}

const maxDedupKeys = 4096

func newDedup(window time.Duration) *dedup {
	return &dedup{window: window, seen: make(map[string]*dedupEntry)}
}

// check reports whether e should be sent and, if so, how many copies of it
// were suppressed before; a zero window sends everything.
func (d *dedup) check(e Event) (send bool, repeats int) {
	if d == nil || d.window <= 0 {
		return true, 0
	}
	key := dedupKey(e)
	now := e.Time
	if x, ok := d.seen[key]; ok {
		// a clock that goes back counts as within the window
		if now.Sub(x.sent) < d.window {
			x.suppressed++
			return false, 0
		}
		repeats = x.suppressed
		x.sent, x.suppressed = now, 0
		return true, repeats
	}
	if len(d.seen) >= maxDedupKeys {
		d.sweep(now)
	}
	d.seen[key] = &dedupEntry{sent: now}
	return true, 0
}

// sweep forgets the expired keys, or the oldest one when none has expired.
func (d *dedup) sweep(now time.Time) {
	var oldest string
	var oldestAt time.Time
	for k, x := range d.seen {
		if now.Sub(x.sent) >= d.window {
			delete(d.seen, k)
			continue
		}
		if oldest == "" || x.sent.Before(oldestAt) {
			oldest, oldestAt = k, x.sent
		}
	}
	if len(d.seen) >= maxDedupKeys {
		delete(d.seen, oldest)
	}
}

// dedupKey is what makes two events "the same" for a notification: all but
// the time, the source port (a client's port changes with each connection),
// the transport and the Call-ID (a burst of refused calls is one notice).
func dedupKey(e Event) string {
	var b strings.Builder
	b.Grow(len(e.Stage) + len(e.Reason) + len(e.Trunk) + len(e.Method) + len(e.Detail) + 64)
	b.WriteString(e.Kind.String())
	for _, s := range [...]string{e.Stage, e.Reason, e.Trunk, e.Method, e.Detail} {
		b.WriteByte(0)
		b.WriteString(s)
	}
	b.WriteByte(0)
	if e.Src.IsValid() {
		b.WriteString(e.Src.Addr().String())
	}
	b.WriteByte(0)
	b.WriteString(strconv.Itoa(e.Code))
	return b.String()
}

// kindSet is a set of event kinds; empty means DefaultWebhookKinds.
type kindSet [len(kindNames)]bool

func newKindSet(kinds []Kind) *kindSet {
	if len(kinds) == 0 {
		kinds = DefaultWebhookKinds
	}
	var s kindSet
	for _, k := range kinds {
		if int(k) < len(s) {
			s[k] = true
		}
	}
	return &s
}

func (s *kindSet) has(k Kind) bool { return int(k) < len(s) && s[k] }

// batchPolicy is how a sink gathers events into deliveries.
type batchPolicy struct {
	kinds *kindSet
	dedup *dedup
	// flush: how long the first event of a batch waits for company.
	flush time.Duration
	// minInterval: the least time between two deliveries (0: none); events
	// that come sooner wait for the next one.
	minInterval time.Duration
	// max: events listed in one delivery; with no minInterval a full batch
	// goes at once, otherwise the surplus is only counted ("and N more").
	max int
	// ignore drops events the sink must not deliver (its own failures).
	ignore func(Event) bool
	// duplicate is called for each event suppressed by de-duplication.
	duplicate func()
}

// deliverFunc delivers one batch; more is how many events did not fit in
// it. final is the last delivery at shutdown: one try, bounded.
type deliverFunc func(ctx context.Context, batch []notice, more int, final bool)

// gather reads sub until ctx ends or the subscription closes and hands
// batches to deliver, on the caller's goroutine: while a delivery retries,
// events wait in the subscription's queue.
func gather(ctx context.Context, sub *Subscription, p batchPolicy, deliver deliverFunc) {
	var (
		batch []notice
		more  int
		last  time.Time // the last delivery
	)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	canSend := func() bool { return p.minInterval <= 0 || last.IsZero() || time.Since(last) >= p.minInterval }
	send := func(ctx context.Context, final bool) {
		timer.Stop()
		if len(batch) == 0 {
			return
		}
		deliver(ctx, batch, more, final)
		batch, more = batch[:0], 0
		last = time.Now()
	}
	// take adds e to the batch; a full batch is delivered at once unless
	// draining (at shutdown, the surplus is only counted).
	take := func(e Event, draining bool) {
		if !p.kinds.has(e.Kind) || (p.ignore != nil && p.ignore(e)) {
			return
		}
		ok, repeats := p.dedup.check(e)
		if !ok {
			if p.duplicate != nil {
				p.duplicate()
			}
			return
		}
		if len(batch) >= p.max {
			more++
			return
		}
		if len(batch) == 0 {
			wait := p.flush
			if p.minInterval > 0 && !last.IsZero() {
				wait = max(wait, p.minInterval-time.Since(last))
			}
			timer.Reset(wait)
		}
		batch = append(batch, notice{Event: e, repeats: repeats})
		if len(batch) >= p.max && canSend() && !draining && ctx.Err() == nil {
			send(ctx, false)
		}
	}
	for {
		select {
		case <-ctx.Done():
			// what is already queued joins the last delivery, which
			// deliver bounds by its own timeout
			for range len(sub.C) {
				e, ok := <-sub.C
				if !ok {
					break
				}
				take(e, true)
			}
			send(context.WithoutCancel(ctx), true)
			return
		case <-timer.C:
			send(ctx, false)
		case e, ok := <-sub.C:
			if !ok {
				send(ctx, false)
				return
			}
			take(e, false)
		}
	}
}

// backoff is the wait before the first retry; it doubles up to maxBackoff.
const (
	backoff    = time.Second
	maxBackoff = 30 * time.Second
)

// permanentError marks a failure that another try cannot mend (a rejected
// recipient, a certificate that does not verify, a server without STARTTLS).
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func permanent(err error) error { return &permanentError{err} }

// retry calls try up to tries times, waiting wait, 2*wait ... maxBackoff in
// between, and stops early at a permanent error or the end of ctx. It
// returns the number of tries made and the last error.
func retry(ctx context.Context, tries int, wait time.Duration, try func(context.Context) error) (int, error) {
	for n := 1; ; n++ {
		err := try(ctx)
		var perm *permanentError
		if err == nil || n >= tries || errors.As(err, &perm) {
			return n, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return n, err
		case <-t.C:
		}
		wait = min(2*wait, maxBackoff)
	}
}

// failureEvent is the NotifyFailed event of a sink that gave up on a batch.
// host names the sink (never a URL path or a password); errText is redacted
// by the caller.
func failureEvent(sink, host string, events, tries int, errText string) Event {
	return Event{Kind: NotifyFailed, Stage: "notify", Reason: sink,
		Detail: host + ": " + strconv.Itoa(events) + " events not delivered after " + strconv.Itoa(tries) + " tries: " + clean(errText, 200)}
}

// ownFailure reports whether e is a NotifyFailed event of this sink (sink
// type and host), which the sink would only fail to deliver again.
func ownFailure(e Event, sink, host string) bool {
	return e.Kind == NotifyFailed && e.Reason == sink && strings.HasPrefix(e.Detail, host+": ")
}

// onlyFailures reports whether every event of batch is a NotifyFailed: a
// sink that cannot deliver news of a failure logs it and publishes nothing,
// so two failing sinks do not keep each other busy.
func onlyFailures(batch []notice) bool {
	for _, n := range batch {
		if n.Kind != NotifyFailed {
			return false
		}
	}
	return true
}

// summary is the one-line human form of an event, for chat and e-mail: the
// time, kind, trunk, source address, reason and detail. Every field is
// cleaned of control characters (details may quote network input) and the
// line is capped in length. Events carry no phone numbers and no secrets, so
// neither does the summary.
func summary(n notice, window time.Duration) string {
	var b strings.Builder
	b.WriteString(n.Time.UTC().Format("2006-01-02 15:04:05Z"))
	b.WriteByte(' ')
	b.WriteString(n.Kind.String())
	if n.Trunk != "" {
		b.WriteString(" trunk=")
		b.WriteString(clean(n.Trunk, 64))
	}
	if n.Src.IsValid() {
		b.WriteString(" src=")
		b.WriteString(n.Src.Addr().String())
	}
	if n.Reason != "" && n.Reason != n.Kind.String() {
		b.WriteString(" reason=")
		b.WriteString(clean(n.Reason, 64))
	}
	if n.Code != 0 {
		b.WriteString(" code=")
		b.WriteString(strconv.Itoa(n.Code))
	}
	if n.Detail != "" {
		b.WriteString(": ")
		b.WriteString(clean(n.Detail, 240))
	}
	if n.repeats > 0 {
		b.WriteString(" (")
		b.WriteString(strconv.Itoa(n.repeats))
		b.WriteString(" more like it within ")
		b.WriteString(window.String())
		b.WriteString(" before, not sent)")
	}
	return b.String()
}

// clean replaces control characters and invalid UTF-8 with spaces and caps
// s at limit runes, so that text from the network cannot forge a line of a
// message or a header.
func clean(s string, limit int) string {
	ok := utf8.ValidString(s) && utf8.RuneCountInString(s) <= limit
	for _, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n == limit {
			b.WriteString("…")
			break
		}
		if r == utf8.RuneError || unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			r = ' '
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}
