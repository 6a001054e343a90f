package fraud

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A rate deck is a CSV file of destination prefixes and their prices:
//
//	# currency: USD
//	prefix,description,rate,connect_fee,initial_increment,subsequent_increment,effective_from,effective_to,risk
//	44,United Kingdom,0.0100,0,1,1,2026-01-01,,
//	4470,United Kingdom personal numbers,0.4500,0,60,60,,,high
//	881,Iridium,7.50,0.50,60,60,,,satellite
//
// Lines starting with '#' before the column names are comments; one of
// them must name the currency ("currency: USD" or "currency=USD"). The
// column row names the columns, in any order; prefix and rate are required.
// Defaults: connect_fee 0; increments 60 and 60 seconds (the dearer
// assumption when a deck does not say); effective_from and effective_to
// open (dates as 2006-01-02 or RFC 3339, UTC when no zone; to is exclusive);
// risk empty. A prefix may appear on several rows whose effective periods
// do not overlap.

// Deck is a loaded rate deck: a read-only digit trie, safe for concurrent lookups.
type Deck struct {
	// Currency is the ISO 4217 code from the deck's header ("USD").
	Currency string
	// Name is where the deck came from (a file path).
	Name string

	// The trie, in breadth-first order, as parallel arrays (10 bytes a node):
	// the children of node i are nodes first[i] ... first[i]+popcount(mask[i])-1,
	// in digit order.
	mask  []uint16
	first []uint32
	rate  []int32 // index into rates of the node's first row, -1: none

	rates []deckRow
	desc  string   // every description, concatenated
	risks []string // risk classes, indexed by deckRow.risk-1
	rows  int
}

// deckRow is one row of the deck (40 bytes).
type deckRow struct {
	rate, connect       Money
	from, to            int64 // Unix seconds; 0: open
	descOff             uint32
	descLen             uint16
	initial, subsequent uint16
	risk                uint8
	next                int32 // the prefix's next row (other effective period), -1: none
}

// Rate is the price of one prefix, as a lookup returns it.
type Rate struct {
	// PrefixLen is how many digits of the number the matched prefix covers.
	PrefixLen int
	// Description is the row's description.
	Description string
	// PerMinute is the price of a minute; Connect is charged once per answered call.
	PerMinute, Connect Money
	// Initial and Subsequent are the billing increments in seconds: the first
	// Initial seconds are charged whole, then each started Subsequent seconds.
	Initial, Subsequent int
	// Risk is the row's risk class ("" when none).
	Risk string
}

// Cost is the price of an answered call of duration d: the connect fee plus
// the rate for the billed seconds, rounded up to a millionth. An unanswered
// call (d <= 0) costs nothing.
func (r Rate) Cost(d time.Duration) Money {
	if d <= 0 {
		return 0
	}
	secs := int64((d + time.Second - 1) / time.Second)
	return r.Connect + r.PerMinute.forSeconds(billedSeconds(secs, int64(r.Initial), int64(r.Subsequent)))
}

// billedSeconds rounds a duration in seconds up to the billing increments.
func billedSeconds(secs, initial, subsequent int64) int64 {
	initial, subsequent = max(initial, 1), max(subsequent, 1)
	if secs <= initial {
		return initial
	}
	rest := secs - initial
	return initial + (rest+subsequent-1)/subsequent*subsequent
}

// forSeconds is the price of secs seconds at m per minute, rounded up.
func (m Money) forSeconds(secs int64) Money {
	return Money((int64(m)*secs + 59) / 60)
}

// DeckError is one problem in a deck, at a line (1-based) of the file.
type DeckError struct {
	Line   int
	Column string // empty when the problem is not in one column
	Msg    string
}

func (e *DeckError) Error() string {
	if e.Column != "" {
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Column, e.Msg)
	}
	return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
}

// DeckErrors are all the problems found in a deck (at most maxDeckErrors).
type DeckErrors []*DeckError

func (es DeckErrors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

const (
	maxDeckErrors = 20
	// MaxDeckRows bounds a deck (a full A-Z deck has a few hundred thousand rows).
	MaxDeckRows = 5_000_000
	maxPrefix   = 15
)

var deckColumns = []string{"prefix", "description", "rate", "connect_fee", "initial_increment",
	"subsequent_increment", "effective_from", "effective_to", "risk"}

// LoadDeckFile loads the rate deck at path.
func LoadDeckFile(path string) (*Deck, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load rate deck: %w", err)
	}
	defer f.Close()
	d, err := LoadDeck(f, path)
	if err != nil {
		return nil, fmt.Errorf("load rate deck %s: %w", path, err)
	}
	return d, nil
}

// LoadDeck reads a rate deck in CSV from r. name is used in errors only.
// The error is a DeckErrors listing each bad line (up to 20).
func LoadDeck(r io.Reader, name string) (*Deck, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	d := &Deck{Name: name}
	line := 0
	var errs DeckErrors
	// fail records a problem (at most maxDeckErrors) and reports whether to stop.
	fail := func(line int, col, format string, args ...any) bool {
		if len(errs) < maxDeckErrors {
			errs = append(errs, &DeckError{Line: line, Column: col, Msg: fmt.Sprintf(format, args...)})
		}
		return len(errs) >= maxDeckErrors
	}
	// Header comments, up to the column row.
	for {
		peek, err := br.Peek(1)
		if err != nil || peek[0] != '#' && !(line == 0 && peek[0] == 0xEF) {
			break
		}
		text, err := br.ReadString('\n')
		line++
		if line == 1 {
			text = strings.TrimPrefix(text, "\uFEFF")
			if !strings.HasPrefix(text, "#") { // a BOM before the column row
				return nil, errors.New("line 1: byte order mark before the column names: remove it or start with a # comment")
			}
		}
		c := strings.TrimSpace(strings.TrimPrefix(text, "#"))
		if k, v, ok := strings.Cut(c, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "currency") {
			d.Currency = strings.TrimSpace(v)
		} else if k, v, ok := strings.Cut(c, "="); ok && strings.EqualFold(strings.TrimSpace(k), "currency") {
			d.Currency = strings.TrimSpace(v)
		}
		if err != nil {
			break
		}
	}
	if len(d.Currency) != 3 || strings.ToUpper(d.Currency) != d.Currency || strings.Trim(d.Currency, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
		if d.Currency == "" {
			fail(max(line, 1), "", "no currency: start the file with a comment such as \"# currency: USD\"")
		} else {
			fail(max(line, 1), "", "currency %q is not an ISO 4217 code such as USD", d.Currency)
		}
	}
	cr := csv.NewReader(br)
	cr.ReuseRecord = true
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if err != nil {
		fail(line+1, "", "no column names (prefix,rate,...): %v", csvErr(err))
		return nil, errs
	}
	col := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(h))
		if !slices.Contains(deckColumns, h) {
			fail(line+1, "", "unknown column %q (valid: %s)", h, strings.Join(deckColumns, ", "))
			continue
		}
		if _, dup := col[h]; dup {
			fail(line+1, "", "column %q twice", h)
		}
		col[h] = i
	}
	for _, req := range []string{"prefix", "rate"} {
		if _, ok := col[req]; !ok {
			fail(line+1, "", "missing column %q", req)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	b := newTrieBuilder()
	var descs strings.Builder
	riskIdx := map[string]uint8{}
	field := func(rec []string, name string) (string, bool) {
		i, ok := col[name]
		if !ok || i >= len(rec) {
			return "", false
		}
		return strings.TrimSpace(rec[i]), true
	}
	lineOffset := line
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			// FieldPos is not valid after an error: the line is in the ParseError.
			var pe *csv.ParseError
			if !errors.As(err, &pe) {
				fail(line+1, "", "%v", err)
				return nil, errs
			}
			if fail(pe.Line+lineOffset, "", "%v", pe.Err) {
				return nil, errs
			}
			continue
		}
		ln, _ := cr.FieldPos(0)
		ln += lineOffset
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue // blank line
		}
		if len(rec) != len(header) {
			if fail(ln, "", "%d fields, the column row has %d", len(rec), len(header)) {
				return nil, errs
			}
			continue
		}
		prefix, row, probs := d.parseRow(rec, field, riskIdx)
		if len(probs) == 0 {
			desc, _ := field(rec, "description")
			if len(desc) > 200 {
				desc = desc[:200]
			}
			switch {
			case d.rows >= MaxDeckRows:
				probs = append(probs, problem{"", fmt.Sprintf("more than %d rows", MaxDeckRows)})
			case descs.Len()+len(desc) > 1<<32-1:
				probs = append(probs, problem{"description", "descriptions too long in total"})
			default:
				row.descOff, row.descLen = uint32(descs.Len()), uint16(len(desc))
				if msg := b.add(prefix, row, ln); msg != "" {
					probs = append(probs, problem{"prefix", msg})
				} else {
					descs.WriteString(desc)
					d.rows++
				}
			}
		}
		for _, p := range probs {
			if fail(ln, p.column, "%s", p.msg) {
				return nil, errs
			}
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	d.desc = descs.String()
	b.freeze(d)
	return d, nil
}

type problem struct{ column, msg string }

// parseRow checks and converts one record (everything but the description).
func (d *Deck) parseRow(rec []string, field func([]string, string) (string, bool), riskIdx map[string]uint8) (string, deckRow, []problem) {
	var probs []problem
	bad := func(column, format string, args ...any) {
		probs = append(probs, problem{column, fmt.Sprintf(format, args...)})
	}
	var row deckRow
	prefix, _ := field(rec, "prefix")
	prefix = strings.TrimPrefix(prefix, "+")
	if prefix == "" || len(prefix) > maxPrefix || strings.Trim(prefix, "0123456789") != "" {
		bad("prefix", "%q is not 1 to %d digits", prefix, maxPrefix)
	}
	s, _ := field(rec, "rate")
	if m, err := ParseMoney(s); err != nil {
		bad("rate", "%q: %v", s, err)
	} else {
		row.rate = m
	}
	if s, ok := field(rec, "connect_fee"); ok && s != "" {
		if m, err := ParseMoney(s); err != nil {
			bad("connect_fee", "%q: %v", s, err)
		} else {
			row.connect = m
		}
	}
	row.initial, row.subsequent = 60, 60
	for _, inc := range []struct {
		name string
		dst  *uint16
	}{{"initial_increment", &row.initial}, {"subsequent_increment", &row.subsequent}} {
		if s, ok := field(rec, inc.name); ok && s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > 3600 {
				bad(inc.name, "%q is not a number of seconds from 1 to 3600", s)
			} else {
				*inc.dst = uint16(n)
			}
		}
	}
	for _, eff := range []struct {
		name string
		dst  *int64
	}{{"effective_from", &row.from}, {"effective_to", &row.to}} {
		if s, ok := field(rec, eff.name); ok && s != "" {
			t, err := parseDeckTime(s)
			if err != nil {
				bad(eff.name, "%q is not a date (2006-01-02 or RFC 3339)", s)
			} else {
				*eff.dst = t
			}
		}
	}
	if row.from != 0 && row.to != 0 && row.to <= row.from {
		bad("effective_to", "not after effective_from")
	}
	if s, ok := field(rec, "risk"); ok && s != "" {
		s = strings.ToLower(s)
		idx, ok := riskIdx[s]
		switch {
		case ok:
		case len(d.risks) == 255 || len(s) > 32:
			bad("risk", "more than 255 risk classes, or one longer than 32 characters")
		default:
			d.risks = append(d.risks, s)
			idx = uint8(len(d.risks))
			riskIdx[s] = idx
		}
		row.risk = idx
	}
	return prefix, row, probs
}

func csvErr(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func parseDeckTime(s string) (int64, error) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t.Unix(), nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02 15:04:05", "2006-01-02T15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.Unix(), nil
		}
	}
	return 0, errors.New("bad date")
}

// Rows is the number of rows loaded.
func (d *Deck) Rows() int { return d.rows }

// Bytes is the memory the loaded deck holds, in bytes (trie, rows, descriptions).
func (d *Deck) Bytes() int {
	return cap(d.mask)*2 + cap(d.first)*4 + cap(d.rate)*4 + cap(d.rates)*40 + len(d.desc)
}

// Lookup returns the rate of the longest prefix of num (E.164 with or
// without '+') that has a row effective at t. It does not allocate.
func (d *Deck) Lookup(num []byte, at time.Time) (Rate, bool) {
	if d == nil || len(d.mask) == 0 {
		return Rate{}, false
	}
	if len(num) > 0 && num[0] == '+' {
		num = num[1:]
	}
	ts := at.Unix()
	node, best, bestLen := uint32(0), int32(-1), 0
	for i, c := range num {
		dig := c - '0'
		if dig > 9 {
			break
		}
		m := d.mask[node]
		if m&(1<<dig) == 0 {
			break
		}
		node = d.first[node] + uint32(bits.OnesCount16(m&(1<<dig-1)))
		for r := d.rate[node]; r >= 0; r = d.rates[r].next {
			row := &d.rates[r]
			if (row.from == 0 || ts >= row.from) && (row.to == 0 || ts < row.to) {
				best, bestLen = r, i+1
				break
			}
		}
	}
	if best < 0 {
		return Rate{}, false
	}
	row := &d.rates[best]
	rt := Rate{
		PrefixLen:   bestLen,
		Description: d.desc[row.descOff : row.descOff+uint32(row.descLen)],
		PerMinute:   row.rate, Connect: row.connect,
		Initial: int(row.initial), Subsequent: int(row.subsequent),
	}
	if row.risk > 0 {
		rt.Risk = d.risks[row.risk-1]
	}
	return rt, true
}

// trieBuilder is the mutable trie used while loading: 44 bytes a node, freed once frozen.
type trieBuilder struct {
	kids  [][10]int32
	rate  []int32
	rates []deckRow
	lines []int32 // line of each row, for overlap errors
}

func newTrieBuilder() *trieBuilder {
	return &trieBuilder{kids: [][10]int32{{}}, rate: []int32{-1}}
}

// add inserts a row; it returns a message when the prefix already has a row
// whose effective period overlaps.
func (b *trieBuilder) add(prefix string, row deckRow, line int) string {
	n := int32(0)
	for i := 0; i < len(prefix); i++ {
		dig := prefix[i] - '0'
		next := b.kids[n][dig]
		if next == 0 {
			next = int32(len(b.kids))
			b.kids = append(b.kids, [10]int32{})
			b.rate = append(b.rate, -1)
			b.kids[n][dig] = next
		}
		n = next
	}
	for r := b.rate[n]; r >= 0; r = b.rates[r].next {
		o := &b.rates[r]
		if overlaps(o.from, o.to, row.from, row.to) {
			return fmt.Sprintf("%s repeats line %d with an overlapping effective period", prefix, b.lines[r])
		}
	}
	row.next = b.rate[n]
	b.rate[n] = int32(len(b.rates))
	b.rates = append(b.rates, row)
	b.lines = append(b.lines, int32(line))
	return ""
}

func overlaps(f1, t1, f2, t2 int64) bool {
	const inf = int64(1) << 62
	if t1 == 0 {
		t1 = inf
	}
	if t2 == 0 {
		t2 = inf
	}
	return f1 < t2 && f2 < t1
}

// freeze lays the trie out breadth-first into d's compact arrays.
func (b *trieBuilder) freeze(d *Deck) {
	n := len(b.kids)
	d.mask = make([]uint16, n)
	d.first = make([]uint32, n)
	d.rate = make([]int32, n)
	queue := make([]int32, 1, n) // builder ids in output order
	for out := 0; out < len(queue); out++ {
		id := queue[out]
		d.rate[out] = b.rate[id]
		d.first[out] = uint32(len(queue))
		var m uint16
		for dig, k := range b.kids[id] {
			if k != 0 {
				m |= 1 << dig
				queue = append(queue, k)
			}
		}
		d.mask[out] = m
	}
	d.rates = slices.Clip(b.rates)
	b.kids, b.rate, b.rates, b.lines = nil, nil, nil, nil
}
