package fraud

import (
	"errors"
	"strconv"
)

// Money is an amount in millionths of the deck's currency unit (a rate of
// 0.0123/min is 12300). Integer arithmetic keeps sums exact over millions of calls.
type Money int64

// MoneyUnit is one currency unit (1.00).
const MoneyUnit Money = 1_000_000

// maxMoney bounds parsed amounts (one million units) so that sums cannot overflow.
const maxMoney = 1_000_000 * MoneyUnit

// String formats m with up to six decimals ("0.0123", "12").
func (m Money) String() string {
	neg := m < 0
	if neg {
		m = -m
	}
	s := strconv.FormatInt(int64(m/MoneyUnit), 10)
	if frac := int64(m % MoneyUnit); frac != 0 {
		f := strconv.FormatInt(frac+int64(MoneyUnit), 10)[1:] // zero-padded to 6 digits
		for f[len(f)-1] == '0' {
			f = f[:len(f)-1]
		}
		s += "." + f
	}
	if neg {
		s = "-" + s
	}
	return s
}

// Float returns m in currency units (for metrics and JSON, never for sums).
func (m Money) Float() float64 { return float64(m) / float64(MoneyUnit) }

var errMoney = errors.New("not an amount (digits with an optional decimal point, such as 0.0125)")

// ParseMoney parses a non-negative decimal amount ("0.0125", "3", ".5").
// Digits beyond the sixth decimal are rounded half up.
func ParseMoney(s string) (Money, error) {
	if s == "" || s == "." {
		return 0, errMoney
	}
	var whole, frac Money
	i := 0
	for ; i < len(s) && s[i] != '.'; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, errMoney
		}
		whole = whole*10 + Money(c-'0')
		if whole*MoneyUnit > maxMoney {
			return 0, errors.New("amount too large (at most 1000000)")
		}
	}
	if i < len(s) { // decimals
		scale := MoneyUnit / 10
		for j := i + 1; j < len(s); j++ {
			c := s[j]
			if c < '0' || c > '9' {
				return 0, errMoney
			}
			switch {
			case scale > 0:
				frac += Money(c-'0') * scale
				scale /= 10
			case scale == 0 && c >= '5':
				frac++ // round half up on the seventh decimal
				scale = -1
			default:
				scale = -1
			}
		}
	}
	return whole*MoneyUnit + frac, nil
}
