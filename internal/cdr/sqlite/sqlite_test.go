package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

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

// A CDR file written before the media columns existed is upgraded in place
// and its records are kept.
func TestUpgradesVersion1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cdr.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version VALUES (1);
		CREATE TABLE cdr (id INTEGER PRIMARY KEY AUTOINCREMENT, call_id TEXT NOT NULL, trunk TEXT NOT NULL, upstream TEXT NOT NULL,
		direction TEXT NOT NULL, src_addr TEXT NOT NULL, transport TEXT NOT NULL, from_num TEXT NOT NULL, to_num TEXT NOT NULL,
		start_ns INTEGER NOT NULL, answer_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL, duration_ms INTEGER NOT NULL,
		final_code INTEGER NOT NULL, disposition TEXT NOT NULL, stage TEXT NOT NULL, reason TEXT NOT NULL);
		INSERT INTO cdr (call_id, trunk, upstream, direction, src_addr, transport, from_num, to_num, start_ns, answer_ns, end_ns,
		duration_ms, final_code, disposition, stage, reason) VALUES ('old', 'acme', 'pbx', 'originating', '192.0.2.1:5060', 'UDP',
		'+1', '+2', 1000, 0, 2000, 0, 486, 'busy', '', '')`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Insert(context.Background(), []cdr.Record{{CallID: "new", Start: time.Unix(3, 0), End: time.Unix(4, 0),
		Disposition: cdr.Answered, CallerMedia: "srtp:AES_CM_128_HMAC_SHA1_80", CalleeMedia: "rtp"}}); err != nil {
		t.Fatal(err)
	}
	recs, err := s.List(context.Background(), cdr.Filter{})
	if err != nil || len(recs) != 2 || recs[0].CallID != "old" || recs[0].CallerMedia != "" || recs[1].CalleeMedia != "rtp" {
		t.Fatalf("after the upgrade: %+v %v", recs, err)
	}
}
