package e164

import "testing"

func TestContextNormalize(t *testing.T) {
	uk := &Context{CountryCode: "44", NationalPrefix: "0", InternationalPrefix: "00"}
	us := &Context{CountryCode: "1", NationalPrefix: "1", InternationalPrefix: "011"}
	de := &Context{CountryCode: "49", NationalPrefix: "0"}
	none := &Context{}
	tests := []struct {
		ctx  *Context
		in   string
		want string
		ok   bool
	}{
		{uk, "020 7946 0000", "+442079460000", true},
		{uk, "00 1 212 555 0100", "+12125550100", true},
		{uk, "+33 1 23 45 67 89", "+33123456789", true},
		{uk, "2079460000", "+442079460000", true},
		{uk, "0", "", false},  // national prefix alone
		{uk, "00", "", false}, // international prefix alone
		{us, "2125550100", "+12125550100", true},
		{us, "12125550100", "+12125550100", true},
		{us, "011 44 20 7946 0000", "+442079460000", true},
		{us, "1-268-555-0100", "+12685550100", true},
		{us, "+1 (876) 555-0100", "+18765550100", true},
		{de, "030 1234567", "+49301234567", true},
		{de, "0049 30 1234567", "+49301234567", true},
		{none, "0044207946000", "+44207946000", true},
		{none, "2079460000", "2079460000", false},
		{uk, "alice", "", false},
		{uk, "", "", false},
		{uk, "+0123", "0123", false},
		{uk, "0123456789012345", "", false}, // 17 digits once made international
		{uk, "020;phone-context=x", "+4420", true},
	}
	for _, tc := range tests {
		got, ok := tc.ctx.Normalize([]byte(tc.in), nil)
		if ok != tc.ok || (ok && string(got) != tc.want) {
			t.Errorf("%+v Normalize(%q) = %q, %v; want %q, %v", *tc.ctx, tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestContextNormalizeNoAlloc(t *testing.T) {
	c := &Context{CountryCode: "44", NationalPrefix: "0"}
	dst := make([]byte, 0, 32)
	in := []byte("020 7946 0000")
	if n := testing.AllocsPerRun(100, func() { c.Normalize(in, dst) }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

func FuzzContextNormalize(f *testing.F) {
	for _, s := range []string{"020 7946 0000", "0044 20", "%2B1", "abc", ";x", "011 1", "1"} {
		f.Add(s, "44", "0", "00")
		f.Add(s, "1", "1", "011")
	}
	f.Fuzz(func(t *testing.T, s, cc, np, ip string) {
		for _, p := range []string{cc, np, ip} {
			for _, d := range []byte(p) {
				if d < '0' || d > '9' {
					return // the configuration accepts digits only
				}
			}
		}
		c := &Context{CountryCode: cc, NationalPrefix: np, InternationalPrefix: ip}
		out, ok := c.Normalize([]byte(s), nil)
		if !ok {
			return
		}
		if len(out) < 2 || out[0] != '+' || out[1] == '0' || len(out) > 16 {
			t.Fatalf("Normalize(%q) = %q ok", s, out)
		}
		for _, d := range out[1:] {
			if d < '0' || d > '9' {
				t.Fatalf("Normalize(%q) = %q ok: not digits", s, out)
			}
		}
	})
}
