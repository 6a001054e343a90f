package fraud

import (
	"fmt"
	"hash/maphash"
	"strings"
	"sync"

	"github.com/nyaruka/phonenumbers"

	"github.com/sipwarden/sipwarden/internal/e164"
)

// Class is the risk class of a destination.
type Class uint8

// Destination classes, from the least to the most suspicious. The order is
// not a score: policy decides per class.
const (
	// ClassInvalid: not a number, or a number in no allocated range.
	ClassInvalid Class = iota
	// ClassDomestic: in the trunk's own country (for NANP: the US, Canada
	// and the US territories, unless the trunk is in another NANP country).
	ClassDomestic
	// ClassInternational: an ordinary number in another country.
	ClassInternational
	// ClassPremium: premium-rate, shared-cost or universal access numbers,
	// at home or abroad.
	ClassPremium
	// ClassSatellite: satellite and international networks (+881, +882,
	// +883, +870) and the international premium and shared-cost codes (+979, +808).
	ClassSatellite
	// ClassNANPForeign: a +1 number in a NANP country that is not the US or
	// Canada (the Caribbean, Bermuda): dialled like a domestic call, billed
	// like an international one, the home of one-ring scams.
	ClassNANPForeign
	numClasses
)

var classNames = [...]string{
	ClassInvalid:       "invalid",
	ClassDomestic:      "domestic",
	ClassInternational: "international",
	ClassPremium:       "premium",
	ClassSatellite:     "satellite",
	ClassNANPForeign:   "nanp_foreign",
}

// String returns the class's stable name (config value, metric label).
func (c Class) String() string {
	if c < numClasses {
		return classNames[c]
	}
	return "unknown"
}

// ParseClass returns the class named s.
func ParseClass(s string) (Class, error) {
	for i, n := range classNames {
		if n == s {
			return Class(i), nil
		}
	}
	return 0, fmt.Errorf("unknown destination class %q (valid: %s)", s, strings.Join(classNames[:], ", "))
}

// Destination is what classification learns about a dialled number.
type Destination struct {
	Class Class
	// International is true when the number is outside the trunk's country
	// (satellite and NANP-foreign numbers are always international).
	International bool
	// CountryCode is the E.164 country code (0 when unknown).
	CountryCode int
	// Region is the ISO 3166 region ("GB", "AG") or "001" for
	// non-geographic codes; "" when unknown.
	Region string
	// Type is the number type from libphonenumber ("fixed_line", "mobile", "premium_rate"...).
	Type string
	// Number identifies the E.164 number (a hash, 0 when there is none):
	// the engine counts attempts per number with it without keeping numbers.
	Number uint64
	// Digits are the E.164 digits read as an integer and NDigits how many
	// there are (0 when there is no number): the sequential and new_range
	// rules compare numbers and their ranges with them.
	Digits  uint64
	NDigits uint8
}

var typeNames = [...]string{
	phonenumbers.FIXED_LINE:           "fixed_line",
	phonenumbers.MOBILE:               "mobile",
	phonenumbers.FIXED_LINE_OR_MOBILE: "fixed_line_or_mobile",
	phonenumbers.TOLL_FREE:            "toll_free",
	phonenumbers.PREMIUM_RATE:         "premium_rate",
	phonenumbers.SHARED_COST:          "shared_cost",
	phonenumbers.VOIP:                 "voip",
	phonenumbers.PERSONAL_NUMBER:      "personal_number",
	phonenumbers.PAGER:                "pager",
	phonenumbers.UAN:                  "uan",
	phonenumbers.VOICEMAIL:            "voicemail",
	phonenumbers.UNKNOWN:              "unknown",
}

// satellitePrefixes are country codes of global services (ITU-T E.164 list
// of assigned country codes): Global Mobile Satellite Systems (881),
// International Networks (882, 883), Inmarsat (870), International Premium
// Rate Service (979) and International Shared Cost Service (808).
var satellitePrefixes = []string{"881", "882", "883", "870", "979", "808"}

// nanpForeign maps the area codes of NANP members other than the United
// States and Canada to their region (NANPA area code assignments). The US
// territories (PR 787/939, VI 340, GU 671, MP 670, AS 684) are absent: they
// are rated as domestic by US carriers.
var nanpForeign = map[string]string{
	"242": "BS", "246": "BB", "264": "AI", "268": "AG", "284": "VG",
	"345": "KY", "441": "BM", "473": "GD", "649": "TC", "658": "JM",
	"664": "MS", "721": "SX", "758": "LC", "767": "DM", "784": "VC",
	"809": "DO", "829": "DO", "849": "DO", "868": "TT", "869": "KN",
	"876": "JM",
}

// NANPForeignRegion returns the region of a NANP area code that belongs to
// neither the US nor Canada, or "".
func NANPForeignRegion(areaCode string) string { return nanpForeign[areaCode] }

// Dialling is a trunk's dialling context: how its numbers are written.
type Dialling struct {
	// Country is the trunk's ISO 3166 region ("GB", "US").
	Country string
	ctx     e164.Context
	cc      int
	// nanpForeign: the trunk is in a NANP country other than the US and Canada.
	nanpForeign bool
}

// NewDialling builds the context of a trunk in country (ISO 3166, "GB").
// nationalPrefix and internationalPrefix default to the country's own
// (from libphonenumber: "0" and "00" in most of Europe; "1" and "011" in NANP).
func NewDialling(country, nationalPrefix, internationalPrefix string) (Dialling, error) {
	country = strings.ToUpper(country)
	cc := phonenumbers.GetCountryCodeForRegion(country)
	if cc == 0 {
		return Dialling{}, fmt.Errorf("unknown country %q (an ISO 3166 code such as GB, US, DE)", country)
	}
	for _, p := range []string{nationalPrefix, internationalPrefix} {
		if strings.Trim(p, "0123456789") != "" || len(p) > 4 {
			return Dialling{}, fmt.Errorf("dialling prefix %q: up to 4 digits", p)
		}
	}
	if nationalPrefix == "" {
		nationalPrefix = phonenumbers.GetNddPrefixForRegion(country, true)
	}
	if internationalPrefix == "" {
		internationalPrefix = "00"
		if phonenumbers.IsNANPACountry(country) {
			internationalPrefix = "011"
		}
	}
	return Dialling{
		Country:     country,
		cc:          cc,
		nanpForeign: cc == 1 && homeArea(country) != "",
		ctx: e164.Context{CountryCode: fmt.Sprint(cc), NationalPrefix: nationalPrefix,
			InternationalPrefix: internationalPrefix},
	}, nil
}

// Normalize writes the E.164 form of a dialled user part into dst.
func (d *Dialling) Normalize(user, dst []byte) ([]byte, bool) { return d.ctx.Normalize(user, dst) }

// Classifier classifies E.164 numbers. It is safe for concurrent use; the
// results of libphonenumber are cached in a fixed number of slots.
type Classifier struct {
	seed   maphash.Seed
	shards [cacheShards]cacheShard
}

const (
	cacheShards = 16
	// cacheWays slots per shard; a direct-mapped table (one slot per hash).
	defaultCacheSize = 1 << 16
)

type cacheShard struct {
	mu    sync.Mutex
	slots []cacheSlot
}

type cacheSlot struct {
	n   uint8 // length of num; 0: empty
	num [16]byte
	cc  uint16
	typ uint8
	ok  bool // valid number
	reg string
}

// NewClassifier returns a classifier whose cache holds about size numbers
// (0: 65,536; about 48 bytes each).
func NewClassifier(size int) *Classifier {
	if size <= 0 {
		size = defaultCacheSize
	}
	per := max(1, size/cacheShards)
	c := &Classifier{seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].slots = make([]cacheSlot, per)
	}
	return c
}

// Classify classifies the dialled user part as the trunk with context d
// dialled it. The E.164 form is written into dst (16 bytes of capacity
// avoid an allocation) and returned; it is empty when the number could not
// be made E.164 (ClassInvalid).
func (c *Classifier) Classify(d *Dialling, user, dst []byte) ([]byte, Destination) {
	num, ok := d.Normalize(user, dst)
	if !ok {
		return num[:0], Destination{Class: ClassInvalid}
	}
	dest := c.ClassifyE164(d, num)
	dest.Number = numberHash(num)
	dest.Digits, dest.NDigits = digitsOf(num)
	return num, dest
}

// digitsOf reads the digits of an E.164 number ("+" and up to 15 digits) as
// an integer; 0, 0 when num is not one.
func digitsOf(num []byte) (uint64, uint8) {
	if len(num) < 2 || num[0] != '+' || len(num) > 16 {
		return 0, 0
	}
	var v uint64
	for _, c := range num[1:] {
		if c < '0' || c > '9' {
			return 0, 0
		}
		v = v*10 + uint64(c-'0')
	}
	return v, uint8(len(num) - 1)
}

// numberSeed is fixed for the process so that a number hashes the same in every stage build.
var numberSeed = maphash.MakeSeed()

func numberHash(num []byte) uint64 {
	if len(num) == 0 {
		return 0
	}
	return maphash.Bytes(numberSeed, num) | 1
}

// ClassifyE164 classifies num ("+" and digits) for a trunk in context d.
func (c *Classifier) ClassifyE164(d *Dialling, num []byte) Destination {
	if len(num) < 2 || num[0] != '+' || len(num) > 16 {
		return Destination{Class: ClassInvalid}
	}
	digits := num[1:]
	for _, p := range satellitePrefixes {
		if hasPrefix(digits, p) {
			cc := int(p[0]-'0')*100 + int(p[1]-'0')*10 + int(p[2]-'0')
			dest := Destination{Class: ClassSatellite, International: true, CountryCode: cc, Region: "001", Type: "unknown"}
			if info := c.lookup(num); info.ok {
				dest.Type = typeNames[info.typ]
			}
			return dest
		}
	}
	info := c.lookup(num)
	dest := Destination{CountryCode: int(info.cc), Region: info.reg, Type: typeNames[info.typ]}
	dest.International = dest.CountryCode != 0 && dest.CountryCode != d.cc
	nanpForeignNum := false
	if dest.CountryCode == 1 && len(digits) >= 4 {
		if reg := nanpForeign[string(digits[1:4])]; reg != "" {
			// A trunk in a NANP country other than the US and Canada calls its own area codes domestically.
			nanpForeignNum = reg != d.Country
			dest.International = nanpForeignNum
		} else if d.nanpForeign {
			dest.International = true // a Caribbean trunk calling the US or Canada
		}
	}
	if !info.ok {
		dest.Class = ClassInvalid
		return dest
	}
	switch phonenumbers.PhoneNumberType(info.typ) {
	case phonenumbers.PREMIUM_RATE, phonenumbers.SHARED_COST, phonenumbers.UAN:
		dest.Class = ClassPremium
	default:
		switch {
		case nanpForeignNum:
			dest.Class = ClassNANPForeign
		case dest.International:
			dest.Class = ClassInternational
		default:
			dest.Class = ClassDomestic
		}
	}
	return dest
}

// homeArea returns one area code of a foreign NANP region (to tell whether
// the trunk itself is in the Caribbean), or "".
func homeArea(region string) string {
	for a, r := range nanpForeign {
		if r == region {
			return a
		}
	}
	return ""
}

type numberInfo struct {
	cc  uint16
	typ uint8
	ok  bool
	reg string
}

// lookup returns libphonenumber's view of num, from the cache when it can.
func (c *Classifier) lookup(num []byte) numberInfo {
	h := maphash.Bytes(c.seed, num)
	sh := &c.shards[h%cacheShards]
	sh.mu.Lock()
	s := &sh.slots[(h/cacheShards)%uint64(len(sh.slots))]
	if int(s.n) == len(num) && string(s.num[:s.n]) == string(num) {
		info := numberInfo{cc: s.cc, typ: s.typ, ok: s.ok, reg: s.reg}
		sh.mu.Unlock()
		return info
	}
	sh.mu.Unlock()
	info := parseNumber(string(num))
	sh.mu.Lock()
	s.n = uint8(copy(s.num[:], num))
	s.cc, s.typ, s.ok, s.reg = info.cc, info.typ, info.ok, info.reg
	sh.mu.Unlock()
	return info
}

func parseNumber(num string) numberInfo {
	var pn phonenumbers.PhoneNumber
	if err := phonenumbers.ParseToNumber(num, "", &pn); err != nil {
		return numberInfo{typ: uint8(phonenumbers.UNKNOWN)}
	}
	info := numberInfo{cc: uint16(pn.GetCountryCode()), typ: uint8(phonenumbers.UNKNOWN)}
	if !phonenumbers.IsValidNumber(&pn) {
		return info
	}
	info.ok = true
	info.reg = phonenumbers.GetRegionCodeForNumber(&pn)
	if t := phonenumbers.GetNumberType(&pn); t >= 0 && int(t) < len(typeNames) {
		info.typ = uint8(t)
	}
	return info
}

func hasPrefix(b []byte, p string) bool { return len(b) >= len(p) && string(b[:len(p)]) == p }
