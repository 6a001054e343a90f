package proxy

// timerKind says what a timer does when it fires.
type timerKind uint8

const (
	timerA      timerKind = iota // client INVITE retransmission (UDP)
	timerB                       // client INVITE: no response at all
	timerC                       // client INVITE: no final response after a provisional
	timerD                       // client INVITE completed → terminated
	timerE                       // client non-INVITE retransmission (UDP)
	timerF                       // client non-INVITE timeout
	timerK                       // client non-INVITE completed → terminated
	timerL                       // client INVITE accepted (2xx seen) → terminated (RFC 6026)
	timerG                       // server INVITE: retransmit the final non-2xx response (UDP)
	timerH                       // server INVITE: no ACK for the final non-2xx response
	timerI                       // server INVITE confirmed → terminated
	timerJ                       // server non-INVITE completed → terminated
	timerSL                      // server INVITE accepted (2xx sent) → terminated (RFC 6026)
	timerDialog                  // dialog inactivity check
)

// timer is one scheduled event. It lives inside the transaction or dialog it
// belongs to (no allocation to schedule it), and the worker's heap points at
// it only while it is scheduled: a transaction that terminates or a dialog
// that ends cancels its timers, so the heap never keeps a finished call
// alive. Each owner has at most two timers running at once: a
// retransmission timer (A, E, G) and a lifetime timer (B, C, D, F, H, I, J,
// K, L; the dialog's inactivity timer), and a new lifetime timer replaces the
// one before it (C replaces B, D or L replaces C, I replaces H, ...).
//
// Why an indexed heap with removal rather than tombstones (a generation
// checked at fire time): a tombstone still sits in the heap until it comes
// due, and the dialog timer is 2 h: at 1,000 calls/s that is 7.2 million
// stale entries. Removal is O(log n) in the live timers, which are a few per
// call in progress; see BenchmarkTimers.
type timer struct {
	at   int64 // nanoseconds since the worker's epoch
	idx  int32 // position in the heap, -1 when not scheduled
	kind timerKind
	ct   *clientTx
	st   *serverTx
	dlg  *dialog
}

// timerHeap is a binary min-heap on at of the scheduled timers.
type timerHeap []*timer

func (h timerHeap) less(i, j int) bool { return h[i].at < h[j].at }

func (h timerHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx = int32(i)
	h[j].idx = int32(j)
}

func (h timerHeap) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !h.less(i, parent) {
			break
		}
		h.swap(i, parent)
		i = parent
	}
}

func (h timerHeap) down(i int) bool {
	start := i
	n := len(h)
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && h.less(l, m) {
			m = l
		}
		if r < n && h.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		h.swap(m, i)
		i = m
	}
	return i > start
}

// set schedules t at at, moving it when it is already scheduled.
func (h *timerHeap) set(t *timer, at int64) {
	t.at = at
	if t.idx >= 0 && int(t.idx) < len(*h) && (*h)[t.idx] == t {
		if !h.down(int(t.idx)) {
			h.up(int(t.idx))
		}
		return
	}
	t.idx = int32(len(*h))
	*h = append(*h, t)
	h.up(int(t.idx))
}

// cancel removes t if it is scheduled.
func (h *timerHeap) cancel(t *timer) {
	i := int(t.idx)
	a := *h
	if i < 0 || i >= len(a) || a[i] != t {
		return
	}
	n := len(a) - 1
	if i != n {
		a.swap(i, n)
	}
	a[n] = nil
	*h = a[:n]
	t.idx = -1
	if i != n {
		if !(*h).down(i) {
			(*h).up(i)
		}
	}
}

// pop removes and returns the earliest timer.
func (h *timerHeap) pop() *timer {
	t := (*h)[0]
	h.cancel(t)
	return t
}
