package e164

// Context is a dialling context: how a trunk writes numbers that are not in
// E.164 form. A UK PBX dials "020 7946 0000" (national prefix 0) and
// "00 1 212 555 0100" (international prefix 00); a US PBX dials
// "212 555 0100", "1 212 555 0100" (national prefix 1) and "011 44 20 ..."
// (international prefix 011).
//
// The zero Context knows no country: only "+" and "00" numbers are E.164.
type Context struct {
	// CountryCode is the calling code of the trunk's country, digits only ("44", "1").
	CountryCode string
	// NationalPrefix is the trunk prefix dialled before a national number ("0"; "1" in NANP).
	NationalPrefix string
	// InternationalPrefix is dialled before a country code ("00", "011"). Empty: "00".
	InternationalPrefix string
}

// Normalize writes the E.164 form of user as dialled in context c into dst.
// It reports false when the number cannot be made E.164 (letters, no digits,
// more than 15 digits, or a national number without a country); dst then
// holds the digits or is empty. In order:
//   - a leading '+' (or %2B): already international;
//   - the international prefix: stripped, the rest is international;
//   - the national prefix: replaced by the country code;
//   - anything else is a national number without its prefix: the country code is prepended.
//
// Visual separators and URI parameters are handled as in Normalize. dst is
// reused: no allocation when it has the capacity (16 bytes is enough).
func (c *Context) Normalize(user []byte, dst []byte) ([]byte, bool) {
	dst, plus, ok := digits(user, dst[:0])
	if !ok {
		return dst[:0], false
	}
	if plus {
		return finish(dst)
	}
	intl := c.InternationalPrefix
	if intl == "" {
		intl = "00"
	}
	if hasPrefix(dst, intl) {
		if len(dst) == len(intl) {
			return dst[:0], false
		}
		n := copy(dst, dst[len(intl):])
		return finish(dst[:n])
	}
	if c.CountryCode == "" {
		return dst, false
	}
	body := 0
	if c.NationalPrefix != "" && hasPrefix(dst, c.NationalPrefix) {
		if len(dst) == len(c.NationalPrefix) {
			return dst[:0], false
		}
		body = len(c.NationalPrefix)
	}
	// Shift the national number right to make room for the country code.
	shift := len(c.CountryCode) - body
	n := len(dst)
	if shift > 0 {
		for range shift {
			dst = append(dst, 0)
		}
		copy(dst[shift+body:], dst[body:n])
	} else if shift < 0 {
		copy(dst[len(c.CountryCode):], dst[body:n])
		dst = dst[:n+shift]
	}
	copy(dst, c.CountryCode)
	return finish(dst)
}

// digits copies the digits of user into dst, dropping visual separators and
// parameters; plus reports a leading '+'. ok is false for letters or no digits.
func digits(user, dst []byte) (out []byte, plus, ok bool) {
	for i := 0; i < len(user); i++ {
		c := user[i]
		switch {
		case c == ';':
			i = len(user)
		case c >= '0' && c <= '9':
			dst = append(dst, c)
		case c == '+' && len(dst) == 0 && !plus:
			plus = true
		case c == '-' || c == '.' || c == '(' || c == ')' || c == ' ':
		case c == '%' && i+2 < len(user) && user[i+1] == '2' && (user[i+2] == '0' || user[i+2] == 'B' || user[i+2] == 'b'):
			if (user[i+2] == 'B' || user[i+2] == 'b') && len(dst) == 0 {
				plus = true
			}
			i += 2
		default:
			return dst[:0], false, false
		}
	}
	return dst, plus, len(dst) > 0
}

// finish turns international digits (country code first) into "+digits".
func finish(dst []byte) ([]byte, bool) {
	if len(dst) == 0 || len(dst) > 15 || dst[0] == '0' {
		return dst, false
	}
	dst = append(dst, 0)
	copy(dst[1:], dst[:len(dst)-1])
	dst[0] = '+'
	return dst, true
}

func hasPrefix(b []byte, p string) bool {
	return len(b) >= len(p) && string(b[:len(p)]) == p
}
