package sip

// Bytes returns the whole message as received.
func (m *Msg) Bytes() []byte { return m.buf }

// IsRequest reports whether the message is a request.
func (m *Msg) IsRequest() bool { return m.isRequest }

// Method returns the request method, or for a response the CSeq method.
func (m *Msg) Method() Method {
	if m.isRequest {
		return m.method
	}
	return m.cseqMethod
}

// MethodName returns the request method token, or for a response the CSeq method token.
func (m *Msg) MethodName() []byte {
	if m.isRequest {
		return m.methodTok.of(m.buf)
	}
	return m.cseqMethTok.of(m.buf)
}

// RequestURI returns the Request-URI of a request (nil for responses).
func (m *Msg) RequestURI() []byte { return m.uri.of(m.buf) }

// Version returns the SIP-Version of the start line ("SIP/2.0").
func (m *Msg) Version() []byte { return m.version.of(m.buf) }

// StatusCode returns a response's status code; 0 for requests.
func (m *Msg) StatusCode() int { return m.code }

// ReasonPhrase returns a response's reason phrase.
func (m *Msg) ReasonPhrase() []byte { return m.reason.of(m.buf) }

// StartLine returns the start line without its line break.
func (m *Msg) StartLine() []byte { return m.startLine.of(m.buf) }

// NumHeaders returns the number of header fields.
func (m *Msg) NumHeaders() int { return m.n }

// Header returns field i (0 <= i < NumHeaders()).
func (m *Msg) Header(i int) Header {
	if i < 0 || i >= m.n {
		return Header{}
	}
	h := &m.hdrs[i]
	return Header{ID: h.id, Name: h.name.of(m.buf), Value: h.value.of(m.buf), Raw: h.raw.of(m.buf)}
}

// Get returns the value of the first field with id, or nil.
func (m *Msg) Get(id HeaderID) []byte {
	for i := 0; i < m.n; i++ {
		if m.hdrs[i].id == id {
			return m.hdrs[i].value.of(m.buf)
		}
	}
	return nil
}

// Find returns the index of the next field with id at or after from, or -1.
func (m *Msg) Find(id HeaderID, from int) int {
	if from < 0 {
		from = 0
	}
	for i := from; i < m.n; i++ {
		if m.hdrs[i].id == id {
			return i
		}
	}
	return -1
}

// GetName returns the value of the first field named name (any case), for
// fields without a HeaderID.
func (m *Msg) GetName(name string) []byte {
	for i := 0; i < m.n; i++ {
		if equalFoldASCII(m.hdrs[i].name.of(m.buf), name) {
			return m.hdrs[i].value.of(m.buf)
		}
	}
	return nil
}

// Count returns how many fields have id.
func (m *Msg) Count(id HeaderID) int {
	c := 0
	for i := 0; i < m.n; i++ {
		if m.hdrs[i].id == id {
			c++
		}
	}
	return c
}

// CallID returns the Call-ID value, or nil.
func (m *Msg) CallID() []byte {
	if m.callID < 0 {
		return nil
	}
	return m.hdrs[m.callID].value.of(m.buf)
}

// CSeq returns the CSeq number and method; method is MethodOther and the
// number 0 when the CSeq field is missing or invalid (see CSeqValid).
func (m *Msg) CSeq() (num uint32, method Method) { return m.cseqNum, m.cseqMethod }

// CSeqValid reports whether the message has a well-formed CSeq.
func (m *Msg) CSeqValid() bool { return m.cseqOK }

// CSeqMethodName returns the CSeq method token.
func (m *Msg) CSeqMethodName() []byte { return m.cseqMethTok.of(m.buf) }

// MaxForwards returns the Max-Forwards value, -1 when absent or not a number.
func (m *Msg) MaxForwards() int { return m.maxFwd }

// ContentLength returns the Content-Length value, -1 when absent.
func (m *Msg) ContentLength() int { return m.clen }

// Body returns the message body (bounded by Content-Length when present).
func (m *Msg) Body() []byte {
	if m.bodyStart == 0 || m.bodyEnd < m.bodyStart {
		return nil
	}
	return m.buf[m.bodyStart:m.bodyEnd:m.bodyEnd]
}

// BodyOffset returns the offset of the body in Bytes().
func (m *Msg) BodyOffset() int { return int(m.bodyStart) }

// FromTag returns the tag parameter of From, or nil.
func (m *Msg) FromTag() []byte { return tagOf(m.Get(HdrFrom)) }

// ToTag returns the tag parameter of To, or nil.
func (m *Msg) ToTag() []byte { return tagOf(m.Get(HdrTo)) }

func tagOf(v []byte) []byte {
	if v == nil {
		return nil
	}
	na, _, err := ParseNameAddr(v)
	if err != nil {
		return nil
	}
	t, _ := Param(na.Params, "tag")
	return t
}

// TopVia returns the first via-parm of the first Via field.
func (m *Msg) TopVia() (Via, error) {
	i := m.Find(HdrVia, 0)
	if i < 0 {
		return Via{}, errNoVia
	}
	v, _, err := ParseVia(m.hdrs[i].value.of(m.buf))
	return v, err
}
