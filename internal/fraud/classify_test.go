package fraud

import (
	"testing"
)

func mustDialling(t testing.TB, country, np, ip string) *Dialling {
	t.Helper()
	d, err := NewDialling(country, np, ip)
	if err != nil {
		t.Fatal(err)
	}
	return &d
}

func TestClassify(t *testing.T) {
	c := NewClassifier(0)
	gb := mustDialling(t, "GB", "", "")
	us := mustDialling(t, "US", "", "")
	jm := mustDialling(t, "JM", "", "")
	de := mustDialling(t, "de", "0", "00")
	tests := []struct {
		name   string
		d      *Dialling
		user   string
		e164   string
		class  Class
		intl   bool
		region string
	}{
		{"uk national", gb, "01212345678", "+441212345678", ClassDomestic, false, "GB"},
		{"uk mobile with +", gb, "+447400123456", "+447400123456", ClassDomestic, false, "GB"},
		{"uk premium 09", gb, "09012345678", "+449012345678", ClassPremium, false, "GB"},
		{"uk calls France", gb, "0033123456789", "+33123456789", ClassInternational, true, "FR"},
		{"uk calls French premium", gb, "00 33 891 123 456", "+33891123456", ClassPremium, true, "FR"},
		{"uk calls French shared cost", gb, "0033884012345", "+33884012345", ClassPremium, true, "FR"},
		{"uk calls French UAN", gb, "0033806123456", "+33806123456", ClassPremium, true, "FR"},
		{"uk calls US", gb, "0012015550123", "+12015550123", ClassInternational, true, "US"},
		{"uk calls Jamaica", gb, "0018765230123", "+18765230123", ClassNANPForeign, true, "JM"},
		{"us 10 digits", us, "2015550123", "+12015550123", ClassDomestic, false, "US"},
		{"us 1+10", us, "1-201-555-0123", "+12015550123", ClassDomestic, false, "US"},
		{"us calls Canada", us, "15062345678", "+15062345678", ClassDomestic, false, "CA"},
		{"us calls Puerto Rico", us, "17872345678", "+17872345678", ClassDomestic, false, "PR"},
		{"us 900", us, "19002345678", "+19002345678", ClassPremium, false, "US"},
		{"us toll free", us, "18002345678", "+18002345678", ClassDomestic, false, "US"},
		{"us 011 UK", us, "011441212345678", "+441212345678", ClassInternational, true, "GB"},
		{"Antigua 268", us, "12684601234", "+12684601234", ClassNANPForeign, true, "AG"},
		{"BVI 284", us, "12842291234", "+12842291234", ClassNANPForeign, true, "VG"},
		{"Grenada 473", us, "4732691234", "+14732691234", ClassNANPForeign, true, "GD"},
		{"Turks and Caicos 649", us, "16497121234", "+16497121234", ClassNANPForeign, true, "TC"},
		{"Montserrat 664", us, "16644912345", "+16644912345", ClassNANPForeign, true, "MS"},
		{"Dominica 767", us, "17674201234", "+17674201234", ClassNANPForeign, true, "DM"},
		{"Dominican Republic 809", us, "18092345678", "+18092345678", ClassNANPForeign, true, "DO"},
		{"Jamaica 876", us, "18762101234", "+18762101234", ClassNANPForeign, true, "JM"},
		{"Bahamas 242", us, "12423456789", "+12423456789", ClassNANPForeign, true, "BS"},
		{"Bermuda 441", us, "+14414123456", "+14414123456", ClassNANPForeign, true, "BM"},
		{"Sint Maarten 721", us, "17215425678", "+17215425678", ClassNANPForeign, true, "SX"},
		{"Jamaica calls Jamaica", jm, "18762101234", "+18762101234", ClassDomestic, false, "JM"},
		{"Jamaica calls US", jm, "12015550123", "+12015550123", ClassInternational, true, "US"},
		{"Iridium 881", gb, "00881612345678", "+881612345678", ClassSatellite, true, "001"},
		{"international networks 882", gb, "+8823421234", "+8823421234", ClassSatellite, true, "001"},
		{"international networks 883", gb, "+883510012345", "+883510012345", ClassSatellite, true, "001"},
		{"Inmarsat 870", us, "011870301234567", "+870301234567", ClassSatellite, true, "001"},
		{"IPRS 979", gb, "+979123456789", "+979123456789", ClassSatellite, true, "001"},
		{"ISCS 808", gb, "+80812345678", "+80812345678", ClassSatellite, true, "001"},
		{"satellite even unallocated", gb, "+8829999", "+8829999", ClassSatellite, true, "001"},
		{"germany national", de, "030 123456", "+4930123456", ClassDomestic, false, "DE"},
		{"germany premium", de, "09001234567", "+499001234567", ClassPremium, false, "DE"},
		{"unallocated US 555 exchange in Antigua", us, "12685551234", "+12685551234", ClassInvalid, true, ""},
		{"too short", gb, "020", "+4420", ClassInvalid, false, ""},
		{"unassigned country code", gb, "+99912345", "+99912345", ClassInvalid, false, ""},
		{"letters", gb, "alice", "", ClassInvalid, false, ""},
		{"empty", gb, "", "", ClassInvalid, false, ""},
		{"16 digits", gb, "+4412345678901234", "", ClassInvalid, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for range 2 { // the second run comes from the cache
				num, d := c.Classify(tc.d, []byte(tc.user), make([]byte, 0, 16))
				if string(num) != tc.e164 && !(tc.class == ClassInvalid && len(num) == 0) {
					t.Errorf("e164 = %q, want %q", num, tc.e164)
				}
				if d.Class != tc.class || d.International != tc.intl || d.Region != tc.region {
					t.Errorf("got %v intl=%v region=%q (%+v), want %v intl=%v region=%q",
						d.Class, d.International, d.Region, d, tc.class, tc.intl, tc.region)
				}
			}
		})
	}
}

func TestNewDiallingErrors(t *testing.T) {
	for _, tc := range [][3]string{{"XX", "", ""}, {"", "", ""}, {"GB", "0a", ""}, {"GB", "", "00000"}} {
		if _, err := NewDialling(tc[0], tc[1], tc[2]); err == nil {
			t.Errorf("NewDialling(%q) accepted", tc)
		}
	}
	d := mustDialling(t, "US", "", "")
	if d.ctx.NationalPrefix != "1" || d.ctx.InternationalPrefix != "011" || d.ctx.CountryCode != "1" {
		t.Errorf("US defaults: %+v", d.ctx)
	}
}

func TestClassNames(t *testing.T) {
	for c := ClassInvalid; c < numClasses; c++ {
		got, err := ParseClass(c.String())
		if err != nil || got != c {
			t.Errorf("ParseClass(%q) = %v, %v", c.String(), got, err)
		}
	}
	if _, err := ParseClass("cheap"); err == nil {
		t.Error("ParseClass(cheap) accepted")
	}
}

func TestClassifyCacheHitNoAlloc(t *testing.T) {
	c := NewClassifier(0)
	gb := mustDialling(t, "GB", "", "")
	user := []byte("0033123456789")
	dst := make([]byte, 0, 16)
	c.Classify(gb, user, dst)
	if n := testing.AllocsPerRun(100, func() { c.Classify(gb, user, dst) }); n != 0 {
		t.Fatalf("%v allocations per cached classification", n)
	}
}

func BenchmarkClassify(b *testing.B) {
	gb := mustDialling(b, "GB", "", "")
	b.Run("cached", func(b *testing.B) {
		c := NewClassifier(0)
		user := []byte("0033123456789")
		dst := make([]byte, 0, 16)
		b.ReportAllocs()
		for b.Loop() {
			c.Classify(gb, user, dst)
		}
	})
	b.Run("miss", func(b *testing.B) {
		c := NewClassifier(16) // tiny cache: nearly every number is a miss
		user := []byte("00331234567xx")
		dst := make([]byte, 0, 16)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			user[11], user[12] = '0'+byte(i%10), '0'+byte(i/10%10)
			c.Classify(gb, user, dst)
		}
	})
}

func FuzzClassify(f *testing.F) {
	for _, s := range []string{"+441212345678", "0033891123456", "12684601234", "+8823421234", "011 870", "alice", "+", "00"} {
		f.Add(s, "GB")
		f.Add(s, "US")
	}
	c := NewClassifier(1024)
	f.Fuzz(func(t *testing.T, user, country string) {
		d, err := NewDialling(country, "", "")
		if err != nil {
			return
		}
		num, dest := c.Classify(&d, []byte(user), nil)
		if dest.Class >= numClasses {
			t.Fatalf("class %d", dest.Class)
		}
		if dest.Class != ClassInvalid && (len(num) < 2 || num[0] != '+') {
			t.Fatalf("%q classified %v with E.164 %q", user, dest.Class, num)
		}
		if dest.Class == ClassDomestic && dest.International {
			t.Fatalf("%q domestic and international", user)
		}
	})
}

func TestClassifyNumberHash(t *testing.T) {
	c := NewClassifier(0)
	gb := mustDialling(t, "GB", "", "")
	_, a := c.Classify(gb, []byte("0033123456789"), nil)
	_, b := c.Classify(gb, []byte("+33 1 23 45 67 89"), nil)
	_, o := c.Classify(gb, []byte("0033123456788"), nil)
	_, bad := c.Classify(gb, []byte("alice"), nil)
	if a.Number == 0 || a.Number != b.Number || a.Number == o.Number || bad.Number != 0 {
		t.Fatalf("hashes %x %x %x %x", a.Number, b.Number, o.Number, bad.Number)
	}
}
