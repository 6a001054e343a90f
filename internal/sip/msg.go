package sip

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Limits of the message layer.
const (
	// MaxHeaders is the most header fields a message may have.
	MaxHeaders = 128
	// DefaultMaxMessageSize is the largest message accepted by default.
	DefaultMaxMessageSize = 65535
)

// Sentinel errors of Parse. Errors returned by Parse wrap one of them.
var (
	ErrEmpty          = errors.New("sip: empty message")
	ErrStartLine      = errors.New("sip: malformed start line")
	ErrVersion        = errors.New("sip: unsupported SIP version")
	ErrHeader         = errors.New("sip: malformed header field")
	ErrTooManyHeaders = errors.New("sip: too many header fields")
	ErrContentLength  = errors.New("sip: invalid Content-Length")
	ErrTruncated      = errors.New("sip: body shorter than Content-Length")
)

// span is a half-open range of offsets into the message buffer.
type span struct{ start, end uint32 }

func (s span) of(b []byte) []byte {
	if s.end <= s.start || int(s.end) > len(b) {
		return nil
	}
	return b[s.start:s.end:s.end]
}

type hdr struct {
	id    HeaderID
	name  span
	value span
	raw   span
}

// Header is one header field of a message. Its slices point into the message
// buffer: they are valid as long as the buffer is.
type Header struct {
	ID HeaderID
	// Name is the field name as written (long or compact form, any case).
	Name []byte
	// Value is the field value with surrounding whitespace removed. Folded
	// continuation lines stay inside it.
	Value []byte
	// Raw is the whole field from its name to its final line break, including
	// continuation lines.
	Raw []byte
}

// Msg is a SIP request or response, indexed over the bytes it was parsed
// from. The zero value is ready for Parse; a Msg can be reused for many
// messages, and parsing allocates nothing.
type Msg struct {
	buf       []byte
	isRequest bool
	startOK   bool
	method    Method
	methodTok span
	uri       span
	version   span
	code      int
	reason    span
	startLine span

	hdrs [MaxHeaders]hdr
	n    int

	headEnd   uint32 // offset of the empty line ending the header section (where headers can be appended)
	bodyStart uint32
	bodyEnd   uint32

	clen        int
	callID      int16 // header index, -1 if none
	cseqOK      bool
	cseqNum     uint32
	cseqMethod  Method
	cseqMethTok span
	maxFwd      int
}

// Reset forgets the message.
func (m *Msg) Reset() {
	m.buf = nil
	m.isRequest = false
	m.startOK = false
	m.method = MethodOther
	m.methodTok, m.uri, m.version, m.reason, m.startLine = span{}, span{}, span{}, span{}, span{}
	m.code = 0
	m.n = 0
	m.headEnd, m.bodyStart, m.bodyEnd = 0, 0, 0
	m.clen = -1
	m.callID = -1
	m.cseqOK = false
	m.cseqNum = 0
	m.cseqMethod = MethodOther
	m.cseqMethTok = span{}
	m.maxFwd = -1
}

// Parse indexes b, which must hold exactly one message (one datagram, or one
// message framed out of a stream). m keeps b: do not modify b while m is in
// use. On error, what was indexed before the error stays readable.
func (m *Msg) Parse(b []byte) error {
	m.Reset()
	m.buf = b
	if len(b) > 1<<24 {
		return fmt.Errorf("%w: %d bytes", ErrContentLength, len(b))
	}
	// RFC 3261 7.5: ignore line breaks before the start line.
	pos := 0
	for pos+1 < len(b) && b[pos] == '\r' && b[pos+1] == '\n' {
		pos += 2
	}
	if pos == len(b)-1 && (b[pos] == '\r' || b[pos] == '\n') {
		pos++
	}
	if pos == len(b) {
		return ErrEmpty
	}
	lineEnd, next := findLineEnd(b, pos)
	if lineEnd == -2 {
		return fmt.Errorf("%w: line ends with a bare LF", ErrStartLine)
	}
	if lineEnd < 0 {
		return fmt.Errorf("%w: no line end", ErrStartLine)
	}
	m.startLine = span{uint32(pos), uint32(lineEnd)}
	lineErr := m.parseStartLine(b[pos:lineEnd], pos)
	if lineErr != nil && !m.isRequest {
		return lineErr
	}
	// A request with a bad version or a bad request line still gets its
	// header fields indexed, so that a peer can be answered 505 or 400.
	m.startOK = lineErr == nil || errors.Is(lineErr, ErrVersion)
	if err := m.parseHeaders(b, next); err != nil {
		if lineErr != nil {
			return lineErr
		}
		return err
	}
	return lineErr
}

// findLineEnd returns the end of the line starting at pos (before its
// CRLF) and the start of the next line, or -1 when there is no line break.
// A bare LF (no CR before it) gives end -2: it is refused, because a
// downstream parser that splits only on CRLF would see other header fields
// than we checked (a desynchronisation an attacker could use).
func findLineEnd(b []byte, pos int) (end, next int) {
	i := bytes.IndexByte(b[pos:], '\n')
	if i < 0 {
		return -1, -1
	}
	i += pos
	if i > pos && b[i-1] == '\r' {
		return i - 1, i + 1
	}
	return -2, i + 1
}

// IsTokenChar reports whether c may appear in a token (RFC 3261 25.1):
// method names and header names are tokens.
func IsTokenChar(c byte) bool { return isTokenChar(c) }

func isTokenChar(c byte) bool {
	if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
		return true
	}
	switch c {
	case '-', '.', '!', '%', '*', '_', '+', '`', '\'', '~':
		return true
	}
	return false
}

func (m *Msg) parseStartLine(line []byte, off int) error {
	if len(line) >= 8 && equalFoldASCII(line[:4], "SIP/") {
		// Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
		sp := indexByte(line, ' ')
		if sp < 0 || sp+4 > len(line) {
			return fmt.Errorf("%w: status line", ErrStartLine)
		}
		m.version = span{uint32(off), uint32(off + sp)}
		c := line[sp+1 : sp+4]
		if !isDigit(c[0]) || !isDigit(c[1]) || !isDigit(c[2]) || (sp+4 < len(line) && line[sp+4] != ' ') {
			return fmt.Errorf("%w: status code", ErrStartLine)
		}
		m.code = int(c[0]-'0')*100 + int(c[1]-'0')*10 + int(c[2]-'0')
		if m.code < 100 {
			return fmt.Errorf("%w: status code %d", ErrStartLine, m.code)
		}
		if sp+5 <= len(line) {
			m.reason = span{uint32(off + sp + 5), uint32(off + len(line))}
		}
		if !validUTF8Text(line[min(sp+5, len(line)):]) {
			return fmt.Errorf("%w: reason phrase", ErrStartLine)
		}
		if !equalFoldASCII(line[:sp], "SIP/2.0") {
			return fmt.Errorf("%w: %q", ErrVersion, line[:sp])
		}
		return nil
	}
	// Request-Line = Method SP Request-URI SP SIP-Version
	i := 0
	for i < len(line) && isTokenChar(line[i]) {
		i++
	}
	if i == 0 || i >= len(line) || line[i] != ' ' {
		return fmt.Errorf("%w: method", ErrStartLine)
	}
	m.isRequest = true
	m.methodTok = span{uint32(off), uint32(off + i)}
	m.method = ParseMethod(line[:i])
	j := i + 1
	k := j
	for k < len(line) && line[k] > ' ' && line[k] < 0x7f {
		k++
	}
	if k == j || k >= len(line) || line[k] != ' ' {
		return fmt.Errorf("%w: request-URI", ErrStartLine)
	}
	m.uri = span{uint32(off + j), uint32(off + k)}
	ver := line[k+1:]
	if len(ver) == 0 {
		return fmt.Errorf("%w: no SIP version", ErrStartLine)
	}
	for _, c := range ver {
		if c <= ' ' || c >= 0x7f {
			return fmt.Errorf("%w: SIP version", ErrStartLine)
		}
	}
	m.version = span{uint32(off + k + 1), uint32(off + len(line))}
	if !equalFoldASCII(ver, "SIP/2.0") {
		if len(ver) < 5 || !equalFoldASCII(ver[:4], "SIP/") {
			return fmt.Errorf("%w: SIP version %q", ErrStartLine, ver)
		}
		return fmt.Errorf("%w: %q", ErrVersion, ver)
	}
	return nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func indexByte(b []byte, c byte) int {
	for i := range b {
		if b[i] == c {
			return i
		}
	}
	return -1
}

// validUTF8Text rejects control bytes (but HTAB) in free text.
func validUTF8Text(b []byte) bool {
	for _, c := range b {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func isWSP(c byte) bool { return c == ' ' || c == '\t' }

func (m *Msg) parseHeaders(b []byte, pos int) error {
	for {
		if pos >= len(b) {
			// The datagram ends right after a header line: take the missing
			// empty line as given (no body).
			m.headEnd = uint32(pos)
			m.bodyStart = uint32(pos)
			return m.finish(b)
		}
		lineEnd, next := findLineEnd(b, pos)
		if lineEnd == -2 {
			return fmt.Errorf("%w: line ends with a bare LF (CRLF required)", ErrHeader)
		}
		if lineEnd < 0 {
			return fmt.Errorf("%w: header section not terminated", ErrTruncated)
		}
		if lineEnd == pos {
			m.headEnd = uint32(pos)
			m.bodyStart = uint32(next)
			return m.finish(b)
		}
		if isWSP(b[pos]) {
			// Folded continuation of the previous field (RFC 3261 7.3.1).
			if m.n == 0 {
				return fmt.Errorf("%w: continuation line before any field", ErrHeader)
			}
			h := &m.hdrs[m.n-1]
			if end := trimRight(b, pos, lineEnd); end > pos {
				if h.value.end == h.value.start {
					h.value.start = uint32(skipWSP(b, pos, lineEnd))
				}
				h.value.end = uint32(end)
			}
			h.raw.end = uint32(next)
			if err := checkHeaderBytes(b[pos:lineEnd]); err != nil {
				return err
			}
			pos = next
			continue
		}
		if m.n == MaxHeaders {
			return ErrTooManyHeaders
		}
		i := pos
		for i < lineEnd && isTokenChar(b[i]) {
			i++
		}
		nameEnd := i
		for i < lineEnd && isWSP(b[i]) {
			i++
		}
		if nameEnd == pos || i >= lineEnd || b[i] != ':' {
			return fmt.Errorf("%w: %q", ErrHeader, clip(b[pos:lineEnd]))
		}
		if err := checkHeaderBytes(b[i+1 : lineEnd]); err != nil {
			return err
		}
		vs := skipWSP(b, i+1, lineEnd)
		ve := trimRight(b, vs, lineEnd)
		m.hdrs[m.n] = hdr{
			id:    lookupHeader(b[pos:nameEnd]),
			name:  span{uint32(pos), uint32(nameEnd)},
			value: span{uint32(vs), uint32(ve)},
			raw:   span{uint32(pos), uint32(next)},
		}
		m.n++
		pos = next
	}
}

// checkHeaderBytes rejects NUL and other control bytes (but HTAB) in a
// field, except as a quoted-pair ("\\" followed by the byte, RFC 3261 25.1).
// Eight bytes at a time: a word without any byte below 0x20 or equal to 0x7f
// (the common case) is skipped at once.
func checkHeaderBytes(b []byte) error {
	i := 0
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		const lo, hi = 0x0101010101010101, 0x8080808080808080
		below20 := (x - 0x20*lo) & ^x & hi
		is7f := ((x ^ 0x7f*lo) - lo) & ^(x ^ 0x7f*lo) & hi
		if below20|is7f != 0 {
			if err := checkHeaderBytesSlow(b[i:i+8], i > 0 && b[i-1] == '\\'); err != nil {
				return err
			}
		}
	}
	return checkHeaderBytesSlow(b[i:], i > 0 && b[i-1] == '\\')
}

func checkHeaderBytesSlow(b []byte, escaped bool) error {
	for i, c := range b {
		if c < 0x20 && c != '\t' || c == 0x7f {
			prevEscape := escaped
			if i > 0 {
				prevEscape = b[i-1] == '\\'
			}
			if prevEscape && c != '\r' && c != '\n' {
				continue
			}
			return fmt.Errorf("%w: control byte 0x%02x", ErrHeader, c)
		}
	}
	return nil
}

func clip(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}

func skipWSP(b []byte, i, end int) int {
	for i < end && isWSP(b[i]) {
		i++
	}
	return i
}

func trimRight(b []byte, start, end int) int {
	for end > start && isWSP(b[end-1]) {
		end--
	}
	return end
}

// finish interprets the fields the proxy always needs: Call-ID, CSeq,
// Max-Forwards and Content-Length, and bounds the body.
func (m *Msg) finish(b []byte) error {
	clErr := error(nil)
	for i := 0; i < m.n; i++ {
		h := &m.hdrs[i]
		v := h.value.of(b)
		switch h.id {
		case HdrCallID:
			if m.callID < 0 {
				m.callID = int16(i)
			}
		case HdrCSeq:
			if !m.cseqOK && m.cseqMethTok.end == 0 {
				m.parseCSeq(v, h.value.start)
			}
		case HdrMaxForwards:
			if m.maxFwd < 0 {
				m.maxFwd = parseSmallUint(v, 1<<20)
			}
		case HdrContentLength:
			n := parseSmallUint(v, 1<<24)
			if n < 0 {
				clErr = fmt.Errorf("%w: %q", ErrContentLength, clip(v))
				continue
			}
			if m.clen >= 0 && m.clen != n {
				clErr = fmt.Errorf("%w: conflicting values %d and %d", ErrContentLength, m.clen, n)
				continue
			}
			m.clen = n
		}
	}
	m.bodyEnd = uint32(len(b))
	if clErr != nil {
		return clErr
	}
	if m.clen >= 0 {
		avail := len(b) - int(m.bodyStart)
		if m.clen > avail {
			return fmt.Errorf("%w: Content-Length %d, %d bytes present", ErrTruncated, m.clen, avail)
		}
		m.bodyEnd = m.bodyStart + uint32(m.clen)
	}
	return nil
}

// parseSmallUint parses decimal digits up to limit; -1 when not a number or above limit.
func parseSmallUint(b []byte, limit int) int {
	if len(b) == 0 {
		return -1
	}
	n := 0
	for _, c := range b {
		if !isDigit(c) {
			return -1
		}
		n = n*10 + int(c-'0')
		if n > limit {
			return -1
		}
	}
	return n
}

// parseCSeq reads "number LWS method". A number of 2**31 or more is invalid (RFC 3261 8.1.1.5).
func (m *Msg) parseCSeq(v []byte, off uint32) {
	i := 0
	var n uint64
	for i < len(v) && isDigit(v[i]) {
		n = n*10 + uint64(v[i]-'0')
		if n >= 1<<31 {
			return
		}
		i++
	}
	if i == 0 {
		return
	}
	j := i
	for j < len(v) && (isWSP(v[j]) || v[j] == '\r' || v[j] == '\n') {
		j++
	}
	if j == i || j == len(v) {
		return
	}
	k := j
	for k < len(v) && isTokenChar(v[k]) {
		k++
	}
	if k != len(v) {
		return
	}
	m.cseqNum = uint32(n)
	m.cseqMethTok = span{off + uint32(j), off + uint32(k)}
	m.cseqMethod = ParseMethod(v[j:k])
	m.cseqOK = true
}
