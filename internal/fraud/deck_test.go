package fraud

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"
)

const testDeck = `# A-Z deck, test
# currency: USD
prefix,description,rate,connect_fee,initial_increment,subsequent_increment,effective_from,effective_to,risk
1,NANP,0.005,,6,6,,,
1268,Antigua,0.35,,60,60,,,high
44,United Kingdom,0.0100,0,1,1,,,
447,United Kingdom mobile,0.02,0,1,1,,2026-06-01,
447,United Kingdom mobile (new price),0.025,0,1,1,2026-06-01,,
4470,"UK personal, numbers",0.45,0,60,60,,,high
881,Iridium,7.5,0.50,60,60,,,satellite
+33,France,0.008,,,,,,
`

func loadTestDeck(t testing.TB) *Deck {
	t.Helper()
	d, err := LoadDeck(strings.NewReader(testDeck), "test.csv")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDeckLookup(t *testing.T) {
	d := loadTestDeck(t)
	if d.Currency != "USD" || d.Rows() != 8 {
		t.Fatalf("currency %q rows %d", d.Currency, d.Rows())
	}
	may := time.Date(2026, 5, 31, 23, 59, 59, 0, time.UTC)
	june := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		num  string
		at   time.Time
		ok   bool
		plen int
		rate string
		desc string
		risk string
		inc  [2]int
	}{
		{"+12125550100", may, true, 1, "0.005", "NANP", "", [2]int{6, 6}},
		{"+12684601234", may, true, 4, "0.35", "Antigua", "high", [2]int{60, 60}},
		{"+1268", may, true, 4, "0.35", "Antigua", "high", [2]int{60, 60}},
		{"+126", may, true, 1, "0.005", "NANP", "", [2]int{6, 6}},
		{"+441212345678", may, true, 2, "0.01", "United Kingdom", "", [2]int{1, 1}},
		{"+447400123456", may, true, 3, "0.02", "United Kingdom mobile", "", [2]int{1, 1}},
		{"+447400123456", june, true, 3, "0.025", "United Kingdom mobile (new price)", "", [2]int{1, 1}},
		{"+447011234567", june, true, 4, "0.45", "UK personal, numbers", "high", [2]int{60, 60}},
		{"881612345678", may, true, 3, "7.5", "Iridium", "satellite", [2]int{60, 60}},
		{"+33123456789", may, true, 2, "0.008", "France", "", [2]int{60, 60}},
		{"+49301234567", may, false, 0, "", "", "", [2]int{}},
		{"+", may, false, 0, "", "", "", [2]int{}},
		{"", may, false, 0, "", "", "", [2]int{}},
		{"+4x", may, false, 0, "", "", "", [2]int{}},
	}
	for _, tc := range tests {
		r, ok := d.Lookup([]byte(tc.num), tc.at)
		if ok != tc.ok || r.PrefixLen != tc.plen || (ok && (r.PerMinute.String() != tc.rate || r.Description != tc.desc ||
			r.Risk != tc.risk || r.Initial != tc.inc[0] || r.Subsequent != tc.inc[1])) {
			t.Errorf("Lookup(%s, %s) = %+v (%s), %v", tc.num, tc.at.Format(time.DateOnly), r, r.PerMinute, ok)
		}
	}
	var nilDeck *Deck
	if _, ok := nilDeck.Lookup([]byte("+44"), may); ok {
		t.Error("nil deck matched")
	}
}

func TestDeckExpiredPrefixFallsBack(t *testing.T) {
	d, err := LoadDeck(strings.NewReader("# currency: EUR\nprefix,rate,effective_from,effective_to\n44,0.01,,\n447,0.02,2026-01-01,2026-02-01\n"), "x")
	if err != nil {
		t.Fatal(err)
	}
	r, _ := d.Lookup([]byte("+447400"), time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	if r.PrefixLen != 2 {
		t.Errorf("expired 447 row still used: %+v", r)
	}
	r, _ = d.Lookup([]byte("+447400"), time.Date(2026, 1, 15, 0, 0, 0, 0, time.UTC))
	if r.PrefixLen != 3 {
		t.Errorf("effective 447 row not used: %+v", r)
	}
}

func TestRateCost(t *testing.T) {
	r := Rate{PerMinute: 600_000, Connect: 100_000, Initial: 60, Subsequent: 6} // 0.60/min: 0.01/s
	tests := []struct {
		d    time.Duration
		want Money
	}{
		{0, 0},
		{-time.Second, 0},
		{time.Millisecond, 100_000 + 600_000},   // first increment: 60 s
		{60 * time.Second, 100_000 + 600_000},   // exactly the initial increment
		{61 * time.Second, 100_000 + 660_000},   // 60 + 6
		{66 * time.Second, 100_000 + 660_000},   // 60 + 6
		{66*time.Second + 1, 100_000 + 720_000}, // 67 s started: 60 + 12
		{10 * time.Minute, 100_000 + 6_000_000}, // 600 s
	}
	for _, tc := range tests {
		if got := r.Cost(tc.d); got != tc.want {
			t.Errorf("Cost(%v) = %s, want %s", tc.d, got, tc.want)
		}
	}
	// 1/1 billing of a rate that does not divide by 60 rounds up to a millionth.
	r = Rate{PerMinute: 10_001, Initial: 1, Subsequent: 1}
	if got := r.Cost(time.Second); got != 167 { // 10001/60 = 166.68
		t.Errorf("1 s at 0.010001/min = %d, want 167", got)
	}
}

func TestParseMoney(t *testing.T) {
	tests := []struct {
		in   string
		want Money
		ok   bool
	}{
		{"0", 0, true}, {"1", MoneyUnit, true}, {"0.0125", 12_500, true}, {".5", 500_000, true},
		{"3.", 3 * MoneyUnit, true}, {"0.0000005", 1, true}, {"0.0000004", 0, true}, {"0.12345678", 123_457, true},
		{"1000000", maxMoney, true}, {"1000001", 0, false}, {"", 0, false}, {".", 0, false}, {"-1", 0, false},
		{"1e3", 0, false}, {"1,5", 0, false}, {"0.1.2", 0, false},
	}
	for _, tc := range tests {
		got, err := ParseMoney(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseMoney(%q) = %d, %v", tc.in, got, err)
		}
	}
	for _, m := range []Money{0, 1, 12_500, MoneyUnit, 1_500_000, -2_000_001} {
		if back, _ := ParseMoney(strings.TrimPrefix(m.String(), "-")); back != max(m, -m) {
			t.Errorf("%d -> %q -> %d", m, m.String(), back)
		}
	}
}

func TestDeckErrors(t *testing.T) {
	tests := []struct {
		name, deck string
		want       []string
	}{
		{"no currency", "prefix,rate\n44,1\n", []string{"line 1: no currency"}},
		{"bad currency", "# currency: dollars\nprefix,rate\n", []string{`line 1: currency "dollars"`}},
		{"no columns", "# currency: USD\n", []string{"line 2: no column names"}},
		{"unknown column", "# currency: USD\nprefix,rate,colour\n", []string{`line 2: unknown column "colour"`}},
		{"missing rate", "# currency: USD\nprefix,description\n", []string{`line 2: missing column "rate"`}},
		{"duplicate column", "# currency: USD\nprefix,rate,rate\n", []string{`line 2: column "rate" twice`}},
		{"bad rows", "# currency: USD\nprefix,rate,initial_increment,effective_from,effective_to\n" +
			"44a,0.1,1,,\n" + // line 3
			"44,x,0,,\n" + // line 4
			"45,0.1,1,2026-13-01,\n" + // line 5
			"46,0.1,1,2026-02-01,2026-01-01\n" + // line 6
			"47,0.1\n", // line 7
			[]string{`line 3: prefix: "44a" is not 1 to 15 digits`, `line 4: rate: "x"`,
				`line 4: initial_increment: "0" is not`, `line 5: effective_from`, `line 6: effective_to: not after`,
				"line 7: 2 fields, the column row has 5"}},
		{"overlap", "# currency: USD\nprefix,rate,effective_from,effective_to\n44,0.1,,\n44,0.2,2026-01-01,\n",
			[]string{"line 4: prefix: 44 repeats line 3 with an overlapping effective period"}},
		{"quote", "# currency: USD\nprefix,rate\n44,\"0.1\n", []string{"line 3:"}},
		{"prefix too long", "# currency: USD\nprefix,rate\n1234567890123456,0.1\n", []string{"line 3: prefix"}},
		{"bom", "\uFEFFprefix,rate\n", []string{"byte order mark"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadDeck(strings.NewReader(tc.deck), "x.csv")
			if err == nil {
				t.Fatal("accepted")
			}
			var es DeckErrors
			if errors.As(err, &es) && len(es) != len(tc.want) {
				t.Errorf("%d errors, want %d: %v", len(es), len(tc.want), err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestDeckTooManyErrors(t *testing.T) {
	var b strings.Builder
	b.WriteString("# currency: USD\nprefix,rate\n")
	for range 100 {
		b.WriteString("x,y\n")
	}
	_, err := LoadDeck(strings.NewReader(b.String()), "x")
	var es DeckErrors
	if !errors.As(err, &es) || len(es) != maxDeckErrors {
		t.Fatalf("got %v", err)
	}
}

func TestDeckBOMComment(t *testing.T) {
	d, err := LoadDeck(strings.NewReader("\uFEFF# currency=GBP\nprefix,rate\n44,0.01\n"), "x")
	if err != nil || d.Currency != "GBP" {
		t.Fatalf("%v %+v", err, d)
	}
}

func TestDeckLookupNoAlloc(t *testing.T) {
	d := loadTestDeck(t)
	num := []byte("+447400123456")
	now := time.Now()
	if n := testing.AllocsPerRun(100, func() { d.Lookup(num, now) }); n != 0 {
		t.Fatalf("%v allocations per lookup", n)
	}
}

// genDeck writes an A-Z-like deck of n rows: country codes, then area and
// operator prefixes of 1 to 6 more digits.
func genDeck(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	var b bytes.Buffer
	b.WriteString("# currency: USD\nprefix,description,rate,connect_fee,initial_increment,subsequent_increment,effective_from,effective_to,risk\n")
	seen := map[string]bool{}
	ccs := []string{"1", "7", "20", "27", "30", "31", "33", "34", "39", "44", "49", "52", "55", "61", "62", "81", "86", "91", "234", "255", "351", "353", "371", "880", "881", "882", "960", "971"}
	for len(seen) < n {
		p := ccs[rng.IntN(len(ccs))]
		for range 1 + rng.IntN(7) {
			p += string(rune('0' + rng.IntN(10)))
		}
		if seen[p] {
			continue
		}
		seen[p] = true
		fmt.Fprintf(&b, "%s,Destination %s mobile,%d.%04d,0,1,1,2026-01-01,,\n", p, p, rng.IntN(3), rng.IntN(10000))
	}
	return b.Bytes()
}

func TestDeckLarge(t *testing.T) {
	data := genDeck(20_000, 2)
	d, err := LoadDeck(bytes.NewReader(data), "gen")
	if err != nil {
		t.Fatal(err)
	}
	if d.Rows() != 20_000 {
		t.Fatalf("%d rows", d.Rows())
	}
	// Every prefix is found as itself.
	lines := strings.Split(string(data), "\n")[2:]
	at := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	for _, l := range lines[:2000] {
		p, _, _ := strings.Cut(l, ",")
		r, ok := d.Lookup([]byte(p+"99"), at)
		if !ok || r.PrefixLen < len(p) {
			t.Fatalf("%s: %+v %v", p, r, ok)
		}
	}
}

func BenchmarkDeck(b *testing.B) {
	data := genDeck(200_000, 1)
	b.Run("load200k", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, err := LoadDeck(bytes.NewReader(data), "gen"); err != nil {
				b.Fatal(err)
			}
		}
	})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	d, err := LoadDeck(bytes.NewReader(data), "gen")
	if err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	lines := strings.Split(string(data), "\n")[2:]
	nums := make([][]byte, 4096)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range nums {
		p, _, _ := strings.Cut(lines[rng.IntN(len(lines)-1)], ",")
		nums[i] = []byte("+" + p + "1234567"[:max(0, min(7, 12-len(p)))])
	}
	at := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	b.Run("lookup200k", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, ok := d.Lookup(nums[i&4095], at); !ok {
				b.Fatal("miss")
			}
			i++
		}
		b.ReportMetric(float64(d.Bytes()), "deck-bytes")
		b.ReportMetric(float64(heap), "heap-bytes")
		b.ReportMetric(float64(len(d.mask)), "nodes")
	})
}

func FuzzLoadDeck(f *testing.F) {
	f.Add([]byte(testDeck))
	f.Add([]byte("# currency: USD\nprefix,rate\n44,0.1\n"))
	f.Add([]byte("# currency: USD\nprefix,rate,effective_from,effective_to\n44,0.1,2026-01-01,2027-01-01\n44,0.2,2027-01-01,\n"))
	f.Add([]byte("\uFEFF# currency=EUR\nrate,prefix,risk\n\"0.1\",\"+4\",x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := LoadDeck(bytes.NewReader(data), "fuzz")
		if err != nil {
			var es DeckErrors
			if !errors.As(err, &es) && !strings.Contains(err.Error(), "byte order mark") {
				t.Fatalf("error of type %T: %v", err, err)
			}
			if len(es) > maxDeckErrors {
				t.Fatalf("%d errors", len(es))
			}
			return
		}
		for _, n := range []string{"+1", "+44", "+4412345", "+881", "0", "+999999999999999"} {
			if r, ok := d.Lookup([]byte(n), time.Now()); ok {
				if r.PrefixLen < 1 || r.PrefixLen > len(n) || r.PerMinute < 0 || r.Initial < 1 || r.Subsequent < 1 {
					t.Fatalf("Lookup(%s) = %+v", n, r)
				}
				r.Cost(time.Hour)
			}
		}
	})
}

// TestDeckErrorsCappedInHeader: a column row of empty names found by the fuzzer gave 21 errors.
func TestDeckErrorsCappedInHeader(t *testing.T) {
	_, err := LoadDeck(strings.NewReader(",,,,,,,,,,,,,,,,,"), "x")
	var es DeckErrors
	if !errors.As(err, &es) || len(es) != maxDeckErrors {
		t.Fatalf("got %d errors: %v", len(es), err)
	}
}
