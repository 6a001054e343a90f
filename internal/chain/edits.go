package chain

// MaxEdits is how many header edits one request can carry: the identity
// headers an untrusted trunk sent removed (a handful), then an Identity,
// a Date, a Reason and a verstat.
const MaxEdits = 16

// EditKind says what a HeaderEdit does.
type EditKind uint8

// Kinds of header edits.
const (
	// EditAdd adds a new header field Name: Value (the proxy puts it before Content-Length).
	EditAdd EditKind = iota + 1
	// EditSet replaces the value of field Index.
	EditSet
	// EditDelete removes field Index.
	EditDelete
)

// HeaderEdit is one change a stage asks for on a request it lets through
// (an Identity header added, a verstat set on P-Asserted-Identity). The
// proxy applies the edits of a request when it forwards it; a stage never
// edits the message itself. Value is owned by the edit (a stage must not
// reuse the bytes after Handle returns).
type HeaderEdit struct {
	Kind  EditKind
	Index int // field index in Msg, for EditSet and EditDelete
	Name  string
	Value []byte
}

type headerEdits struct {
	n int
	e [MaxEdits]HeaderEdit
}

func (r *Request) addEdit(e HeaderEdit) bool {
	if r.edits.n == MaxEdits {
		return false
	}
	r.edits.e[r.edits.n] = e
	r.edits.n++
	return true
}

// AddHeader asks the proxy to append the header field name: value. It
// reports false when the request already carries MaxEdits edits.
func (r *Request) AddHeader(name string, value []byte) bool {
	return r.addEdit(HeaderEdit{Kind: EditAdd, Name: name, Value: value})
}

// find returns the position of the edit of field i (EditSet or
// EditDelete), or -1. A field has at most one: two edits of the same bytes
// would make the whole edited message fail, and the proxy would then send
// the original.
func (r *Request) find(i int) int {
	for k := 0; k < r.edits.n; k++ {
		if e := &r.edits.e[k]; e.Kind != EditAdd && e.Index == i {
			return k
		}
	}
	return -1
}

// SetHeader asks the proxy to replace the value of header field i. A second
// SetHeader of the same field replaces the value of the first; a field
// that is to be removed stays removed (true: nothing is left to do).
func (r *Request) SetHeader(i int, value []byte) bool {
	if k := r.find(i); k >= 0 {
		if r.edits.e[k].Kind == EditSet {
			r.edits.e[k].Value = value
		}
		return true
	}
	return r.addEdit(HeaderEdit{Kind: EditSet, Index: i, Value: value})
}

// DeleteHeader asks the proxy to remove header field i (a value set for it
// before is dropped).
func (r *Request) DeleteHeader(i int) bool {
	if k := r.find(i); k >= 0 {
		r.edits.e[k] = HeaderEdit{Kind: EditDelete, Index: i}
		return true
	}
	return r.addEdit(HeaderEdit{Kind: EditDelete, Index: i})
}

// Deleted reports whether a stage asked for field i to be removed.
func (r *Request) Deleted(i int) bool {
	k := r.find(i)
	return k >= 0 && r.edits.e[k].Kind == EditDelete
}

// ForwardedValue is the value field i will have in the forwarded request:
// the one a stage set, or the received one; nil when the field is to be
// removed or does not exist. Stages that read an identity (From,
// P-Asserted-Identity) after another stage edited it read it here.
func (r *Request) ForwardedValue(i int) []byte {
	if i < 0 || r.Msg == nil || i >= r.Msg.NumHeaders() {
		return nil
	}
	if k := r.find(i); k >= 0 {
		if r.edits.e[k].Kind == EditDelete {
			return nil
		}
		return r.edits.e[k].Value
	}
	return r.Msg.Header(i).Value
}

// HeaderEdits returns the edits stages asked for, in order.
func (r *Request) HeaderEdits() []HeaderEdit { return r.edits.e[:r.edits.n] }
