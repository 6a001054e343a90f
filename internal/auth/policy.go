package auth

import (
	"bufio"
	_ "embed"
	"fmt"
	"io"
	"strings"
	"unicode"
)

//go:embed common_passwords.txt
var commonPasswordsFile string

// Policy is the credential policy passwords must meet. The zero value
// checks nothing; DefaultPolicy is what sipwarden enforces unless the
// configuration says otherwise.
type Policy struct {
	// MinLength is the minimum length in characters (runes).
	MinLength int
	// MinClasses is how many of the four classes (lower case, upper case,
	// digits, other characters) the password must mix.
	MinClasses int
	// RejectCommon refuses passwords of the shipped list of common and
	// default passwords, and those of Extra.
	RejectCommon bool
	// Extra holds more refused passwords (lower case), for example a
	// deployment's own list.
	Extra map[string]bool
}

// DefaultPolicy: at least 16 characters of 3 classes, not a common password.
var DefaultPolicy = Policy{MinLength: 16, MinClasses: 3, RejectCommon: true}

// Rules of the policy, as named in a PolicyError.
const (
	RuleMinLength        = "min_length"
	RuleClasses          = "character_classes"
	RuleUsername         = "contains_username"
	RuleCommon           = "common_password"
	RuleEmpty            = "empty"
	RuleControlCharacter = "control_character"
)

// PolicyError says which rule a password breaks. It never holds the password.
type PolicyError struct {
	Rule string
	Msg  string
}

func (e *PolicyError) Error() string { return "weak password (" + e.Rule + "): " + e.Msg }

var common = parseList(strings.NewReader(commonPasswordsFile))

// ParseList reads a list of passwords, one a line ('#' starts a comment
// line), into a set of lower-case entries.
func ParseList(r io.Reader) (map[string]bool, error) {
	m := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 4096)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m[strings.ToLower(line)] = true
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read password list: %w", err)
	}
	return m, nil
}

func parseList(r io.Reader) map[string]bool {
	m, _ := ParseList(r)
	return m
}

// CommonPasswords returns the shipped list (lower case), for callers that
// check stored HA1 values against it.
func CommonPasswords() []string {
	out := make([]string, 0, len(common))
	for w := range common {
		out = append(out, w)
	}
	return out
}

// Check returns nil when password meets the policy for username, or a
// *PolicyError naming the first rule it breaks.
func (p *Policy) Check(username, password string) error {
	if password == "" {
		return &PolicyError{RuleEmpty, "the password is empty"}
	}
	var lower, upper, digit, other bool
	n := 0
	for _, r := range password {
		n++
		switch {
		case unicode.IsControl(r):
			return &PolicyError{RuleControlCharacter, "the password holds a control character"}
		case unicode.IsLower(r):
			lower = true
		case unicode.IsUpper(r):
			upper = true
		case unicode.IsDigit(r):
			digit = true
		default:
			other = true
		}
	}
	if n < p.MinLength {
		return &PolicyError{RuleMinLength, fmt.Sprintf("at least %d characters are required, it has %d", p.MinLength, n)}
	}
	classes := 0
	for _, b := range []bool{lower, upper, digit, other} {
		if b {
			classes++
		}
	}
	if classes < p.MinClasses {
		return &PolicyError{RuleClasses, fmt.Sprintf("it must mix at least %d of lower case, upper case, digits and other characters; it has %d", p.MinClasses, classes)}
	}
	lp := strings.ToLower(password)
	if u := strings.ToLower(username); u != "" && (lp == u || len(u) >= 3 && strings.Contains(lp, u)) {
		return &PolicyError{RuleUsername, "it must not be or contain the username"}
	}
	if p.RejectCommon && p.isCommon(lp) {
		return &PolicyError{RuleCommon, "it is, or is built from, a common or default password"}
	}
	return nil
}

// isCommon reports whether lp (lower case) is a listed password, alone,
// repeated, or with digits and symbols added at the end.
func (p *Policy) isCommon(lp string) bool {
	listed := func(s string) bool { return common[s] || p.Extra[s] }
	if listed(lp) {
		return true
	}
	trimmed := strings.TrimRightFunc(lp, func(r rune) bool { return !unicode.IsLetter(r) })
	if trimmed != lp && len(trimmed) >= 4 && listed(trimmed) {
		return true
	}
	// a listed word repeated ("adminadminadminadmin")
	for k := 1; k <= len(lp)/2; k++ {
		if len(lp)%k == 0 && strings.Repeat(lp[:k], len(lp)/k) == lp {
			return true // a repetition is weak whatever the word
		}
	}
	return false
}

// WeakHA1 reports whether an account's stored HA1 is that of a password the
// policy refuses and that can be tested from the hash alone: a common
// password (or one of extra), the username, or the username repeated. It
// returns the rule broken. Only one algorithm is tested (the cheapest that
// the account has): all its HA1 values come from the same password.
func WeakHA1(a *Account, realm string, extra map[string]bool) (string, bool) {
	alg := AlgUnknown
	for _, x := range []Algorithm{MD5, SHA256, SHA512256} {
		if a.HA1[x] != "" {
			alg = x
			break
		}
	}
	if alg == AlgUnknown {
		return "", false
	}
	want := strings.ToLower(a.HA1[alg])
	u := a.Username
	for _, pw := range []string{u, u + u, strings.ToUpper(u), u + "123", u + "1234"} {
		if HA1(alg, u, realm, pw) == want {
			return RuleUsername, true
		}
	}
	for _, list := range []map[string]bool{common, extra} {
		for pw := range list {
			if HA1(alg, u, realm, pw) == want || HA1(alg, u, realm, strings.ToUpper(pw[:1])+pw[1:]) == want {
				return RuleCommon, true
			}
		}
	}
	return "", false
}
