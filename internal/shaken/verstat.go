package shaken

import (
	"bytes"
	"errors"

	"github.com/sipwarden/sipwarden/internal/sip"
)

// AppendVerstat appends to dst the header value v (a P-Asserted-Identity
// or From value: one or more name-addr entries) with every verstat
// parameter removed from its URIs and, when verstat is not empty,
// ";verstat=<verstat>" added: to the user part of a SIP URI (as
// "sip:+15551230001;verstat=TN-Validation-Passed@host"), or to the
// parameters of a tel URI (3GPP TS 24.229 section 7.2A.20). A SIP URI
// without user part is copied unchanged. An empty verstat only strips what
// an untrusted peer put in.
func AppendVerstat(dst, v []byte, verstat string) ([]byte, error) {
	rest := v
	copied := 0 // bytes of v already in dst
	for len(rest) > 0 {
		na, next, err := sip.ParseNameAddr(rest)
		if err != nil {
			return dst, err
		}
		off := cap(v) - cap(na.URI) // na.URI points into v
		if off < copied || off+len(na.URI) > len(v) {
			return dst, errors.New("verstat: URI outside the header value")
		}
		dst = append(dst, v[copied:off]...)
		dst = appendURIVerstat(dst, na.URI, verstat)
		copied = off + len(na.URI)
		rest = next
	}
	return append(dst, v[copied:]...), nil
}

func appendURIVerstat(dst, uri []byte, verstat string) []byte {
	colon := bytes.IndexByte(uri, ':')
	if colon < 0 {
		return append(dst, uri...)
	}
	scheme := uri[:colon]
	switch {
	case bytes.EqualFold(scheme, []byte("tel")):
		// tel:+1555...;params — verstat is a tel parameter
		dst = append(dst, uri[:colon+1]...)
		body := uri[colon+1:]
		dst = appendWithoutVerstat(dst, body)
		if verstat != "" {
			dst = append(dst, ";verstat="...)
			dst = append(dst, verstat...)
		}
		return dst
	case bytes.EqualFold(scheme, []byte("sip")) || bytes.EqualFold(scheme, []byte("sips")):
		at := bytes.IndexByte(uri, '@')
		if at < 0 {
			return append(dst, uri...)
		}
		user := uri[colon+1 : at]
		pw := []byte(nil)
		if k := bytes.IndexByte(user, ':'); k >= 0 {
			user, pw = user[:k], user[k:]
		}
		dst = append(dst, uri[:colon+1]...)
		dst = appendWithoutVerstat(dst, user)
		if verstat != "" {
			dst = append(dst, ";verstat="...)
			dst = append(dst, verstat...)
		}
		dst = append(dst, pw...)
		return append(dst, uri[at:]...)
	}
	return append(dst, uri...)
}

// appendWithoutVerstat copies s (a user part or tel body with ';' params)
// leaving out every ";verstat=..." parameter, in any case.
func appendWithoutVerstat(dst, s []byte) []byte {
	first := bytes.IndexByte(s, ';')
	if first < 0 {
		return append(dst, s...)
	}
	dst = append(dst, s[:first]...)
	s = s[first:]
	for len(s) > 0 {
		end := bytes.IndexByte(s[1:], ';')
		if end < 0 {
			end = len(s)
		} else {
			end++
		}
		p := s[:end] // ";name=value"
		name := p[1:]
		if k := bytes.IndexByte(name, '='); k >= 0 {
			name = name[:k]
		}
		if !bytes.EqualFold(bytes.TrimSpace(name), []byte("verstat")) {
			dst = append(dst, p...)
		}
		s = s[end:]
	}
	return dst
}
