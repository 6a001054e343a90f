package sqlite

import (
	"path/filepath"
	"testing"

	"github.com/sipwarden/sipwarden/internal/cdr"
	"github.com/sipwarden/sipwarden/internal/cdr/cdrtest"
)

func TestConformance(t *testing.T) {
	cdrtest.Run(t, func(t *testing.T) cdr.Store {
		s, err := Open(filepath.Join(t.TempDir(), "sub", "cdr.db"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
