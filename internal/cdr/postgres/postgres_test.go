package postgres

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/cdr"
	"github.com/sipwarden/sipwarden/internal/cdr/cdrtest"
	"github.com/sipwarden/sipwarden/internal/testenv"
)

func dsn() string {
	if d := os.Getenv("SIPWARDEN_TEST_POSTGRES_DSN"); d != "" {
		return d
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// TestConformance runs the CDR suite against a real PostgreSQL server: in CI
// (CI=true) a missing server fails the test, locally it skips.
func TestConformance(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	probe, err := Open(ctx, dsn())
	cancel()
	if err != nil {
		testenv.Missing(t, "no PostgreSQL at %s: %v", dsn(), err)
	}
	probe.Close()
	n := 0
	cdrtest.Run(t, func(t *testing.T) cdr.Store {
		n++
		table := fmt.Sprintf("cdr_test_%d_%d", os.Getpid(), n)
		s, err := OpenTable(context.Background(), dsn(), table)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			s2, err := OpenTable(context.Background(), dsn(), table)
			if err == nil {
				_, _ = s2.pool.Exec(context.Background(), "DROP TABLE IF EXISTS "+s2.table)
				s2.Close()
			}
		})
		return s
	})
}
