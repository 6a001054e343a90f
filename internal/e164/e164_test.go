package e164

import "testing"

func TestNormalize(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"+15551230001", "+15551230001", true},
		{"+1-555-123-0001", "+15551230001", true},
		{"+1 (555) 123.0001", "+15551230001", true},
		{"0044207946000", "+44207946000", true},
		{"%2B4420794600", "+4420794600", true},
		{"+15551230001;phone-context=example.com", "+15551230001", true},
		{"5551230001", "5551230001", false},
		{"alice", "", false},
		{"", "", false},
		{"+1234567890123456", "1234567890123456", false},
		{"++1", "", false},
	}
	for _, tc := range tests {
		got, ok := Normalize([]byte(tc.in), nil)
		if string(got) != tc.want || ok != tc.ok {
			t.Errorf("Normalize(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestNormalizeNoAlloc(t *testing.T) {
	dst := make([]byte, 0, 32)
	in := []byte("+1-555-123-0001")
	if n := testing.AllocsPerRun(100, func() { Normalize(in, dst) }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"+15551230001", "0044 20", "%2B1", "abc", ";x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, ok := Normalize([]byte(s), nil)
		if ok && (len(out) < 2 || out[0] != '+' || len(out) > 16) {
			t.Fatalf("Normalize(%q) = %q ok", s, out)
		}
	})
}
