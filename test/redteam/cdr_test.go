package redteam

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sipwarden/sipwarden/test/testbed"
)

// cdrPGConfig is the test configuration with the PostgreSQL CDR store at
// Extra.dsn, and storage.path at Extra.data when given (a restart on the
// same journal).
const cdrPGConfig = `
listen:
  - udp://127.0.0.1:{{.SIPPort}}
admin: {listen: "127.0.0.1:{{.AdminPort}}"}
storage: {path: "{{with index .Extra "data"}}{{.}}{{else}}{{$.Dir}}/data{{end}}"}
log: {level: info}
sip: {drain_timeout: 2s}
unknown_sources: drop
cdr: {backend: postgres, dsn: "{{index .Extra "dsn"}}", flush_interval: 200ms}
upstreams:
  - name: pbx
    targets: ["udp://127.0.0.3:{{.PBXPort}}"]
trunks:
  - name: acme
    auth: ip
    allow: [127.0.0.2/32]
    upstream: pbx
    numbers: ["+15551230000/4"]
    targets: ["udp://127.0.0.2:5070"]
    flood: {invite: "off", other: "off"} # 200 calls/s is this trunk's normal traffic
`

// pgAdminDSN is the PostgreSQL server the tests use (CI runs one on
// 127.0.0.1:5432, user postgres, trust).
func pgAdminDSN() string {
	if d := os.Getenv("SIPWARDEN_TEST_POSTGRES_DSN"); d != "" {
		return d
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// pgDatabase creates a database of the test's own (dropped at its end) and
// returns a connection to it and its DSN with the host and port replaced by
// hostport. In CI a missing PostgreSQL fails the test.
func pgDatabase(t *testing.T, hostport string) (*pgx.Conn, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, pgAdminDSN())
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("PostgreSQL at %s: %v (CI must run it)", pgAdminDSN(), err)
		}
		t.Skipf("no PostgreSQL at %s: %v", pgAdminDSN(), err)
	}
	name := fmt.Sprintf("sw_redteam_cdr_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		admin.Close(ctx)
		t.Fatal(err)
	}
	cfg := admin.Config()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		admin.Close(ctx)
	})
	direct := fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Host, cfg.Port, name)
	conn, err := pgx.Connect(ctx, direct)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if hostport == "" {
		hostport = fmt.Sprintf("%s:%d", cfg.Host, cfg.Port)
	}
	return conn, fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", cfg.User, hostport, name)
}

// cdrCount is how many CDRs the edge stored, and how many distinct Call-IDs
// they have (-1 before the edge created its table).
func cdrCount(t *testing.T, db *pgx.Conn, where string) (n, distinct int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := db.QueryRow(ctx, "SELECT count(*), count(DISTINCT call_id) FROM sipwarden_cdr "+where).Scan(&n, &distinct); err != nil {
		return -1, -1
	}
	return n, distinct
}

// waitCDRs waits (bounded) until the store holds want CDRs matching where.
func waitCDRs(t *testing.T, db *pgx.Conn, where string, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		n, d := cdrCount(t, db, where)
		if n == want && d == want {
			return
		}
		if n > want || d != n {
			t.Fatalf("CDRs %s: %d stored for %d Call-IDs, want %d once each", where, n, d, want)
		}
		if time.Now().After(deadline) {
			t.Fatalf("CDRs %s: %d of %d arrived within %v", where, n, want, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestInvalidUTF8CallIDDoesNotStallCDRs: one INVITE whose Call-ID holds the
// byte 0xff (Max-Forwards: 0 makes its CDR at once) made PostgreSQL refuse
// the CDR batch; the writer retried it forever and no later CDR was stored.
// Now the Call-ID is stored escaped (\xff) and the calls after it are
// recorded.
func TestInvalidUTF8CallIDDoesNotStallCDRs(t *testing.T) {
	testbed.RequireTool(t, "sipp", "sip-tester")
	db, dsn := pgDatabase(t, "")
	pbx := testbed.FreePort(t)
	testbed.StartUAS(t, "uas.xml", pbx)
	e := testbed.StartEdge(t, cdrPGConfig, pbx, map[string]any{"dsn": dsn})

	ua := testbed.NewRawUA(t, "udp", "127.0.0.2")
	callID := "bad\xff\xfe-" + fmt.Sprint(time.Now().UnixNano()) + "@127.0.0.2"
	inv := strings.Replace(ua.InviteText(e.SIPAddr(), callID, "z9hG4bK-badutf8", 1), "Max-Forwards: 70", "Max-Forwards: 0", 1)
	ua.Send(e.SIPAddr(), inv)
	if m := ua.Recv(3 * time.Second); m == nil || m.Code != 483 {
		t.Fatalf("the INVITE with Max-Forwards: 0 got %+v, want 483", m)
	}
	// The calls after it are recorded.
	res := testbed.RunSipp(t, 60*time.Second, testbed.UACArgs("uac.xml", e.SIPAddr(), 10, 10)...)
	if res.Successful != 10 || res.Failed != 0 {
		t.Fatalf("calls after the bad INVITE: %s", testbed.FmtCalls(res))
	}
	waitCDRs(t, db, "WHERE disposition = 'answered'", 10, 15*time.Second)
	// So is the CDR of the refused INVITE, its Call-ID escaped.
	waitCDRs(t, db, `WHERE call_id LIKE 'bad\\xff\\xfe-%'`, 1, 5*time.Second)
	if v := e.Metric("sipwarden_cdr_dead_letters_total"); v != 0 {
		t.Errorf("dead letters %v: the escaped record should have been stored", v)
	}
}

// pgCut is a TCP proxy between the edge and PostgreSQL that the test can
// cut (every connection closed, new ones closed at once) and restore: a
// PostgreSQL outage for the edge alone, without stopping the server other
// tests use. (Revoking CONNECT on a dedicated database would not do: it
// leaves the edge's pooled connections open.)
type pgCut struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func startPGCut(t *testing.T, target string) *pgCut {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &pgCut{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	c.wg.Add(1)
	go c.serve()
	t.Cleanup(func() {
		ln.Close()
		c.setDown(true)
		c.wg.Wait()
	})
	return c
}

func (c *pgCut) addr() string { return c.ln.Addr().String() }

func (c *pgCut) serve() {
	defer c.wg.Done()
	for {
		in, err := c.ln.Accept()
		if err != nil {
			return
		}
		c.mu.Lock()
		down := c.down
		c.mu.Unlock()
		if down {
			in.Close()
			continue
		}
		out, err := net.DialTimeout("tcp", c.target, 5*time.Second)
		if err != nil {
			in.Close()
			continue
		}
		c.mu.Lock()
		if c.down {
			c.mu.Unlock()
			in.Close()
			out.Close()
			continue
		}
		c.conns[in], c.conns[out] = struct{}{}, struct{}{}
		c.mu.Unlock()
		c.wg.Add(2)
		pipe := func(dst, src net.Conn) {
			defer c.wg.Done()
			_, _ = io.Copy(dst, src)
			dst.Close()
			src.Close()
			c.mu.Lock()
			delete(c.conns, dst)
			delete(c.conns, src)
			c.mu.Unlock()
		}
		go pipe(in, out)
		go pipe(out, in)
	}
}

func (c *pgCut) setDown(down bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down = down
	if down {
		for conn := range c.conns {
			conn.Close()
		}
	}
}

// TestCDRStoreOutageDoesNotBlockCalls: PostgreSQL is cut off from the edge
// for 30 s under 200 calls/s. No call is refused or delayed (SIPp fails a
// call whose answer takes over 3 s), the CDRs wait in the local journal and
// each arrives once when the store is back. Then the store is cut again and
// the edge stopped with CDRs still journaled (before, the stop lost them
// after retrying for 30 s); it starts again while PostgreSQL is still away
// (before, it could not start), takes calls, and when PostgreSQL is back
// every CDR is stored once.
func TestCDRStoreOutageDoesNotBlockCalls(t *testing.T) {
	testbed.RequireTool(t, "sipp", "sip-tester")
	cut := startPGCut(t, pgAdminDSNHost())
	db, dsn := pgDatabase(t, cut.addr())
	pbx := testbed.FreePort(t)
	testbed.StartUAS(t, "uas.xml", pbx)
	e := testbed.StartEdge(t, cdrPGConfig, pbx, map[string]any{"dsn": dsn})

	res := testbed.RunSipp(t, 60*time.Second, testbed.UACArgs("uac.xml", e.SIPAddr(), 20, 20)...)
	if res.Successful != 20 {
		t.Fatalf("warm-up calls: %s", testbed.FmtCalls(res))
	}
	waitCDRs(t, db, "", 20, 15*time.Second)

	// 30 s without PostgreSQL at 200 calls/s.
	cut.setDown(true)
	start := time.Now()
	res = testbed.RunSipp(t, 90*time.Second, testbed.UACArgs("uac.xml", e.SIPAddr(), 6000, 200, "-recv_timeout", "3000")...)
	outage := time.Since(start)
	if res.Successful != 6000 || res.Failed != 0 {
		t.Fatalf("calls while PostgreSQL was away: %s\n%s", testbed.FmtCalls(res), res.Screen)
	}
	if outage > 40*time.Second {
		t.Errorf("6000 calls at 200/s took %v while PostgreSQL was away", outage)
	}
	if n, _ := cdrCount(t, db, ""); n != 20 {
		t.Fatalf("%d CDRs in PostgreSQL while it was cut off, want the 20 of before", n)
	}
	if up, backlog, jb := e.Metric("sipwarden_cdr_store_up"), e.Metric("sipwarden_cdr_backlog"), e.Metric("sipwarden_cdr_journal_bytes"); up != 0 || backlog < 5000 || jb <= 0 {
		t.Errorf("during the outage: store_up %v, backlog %v, journal bytes %v", up, backlog, jb)
	}
	t.Logf("outage of %v; backlog %v CDRs", outage, e.Metric("sipwarden_cdr_backlog"))
	cut.setDown(false)
	waitCDRs(t, db, "", 6020, 60*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for e.Metric("sipwarden_cdr_backlog") != 0 || e.Metric("sipwarden_cdr_journal_bytes") != 0 {
		if time.Now().After(deadline) {
			t.Errorf("after the outage: backlog %v, journal %v bytes", e.Metric("sipwarden_cdr_backlog"), e.Metric("sipwarden_cdr_journal_bytes"))
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if lost := e.Metric("sipwarden_cdr_lost_total"); lost != 0 {
		t.Errorf("%v CDRs lost", lost)
	}

	// Cut again, and stop the edge with CDRs in its journal.
	cut.setDown(true)
	res = testbed.RunSipp(t, 60*time.Second, testbed.UACArgs("uac.xml", e.SIPAddr(), 200, 100, "-recv_timeout", "3000")...)
	if res.Successful != 200 || res.Failed != 0 {
		t.Fatalf("calls before the stop: %s", testbed.FmtCalls(res))
	}
	stopped := time.Now()
	e.Stop()
	if d := time.Since(stopped); d > 15*time.Second {
		t.Errorf("the stop took %v with PostgreSQL away", d)
	}
	data := filepath.Join(e.Dir, "data")
	if fi, err := os.Stat(filepath.Join(data, "cdr-journal.jsonl")); err != nil || fi.Size() == 0 {
		t.Fatalf("no journal left by the stop: %v %v", fi, err)
	}
	// It starts again while PostgreSQL is still away, takes calls, and
	// stores everything once PostgreSQL is back.
	e2 := testbed.StartEdge(t, cdrPGConfig, pbx, map[string]any{"dsn": dsn, "data": data})
	res = testbed.RunSipp(t, 60*time.Second, testbed.UACArgs("uac.xml", e2.SIPAddr(), 200, 100, "-recv_timeout", "3000")...)
	if res.Successful != 200 || res.Failed != 0 {
		t.Fatalf("calls after a start without PostgreSQL: %s", testbed.FmtCalls(res))
	}
	if n, _ := cdrCount(t, db, ""); n != 6020 {
		t.Fatalf("%d CDRs in PostgreSQL while it was cut off, want 6020", n)
	}
	cut.setDown(false)
	waitCDRs(t, db, "", 6420, 30*time.Second)
	e2.Stop()
	if n, d := cdrCount(t, db, ""); n != 6420 || d != 6420 {
		t.Fatalf("after the restart: %d CDRs for %d Call-IDs, want 6420 once each", n, d)
	}
	if fi, err := os.Stat(filepath.Join(data, "cdr-journal.jsonl")); err != nil || fi.Size() != 0 {
		t.Errorf("journal after the replay: %v %v", fi, err)
	}
}

// pgAdminDSNHost is host:port of pgAdminDSN.
func pgAdminDSNHost() string {
	cfg, err := pgx.ParseConfig(pgAdminDSN())
	if err != nil {
		return "127.0.0.1:5432"
	}
	return fmt.Sprintf("%s:%d", cfg.Host, cfg.Port)
}
