// Package postgres is the CDR store for clusters: several sipwarden nodes
// write to one PostgreSQL database (pgx, a connection pool, one INSERT per
// batch from arrays, skipping records whose UID is already stored).
package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sipwarden/sipwarden/internal/cdr"
)

// Store is a CDR store in PostgreSQL.
type Store struct {
	pool   *pgxpool.Pool
	table  string
	insert string
	ddl    string

	mu     sync.Mutex
	schema bool // created (or found)
}

var _ cdr.Store = (*Store)(nil)

// Open connects to dsn and creates the schema if needed.
func Open(ctx context.Context, dsn string) (*Store, error) {
	return OpenTable(ctx, dsn, "sipwarden_cdr")
}

// OpenTable is Open with another table name (tests use a fresh table each).
func OpenTable(ctx context.Context, dsn, table string) (*Store, error) {
	s, err := OpenLaterTable(dsn, table)
	if err != nil {
		return nil, err
	}
	if err := s.ready(ctx); err != nil {
		s.pool.Close()
		return nil, err
	}
	return s, nil
}

// OpenLater is Open for a server that may be down: it only parses dsn. The
// connection and the schema come with the first call that reaches the
// server; until then every call fails.
func OpenLater(dsn string) (*Store, error) { return OpenLaterTable(dsn, "sipwarden_cdr") }

// OpenLaterTable is OpenLater with another table name.
func OpenLaterTable(dsn, table string) (*Store, error) {
	pool, err := pgxpool.New(context.Background(), dsn) // connects on first use
	if err != nil {
		return nil, err
	}
	s := &Store{pool: pool, table: pgx.Identifier{table}.Sanitize()}
	s.insert = insertSQL(s.table)
	s.ddl = fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %[1]s (
		id          BIGSERIAL PRIMARY KEY,
		uid         TEXT,
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
	ALTER TABLE %[1]s ADD COLUMN IF NOT EXISTS uid TEXT;
	CREATE INDEX IF NOT EXISTS %[2]s ON %[1]s (start_at);
	CREATE INDEX IF NOT EXISTS %[3]s ON %[1]s (trunk, start_at);
	CREATE UNIQUE INDEX IF NOT EXISTS %[4]s ON %[1]s (uid);`,
		s.table, pgx.Identifier{table + "_start"}.Sanitize(), pgx.Identifier{table + "_trunk_start"}.Sanitize(),
		pgx.Identifier{table + "_uid"}.Sanitize())
	return s, nil
}

// Unreachable reports whether err (from Open) says the server did not
// answer, rather than refused (a bad password, no such database, no right
// to create the table): a server that is down may come back, a refusal is a
// configuration error.
func Unreachable(err error) bool {
	var pe *pgconn.PgError
	return err != nil && !errors.As(err, &pe)
}

// ready creates the schema once the server answers.
func (s *Store) ready(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.schema {
		return nil
	}
	if err := s.pool.Ping(ctx); err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, s.ddl); err != nil {
		return fmt.Errorf("create CDR schema: %w", err)
	}
	s.schema = true
	return nil
}

var columns = []string{"uid", "call_id", "trunk", "upstream", "direction", "src_addr", "transport", "from_num", "to_num",
	"start_at", "answer_at", "end_at", "duration_ms", "final_code", "disposition", "stage", "reason",
	"caller_media", "callee_media", "identity"}

// columnTypes are the array types of columns, for unnest.
var columnTypes = []string{"text", "text", "text", "text", "text", "text", "text", "text", "text",
	"timestamptz", "timestamptz", "timestamptz", "bigint", "integer", "text", "text", "text",
	"text", "text", "text"}

func insertSQL(table string) string {
	var b strings.Builder
	b.WriteString("INSERT INTO " + table + " (" + strings.Join(columns, ", ") + ") SELECT * FROM unnest(")
	for i, t := range columnTypes {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d::%s[]", i+1, t)
	}
	b.WriteString(") ON CONFLICT (uid) DO NOTHING")
	return b.String()
}

// Insert stores recs with one INSERT (one transaction), their text escaped
// (cdr.EscapeText): PostgreSQL's text takes neither NUL nor invalid UTF-8.
// A record whose UID is already stored is skipped.
func (s *Store) Insert(ctx context.Context, recs []cdr.Record) error {
	if len(recs) == 0 {
		return nil
	}
	if err := s.ready(ctx); err != nil {
		return classify(err)
	}
	n := len(recs)
	var (
		uid                                                              = make([]*string, n)
		callID, trunk, upstream, direction, srcAddr, transport, from, to = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		start, end                                                       = make([]time.Time, n), make([]time.Time, n)
		answer                                                           = make([]*time.Time, n)
		durMS                                                            = make([]int64, n)
		code                                                             = make([]int32, n)
		disp, stage, reason, callerMedia, calleeMedia, identity          = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	)
	for i, r := range recs {
		r = cdr.EscapeRecord(r)
		if r.UID != "" {
			uid[i] = &r.UID
		}
		callID[i], trunk[i], upstream[i], direction[i], srcAddr[i], transport[i], from[i], to[i] =
			r.CallID, r.Trunk, r.Upstream, r.Direction, r.SrcAddr, r.Transport, r.From, r.To
		start[i], end[i] = r.Start, r.End
		if !r.Answer.IsZero() {
			answer[i] = &r.Answer
		}
		durMS[i], code[i] = r.Duration.Milliseconds(), int32(r.FinalCode)
		disp[i], stage[i], reason[i], callerMedia[i], calleeMedia[i], identity[i] =
			string(r.Disposition), r.Stage, r.Reason, r.CallerMedia, r.CalleeMedia, r.Identity
	}
	_, err := s.pool.Exec(ctx, s.insert, uid, callID, trunk, upstream, direction, srcAddr, transport, from, to,
		start, answer, end, durMS, code, disp, stage, reason, callerMedia, calleeMedia, identity)
	return classify(err)
}

// classify marks the server's errors that are not about the records
// (anything but a data exception, an integrity violation or a program
// limit: the statement is fixed, so the rest is the server's state) as
// cdr.ErrUnavailable. Other errors (the connection) are left to the
// writer's ping.
func classify(err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return err
	}
	switch {
	case strings.HasPrefix(pe.Code, "22"), strings.HasPrefix(pe.Code, "23"), strings.HasPrefix(pe.Code, "54"):
		return err
	}
	return cdr.Unavailable(err)
}

// Ping reports whether the server answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	return s.pool.Ping(ctx)
}

// List returns the records matching f, ordered by start time, their text
// as stored (escaped).
func (s *Store) List(ctx context.Context, f cdr.Filter) ([]cdr.Record, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
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
		args = append(args, cdr.EscapeText(f.Trunk))
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
		var uid *string
		if err := rows.Scan(&r.ID, &uid, &r.CallID, &r.Trunk, &r.Upstream, &r.Direction, &r.SrcAddr, &r.Transport, &r.From, &r.To,
			&r.Start, &answer, &r.End, &durMS, &r.FinalCode, &disp, &r.Stage, &r.Reason, &r.CallerMedia, &r.CalleeMedia, &r.Identity); err != nil {
			return nil, err
		}
		if uid != nil {
			r.UID = *uid
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
