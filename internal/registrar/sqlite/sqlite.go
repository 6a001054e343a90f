// Package sqlite persists the registrar's bindings in an SQLite file (the
// embedded default, modernc.org/sqlite like the other stores), so that
// registrations survive a restart.
package sqlite

import (
	"database/sql"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/sipwarden/sipwarden/internal/registrar"
	"github.com/sipwarden/sipwarden/internal/sip"
)

// Store is a registrar store in one SQLite file.
type Store struct {
	db *sql.DB
}

var _ registrar.Store = (*Store)(nil)

// Open opens (creating if needed) the store at path.
func Open(path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	for _, q := range []string{
		`CREATE TABLE IF NOT EXISTS bindings (
			aor        TEXT NOT NULL,
			contact    TEXT NOT NULL,
			instance   TEXT NOT NULL,
			expires_ns INTEGER NOT NULL,
			source     TEXT NOT NULL,
			transport  TEXT NOT NULL,
			local      TEXT NOT NULL,
			user_agent TEXT NOT NULL,
			call_id    TEXT NOT NULL,
			cseq       INTEGER NOT NULL,
			updated_ns INTEGER NOT NULL,
			PRIMARY KEY (aor, contact)
		)`,
		`CREATE TABLE IF NOT EXISTS sources (
			aor  TEXT NOT NULL,
			seq  INTEGER NOT NULL,
			addr TEXT NOT NULL,
			PRIMARY KEY (aor, seq)
		)`,
	} {
		if _, err := db.Exec(q); err != nil {
			db.Close()
			return nil, fmt.Errorf("create registrar schema in %s: %w", path, err)
		}
	}
	return &Store{db: db}, nil
}

// LoadAORs returns every stored account.
func (s *Store) LoadAORs() (map[string]registrar.AOR, error) {
	out := map[string]registrar.AOR{}
	rows, err := s.db.Query(`SELECT aor, contact, instance, expires_ns, source, transport, local, user_agent, call_id, cseq, updated_ns FROM bindings`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var key, src, tr, local string
		var exp, upd int64
		var b registrar.Binding
		if err := rows.Scan(&key, &b.Contact, &b.Instance, &exp, &src, &tr, &local, &b.UserAgent, &b.CallID, &b.CSeq, &upd); err != nil {
			return nil, err
		}
		b.Expires, b.Updated = time.Unix(0, exp), time.Unix(0, upd)
		b.Source, _ = netip.ParseAddrPort(src)
		b.Local, _ = netip.ParseAddrPort(local)
		b.Transport = sip.ParseTransport([]byte(tr))
		a := out[key]
		a.Bindings = append(a.Bindings, b)
		out[key] = a
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	srows, err := s.db.Query(`SELECT aor, addr FROM sources ORDER BY aor, seq`)
	if err != nil {
		return nil, err
	}
	defer srows.Close()
	for srows.Next() {
		var key, addr string
		if err := srows.Scan(&key, &addr); err != nil {
			return nil, err
		}
		if ad, err := netip.ParseAddr(addr); err == nil {
			a := out[key]
			a.Known = append(a.Known, ad)
			out[key] = a
		}
	}
	return out, srows.Err()
}

// SaveAORs replaces the bindings and known sources of every key of aors in
// one transaction, with its statements prepared once.
func (s *Store) SaveAORs(aors map[string]registrar.AOR) (err error) {
	tx, err := s.db.Begin()
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	var stmts [4]*sql.Stmt
	for i, q := range []string{
		`DELETE FROM bindings WHERE aor = ?`,
		`DELETE FROM sources WHERE aor = ?`,
		`INSERT OR REPLACE INTO bindings (aor, contact, instance, expires_ns, source, transport, local, user_agent, call_id, cseq, updated_ns)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		`INSERT INTO sources (aor, seq, addr) VALUES (?, ?, ?)`,
	} {
		if stmts[i], err = tx.Prepare(q); err != nil {
			return err
		}
		defer stmts[i].Close()
	}
	delBindings, delSources, insBinding, insSource := stmts[0], stmts[1], stmts[2], stmts[3]
	for key, a := range aors {
		if _, err = delBindings.Exec(key); err != nil {
			return err
		}
		if _, err = delSources.Exec(key); err != nil {
			return err
		}
		for _, b := range a.Bindings {
			if _, err = insBinding.Exec(key, b.Contact, b.Instance, b.Expires.UnixNano(), b.Source.String(),
				b.Transport.String(), b.Local.String(), b.UserAgent, b.CallID, b.CSeq, b.Updated.UnixNano()); err != nil {
				return err
			}
		}
		for i, k := range a.Known {
			if _, err = insSource.Exec(key, i, k.String()); err != nil {
				return err
			}
		}
	}
	return tx.Commit()
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }
