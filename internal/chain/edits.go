package chain

// MaxEdits is how many header edits one request can carry.
const MaxEdits = 8

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

// SetHeader asks the proxy to replace the value of header field i.
func (r *Request) SetHeader(i int, value []byte) bool {
	return r.addEdit(HeaderEdit{Kind: EditSet, Index: i, Value: value})
}

// DeleteHeader asks the proxy to remove header field i.
func (r *Request) DeleteHeader(i int) bool {
	return r.addEdit(HeaderEdit{Kind: EditDelete, Index: i})
}

// HeaderEdits returns the edits stages asked for, in order.
func (r *Request) HeaderEdits() []HeaderEdit { return r.edits.e[:r.edits.n] }
