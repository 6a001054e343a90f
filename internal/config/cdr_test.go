package config

import (
	"strings"
	"testing"
)

func TestCDRJournalMaxSize(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want int64
		err  string
	}{
		{"", 1024 << 20, ""},
		{"cdr: {journal_max_size: 64MiB}", 64 << 20, ""},
		{"cdr: {journal_max_size: 2000000000}", 2000000000, ""},
		{"cdr: {journal_max_size: 512KiB}", 0, `cdr.yaml:2:25: cdr.journal_max_size: must be at least 1MiB, got "512KiB"`},
		{"cdr: {journal_max_size: lots}", 0, `cdr.yaml:2:25: cdr.journal_max_size: must be a size in bytes`},
	} {
		c, err := Parse([]byte("listen: [udp://127.0.0.1:5060]\n"+tc.yaml+"\n"), "cdr.yaml")
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.yaml, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.yaml, err)
			continue
		}
		if c.CDR.JournalMaxBytes != tc.want {
			t.Errorf("%q: journal max %d, want %d", tc.yaml, c.CDR.JournalMaxBytes, tc.want)
		}
	}
}
