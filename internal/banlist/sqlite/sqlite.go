// Package sqlite persists the ban list in an SQLite file (the embedded
// default), so that bans survive a restart and the `sipwarden ban` command
// can add and lift bans while sipwarden runs.
package sqlite

import (
	"database/sql"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/sipwarden/sipwarden/internal/banlist"
)

// Store is a ban store in one SQLite file.
type Store struct {
	db *sql.DB
}

var _ banlist.Store = (*Store)(nil)

// Open opens (creating if needed) the store at path.
func Open(path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)")
	if err != nil {
		return nil, err
	}
	// One connection: PRAGMA data_version then tells changes by other processes.
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS bans (
		prefix     TEXT PRIMARY KEY,
		reason     TEXT NOT NULL,
		source     TEXT NOT NULL,
		created_ns INTEGER NOT NULL,
		expires_ns INTEGER NOT NULL,
		offense    INTEGER NOT NULL,
		spares_peers INTEGER NOT NULL DEFAULT 0
	)`); err != nil {
		db.Close()
		return nil, fmt.Errorf("create ban schema in %s: %w", path, err)
	}
	if err := migrate(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("upgrade ban schema in %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// migrate adds the columns that later versions introduced to a file an
// earlier version created.
func migrate(db *sql.DB) error {
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM pragma_table_info('bans') WHERE name = 'spares_peers'`).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		_, err := db.Exec(`ALTER TABLE bans ADD COLUMN spares_peers INTEGER NOT NULL DEFAULT 0`)
		return err
	}
	return nil
}

// LoadBans returns every stored ban.
func (s *Store) LoadBans() ([]banlist.Ban, error) {
	rows, err := s.db.Query(`SELECT prefix, reason, source, created_ns, expires_ns, offense, spares_peers FROM bans`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []banlist.Ban
	for rows.Next() {
		var p string
		var created, expires int64
		var b banlist.Ban
		if err := rows.Scan(&p, &b.Reason, &b.Source, &created, &expires, &b.Offense, &b.SparesPeers); err != nil {
			return nil, err
		}
		pf, err := netip.ParsePrefix(p)
		if err != nil {
			continue // a row another version wrote: skip, never fail the start
		}
		b.Prefix = pf
		b.Created = time.Unix(0, created).UTC()
		if expires != 0 {
			b.Expires = time.Unix(0, expires).UTC()
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// SaveBan inserts or replaces a ban.
func (s *Store) SaveBan(b banlist.Ban) error {
	var expires int64
	if !b.Expires.IsZero() {
		expires = b.Expires.UnixNano()
	}
	_, err := s.db.Exec(`INSERT INTO bans (prefix, reason, source, created_ns, expires_ns, offense, spares_peers) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(prefix) DO UPDATE SET reason = excluded.reason, source = excluded.source, created_ns = excluded.created_ns,
		expires_ns = excluded.expires_ns, offense = excluded.offense, spares_peers = excluded.spares_peers`,
		b.Prefix.String(), b.Reason, b.Source, b.Created.UnixNano(), expires, b.Offense, b.SparesPeers)
	return err
}

// DeleteBan removes a ban.
func (s *Store) DeleteBan(p netip.Prefix) error {
	_, err := s.db.Exec(`DELETE FROM bans WHERE prefix = ?`, p.String())
	return err
}

// Version changes when another connection (another process) committed changes.
func (s *Store) Version() (int64, error) {
	var v int64
	err := s.db.QueryRow(`PRAGMA data_version`).Scan(&v)
	return v, err
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }
