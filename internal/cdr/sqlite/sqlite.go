// Package sqlite is the embedded CDR store: one SQLite file in WAL mode,
// through the pure-Go driver modernc.org/sqlite (no cgo, one static binary).
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite" // the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/sipwarden/sipwarden/internal/cdr"
)

// Store is a CDR store in one SQLite file.
type Store struct {
	db *sql.DB
}

var _ cdr.Store = (*Store)(nil)

const schema = `
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS cdr (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	uid         TEXT,
	call_id     TEXT NOT NULL,
	trunk       TEXT NOT NULL,
	upstream    TEXT NOT NULL,
	direction   TEXT NOT NULL,
	src_addr    TEXT NOT NULL,
	transport   TEXT NOT NULL,
	from_num    TEXT NOT NULL,
	to_num      TEXT NOT NULL,
	start_ns    INTEGER NOT NULL,
	answer_ns   INTEGER NOT NULL,
	end_ns      INTEGER NOT NULL,
	duration_ms INTEGER NOT NULL,
	final_code  INTEGER NOT NULL,
	disposition TEXT NOT NULL,
	stage       TEXT NOT NULL,
	reason      TEXT NOT NULL,
	caller_media TEXT NOT NULL DEFAULT '',
	callee_media TEXT NOT NULL DEFAULT '',
	identity    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS cdr_start ON cdr (start_ns);
CREATE INDEX IF NOT EXISTS cdr_trunk_start ON cdr (trunk, start_ns);
`

// Open opens (creating if needed) the store at path.
func Open(path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(ON)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1) // SQLite has one writer; one connection avoids SQLITE_BUSY between our own goroutines
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("create CDR schema in %s: %w", path, err)
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM schema_version`).Scan(&n); err == nil && n == 0 {
		_, _ = db.Exec(`INSERT INTO schema_version (version) VALUES (1)`)
	}
	if err := migrate(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("upgrade CDR schema in %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// migrate adds the columns later versions introduced to a file an earlier
// version created (version 2: the media security of both legs and the
// STIR/SHAKEN outcome; version 3: the record's unique id, NULL in older rows).
func migrate(db *sql.DB) error {
	for _, col := range []struct{ name, def string }{
		{"caller_media", "TEXT NOT NULL DEFAULT ''"}, {"callee_media", "TEXT NOT NULL DEFAULT ''"},
		{"identity", "TEXT NOT NULL DEFAULT ''"}, {"uid", "TEXT"},
	} {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM pragma_table_info('cdr') WHERE name = ?`, col.name).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			if _, err := db.Exec(`ALTER TABLE cdr ADD COLUMN ` + col.name + ` ` + col.def); err != nil {
				return err
			}
		}
	}
	if _, err := db.Exec(`CREATE UNIQUE INDEX IF NOT EXISTS cdr_uid ON cdr (uid)`); err != nil {
		return err
	}
	_, err := db.Exec(`UPDATE schema_version SET version = 3 WHERE version < 3`)
	return err
}

func ns(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNS(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// Insert stores recs in one transaction, their text escaped
// (cdr.EscapeText); a record whose UID is already stored is skipped.
func (s *Store) Insert(ctx context.Context, recs []cdr.Record) error {
	return classify(s.insert(ctx, recs))
}

// classify marks SQLite's errors that are not about the records (busy,
// locked, full, I/O, read-only, interrupted...) as cdr.ErrUnavailable: only
// a constraint, a mismatch or a value too big is the records' fault.
func classify(err error) error {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_TOOBIG, sqlite3.SQLITE_CONSTRAINT, sqlite3.SQLITE_MISMATCH, sqlite3.SQLITE_RANGE:
		return err
	}
	return cdr.Unavailable(err)
}

func (s *Store) insert(ctx context.Context, recs []cdr.Record) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO cdr (uid, call_id, trunk, upstream, direction, src_addr, transport,
		from_num, to_num, start_ns, answer_ns, end_ns, duration_ms, final_code, disposition, stage, reason,
		caller_media, callee_media, identity)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (uid) DO NOTHING`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for _, r := range recs {
		r = cdr.EscapeRecord(r)
		if _, err := stmt.ExecContext(ctx, nullString(r.UID), r.CallID, r.Trunk, r.Upstream, r.Direction, r.SrcAddr, r.Transport,
			r.From, r.To, ns(r.Start), ns(r.Answer), ns(r.End), r.Duration.Milliseconds(), r.FinalCode,
			string(r.Disposition), r.Stage, r.Reason, r.CallerMedia, r.CalleeMedia, r.Identity); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// List returns the records matching f, ordered by start time, their text
// as stored (escaped).
func (s *Store) List(ctx context.Context, f cdr.Filter) ([]cdr.Record, error) {
	var where []string
	var args []any
	if !f.Since.IsZero() {
		where = append(where, "start_ns >= ?")
		args = append(args, f.Since.UnixNano())
	}
	if !f.Until.IsZero() {
		where = append(where, "start_ns < ?")
		args = append(args, f.Until.UnixNano())
	}
	if f.Trunk != "" {
		where = append(where, "trunk = ?")
		args = append(args, cdr.EscapeText(f.Trunk))
	}
	q := `SELECT id, uid, call_id, trunk, upstream, direction, src_addr, transport, from_num, to_num,
		start_ns, answer_ns, end_ns, duration_ms, final_code, disposition, stage, reason, caller_media, callee_media, identity FROM cdr`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY start_ns, id"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []cdr.Record
	for rows.Next() {
		var r cdr.Record
		var start, answer, end, durMS int64
		var disp string
		var uid sql.NullString
		if err := rows.Scan(&r.ID, &uid, &r.CallID, &r.Trunk, &r.Upstream, &r.Direction, &r.SrcAddr, &r.Transport,
			&r.From, &r.To, &start, &answer, &end, &durMS, &r.FinalCode, &disp, &r.Stage, &r.Reason,
			&r.CallerMedia, &r.CalleeMedia, &r.Identity); err != nil {
			return nil, err
		}
		r.UID = uid.String
		r.Start, r.Answer, r.End = fromNS(start), fromNS(answer), fromNS(end)
		r.Duration = time.Duration(durMS) * time.Millisecond
		r.Disposition = cdr.Disposition(disp)
		out = append(out, r)
	}
	return out, rows.Err()
}

// Ping reports whether the database file answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }
