package fraud

import (
	"sync"
	"time"

	"github.com/sipwarden/sipwarden/internal/sip"
)

// A hairpin is a call that comes in from an upstream to a customer and goes
// straight back out through the customer's trunk: a PBX forwarding its
// calls (a hijacked voicemail or extension forwarding to a premium number
// abroad is the classic way to turn a PBX into a free gateway). A PBX that
// marks the forwarded call (Diversion, History-Info) is caught by the
// diverted check; one that does not still passes the original caller on as
// the forwarded call's caller ID. So the stage remembers the callers of the
// calls that came in from upstreams in the last HairpinWindow, and a call
// from a trunk to another country whose caller is one of them is a hairpin,
// refused unless the trunk allows forwarded calls abroad
// (allow_diverted_international).

// HairpinWindow is how long the caller of an inbound call counts: longer
// than a forward on no answer waits (typically 20–30 s of ringing), short
// enough that the same person calling out later is not taken for a forward.
const HairpinWindow = 2 * time.Minute

// Hairpins remembers the callers of recent calls from upstreams by their
// number hash (Destination.Number), in a fixed table: a spoofed flood of
// caller IDs overwrites slots instead of growing it (a lost entry lets one
// hairpin through unmarked; it never refuses a call that is not one).
type Hairpins struct {
	mu    sync.Mutex
	slots []hairpinSlot
}

type hairpinSlot struct {
	num uint64
	at  time.Time
}

// NewHairpins returns a table of n callers (default 16384: far more than
// the calls coming in within HairpinWindow on one node).
func NewHairpins(n int) *Hairpins {
	if n <= 0 {
		n = 16384
	}
	return &Hairpins{slots: make([]hairpinSlot, n)}
}

// noteInbound records that num called in at now.
func (h *Hairpins) noteInbound(num uint64, now time.Time) {
	if num == 0 {
		return
	}
	h.mu.Lock()
	h.slots[num%uint64(len(h.slots))] = hairpinSlot{num: num, at: now}
	h.mu.Unlock()
}

// calledIn reports whether num called in within HairpinWindow before now.
func (h *Hairpins) calledIn(num uint64, now time.Time) bool {
	if num == 0 {
		return false
	}
	h.mu.Lock()
	s := h.slots[num%uint64(len(h.slots))]
	h.mu.Unlock()
	return s.num == num && !now.Before(s.at) && now.Sub(s.at) <= HairpinWindow
}

// callerNumber classifies the caller of m (the user part of its From URI)
// in the dialling context d; zero Destination when it has none.
func (s *Stage) callerNumber(m *sip.Msg, d *Dialling) Destination {
	na, _, err := sip.ParseNameAddr(m.Get(sip.HdrFrom))
	if err != nil {
		return Destination{}
	}
	u, err := sip.ParseURI(na.URI)
	if err != nil || len(u.User) == 0 {
		return Destination{}
	}
	var buf [24]byte
	_, dest := s.st.Classifier.Classify(d, u.User, buf[:0])
	return dest
}
