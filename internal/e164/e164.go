// Package e164 turns the user part of a SIP or TEL URI into an E.164 number
// (ITU-T E.164, RFC 3966 visual separators) where that can be done without a
// dialling context. Per-trunk dialling contexts (national and international
// prefixes, a default country) are described by a Context (context.go).
package e164

// Normalize writes the E.164 form of user ("+" and 1 to 15 digits) into dst
// and reports ok. Visual separators (- . ( ) and space) are dropped, URI
// parameters after ';' are ignored, and the international prefix "00"
// becomes '+'. A number that cannot be made E.164 without a dialling context
// (no '+' or "00") is returned as its digits with ok false. dst is reused: no
// allocation when it has the capacity.
func Normalize(user []byte, dst []byte) ([]byte, bool) {
	dst = dst[:0]
	plus := false
	digits := 0
	for i := 0; i < len(user); i++ {
		c := user[i]
		switch {
		case c == ';':
			i = len(user)
		case c >= '0' && c <= '9':
			dst = append(dst, c)
			digits++
		case c == '+' && digits == 0 && !plus:
			plus = true
		case c == '-' || c == '.' || c == '(' || c == ')' || c == ' ':
		case c == '%' && i+2 < len(user) && user[i+1] == '2' && (user[i+2] == '0' || user[i+2] == 'B' || user[i+2] == 'b'):
			// %20 (space) or %2B ('+')
			if (user[i+2] == 'B' || user[i+2] == 'b') && digits == 0 {
				plus = true
			}
			i += 2
		default:
			return dst[:0], false // letters: not a telephone number
		}
	}
	if digits == 0 {
		return dst[:0], false
	}
	if !plus && digits > 2 && dst[0] == '0' && dst[1] == '0' {
		copy(dst, dst[2:])
		dst = dst[:len(dst)-2]
		digits -= 2
		plus = true
	}
	if !plus || digits > 15 {
		return dst, false
	}
	dst = append(dst, 0)
	copy(dst[1:], dst[:len(dst)-1])
	dst[0] = '+'
	return dst, true
}
