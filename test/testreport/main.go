// Command testreport reads `go test -json` on standard input and prints what
// a person needs from it: a line per package (ok or FAIL, with its time),
// the output of every test that failed, every skipped test with its reason,
// and a closing line "N passed, N failed, N skipped". It exits 1 when a test
// or a package failed (a build error, a panic, a timeout), and under CI
// (the CI variable set, as .ci/run does) also when a test was skipped: a
// skipped test there hides a tool or service that .ci/run failed to provide.
//
//	go test -json ./... | go run ./test/testreport
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/sipwarden/sipwarden/internal/testenv"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

type report struct {
	passed, failed, skipped int
	skips                   []string
	failedPkgs              []string
	output                  map[string]*strings.Builder // package + test → its output so far
	out                     io.Writer
}

func main() {
	r := &report{output: map[string]*strings.Builder{}, out: os.Stdout}
	if err := r.read(os.Stdin); err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(1)
	}
	os.Exit(r.finish(testenv.InCI()))
}

func (r *report) read(in io.Reader) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			fmt.Fprintln(r.out, string(line)) // build errors and other plain text
			continue
		}
		r.add(e)
	}
	return sc.Err()
}

func (r *report) add(e event) {
	key := e.Package + " " + e.Test
	switch e.Action {
	case "output", "build-output":
		b := r.output[key]
		if b == nil {
			b = &strings.Builder{}
			r.output[key] = b
		}
		b.WriteString(e.Output)
	case "pass":
		if e.Test != "" {
			r.passed++
		} else {
			fmt.Fprintf(r.out, "ok   %s %.1fs\n", e.Package, e.Elapsed)
		}
		delete(r.output, key)
	case "skip":
		if e.Test != "" {
			r.skipped++
			r.skips = append(r.skips, fmt.Sprintf("%s %s: %s", e.Package, e.Test, lastLines(r.output[key], 3)))
		} else {
			fmt.Fprintf(r.out, "---  %s (no test files)\n", e.Package)
		}
		delete(r.output, key)
	case "fail":
		if e.Test != "" {
			r.failed++
			fmt.Fprintf(r.out, "--- FAIL: %s %s (%.1fs)\n%s", e.Package, e.Test, e.Elapsed, text(r.output[key]))
		} else {
			r.failedPkgs = append(r.failedPkgs, e.Package)
			fmt.Fprintf(r.out, "FAIL %s %.1fs\n%s", e.Package, e.Elapsed, text(r.output[key]))
		}
		delete(r.output, key)
	}
}

// finish prints the skips and the closing line, and returns the exit code.
func (r *report) finish(ci bool) int {
	sort.Strings(r.skips)
	for _, s := range r.skips {
		fmt.Fprintln(r.out, "SKIP", s)
	}
	code := 0
	if r.failed > 0 || len(r.failedPkgs) > 0 {
		code = 1
	}
	if ci && r.skipped > 0 {
		fmt.Fprintf(r.out, "testreport: %d test(s) skipped under CI: every test must run there\n", r.skipped)
		code = 1
	}
	if len(r.failedPkgs) > 0 {
		fmt.Fprintf(r.out, "failed packages: %s\n", strings.Join(r.failedPkgs, " "))
	}
	fmt.Fprintf(r.out, "%d passed, %d failed, %d skipped\n", r.passed, r.failed, r.skipped)
	return code
}

func text(b *strings.Builder) string {
	if b == nil {
		return ""
	}
	return b.String()
}

// lastLines returns the last n non-empty lines of a test's output (its skip message).
func lastLines(b *strings.Builder, n int) string {
	lines := strings.Split(strings.TrimSpace(text(b)), "\n")
	var keep []string
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "=== ") && !strings.HasPrefix(l, "--- SKIP") {
			keep = append(keep, l)
		}
	}
	if len(keep) > n {
		keep = keep[len(keep)-n:]
	}
	return strings.Join(keep, " | ")
}
