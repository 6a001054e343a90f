// Package postgres is the CDR store for clusters: several sipwarden nodes
// write to one PostgreSQL database (pgx, a connection pool, batched inserts
// with COPY).
package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sipwarden/sipwarden/internal/cdr"
)

// Store is a CDR store in PostgreSQL.
type Store struct {
	pool  *pgxpool.Pool
	table string
}

var _ cdr.Store = (*Store)(nil)

// Open connects to dsn and creates the schema if needed.
func Open(ctx context.Context, dsn string) (*Store, error) {
	return OpenTable(ctx, dsn, "sipwarden_cdr")
}

// OpenTable is Open with another table name (tests use a fresh table each).
func OpenTable(ctx context.Context, dsn, table string) (*Store, error) {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	s := &Store{pool: pool, table: pgx.Identifier{table}.Sanitize()}
	ddl := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %[1]s (
		id          BIGSERIAL PRIMARY KEY,
		call_id     TEXT NOT NULL,
		trunk       TEXT NOT NULL,
		upstream    TEXT NOT NULL,
		direction   TEXT NOT NULL,
		src_addr    TEXT NOT NULL,
		transport   TEXT NOT NULL,
		from_num    TEXT NOT NULL,
		to_num      TEXT NOT NULL,
		start_at    TIMESTAMPTZ NOT NULL,
		answer_at   TIMESTAMPTZ,
		end_at      TIMESTAMPTZ NOT NULL,
		duration_ms BIGINT NOT NULL,
		final_code  INTEGER NOT NULL,
		disposition TEXT NOT NULL,
		stage       TEXT NOT NULL,
		reason      TEXT NOT NULL,
		caller_media TEXT NOT NULL DEFAULT '',
		callee_media TEXT NOT NULL DEFAULT '',
		identity    TEXT NOT NULL DEFAULT ''
	);
	ALTER TABLE %[1]s ADD COLUMN IF NOT EXISTS caller_media TEXT NOT NULL DEFAULT '';
	ALTER TABLE %[1]s ADD COLUMN IF NOT EXISTS callee_media TEXT NOT NULL DEFAULT '';
	ALTER TABLE %[1]s ADD COLUMN IF NOT EXISTS identity TEXT NOT NULL DEFAULT '';
	CREATE INDEX IF NOT EXISTS %[2]s ON %[1]s (start_at);
	CREATE INDEX IF NOT EXISTS %[3]s ON %[1]s (trunk, start_at);`,
		s.table, pgx.Identifier{table + "_start"}.Sanitize(), pgx.Identifier{table + "_trunk_start"}.Sanitize())
	if _, err := pool.Exec(ctx, ddl); err != nil {
		pool.Close()
		return nil, fmt.Errorf("create CDR schema: %w", err)
	}
	return s, nil
}

var columns = []string{"call_id", "trunk", "upstream", "direction", "src_addr", "transport", "from_num", "to_num",
	"start_at", "answer_at", "end_at", "duration_ms", "final_code", "disposition", "stage", "reason",
	"caller_media", "callee_media", "identity"}

func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// Insert stores recs with one COPY (one transaction).
func (s *Store) Insert(ctx context.Context, recs []cdr.Record) error {
	rows := make([][]any, len(recs))
	for i, r := range recs {
		rows[i] = []any{r.CallID, r.Trunk, r.Upstream, r.Direction, r.SrcAddr, r.Transport, r.From, r.To,
			r.Start, nullTime(r.Answer), r.End, r.Duration.Milliseconds(), r.FinalCode, string(r.Disposition), r.Stage, r.Reason,
			r.CallerMedia, r.CalleeMedia, r.Identity}
	}
	_, err := s.pool.CopyFrom(ctx, pgx.Identifier{strings.Trim(s.table, `"`)}, columns, pgx.CopyFromRows(rows))
	return err
}

// List returns the records matching f, ordered by start time.
func (s *Store) List(ctx context.Context, f cdr.Filter) ([]cdr.Record, error) {
	var where []string
	var args []any
	if !f.Since.IsZero() {
		args = append(args, f.Since)
		where = append(where, fmt.Sprintf("start_at >= $%d", len(args)))
	}
	if !f.Until.IsZero() {
		args = append(args, f.Until)
		where = append(where, fmt.Sprintf("start_at < $%d", len(args)))
	}
	if f.Trunk != "" {
		args = append(args, f.Trunk)
		where = append(where, fmt.Sprintf("trunk = $%d", len(args)))
	}
	q := `SELECT id, ` + strings.Join(columns, ", ") + ` FROM ` + s.table
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY start_at, id"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []cdr.Record
	for rows.Next() {
		var r cdr.Record
		var answer *time.Time
		var durMS int64
		var disp string
		if err := rows.Scan(&r.ID, &r.CallID, &r.Trunk, &r.Upstream, &r.Direction, &r.SrcAddr, &r.Transport, &r.From, &r.To,
			&r.Start, &answer, &r.End, &durMS, &r.FinalCode, &disp, &r.Stage, &r.Reason, &r.CallerMedia, &r.CalleeMedia, &r.Identity); err != nil {
			return nil, err
		}
		r.Start, r.End = r.Start.UTC(), r.End.UTC()
		if answer != nil {
			r.Answer = answer.UTC()
		}
		r.Duration = time.Duration(durMS) * time.Millisecond
		r.Disposition = cdr.Disposition(disp)
		out = append(out, r)
	}
	return out, rows.Err()
}

// Close closes the pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}
