// Package cdr is the call detail record: one Record per INVITE dialog, from
// the INVITE to its end, with how it ended (Disposition).
//
// The proxy hands records to a Writer, which stores them in batches off the
// hot path and never loses one: when the store is slow the queue grows (up
// to its bound, then Write waits), failed inserts are retried, and Close
// flushes everything. Stores: sqlite (the embedded default) and postgres;
// both pass the conformance suite in cdrtest.
package cdr

import (
	"context"
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
	ID          int64 // assigned by the store
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
