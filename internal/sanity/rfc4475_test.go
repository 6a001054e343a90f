package sanity

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/sipwarden/sipwarden/internal/sip"
)

// outcome is what a proxy does with one RFC 4475 message (from a known peer).
type outcome int

const (
	forward     outcome = iota // parses and passes Check
	response                   // a response that parses (the proxy relays or drops it by Via)
	unparseable                // not even a start line: dropped without answer
)

// TestRFC4475 runs all 49 torture messages of RFC 4475 through Parse and
// Check and compares the outcome with what the RFC asks of a proxy.
func TestRFC4475(t *testing.T) {
	tests := []struct {
		file string
		want outcome
		code int // for requests that must be refused
	}{
		// 3.1.1 valid messages
		{"wsinv", forward, 0}, {"intmeth", forward, 0}, {"esc01", forward, 0}, {"escnull", forward, 0},
		{"esc02", forward, 0}, {"lwsdisp", forward, 0}, {"longreq", forward, 0}, {"dblreq", forward, 0},
		{"semiuri", forward, 0}, {"transports", forward, 0}, {"mpart01", forward, 0},
		{"unreason", response, 0}, {"noreason", response, 0},
		// 3.1.2 invalid messages
		{"badinv01", forward, 400}, {"clerr", forward, 400}, {"ncl", forward, 400}, {"scalar02", forward, 400},
		{"scalarlg", response, 0}, {"quotbal", forward, 400}, {"ltgtruri", forward, 400},
		{"lwsruri", forward, 400}, {"lwsstart", forward, 400}, {"trws", forward, 400}, {"escruri", forward, 400},
		{"baddate", forward, 0}, // a proxy does not interpret Date (RFC 4475 3.1.2.12 leaves it to the UAS)
		{"regbadct", forward, 400}, {"badaspec", forward, 400}, {"baddn", forward, 400},
		{"badvers", forward, 505}, {"mismatch01", forward, 400}, {"mismatch02", forward, 400},
		{"bigcode", unparseable, 0},
		// 3.2 transaction layer
		{"badbranch", forward, 0},
		// 3.3 application layer
		{"insuf", forward, 400}, {"unkscm", forward, 416}, {"novelsc", forward, 416}, {"unksm2", forward, 0},
		{"bext01", forward, 420}, {"invut", forward, 0}, {"regaut01", forward, 0}, {"multi01", forward, 400},
		{"mcl01", forward, 400}, {"bcast", response, 0}, {"zeromf", forward, 483}, {"cparam01", forward, 0},
		{"cparam02", forward, 0}, {"regescrt", forward, 0}, {"sdp01", forward, 0}, {"inv2543", forward, 0},
	}
	files, _ := filepath.Glob("../sip/testdata/rfc4475/*.dat")
	if len(files) != 49 || len(tests) != 49 {
		t.Fatalf("%d files, %d table entries; want 49 of each", len(files), len(tests))
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("../sip/testdata/rfc4475", tc.file+".dat"))
			if err != nil {
				t.Fatal(err)
			}
			var m sip.Msg
			perr := m.Parse(b)
			switch tc.want {
			case unparseable:
				if perr == nil || m.IsRequest() {
					t.Fatalf("parsed (request=%v), want a parse error", m.IsRequest())
				}
				return
			case response:
				if m.IsRequest() {
					t.Fatal("parsed as a request, want a response")
				}
				if tc.file != "scalarlg" && perr != nil {
					t.Fatalf("Parse: %v", perr)
				}
				return
			}
			if !m.IsRequest() {
				t.Fatalf("not a request (parse error %v)", perr)
			}
			r := Check(&m, perr)
			if r.Code != tc.code {
				t.Fatalf("Check = %d %s (%s), parse error %v; want %d", r.Code, r.Reason, r.Warning, perr, tc.code)
			}
			// insuf lacks Call-ID, From and To: no response can be built, so
			// the proxy drops it (counted) instead of answering 400.
			if r.Code != 0 && !sip.CanReply(&m) && tc.file != "insuf" {
				t.Fatalf("refused with %d but a reply cannot be built", r.Code)
			}
		})
	}
}
