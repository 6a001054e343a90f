package config

import (
	"net"
	"net/url"
	"strconv"
	"time"
	"unicode"

	"github.com/sipwarden/sipwarden/internal/events"
)

// Notify configures where security events go besides the log and metrics.
type Notify struct {
	Webhooks []Webhook
	// Email is nil when no e-mail is configured.
	Email *Email
}

// Webhook is one endpoint that receives events as POSTs (package events).
type Webhook struct {
	URL string
	// Format is events.FormatJSON or events.FormatSlack.
	Format string
	// Kinds are the event kinds sent (empty: events.DefaultWebhookKinds).
	Kinds []events.Kind
	// SecretFile holds the HMAC-SHA256 key that signs each body (header
	// X-Sipwarden-Signature); empty: unsigned.
	SecretFile string
	// DedupWindow: the same event within it is sent once (negative: off).
	DedupWindow time.Duration
}

// Email sends digests of events over SMTP (events.EmailSink).
type Email struct {
	Server string // host:port
	// TLS is events.TLSStartTLS, events.TLSImplicit or events.TLSNone (loopback only).
	TLS string
	// CAFile verifies the server's certificate (empty: the system roots).
	CAFile string
	// Username and PasswordFile (a file holding the password) go together.
	Username     string
	PasswordFile string
	From         string
	To           []string
	Kinds        []events.Kind
	// SubjectPrefix starts every subject.
	SubjectPrefix string
	// MinInterval is the least time between two mails.
	MinInterval time.Duration
	// DedupWindow: the same event within it is mailed once (negative: off).
	DedupWindow time.Duration
}

type rawNotify struct {
	Webhooks []rawWebhook `yaml:"webhooks"`
	Email    *rawEmail    `yaml:"email"`
}

type rawWebhook struct {
	URL         string   `yaml:"url"`
	Format      string   `yaml:"format"`
	Kinds       []string `yaml:"kinds"`
	SecretFile  string   `yaml:"secret_file"`
	DedupWindow string   `yaml:"dedup_window"`
}

type rawEmail struct {
	Server        string   `yaml:"server"`
	TLS           string   `yaml:"tls"`
	CAFile        string   `yaml:"ca_file"`
	Username      string   `yaml:"username"`
	PasswordFile  string   `yaml:"password_file"`
	From          string   `yaml:"from"`
	To            []string `yaml:"to"`
	Kinds         []string `yaml:"kinds"`
	SubjectPrefix string   `yaml:"subject_prefix"`
	MinInterval   string   `yaml:"min_interval"`
	DedupWindow   string   `yaml:"dedup_window"`
}

func (v *validator) notify(r rawNotify) Notify {
	var n Notify
	for i, w := range r.Webhooks {
		base := p("notify", "webhooks", i)
		u, err := url.Parse(w.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.fail(append(base, "url"), "must be an http:// or https:// URL, got %q", w.URL)
		}
		hook := Webhook{URL: w.URL, SecretFile: w.SecretFile, Format: w.Format,
			Kinds:       v.eventKinds(append(base, "kinds"), w.Kinds),
			DedupWindow: v.dedupWindow(append(base, "dedup_window"), w.DedupWindow)}
		switch w.Format {
		case "":
			hook.Format = events.FormatJSON
		case events.FormatJSON, events.FormatSlack:
		default:
			v.fail(append(base, "format"), "must be json or slack, got %q", w.Format)
		}
		n.Webhooks = append(n.Webhooks, hook)
	}
	if r.Email != nil {
		n.Email = v.email(*r.Email)
	}
	return n
}

func (v *validator) eventKinds(path []any, names []string) []events.Kind {
	var kinds []events.Kind
	for j, name := range names {
		k, ok := events.KindByName(name)
		if !ok {
			v.fail(append(path, j), "unknown event kind %q (ban, fraud_incident, account_locked, notify_failed, ...: see docs/config.md)", name)
			continue
		}
		kinds = append(kinds, k)
	}
	return kinds
}

// dedupWindow is a duration, or 0 to send every event (returned as -1, as
// package events reads it).
func (v *validator) dedupWindow(path []any, s string) time.Duration {
	if s == "0" || s == "0s" {
		return -1
	}
	return v.duration(path, s, events.DefaultDedupWindow)
}

func (v *validator) email(r rawEmail) *Email {
	base := p("notify", "email")
	e := &Email{Server: r.Server, TLS: r.TLS, CAFile: r.CAFile, Username: r.Username, PasswordFile: r.PasswordFile,
		From: r.From, To: r.To, SubjectPrefix: r.SubjectPrefix,
		Kinds:       v.eventKinds(append(base, "kinds"), r.Kinds),
		MinInterval: v.duration(append(base, "min_interval"), r.MinInterval, 5*time.Minute),
		DedupWindow: v.dedupWindow(append(base, "dedup_window"), r.DedupWindow)}
	host, port, err := net.SplitHostPort(r.Server)
	if pn, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || pn < 1 || pn > 65535 {
		v.fail(append(base, "server"), "must be host:port of the submission server (smtp.example.net:587), got %q", r.Server)
		if err != nil {
			host = r.Server // still judge it for tls none
		}
	}
	switch r.TLS {
	case "":
		e.TLS = events.TLSStartTLS
	case events.TLSStartTLS, events.TLSImplicit:
	case events.TLSNone:
		if host != "" && !events.IsLoopbackHost(host) {
			v.fail(append(base, "tls"), "none sends mail (and any password) in plain text: allowed only to a loopback server, not %q", host)
		}
		if r.CAFile != "" {
			v.fail(append(base, "ca_file"), "a CA is of no use with tls none")
		}
	default:
		v.fail(append(base, "tls"), "must be starttls (port 587), implicit (port 465) or none (loopback only), got %q", r.TLS)
	}
	if (r.Username == "") != (r.PasswordFile == "") {
		v.fail(append(base, "username"), "username and password_file go together")
	}
	if r.From == "" {
		v.fail(append(base, "from"), "is required: the sender address (sipwarden@example.net)")
	} else if _, err := events.ParseMailAddress(r.From); err != nil {
		v.fail(append(base, "from"), "%v", err)
	}
	if len(r.To) == 0 {
		v.fail(append(base, "to"), "at least one recipient is required")
	}
	for i, t := range r.To {
		if _, err := events.ParseMailAddress(t); err != nil {
			v.fail(append(base, "to", i), "%v", err)
		}
	}
	if len(r.SubjectPrefix) > 64 {
		v.fail(append(base, "subject_prefix"), "at most 64 bytes, got %d", len(r.SubjectPrefix))
	}
	for _, c := range r.SubjectPrefix {
		if unicode.IsControl(c) {
			v.fail(append(base, "subject_prefix"), "must not contain control characters (a line break would start a header)")
			break
		}
	}
	return e
}
