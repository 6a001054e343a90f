// Package cdr is the call detail record: one Record per INVITE dialog, from
// the INVITE to its end, with how it ended (Disposition).
//
// The proxy hands records to a Writer, which stores them in batches off the
// hot path. Nothing a caller sends can stop the books, and the proxy never
// waits for them:
//
//   - Text is stored as valid UTF-8 whatever the bytes (EscapeText): a
//     backslash is stored as `\\`, a NUL byte as `\x00` and every byte that is
//     not part of valid UTF-8 as `\xNN`; all else is kept. The rule is the
//     same for every store (SQLite and PostgreSQL escape in Insert, and List
//     returns the text as stored); UnescapeText gives the exact bytes back.
//   - A batch the store refuses while it is reachable (Pinger) and not
//     merely busy (ErrUnavailable) is split in halves until the refused
//     records are alone; each is appended to the dead-letter file
//     cdr-dead-letter.jsonl in the writer's directory, one JSON object a
//     line ({"time", "error", "record"} with the record escaped, or
//     "journal_line" for a journal line that did not decode), with a
//     cdr_store event (reason dead_letter).
//   - When the store is unreachable, or the in-memory queue is full, records
//     go to a local append-only journal, cdr-journal.jsonl (JSON lines of
//     escaped records), in the same directory. Write never waits: it queues,
//     or appends to the journal. The writer fsyncs the journal after each
//     batch it appends and at least once per flush interval for records a
//     full queue put there (a process crash loses nothing; a power loss at
//     most one flush interval of those). The journal is bounded
//     (WriterOptions.JournalMaxBytes); a record that does not fit is lost,
//     counted, logged and reported (event reason journal_full). Without a
//     directory there is no journal, and a record that finds the queue full
//     is lost the same way (reason queue_full).
//   - Once the journal holds records, new batches go behind them, and the
//     writer replays the journal in order when the store answers again
//     (retrying with backoff up to 10s), then truncates it. A journal left by
//     a crash or a stop is replayed by the next writer on the same directory.
//     Records are stored in the order they were written, except that a record
//     that found the queue full is journaled ahead of those still queued.
//   - Every record gets a unique id (Record.UID) before it leaves the
//     writer's hands, and the stores ignore a second insert of the same id,
//     so a replay after a crash between an insert and the journal's
//     truncation stores nothing twice.
//
// Stores: sqlite (the embedded default) and postgres; both pass the
// conformance suite in cdrtest.
package cdr

import (
	"context"
	"errors"
	"time"
)

// Disposition says how a call ended.
type Disposition string

// Dispositions.
const (
	Answered    Disposition = "answered"
	Busy        Disposition = "busy"
	NoAnswer    Disposition = "no-answer"
	Failed      Disposition = "failed"
	Cancelled   Disposition = "cancelled"
	Blocked     Disposition = "blocked"     // refused by a security stage (Stage, Reason say which and why)
	Interrupted Disposition = "interrupted" // still open when sipwarden stopped
)

// DispositionFor maps the final status of an unanswered call: 486 and 600
// are busy; 408, 480 and an uncancelled 487 no-answer; a 487 after the
// caller's CANCEL cancelled; other failures failed. 2xx is answered.
func DispositionFor(code int, callerCancelled bool) Disposition {
	switch {
	case code >= 200 && code < 300:
		return Answered
	case callerCancelled && (code == 487 || code == 0):
		return Cancelled
	case code == 486 || code == 600:
		return Busy
	case code == 408 || code == 480 || code == 487:
		return NoAnswer
	}
	return Failed
}

// Record is one call.
type Record struct {
	ID          int64  // assigned by the store
	UID         string // unique id (NewUID), given by the Writer; a store keeps one record per UID
	CallID      string
	Trunk       string // the customer trunk (either direction)
	Upstream    string
	Direction   string // "originating" (trunk to upstream) or "terminating" (upstream to trunk)
	SrcAddr     string // ip:port that sent the INVITE
	Transport   string // UDP, TCP, TLS
	From, To    string // E.164 where possible, else the URI user part
	Start       time.Time
	Answer      time.Time // zero when not answered
	End         time.Time
	Duration    time.Duration // End-Answer when answered
	FinalCode   int
	Disposition Disposition
	Stage       string // for Blocked: the stage
	Reason      string // for Blocked: why; else an extra note ("shutdown", "dialog_timeout")
	// CallerMedia and CalleeMedia are the media security of each leg when
	// the media relay anchored the call: "srtp:AES_CM_128_HMAC_SHA1_80",
	// "rtp" (plain), or "" (not anchored, or no media).
	CallerMedia, CalleeMedia string
	// Identity is the STIR/SHAKEN outcome: "signed:A|B|C" for a call
	// sipwarden signed; for a call it verified, the verstat (with the
	// failure code and reason), the attestation that verified and the
	// certificate's SPC ("TN-Validation-Passed;attest=A;spc=709J",
	// "TN-Validation-Failed:438:bad_signature;spc=709J"); else "".
	Identity string
}

// Filter selects records. Zero values do not restrict.
type Filter struct {
	Since, Until time.Time // on Start
	Trunk        string
	Limit        int
}

// Store keeps records.
type Store interface {
	// Insert stores a batch in one transaction.
	Insert(ctx context.Context, recs []Record) error
	// List returns matching records ordered by Start, then ID.
	List(ctx context.Context, f Filter) ([]Record, error)
	Close() error
}

// ErrUnavailable marks an Insert error that says nothing about the records:
// the store is busy, locked, full, read-only, shutting down or unreachable.
// The Writer keeps such a batch (journal) and retries it, instead of
// splitting it to find a bad record. Stores mark their errors with
// Unavailable.
var ErrUnavailable = errors.New("CDR store unavailable")

type unavailableError struct{ err error }

func (e unavailableError) Error() string   { return e.err.Error() }
func (e unavailableError) Unwrap() []error { return []error{e.err, ErrUnavailable} }

// Unavailable marks err (non-nil) as ErrUnavailable, keeping it in the chain.
func Unavailable(err error) error {
	if err == nil {
		return nil
	}
	return unavailableError{err}
}

// Pinger is implemented by stores that can tell whether they are reachable.
// After a failed Insert the Writer asks: a store that does not answer is
// down (the records are journaled and retried), one that answers refused
// the records (the batch is split to set the bad ones aside). A store that
// is no Pinger is taken as reachable.
type Pinger interface {
	Ping(ctx context.Context) error
}
