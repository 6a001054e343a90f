package events

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// The peer of these tests is a real SMTP server (emersion/go-smtp) on
// loopback, with STARTTLS under a test certificate; it records what each
// session did, and every byte the client sent on the wire.

type mailServer struct {
	addr  string
	roots *x509.CertPool

	mu       sync.Mutex
	sessions int      // connections accepted
	auths    []string // "user:pass" of every AUTH
	tlsAuth  []bool   // whether each AUTH came over TLS
	mails    []sentMail
	failData int    // answer 451 to this many DATA commands first
	wire     []byte // what clients sent, before TLS
}

type sentMail struct {
	from string
	to   []string
	data []byte
	tls  bool
}

type mailSession struct {
	srv  *mailServer
	conn *smtp.Conn
	cur  sentMail
}

func (s *mailSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *mailSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		_, isTLS := s.conn.TLSConnectionState()
		s.srv.mu.Lock()
		defer s.srv.mu.Unlock()
		s.srv.auths = append(s.srv.auths, user+":"+pass)
		s.srv.tlsAuth = append(s.srv.tlsAuth, isTLS)
		if user != "alerts" || pass != "pa55word" {
			return errors.New("invalid credentials")
		}
		return nil
	}), nil
}

func (s *mailSession) Mail(from string, _ *smtp.MailOptions) error {
	s.cur = sentMail{from: from}
	return nil
}

func (s *mailSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.cur.to = append(s.cur.to, to)
	return nil
}

func (s *mailSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	if s.srv.failData > 0 {
		s.srv.failData--
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	}
	_, s.cur.tls = s.conn.TLSConnectionState()
	s.cur.data = b
	s.srv.mails = append(s.srv.mails, s.cur)
	return nil
}

func (s *mailSession) Reset()        { s.cur = sentMail{} }
func (s *mailSession) Logout() error { return nil }

// recordingListener keeps a copy of every byte clients send (the wire as
// an eavesdropper sees it: after STARTTLS, ciphertext).
type recordingListener struct {
	net.Listener
	srv *mailServer
}

func (l recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.srv.mu.Lock()
	l.srv.sessions++
	l.srv.mu.Unlock()
	return recordingConn{c, l.srv}, nil
}

type recordingConn struct {
	net.Conn
	srv *mailServer
}

func (c recordingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.srv.mu.Lock()
	c.srv.wire = append(c.srv.wire, b[:n]...)
	c.srv.mu.Unlock()
	return n, err
}

// startMailServer runs a server on 127.0.0.1; withTLS offers STARTTLS with
// a certificate for 127.0.0.1 (implicit: TLS from the first byte).
func startMailServer(t *testing.T, withTLS, implicit bool) *mailServer {
	t.Helper()
	ms := &mailServer{}
	be := smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &mailSession{srv: ms, conn: c}, nil
	})
	srv := smtp.NewServer(be)
	srv.Domain = "mx.test"
	srv.ReadTimeout, srv.WriteTimeout = 5*time.Second, 5*time.Second
	srv.AllowInsecureAuth = true // offer AUTH even in plain text: the client must refuse
	srv.ErrorLog = discardLogger{}
	var cfg *tls.Config
	if withTLS || implicit {
		cert, pool := testCert(t, "127.0.0.1")
		cfg = &tls.Config{Certificates: []tls.Certificate{cert}}
		ms.roots = pool
		srv.TLSConfig = cfg
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var l net.Listener = recordingListener{ln, ms}
	if implicit {
		l = tls.NewListener(l, cfg)
	}
	ms.addr = ln.Addr().String()
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ms
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}
func (discardLogger) Println(...any)        {}

// testCert is a self-signed certificate for ip, and a pool that trusts it.
func testCert(t *testing.T, ip string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mx.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP(ip)}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

func (ms *mailServer) snapshot() (sessions int, auths []string, mails []sentMail) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.sessions, append([]string(nil), ms.auths...), append([]sentMail(nil), ms.mails...)
}

// testEmail is a sink configuration for ms with short timings.
func testEmail(ms *mailServer, bus *Bus) Email {
	return Email{Server: ms.addr, TLS: TLSStartTLS, RootCAs: ms.roots, Username: "alerts", Password: "pa55word",
		From: "sipwarden <sipwarden@edge.example>", To: []string{"ops@example.net", "Night Desk <noc@example.net>"},
		Flush: 30 * time.Millisecond, MinInterval: 30 * time.Millisecond, Timeout: 3 * time.Second, MaxTries: 3,
		Bus: bus, Hostname: "edge1.example", retryWait: 20 * time.Millisecond}
}

// runEmail starts the sink on its own subscription of bus; the returned
// function stops it and waits.
func runEmail(t *testing.T, e Email, bus *Bus) (*EmailMetrics, func()) {
	t.Helper()
	sink, err := NewEmailSink(e)
	if err != nil {
		t.Fatal(err)
	}
	sub := bus.Subscribe("email", 64)
	met := NewEmailMetrics(nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		sink.Run(ctx, sub, met, nil)
	}()
	stop := func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("e-mail sink did not stop within 5s")
		}
	}
	t.Cleanup(stop)
	return met, stop
}

// parseMail parses a delivered message and decodes its body.
func parseMail(t *testing.T, data []byte) (*mail.Message, string) {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("not an RFC 5322 message: %v\n%s", err, data)
	}
	if m.Header.Get("Content-Transfer-Encoding") != "quoted-printable" {
		t.Fatalf("transfer encoding %q", m.Header.Get("Content-Transfer-Encoding"))
	}
	body, err := io.ReadAll(quotedprintable.NewReader(m.Body))
	if err != nil {
		t.Fatal(err)
	}
	return m, string(body)
}

var msgIDRe = regexp.MustCompile(`^<[0-9a-f]{32}\.\d+@edge\.example>$`)

// A burst of events becomes one mail, sent over STARTTLS after AUTH, with
// proper headers and one line per event; the password never crosses the
// wire in clear.
func TestEmailDigest(t *testing.T) {
	ms := startMailServer(t, true, false)
	bus := NewBus()
	met, stop := runEmail(t, testEmail(ms, bus), bus)
	now := time.Now()
	src := netip.MustParseAddrPort("192.0.2.7:5060")
	bus.Publish(Event{Time: now, Kind: FraudIncident, Stage: "fraud", Reason: "irsf", Trunk: "acme", Detail: "rule=irsf metric=score value=25 limit=20"})
	bus.Publish(Event{Time: now, Kind: Ban, Stage: "banlist", Reason: "flood_invite", Detail: "ban 192.0.2.0/24 by flood"})
	bus.Publish(Event{Time: now, Kind: AccountLocked, Stage: "auth", Reason: "distributed_guessing", Src: src, Trunk: "phones"})
	bus.Publish(Event{Time: now, Kind: UnknownSource, Src: src}) // not a default kind
	// the sink counts the events delivered once the server took the mail
	waitFor(t, "a mail", func() bool { return counter(t, met.events, "delivered") > 0 })
	stop() // what is left at shutdown is mailed: a second mail would show

	sessions, auths, mails := ms.snapshot()
	if len(mails) != 1 || sessions != 1 {
		t.Fatalf("%d mails in %d sessions, want 1 digest", len(mails), sessions)
	}
	if len(auths) != 1 || auths[0] != "alerts:pa55word" || !ms.tlsAuth[0] || !mails[0].tls {
		t.Fatalf("auth %v (over TLS %v), mail over TLS %v", auths, ms.tlsAuth, mails[0].tls)
	}
	if mails[0].from != "sipwarden@edge.example" || strings.Join(mails[0].to, ",") != "ops@example.net,noc@example.net" {
		t.Fatalf("envelope from %q to %v", mails[0].from, mails[0].to)
	}
	m, body := parseMail(t, mails[0].data)
	subj, err := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
	if err != nil {
		t.Fatal(err)
	}
	date, err := m.Header.Date()
	hdr := map[string]string{
		"From":         m.Header.Get("From"),
		"To":           m.Header.Get("To"),
		"Subject":      subj,
		"Content-Type": m.Header.Get("Content-Type"),
		"MIME-Version": m.Header.Get("MIME-Version"),
	}
	want := map[string]string{
		"From":         `"sipwarden" <sipwarden@edge.example>`,
		"To":           `<ops@example.net>, "Night Desk" <noc@example.net>`,
		"Subject":      "[sipwarden] 3 events: fraud_incident (1), ban (1), account_locked (1)",
		"Content-Type": "text/plain; charset=utf-8",
		"MIME-Version": "1.0",
	}
	for k, w := range want {
		if hdr[k] != w {
			t.Errorf("%s: %q, want %q", k, hdr[k], w)
		}
	}
	if err != nil || date.Sub(now).Abs() > time.Minute {
		t.Errorf("Date %q: %v", m.Header.Get("Date"), err)
	}
	if id := m.Header.Get("Message-ID"); !msgIDRe.MatchString(id) {
		t.Errorf("Message-ID %q", id)
	}
	for _, line := range []string{
		"fraud_incident trunk=acme reason=irsf: rule=irsf metric=score value=25 limit=20",
		"ban reason=flood_invite: ban 192.0.2.0/24 by flood",
		"account_locked trunk=phones src=192.0.2.7 reason=distributed_guessing",
		"sipwarden on edge1.example: 3 events from ",
	} {
		if !strings.Contains(body, line) {
			t.Errorf("body lacks %q:\n%s", line, body)
		}
	}
	if strings.Contains(body, "unknown_source") {
		t.Errorf("a kind not asked for was mailed:\n%s", body)
	}
	ms.mu.Lock()
	wire := string(ms.wire)
	ms.mu.Unlock()
	if !strings.Contains(wire, "STARTTLS") || strings.Contains(wire, "pa55word") ||
		strings.Contains(wire, base64.StdEncoding.EncodeToString([]byte("\x00alerts\x00pa55word"))) {
		t.Errorf("the wire shows the password or no STARTTLS:\n%q", wire)
	}
	if got := counter(t, met.events, "delivered"); got != 3 {
		t.Errorf("delivered events %v, want 3", got)
	}
}

// A server that does not offer STARTTLS gets no password and no mail: the
// digest fails at once (no retry can mend it) and the failure is an event.
func TestEmailRequiresStartTLS(t *testing.T) {
	ms := startMailServer(t, false, false) // offers AUTH in plain text, no STARTTLS
	bus := NewBus()
	watch := bus.Subscribe("watch", 16)
	e := testEmail(ms, bus)
	e.RootCAs = nil
	runEmail(t, e, bus)
	bus.Publish(Event{Kind: Ban, Stage: "banlist", Reason: "scanner", Detail: "ban 203.0.113.9/32 by scanner"})
	failed := waitEvent(t, watch, NotifyFailed)
	if failed.Reason != "email" || !strings.Contains(failed.Detail, "127.0.0.1: 1 events not delivered after 1 tries: server does not offer STARTTLS") {
		t.Fatalf("failure event %+v", failed)
	}
	if strings.Contains(failed.Detail, "pa55word") {
		t.Fatal("the password is in the event")
	}
	sessions, auths, mails := ms.snapshot()
	ms.mu.Lock()
	wire := string(ms.wire)
	ms.mu.Unlock()
	if sessions != 1 || len(auths) != 0 || len(mails) != 0 || strings.Contains(wire, "AUTH") || strings.Contains(wire, "MAIL FROM") {
		t.Fatalf("sessions %d, auths %v, mails %d; wire:\n%s", sessions, auths, len(mails), wire)
	}
}

// A server whose certificate the configured CA did not sign is not talked
// to: a permanent failure, one session, one event.
func TestEmailVerifiesTheCertificate(t *testing.T) {
	for _, implicit := range []bool{false, true} {
		ms := startMailServer(t, true, implicit)
		bus := NewBus()
		watch := bus.Subscribe("watch", 16)
		e := testEmail(ms, bus)
		if implicit {
			e.TLS = TLSImplicit
		}
		_, other := testCert(t, "127.0.0.1")
		e.RootCAs = other
		_, stop := runEmail(t, e, bus)
		bus.Publish(Event{Kind: FraudError, Stage: "fraud", Reason: "baseline_save_failed"})
		failed := waitEvent(t, watch, NotifyFailed)
		if !strings.Contains(failed.Detail, "after 1 tries") || !strings.Contains(failed.Detail, "certificate") {
			t.Errorf("implicit=%v: failure event %+v", implicit, failed)
		}
		stop()
		if _, auths, mails := ms.snapshot(); len(auths) != 0 || len(mails) != 0 {
			t.Errorf("implicit=%v: auths %v, mails %d", implicit, auths, len(mails))
		}
	}
}

// Implicit TLS (port 465 style) delivers too.
func TestEmailImplicitTLS(t *testing.T) {
	ms := startMailServer(t, false, true)
	bus := NewBus()
	e := testEmail(ms, bus)
	e.TLS = TLSImplicit
	runEmail(t, e, bus)
	bus.Publish(Event{Kind: ConfigRejected, Stage: "config", Reason: "invalid", Detail: "/etc/sipwarden.yaml"})
	waitFor(t, "a mail", func() bool { _, _, m := ms.snapshot(); return len(m) == 1 })
	if _, auths, mails := ms.snapshot(); len(auths) != 1 || !mails[0].tls {
		t.Fatalf("auths %v, tls %v", auths, mails[0].tls)
	}
}

// A 4xx answer is transient: the digest is sent again after a backoff.
func TestEmailRetriesAfter4xx(t *testing.T) {
	ms := startMailServer(t, true, false)
	ms.failData = 2
	bus := NewBus()
	watch := bus.Subscribe("watch", 16)
	met, stop := runEmail(t, testEmail(ms, bus), bus)
	bus.Publish(Event{Kind: FraudHangup, Stage: "fraud", Reason: "cap", Trunk: "acme"})
	// the sink's own count: the server has the mail before the session ends
	waitFor(t, "a mail after two 451s", func() bool { return counter(t, met.messages, "ok") == 1 })
	stop()
	sessions, _, _ := ms.snapshot()
	if sessions != 3 {
		t.Errorf("%d sessions, want 3 (two refused with 451, then accepted)", sessions)
	}
	if ok, errs := counter(t, met.messages, "ok"), counter(t, met.messages, "error"); ok != 1 || errs != 2 {
		t.Errorf("messages ok %v error %v", ok, errs)
	}
	select {
	case e := <-watch.C:
		if e.Kind == NotifyFailed {
			t.Fatalf("a failure event for a mail that went out: %+v", e)
		}
	default:
	}
}

// After every try, the digest is dropped and the failure is an event; news
// of its own failure is not mailed again to the server that failed.
func TestEmailGivesUp(t *testing.T) {
	ms := startMailServer(t, true, false)
	ms.failData = 100
	bus := NewBus()
	watch := bus.Subscribe("watch", 16)
	met, stop := runEmail(t, testEmail(ms, bus), bus)
	bus.Publish(Event{Kind: AccountLocked, Trunk: "phones"})
	failed := waitEvent(t, watch, NotifyFailed)
	if !strings.Contains(failed.Detail, "1 events not delivered after 3 tries: data: 451") || !strings.Contains(failed.Detail, "try again later") {
		t.Fatalf("failure event %+v", failed)
	}
	// The server comes back; a later event is mailed, and it alone: the
	// failure event, before it on the bus, is not.
	ms.mu.Lock()
	ms.failData = 0
	ms.mu.Unlock()
	bus.Publish(Event{Kind: AccountLocked, Trunk: "sentinel"})
	waitFor(t, "the later event mailed", func() bool { return counter(t, met.events, "delivered") > 0 })
	stop()
	sessions, _, mails := ms.snapshot()
	if sessions != 4 {
		t.Errorf("%d sessions, want 4 (MaxTries, then the later event)", sessions)
	}
	if len(mails) != 1 {
		t.Fatalf("%d mails, want 1", len(mails))
	}
	if _, body := parseMail(t, mails[0].data); !strings.Contains(body, "sentinel") || strings.Contains(body, "not delivered") {
		t.Errorf("the mail after the failure:\n%s", body)
	}
	if got := counter(t, met.events, "dropped"); got != 1 {
		t.Errorf("dropped %v", got)
	}
}

// The same event within the dedup window is mailed once; after the window
// it is mailed again with the count of the copies held back.
func TestEmailDedup(t *testing.T) {
	ms := startMailServer(t, true, false)
	bus := NewBus()
	e := testEmail(ms, bus)
	e.DedupWindow = time.Hour
	met, stop := runEmail(t, e, bus)
	t0 := time.Now()
	locked := Event{Kind: AccountLocked, Stage: "auth", Reason: "distributed_guessing", Trunk: "phones", Src: netip.MustParseAddrPort("198.51.100.4:5060")}
	for i := range 5 {
		ev := locked
		ev.Time = t0.Add(time.Duration(i) * time.Minute)
		ev.Src = netip.AddrPortFrom(ev.Src.Addr(), uint16(5060+i)) // another port is the same source
		bus.Publish(ev)
	}
	other := locked
	other.Time, other.Trunk = t0, "lobby"
	bus.Publish(other)
	waitFor(t, "a mail", func() bool { _, _, m := ms.snapshot(); return len(m) == 1 })
	later := locked
	later.Time = t0.Add(61 * time.Minute)
	bus.Publish(later)
	waitFor(t, "a second mail", func() bool { _, _, m := ms.snapshot(); return len(m) == 2 })
	stop()
	_, _, mails := ms.snapshot()
	_, first := parseMail(t, mails[0].data)
	if n := strings.Count(first, "account_locked trunk=phones"); n != 1 || !strings.Contains(first, "account_locked trunk=lobby") {
		t.Errorf("first mail lists phones %d times (want 1) and lobby once:\n%s", n, first)
	}
	_, second := parseMail(t, mails[1].data)
	if !strings.Contains(second, "account_locked trunk=phones src=198.51.100.4 reason=distributed_guessing (4 more like it within 1h0m0s before, not sent)") {
		t.Errorf("second mail:\n%s", second)
	}
	if got := counter(t, met.events, "duplicate"); got != 4 {
		t.Errorf("duplicates %v, want 4", got)
	}
}

// Mails are at least MinInterval apart: what comes sooner waits and goes
// as one digest.
func TestEmailMinInterval(t *testing.T) {
	ms := startMailServer(t, true, false)
	bus := NewBus()
	e := testEmail(ms, bus)
	e.MinInterval = 400 * time.Millisecond
	runEmail(t, e, bus)
	bus.Publish(Event{Kind: Ban, Reason: "flood", Detail: "ban 192.0.2.1/32"})
	waitFor(t, "the first mail", func() bool { _, _, m := ms.snapshot(); return len(m) == 1 })
	first := time.Now()
	for i := range 5 {
		bus.Publish(Event{Kind: Ban, Reason: "flood", Detail: "ban 192.0.2." + string(rune('2'+i)) + "/32"})
	}
	waitFor(t, "the second mail", func() bool { _, _, m := ms.snapshot(); return len(m) == 2 })
	if gap := time.Since(first); gap < 300*time.Millisecond {
		t.Errorf("second mail %v after the first, want >= MinInterval", gap)
	}
	_, _, mails := ms.snapshot()
	m, body := parseMail(t, mails[1].data)
	if n := strings.Count(body, " ban reason=flood"); n != 5 || !strings.Contains(m.Header.Get("Subject"), "5 events: ban (5)") {
		t.Errorf("second mail has %d bans, subject %q", n, m.Header.Get("Subject"))
	}
}

// Nothing an event carries can add a header or break the message: details
// with CR/LF, a non-ASCII subject, a line starting with a dot.
func TestEmailMessageIsWellFormed(t *testing.T) {
	sink, err := NewEmailSink(Email{Server: "127.0.0.1:25", TLS: TLSNone, From: "edge@example.net", To: []string{"ops@example.net"},
		SubjectPrefix: "[Überwachung]", Hostname: "edge"})
	if err != nil {
		t.Fatal(err)
	}
	batch := []notice{{Event: Event{Time: time.Now(), Kind: AuthFailure, Trunk: "phones",
		Reason: "bad\r\nBcc: victim@example.org", Detail: "x\r\n.\r\nMAIL FROM:<evil@example.org>\r\nBcc: victim@example.org " + strings.Repeat("long ", 300)}}}
	msg, err := sink.message(batch, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	m, body := parseMail(t, msg)
	for k := range m.Header {
		switch k {
		case "From", "To", "Subject", "Date", "Message-Id", "Mime-Version", "Content-Type", "Content-Transfer-Encoding", "Auto-Submitted":
		default:
			t.Errorf("unexpected header %q", k)
		}
	}
	subj, err := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
	if err != nil || !strings.HasPrefix(subj, "[Überwachung] auth_failure trunk=phones bad  Bcc") {
		t.Errorf("subject %q (%v)", subj, err)
	}
	if strings.Count(body, "\n") != 5 || strings.Contains(body, "\n.") || !strings.Contains(body, "x  .  MAIL FROM:<evil@example.org>") {
		t.Errorf("body:\n%s", body)
	}
	for i, line := range strings.Split(string(msg), "\r\n") {
		if len(line) > 78 && !strings.HasPrefix(line, "Subject:") && !strings.HasPrefix(line, "To:") {
			t.Errorf("line %d is %d octets", i, len(line))
		}
	}
}

func TestNewEmailSinkRejects(t *testing.T) {
	good := Email{Server: "smtp.example.net:587", From: "edge@example.net", To: []string{"ops@example.net"}}
	tests := []struct {
		name string
		edit func(*Email)
		want string
	}{
		{"no port", func(e *Email) { e.Server = "smtp.example.net" }, "host:port"},
		{"port 0", func(e *Email) { e.Server = "smtp.example.net:0" }, "port must be 1 to 65535"},
		{"plain text to a remote", func(e *Email) { e.TLS = TLSNone }, "only to a loopback server"},
		{"unknown tls", func(e *Email) { e.TLS = "ssl" }, "starttls, implicit or none"},
		{"user without password", func(e *Email) { e.Username = "x" }, "go together"},
		{"header injection in from", func(e *Email) { e.From = "edge@example.net\r\nBcc: victim@example.org" }, "no e-mail address"},
		{"no domain", func(e *Email) { e.To = []string{"ops"} }, "no e-mail address"},
		{"no recipient", func(e *Email) { e.To = nil }, "at least one recipient"},
	}
	for _, tc := range tests {
		e := good
		tc.edit(&e)
		if _, err := NewEmailSink(e); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	if _, err := NewEmailSink(good); err != nil {
		t.Errorf("good: %v", err)
	}
	loop := good
	loop.Server, loop.TLS = "[::1]:25", TLSNone
	if _, err := NewEmailSink(loop); err != nil {
		t.Errorf("loopback without TLS: %v", err)
	}
}

// waitEvent reads sub until an event of kind k (bounded: 5s).
func waitEvent(t *testing.T, sub *Subscription, k Kind) Event {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case e := <-sub.C:
			if e.Kind == k {
				return e
			}
		case <-deadline:
			t.Fatalf("no %s event within 5s", k)
		}
	}
}

// At shutdown what was gathered (held back by MinInterval) is mailed once.
func TestEmailShutdownSendsGathered(t *testing.T) {
	ms := startMailServer(t, true, false)
	bus := NewBus()
	e := testEmail(ms, bus)
	e.MinInterval = time.Hour
	_, stop := runEmail(t, e, bus)
	bus.Publish(Event{Kind: Ban, Reason: "flood", Detail: "ban 192.0.2.1/32"})
	waitFor(t, "the first mail", func() bool { _, _, m := ms.snapshot(); return len(m) == 1 })
	bus.Publish(Event{Kind: Ban, Reason: "flood", Detail: "ban 192.0.2.2/32"})
	time.Sleep(100 * time.Millisecond) // well past Flush: MinInterval holds it
	if _, _, m := ms.snapshot(); len(m) != 1 {
		t.Fatalf("%d mails before shutdown, want 1", len(m))
	}
	stop()
	_, _, mails := ms.snapshot()
	if len(mails) != 2 {
		t.Fatalf("%d mails after shutdown, want 2", len(mails))
	}
	if _, body := parseMail(t, mails[1].data); !strings.Contains(body, "ban 192.0.2.2/32") {
		t.Errorf("last mail:\n%s", body)
	}
}

// Without a bus the failure is a log line, without the password even when
// the server echoes it.
func TestEmailFailureLogged(t *testing.T) {
	ms := startMailServer(t, true, false)
	ms.failData = 100
	e := testEmail(ms, nil)
	e.MaxTries, e.Password = 1, "echo-me"
	sink, err := NewEmailSink(e)
	if err != nil {
		t.Fatal(err)
	}
	// the server's answer quotes the password (a hostile or buggy server)
	if got := sink.redact(errors.New("535 bad password echo-me")); strings.Contains(got, "echo-me") {
		t.Fatalf("redact: %q", got)
	}
	var out syncBuf
	bus := NewBus()
	sub := bus.Subscribe("email", 4)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); sink.Run(ctx, sub, nil, slog.New(slog.NewJSONHandler(&out, nil))) }()
	bus.Publish(Event{Kind: Ban, Detail: "ban 192.0.2.9/32"})
	waitFor(t, "a log line", func() bool { return strings.Contains(out.String(), "e-mail: events dropped") })
	cancel()
	<-done
	if strings.Contains(out.String(), "echo-me") {
		t.Errorf("the password is in the log:\n%s", out.String())
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }
