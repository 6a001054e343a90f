package proxy

// timerKind says what a timer entry does when it fires. Every handler checks
// that the transaction or dialog is still in the state the timer was set for,
// so a stale entry is harmless and timers never need to be cancelled.
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

type timerEntry struct {
	at   int64 // nanoseconds since the worker's epoch
	kind timerKind
	ct   *clientTx
	st   *serverTx
	dlg  *dialog
}

// timerHeap is a binary min-heap on at (no interface boxing: pushing a timer
// does not allocate once the slice has grown).
type timerHeap []timerEntry

func (h *timerHeap) push(e timerEntry) {
	*h = append(*h, e)
	a := *h
	i := len(a) - 1
	for i > 0 {
		parent := (i - 1) / 2
		if a[parent].at <= a[i].at {
			break
		}
		a[parent], a[i] = a[i], a[parent]
		i = parent
	}
}

func (h *timerHeap) pop() timerEntry {
	a := *h
	top := a[0]
	n := len(a) - 1
	a[0] = a[n]
	a[n] = timerEntry{}
	a = a[:n]
	i := 0
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && a[l].at < a[m].at {
			m = l
		}
		if r < n && a[r].at < a[m].at {
			m = r
		}
		if m == i {
			break
		}
		a[m], a[i] = a[i], a[m]
		i = m
	}
	*h = a
	return top
}
