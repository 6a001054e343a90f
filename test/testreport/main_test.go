package main

import (
	"strings"
	"testing"
)

func TestReport(t *testing.T) {
	in := strings.Join([]string{
		`{"Action":"run","Package":"p","Test":"TestA"}`,
		`{"Action":"output","Package":"p","Test":"TestA","Output":"=== RUN   TestA\n"}`,
		`{"Action":"pass","Package":"p","Test":"TestA","Elapsed":0.1}`,
		`{"Action":"output","Package":"p","Test":"TestB","Output":"    b_test.go:9: sipp not found: apt-get install sip-tester\n"}`,
		`{"Action":"output","Package":"p","Test":"TestB","Output":"--- SKIP: TestB (0.00s)\n"}`,
		`{"Action":"skip","Package":"p","Test":"TestB"}`,
		`{"Action":"pass","Package":"p","Elapsed":1.5}`,
		`{"Action":"output","Package":"q","Test":"TestC","Output":"    c_test.go:3: boom\n"}`,
		`{"Action":"fail","Package":"q","Test":"TestC","Elapsed":0.2}`,
		`{"Action":"fail","Package":"q","Elapsed":0.3}`,
		`# r`,
		`r/x.go:1: syntax error`,
	}, "\n")
	for _, tc := range []struct {
		name    string
		in      string
		ci      bool
		code    int
		closing string
		has     []string
	}{
		{"failure", in, false, 1, "1 passed, 1 failed, 1 skipped", []string{"ok   p 1.5s", "--- FAIL: q TestC", "boom", "FAIL q", "SKIP p TestB: b_test.go:9: sipp not found", "r/x.go:1: syntax error"}},
		{"skip is fine locally", strings.Join(strings.Split(in, "\n")[:7], "\n"), false, 0, "1 passed, 0 failed, 1 skipped", nil},
		{"skip fails under CI", strings.Join(strings.Split(in, "\n")[:7], "\n"), true, 1, "1 passed, 0 failed, 1 skipped", []string{"skipped under CI"}},
		{"all passed under CI", strings.Join(strings.Split(in, "\n")[:3], "\n"), true, 0, "1 passed, 0 failed, 0 skipped", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			r := &report{output: map[string]*strings.Builder{}, out: &out}
			if err := r.read(strings.NewReader(tc.in)); err != nil {
				t.Fatal(err)
			}
			if code := r.finish(tc.ci); code != tc.code {
				t.Errorf("exit code %d, want %d\n%s", code, tc.code, out.String())
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if last := lines[len(lines)-1]; last != tc.closing {
				t.Errorf("closing line %q, want %q", last, tc.closing)
			}
			for _, h := range tc.has {
				if !strings.Contains(out.String(), h) {
					t.Errorf("output lacks %q:\n%s", h, out.String())
				}
			}
		})
	}
}
