package events

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/netip"
	"net/smtp"
	"net/textproto"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// E-mail transport security.
const (
	// TLSStartTLS: connect in plain text, then require STARTTLS (RFC 3207)
	// before anything else; a server that does not offer it gets nothing.
	TLSStartTLS = "starttls"
	// TLSImplicit: TLS from the first byte (RFC 8314, port 465).
	TLSImplicit = "implicit"
	// TLSNone: plain text, allowed only to a loopback server (a local relay).
	TLSNone = "none"
)

// Email configures the e-mail sink: digests of events sent over SMTP
// (RFC 5321) to a submission server.
type Email struct {
	// Server is host:port of the submission server.
	Server string
	// TLS is TLSStartTLS (default), TLSImplicit or TLSNone.
	TLS string
	// RootCAs verify the server's certificate (nil: the system roots).
	RootCAs *x509.CertPool
	// Username and Password authenticate with AUTH PLAIN (or LOGIN when the
	// server offers only that); empty Username: no AUTH. The password is
	// only ever sent over TLS (or to a loopback server with TLSNone) and
	// never logged.
	Username, Password string
	// From and To are RFC 5322 addresses ("Ops <ops@example.net>").
	From string
	To   []string
	// Kinds are the event kinds sent (empty: DefaultWebhookKinds).
	Kinds []Kind
	// SubjectPrefix starts every subject (default "[sipwarden]").
	SubjectPrefix string
	// MinInterval is the least time between two mails (default 5m): a burst
	// of events becomes one digest, not one mail per event.
	MinInterval time.Duration
	// Flush is how long the first event waits for company (default 10s).
	Flush time.Duration
	// DedupWindow: the same event within this time is mailed once (0:
	// DefaultDedupWindow, negative: every event is mailed).
	DedupWindow time.Duration
	// Timeout bounds one SMTP session (default 30s); a failed session is
	// retried with backoff (1s, 2s ... 30s) MaxTries times in all (default
	// 5) unless the failure is permanent (a 5xx answer, a certificate that
	// does not verify, no STARTTLS); then the digest is dropped, counted,
	// and a NotifyFailed event published on Bus.
	Timeout  time.Duration
	MaxTries int
	// Bus receives the NotifyFailed events (nil: none published).
	Bus *Bus
	// Hostname is the name sent in EHLO and shown in the body (default:
	// the host's name).
	Hostname string

	retryWait time.Duration // first backoff (tests shorten it)
}

// maxDigest is how many events one mail lists; the rest are counted.
const maxDigest = 200

// finalTimeout bounds the last mail at shutdown.
const finalTimeout = 10 * time.Second

// ErrNoStartTLS: the server does not offer STARTTLS although the
// configuration requires it (a misconfigured server, or someone in the path
// stripping it). Nothing, least of all a password, is sent.
var ErrNoStartTLS = errors.New("server does not offer STARTTLS")

// EmailSink mails digests of events.
type EmailSink struct {
	cfg      Email
	host     string // of Server: TLS server name, names the sink in logs and events
	from     *mail.Address
	to       []*mail.Address
	msgIDDom string // right side of Message-ID
}

// NewEmailSink checks e and fills in its defaults.
func NewEmailSink(e Email) (*EmailSink, error) {
	host, port, err := net.SplitHostPort(e.Server)
	if err != nil || host == "" {
		return nil, fmt.Errorf("e-mail server must be host:port, got %q", e.Server)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return nil, fmt.Errorf("e-mail server %q: port must be 1 to 65535", e.Server)
	}
	switch e.TLS {
	case "":
		e.TLS = TLSStartTLS
	case TLSStartTLS, TLSImplicit:
	case TLSNone:
		if !IsLoopbackHost(host) {
			return nil, fmt.Errorf("e-mail server %s: tls none is allowed only to a loopback server", host)
		}
	default:
		return nil, fmt.Errorf("e-mail tls must be starttls, implicit or none, got %q", e.TLS)
	}
	if (e.Username == "") != (e.Password == "") {
		return nil, errors.New("e-mail username and password go together")
	}
	s := &EmailSink{host: host}
	if s.from, err = ParseMailAddress(e.From); err != nil {
		return nil, fmt.Errorf("e-mail from: %w", err)
	}
	if len(e.To) == 0 {
		return nil, errors.New("e-mail needs at least one recipient")
	}
	for _, t := range e.To {
		a, err := ParseMailAddress(t)
		if err != nil {
			return nil, fmt.Errorf("e-mail to: %w", err)
		}
		s.to = append(s.to, a)
	}
	if e.SubjectPrefix == "" {
		e.SubjectPrefix = "[sipwarden]"
	}
	e.SubjectPrefix = clean(e.SubjectPrefix, 64)
	if e.MinInterval <= 0 {
		e.MinInterval = 5 * time.Minute
	}
	if e.Flush <= 0 {
		e.Flush = 10 * time.Second
	}
	if e.DedupWindow == 0 {
		e.DedupWindow = DefaultDedupWindow
	}
	if e.Timeout <= 0 {
		e.Timeout = 30 * time.Second
	}
	if e.MaxTries <= 0 {
		e.MaxTries = 5
	}
	if e.retryWait <= 0 {
		e.retryWait = backoff
	}
	if e.Hostname == "" {
		e.Hostname, _ = os.Hostname()
	}
	if !validHostname(e.Hostname) {
		e.Hostname = "localhost"
	}
	s.msgIDDom = s.from.Address[strings.LastIndexByte(s.from.Address, '@')+1:]
	s.cfg = e
	return s, nil
}

// ParseMailAddress parses one RFC 5322 address; it must have a domain. An
// address that parses cannot carry a line break into a header.
func ParseMailAddress(s string) (*mail.Address, error) {
	a, err := mail.ParseAddress(s)
	if err != nil {
		return nil, fmt.Errorf("%q is no e-mail address: %w", s, err)
	}
	at := strings.LastIndexByte(a.Address, '@')
	if at <= 0 || at == len(a.Address)-1 {
		return nil, fmt.Errorf("%q is no e-mail address: it needs local@domain", s)
	}
	return a, nil
}

// IsLoopbackHost reports whether host (a name or an address) is this host.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// EmailMetrics count the mails of the e-mail sink; create once per process.
type EmailMetrics struct {
	messages *prometheus.CounterVec
	events   *prometheus.CounterVec
}

// NewEmailMetrics registers the collectors on reg (nil: not registered).
func NewEmailMetrics(reg prometheus.Registerer) *EmailMetrics {
	m := &EmailMetrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sipwarden_events_email_messages_total",
			Help: "SMTP sessions of the e-mail sink, by result (ok, error: retried or dropped).",
		}, []string{"result"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sipwarden_events_email_events_total",
			Help: "Events handed to the e-mail sink, by result (delivered, dropped after every try, duplicate: not sent again within the dedup window).",
		}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.messages, m.events)
	}
	return m
}

// Run mails the events of sub that the sink wants, in digests, until ctx
// ends or the subscription closes (then what is gathered is sent once more,
// one try).
func (s *EmailSink) Run(ctx context.Context, sub *Subscription, met *EmailMetrics, log *slog.Logger) {
	if met == nil {
		met = NewEmailMetrics(nil)
	}
	policy := batchPolicy{
		kinds:       newKindSet(s.cfg.Kinds),
		dedup:       newDedup(s.cfg.DedupWindow),
		flush:       s.cfg.Flush,
		minInterval: s.cfg.MinInterval,
		max:         maxDigest,
		ignore:      func(e Event) bool { return ownFailure(e, "email", s.host) },
		duplicate:   func() { met.events.WithLabelValues("duplicate").Inc() },
	}
	gather(ctx, sub, policy, func(ctx context.Context, batch []notice, more int, final bool) {
		msg, err := s.message(batch, more, time.Now())
		tries := 0
		if err == nil {
			limit := s.cfg.MaxTries
			if final {
				// shutdown waits for this: one try, at most finalTimeout
				limit = 1
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, min(s.cfg.Timeout, finalTimeout))
				defer cancel()
			}
			tries, err = retry(ctx, limit, s.cfg.retryWait, func(ctx context.Context) error {
				err := s.send(ctx, msg)
				if err != nil {
					met.messages.WithLabelValues("error").Inc()
					return err
				}
				met.messages.WithLabelValues("ok").Inc()
				return nil
			})
		}
		if err == nil {
			met.events.WithLabelValues("delivered").Add(float64(len(batch) + more))
			return
		}
		met.events.WithLabelValues("dropped").Add(float64(len(batch) + more))
		text := s.redact(err)
		// the failure is an event (which the log sink writes), or, when it
		// cannot be one, a log line
		if s.cfg.Bus != nil && !onlyFailures(batch) {
			s.cfg.Bus.Publish(failureEvent("email", s.host, len(batch)+more, tries, text))
		} else if log != nil {
			log.Warn("e-mail: events dropped", "server", s.cfg.Server, "events", len(batch)+more, "tries", tries, "err", text)
		}
	})
}

// redact is the error's text without the password, in case a server
// echoes what it was sent.
func (s *EmailSink) redact(err error) string {
	t := err.Error()
	if p := s.cfg.Password; p != "" {
		plain := base64.StdEncoding.EncodeToString([]byte("\x00" + s.cfg.Username + "\x00" + p))
		t = strings.NewReplacer(p, "***", plain, "***", base64.StdEncoding.EncodeToString([]byte(p)), "***").Replace(t)
	}
	return t
}

// message builds the digest: RFC 5322 headers, a text/plain UTF-8 body in
// quoted-printable (no line longer than 76 octets whatever the events say).
func (s *EmailSink) message(batch []notice, more int, now time.Time) ([]byte, error) {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	var to []string
	for _, a := range s.to {
		to = append(to, a.String())
	}
	var m bytes.Buffer
	header := func(k, v string) { m.WriteString(k + ": " + v + "\r\n") }
	header("From", s.from.String())
	header("To", strings.Join(to, ", "))
	header("Subject", mime.QEncoding.Encode("utf-8", s.subject(batch, more)))
	header("Date", now.Format(time.RFC1123Z))
	header("Message-ID", "<"+hex.EncodeToString(id)+"."+strconv.FormatInt(now.Unix(), 10)+"@"+s.msgIDDom+">")
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", "quoted-printable")
	header("Auto-Submitted", "auto-generated") // RFC 3834: no vacation replies
	m.WriteString("\r\n")

	qp := quotedprintable.NewWriter(&m)
	line := func(s string) { _, _ = qp.Write([]byte(s + "\r\n")) }
	total := len(batch) + more
	first, last := batch[0].Time, batch[0].Time
	for _, n := range batch {
		if n.Time.Before(first) {
			first = n.Time
		}
		if n.Time.After(last) {
			last = n.Time
		}
	}
	line(fmt.Sprintf("sipwarden on %s: %d %s from %s to %s.", s.cfg.Hostname, total, plural(total, "event", "events"),
		first.UTC().Format("2006-01-02 15:04:05Z"), last.UTC().Format("2006-01-02 15:04:05Z")))
	line("")
	for _, n := range batch {
		line(summary(n, s.cfg.DedupWindow))
	}
	if more > 0 {
		line("")
		line(fmt.Sprintf("%d more %s not listed (a mail lists at most %d; the log has every one).", more, plural(more, "event", "events"), maxDigest))
	}
	line("")
	line(fmt.Sprintf("The same event is mailed once within %s; mails are at least %s apart.", s.cfg.DedupWindow, s.cfg.MinInterval))
	if err := qp.Close(); err != nil {
		return nil, err
	}
	return m.Bytes(), nil
}

// subject names the one event, or counts the events by kind.
func (s *EmailSink) subject(batch []notice, more int) string {
	if len(batch) == 1 && more == 0 {
		n := batch[0]
		subj := s.cfg.SubjectPrefix + " " + n.Kind.String()
		if n.Trunk != "" {
			subj += " trunk=" + clean(n.Trunk, 64)
		}
		if n.Reason != "" && n.Reason != n.Kind.String() {
			subj += " " + clean(n.Reason, 64)
		}
		return subj
	}
	counts := map[Kind]int{}
	var kinds []Kind
	for _, n := range batch {
		if counts[n.Kind] == 0 {
			kinds = append(kinds, n.Kind)
		}
		counts[n.Kind]++
	}
	slices.SortFunc(kinds, func(a, b Kind) int { return counts[b] - counts[a] })
	total := len(batch) + more
	var b strings.Builder
	fmt.Fprintf(&b, "%s %d events: ", s.cfg.SubjectPrefix, total)
	for i, k := range kinds {
		if i == 4 {
			b.WriteString(", ...")
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s (%d)", k, counts[k])
	}
	return b.String()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func (s *EmailSink) tlsConfig() *tls.Config {
	return &tls.Config{ServerName: s.host, RootCAs: s.cfg.RootCAs, MinVersion: tls.VersionTLS12}
}

// send runs one SMTP session that delivers msg to every recipient. Any
// failure fails the whole mail (a digest reaches all its recipients or is
// retried for all).
func (s *EmailSink) send(ctx context.Context, msg []byte) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	var conn net.Conn
	var err error
	d := &net.Dialer{}
	if s.cfg.TLS == TLSImplicit {
		conn, err = (&tls.Dialer{NetDialer: d, Config: s.tlsConfig()}).DialContext(ctx, "tcp", s.cfg.Server)
	} else {
		conn, err = d.DialContext(ctx, "tcp", s.cfg.Server)
	}
	if err != nil {
		return classify(err)
	}
	// net/smtp knows no context: the deadline bounds every read and write,
	// and the end of ctx closes the connection.
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	c, err := smtp.NewClient(conn, s.host)
	if err != nil {
		_ = conn.Close()
		return classify(err)
	}
	defer func() { _ = c.Close() }()
	if err := c.Hello(s.cfg.Hostname); err != nil {
		return classify(err)
	}
	if s.cfg.TLS == TLSStartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return permanent(ErrNoStartTLS)
		}
		if err := c.StartTLS(s.tlsConfig()); err != nil {
			return classify(fmt.Errorf("starttls: %w", err))
		}
	}
	if s.cfg.Username != "" {
		ok, mechs := c.Extension("AUTH")
		if !ok {
			return permanent(errors.New("server offers no AUTH, but a username is configured"))
		}
		var auth smtp.Auth
		switch {
		case hasWord(mechs, "PLAIN"):
			auth = &passwordAuth{mech: "PLAIN", user: s.cfg.Username, pass: s.cfg.Password, host: s.host}
		case hasWord(mechs, "LOGIN"):
			auth = &passwordAuth{mech: "LOGIN", user: s.cfg.Username, pass: s.cfg.Password, host: s.host}
		default:
			return permanent(fmt.Errorf("server offers AUTH %s; sipwarden speaks PLAIN and LOGIN", clean(mechs, 80)))
		}
		if err := c.Auth(auth); err != nil {
			return classify(fmt.Errorf("auth: %w", err))
		}
	}
	if err := c.Mail(s.from.Address); err != nil {
		return classify(fmt.Errorf("mail from: %w", err))
	}
	for _, a := range s.to {
		if err := c.Rcpt(a.Address); err != nil {
			return classify(fmt.Errorf("rcpt to %s: %w", a.Address, err))
		}
	}
	w, err := c.Data()
	if err != nil {
		return classify(fmt.Errorf("data: %w", err))
	}
	if _, err := w.Write(msg); err != nil {
		return classify(fmt.Errorf("data: %w", err))
	}
	if err := w.Close(); err != nil {
		return classify(fmt.Errorf("data: %w", err))
	}
	_ = c.Quit() // the mail is accepted; a lost QUIT changes nothing
	return nil
}

func hasWord(list, w string) bool {
	for _, f := range strings.Fields(list) {
		if strings.EqualFold(f, w) {
			return true
		}
	}
	return false
}

// classify marks what another try cannot mend: a 5xx answer, a
// certificate that does not verify. A 4xx answer (RFC 5321 4.2.1: transient)
// and network errors are retried.
func classify(err error) error {
	var te *textproto.Error
	if errors.As(err, &te) {
		if te.Code >= 500 {
			return permanent(err)
		}
		return err
	}
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	if errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci) {
		return permanent(err)
	}
	return err
}

// passwordAuth is AUTH PLAIN (RFC 4616) or LOGIN (a de-facto mechanism some
// submission servers offer instead), with smtp.PlainAuth's rule made
// explicit: credentials go only over TLS or to a loopback server (which the
// configuration allows only with tls none), and only to the configured host.
type passwordAuth struct {
	mech, user, pass, host string
	step                   int
}

func (a *passwordAuth) Start(server *smtp.ServerInfo) (string, []byte, error) {
	if !server.TLS && !IsLoopbackHost(server.Name) {
		return "", nil, permanent(errors.New("refusing to send a password over an unencrypted connection"))
	}
	if server.Name != a.host {
		return "", nil, permanent(errors.New("wrong host name"))
	}
	a.step = 0
	if a.mech == "PLAIN" {
		return "PLAIN", []byte("\x00" + a.user + "\x00" + a.pass), nil
	}
	return "LOGIN", nil, nil
}

func (a *passwordAuth) Next(_ []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	a.step++
	switch {
	case a.mech == "LOGIN" && a.step == 1:
		return []byte(a.user), nil
	case a.mech == "LOGIN" && a.step == 2:
		return []byte(a.pass), nil
	}
	return nil, fmt.Errorf("unexpected server challenge in AUTH %s", a.mech)
}
