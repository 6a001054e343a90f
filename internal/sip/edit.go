package sip

import (
	"errors"
	"strconv"
)

// maxEdits bounds the edits one Editor records.
const maxEdits = 32

// ErrTooManyEdits is returned by AppendTo when more than maxEdits edits were recorded.
var ErrTooManyEdits = errors.New("sip: too many edits")

// ErrOverlappingEdits is returned by AppendTo when two edits touch the same bytes.
var ErrOverlappingEdits = errors.New("sip: overlapping edits")

// edit replaces source bytes [start, end) with name ": " val CRLF (a new
// field, when name is set) or with val.
type edit struct {
	start, end int
	name       string
	val        []byte
	seq        int
	clValue    bool // this edit sets the Content-Length value
}

// Editor records changes to a parsed message and writes the changed message
// with AppendTo, splicing the new bytes between untouched ranges of the
// original. The source buffer is never modified. Values given to an Editor
// must stay valid until AppendTo returns. An Editor is reusable; after the
// first few uses it allocates nothing.
type Editor struct {
	m        *Msg
	edits    [maxEdits]edit
	n        int
	overflow bool
	body     []byte
	newBody  bool
	num      [24]byte
	clBuf    [24]byte
}

// Reset starts a new set of edits on m.
func (e *Editor) Reset(m *Msg) {
	e.m = m
	e.n = 0
	e.overflow = false
	e.body = nil
	e.newBody = false
}

func (e *Editor) add(ed edit) {
	if e.n == maxEdits {
		e.overflow = true
		return
	}
	ed.seq = e.n
	e.edits[e.n] = ed
	e.n++
}

// SetRequestURI replaces the Request-URI.
func (e *Editor) SetRequestURI(uri []byte) {
	s := e.m.uri
	e.add(edit{start: int(s.start), end: int(s.end), val: uri})
}

// InsertHeader inserts a field before field index before; NumHeaders()
// appends it after the last field.
func (e *Editor) InsertHeader(before int, name string, value []byte) {
	pos := int(e.m.headEnd)
	if before >= 0 && before < e.m.n {
		pos = int(e.m.hdrs[before].raw.start)
	}
	e.add(edit{start: pos, end: pos, name: name, val: value})
}

// DeleteHeader removes field i.
func (e *Editor) DeleteHeader(i int) {
	if i < 0 || i >= e.m.n {
		return
	}
	r := e.m.hdrs[i].raw
	e.add(edit{start: int(r.start), end: int(r.end)})
}

// SetHeaderValue replaces the value of field i.
func (e *Editor) SetHeaderValue(i int, value []byte) {
	if i < 0 || i >= e.m.n {
		return
	}
	v := e.m.hdrs[i].value
	e.add(edit{start: int(v.start), end: int(v.end), val: value})
}

// SetMaxForwards sets Max-Forwards to n, inserting the field when absent.
func (e *Editor) SetMaxForwards(n int) {
	b := strconv.AppendInt(e.num[:0], int64(n), 10)
	if i := e.m.Find(HdrMaxForwards, 0); i >= 0 {
		e.SetHeaderValue(i, b)
		return
	}
	e.InsertHeader(e.m.n, "Max-Forwards", b)
}

// SetBody replaces the body; Content-Length is set to match.
func (e *Editor) SetBody(b []byte) {
	e.body = b
	e.newBody = true
}

// AppendTo appends the edited message to dst. The output always carries
// exactly one correct Content-Length field (added when the message had none).
func (e *Editor) AppendTo(dst []byte) ([]byte, error) {
	if e.overflow {
		return dst, ErrTooManyEdits
	}
	m := e.m
	body := m.Body()
	if e.newBody {
		body = e.body
	}
	// Content-Length: fix the first field, drop any others, or add one.
	cl := strconv.AppendInt(e.clBuf[:0], int64(len(body)), 10)
	first := true
	for i := 0; i < m.n; i++ {
		if m.hdrs[i].id != HdrContentLength {
			continue
		}
		if first {
			v := m.hdrs[i].value
			e.add(edit{start: int(v.start), end: int(v.end), val: cl, clValue: true})
			first = false
		} else {
			r := m.hdrs[i].raw
			e.add(edit{start: int(r.start), end: int(r.end)})
		}
	}
	if first {
		pos := int(m.headEnd)
		e.add(edit{start: pos, end: pos, name: "Content-Length", val: cl, clValue: true})
	}
	if e.overflow {
		return dst, ErrTooManyEdits
	}
	// Sort by position, keeping the call order of edits at the same position
	// (insertion sort: a handful of edits).
	ed := e.edits[:e.n]
	for i := 1; i < len(ed); i++ {
		for j := i; j > 0 && (ed[j].start < ed[j-1].start || ed[j].start == ed[j-1].start && ed[j].seq < ed[j-1].seq); j-- {
			ed[j], ed[j-1] = ed[j-1], ed[j]
		}
	}
	src := m.buf
	headEnd := int(m.bodyStart)
	pos := 0
	for i := range ed {
		x := &ed[i]
		if x.start < pos {
			return dst, ErrOverlappingEdits
		}
		dst = append(dst, src[pos:x.start]...)
		if x.name != "" {
			dst = append(dst, x.name...)
			dst = append(dst, ": "...)
			dst = append(dst, x.val...)
			dst = append(dst, "\r\n"...)
		} else {
			dst = append(dst, x.val...)
		}
		pos = x.end
	}
	dst = append(dst, src[pos:headEnd]...)
	// the Content-Length edits were appended for this call only
	e.dropCLEdits()
	return append(dst, body...), nil
}

// dropCLEdits removes the Content-Length edits AppendTo added, so that a
// second AppendTo works the same.
func (e *Editor) dropCLEdits() {
	k := 0
	for i := 0; i < e.n; i++ {
		x := e.edits[i]
		if x.clValue || (x.name == "" && x.val == nil && e.isExtraCL(x)) {
			continue
		}
		e.edits[k] = x
		k++
	}
	e.n = k
	for i := 0; i < e.n; i++ {
		e.edits[i].seq = i
	}
}

// isExtraCL reports whether x deletes a duplicate Content-Length field.
func (e *Editor) isExtraCL(x edit) bool {
	for i := 0; i < e.m.n; i++ {
		h := e.m.hdrs[i]
		if h.id == HdrContentLength && int(h.raw.start) == x.start && int(h.raw.end) == x.end {
			return true
		}
	}
	return false
}
