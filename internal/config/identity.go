package config

import "strings"

// Values of Trunk.CallerID.
const (
	// CallerIDRefuse answers 403 to a call whose caller ID is none of the account's numbers.
	CallerIDRefuse = "refuse"
	// CallerIDRewrite puts the account's own number in From instead.
	CallerIDRewrite = "rewrite"
)

// trunkIdentity validates the identity keys of trunk r (trust_identity,
// caller_id and the numbers of its digest accounts) into tr, whose
// accounts digestTrunk has built in the order of r.Accounts.
func (v *validator) trunkIdentity(base []any, r *rawTrunk, tr *Trunk) {
	tr.TrustIdentity = r.TrustIdentity
	switch r.CallerID {
	case "":
		tr.CallerID = CallerIDRefuse
	case CallerIDRefuse, CallerIDRewrite:
		tr.CallerID = r.CallerID
		if tr.Auth != AuthDigest {
			v.fail(append(base, "caller_id"), "applies to the accounts of a digest trunk (auth: digest)")
		}
	default:
		v.fail(append(base, "caller_id"), "must be refuse (403) or rewrite (the account's own number in From), got %q", r.CallerID)
	}
	for j, ra := range r.Accounts {
		if j >= len(tr.Digest.Accounts) {
			break
		}
		ab := append(append([]any{}, base...), "accounts", j)
		acct := &tr.Digest.Accounts[j]
		for k, s := range ra.Numbers {
			nr, err := parseNumber(s)
			if err != nil {
				v.fail(append(ab, "numbers", k), "%v", err)
				continue
			}
			acct.Numbers = append(acct.Numbers, nr)
		}
		if tr.CallerID != CallerIDRewrite {
			continue
		}
		nums, where := acct.Numbers, append(ab, "numbers")
		if len(nums) == 0 {
			nums, where = tr.Numbers, append(append([]any{}, base...), "numbers")
		}
		if len(nums) > 0 && RewriteNumber(nums) == "" {
			v.fail(where, "caller_id: rewrite needs one single number (such as +15551230001, not a range) to put in From of account %q", ra.Username)
		}
	}
}

// RewriteNumber is the number a caller ID is rewritten to: the first
// single number (not a range) of nums, or "".
func RewriteNumber(nums []NumberRange) string {
	for _, n := range nums {
		if n.Digits == 0 {
			return n.Prefix
		}
	}
	return ""
}

// Contains reports whether the E.164 number tn ("+15551230001") is in the range.
func (n NumberRange) Contains(tn string) bool {
	if !strings.HasPrefix(tn, n.Prefix) {
		return false
	}
	rest := len(tn) - len(n.Prefix)
	for i := len(n.Prefix); i < len(tn); i++ {
		if tn[i] < '0' || tn[i] > '9' {
			return false
		}
	}
	return n.Digits < 0 && rest >= 0 || rest == n.Digits
}
