package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

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

// Only errors about the data make the writer look for a bad record; the
// server's state (a dropped table, no permission, too many connections, a
// read-only standby, a shutdown) keeps the batch for a retry.
func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		code        string
		unavailable bool
	}{
		{"22021", false}, // invalid byte sequence
		{"22001", false}, // value too long
		{"23505", false}, // unique violation (a constraint an operator added)
		{"54000", false}, // program limit
		{"42P01", true},  // undefined table
		{"42501", true},  // permission denied
		{"53300", true},  // too many connections
		{"25006", true},  // read-only transaction
		{"57P01", true},  // admin shutdown
		{"40001", true},  // serialization failure
	} {
		err := classify(&pgconn.PgError{Code: tc.code})
		if got := errors.Is(err, cdr.ErrUnavailable); got != tc.unavailable {
			t.Errorf("%s: unavailable %v, want %v", tc.code, got, tc.unavailable)
		}
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != tc.code {
			t.Errorf("%s: the server's error is not kept in the chain", tc.code)
		}
	}
	if err := classify(errors.New("dial tcp: connection refused")); errors.Is(err, cdr.ErrUnavailable) {
		t.Error("a connection error is left to the writer's ping")
	}
}

// A server that is down at start is not a configuration error: Open says it
// is unreachable, and OpenLater gives a store that fails until the server
// answers (the writer journals meanwhile).
func TestOpenLaterWhileDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	down := "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2"
	if _, err := Open(ctx, down); !Unreachable(err) {
		t.Fatalf("Open of a closed port: %v, want unreachable", err)
	}
	s, err := OpenLater(down)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Ping(ctx); err == nil {
		t.Fatal("ping of a closed port succeeded")
	}
	if err := s.Insert(ctx, []cdr.Record{{CallID: "x"}}); err == nil {
		t.Fatal("insert into a closed port succeeded")
	}
	if _, err := OpenLater("postgres://%zz"); err == nil {
		t.Error("a malformed DSN accepted")
	}
}
