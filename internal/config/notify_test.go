package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/events"
)

func TestNotifyGood(t *testing.T) {
	c := parseTestdata(t, "notify.good.yaml")
	n := c.Notify
	if len(n.Webhooks) != 2 || n.Webhooks[0].Format != events.FormatSlack || n.Webhooks[1].Format != events.FormatJSON ||
		len(n.Webhooks[0].Kinds) != 2 || n.Webhooks[0].Kinds[1] != events.NotifyFailed {
		t.Errorf("webhooks %+v", n.Webhooks)
	}
	if n.Webhooks[0].DedupWindow != events.DefaultDedupWindow || n.Webhooks[1].DedupWindow >= 0 {
		t.Errorf("dedup windows %v %v: want the default, then off", n.Webhooks[0].DedupWindow, n.Webhooks[1].DedupWindow)
	}
	e := n.Email
	if e == nil || e.Server != "smtp.example.net:587" || e.TLS != events.TLSStartTLS || e.Username != "sipwarden" ||
		len(e.To) != 2 || len(e.Kinds) != 4 || e.SubjectPrefix != "[edge-1]" || e.MinInterval != 2*time.Minute || e.DedupWindow != 30*time.Minute {
		t.Fatalf("email %+v", e)
	}
	c.resolvePaths("/etc/sipwarden")
	if e.PasswordFile != "/etc/sipwarden/smtp.pass" || e.CAFile != "/etc/sipwarden/mail-ca.pem" {
		t.Errorf("paths %q %q", e.PasswordFile, e.CAFile)
	}
	err := c.CheckFiles()
	if err == nil || !strings.Contains(err.Error(), "notify.email.password_file: cannot read /etc/sipwarden/smtp.pass") {
		t.Errorf("missing files: %v", err)
	}
	if c, _ := Parse([]byte("listen: [udp://127.0.0.1:5060]\n"), "min"); c.Notify.Email != nil {
		t.Error("e-mail configured without a section")
	}
}

// Loopback without TLS is what a local relay needs; anything else is refused.
func TestNotifyEmailLoopback(t *testing.T) {
	for _, host := range []string{"127.0.0.1:25", "[::1]:25", "localhost:25"} {
		y := "listen: [udp://127.0.0.1:5060]\nnotify:\n  email: {server: \"" + host + "\", tls: none, from: a@example.net, to: [b@example.net]}\n"
		if _, err := Parse([]byte(y), "loop"); err != nil {
			t.Errorf("%s: %v", host, err)
		}
	}
}

func TestNotifyBad(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "notify.bad.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse(b, "notify.bad.yaml")
	if err == nil {
		t.Fatal("accepted")
	}
	want := []string{
		`notify.bad.yaml:4:52: notify.webhooks[0].format: must be json or slack, got "teams"`,
		`notify.bad.yaml:4:73: notify.webhooks[0].dedup_window: must be a positive duration`,
		`notify.bad.yaml:6:13: notify.email.server: must be host:port of the submission server (smtp.example.net:587), got "smtp.example.net"`,
		`notify.bad.yaml:7:10: notify.email.tls: none sends mail (and any password) in plain text: allowed only to a loopback server`,
		`notify.bad.yaml:8:15: notify.email.username: username and password_file go together`,
		`notify.bad.yaml:9:11: notify.email.from: "sipwarden@example.net\r\nBcc: someone@example.org" is no e-mail address`,
		`notify.bad.yaml:10:27: notify.email.to[1]: "not an address" is no e-mail address`,
		`notify.bad.yaml:11:29: notify.email.kinds[1]: unknown event kind "nonsense"`,
		`notify.bad.yaml:12:21: notify.email.subject_prefix: must not contain control characters`,
		`notify.bad.yaml:13:19: notify.email.min_interval: must be a positive duration such as 30s, 5m or 2h, got "soon"`,
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q", w)
		}
	}
	if t.Failed() {
		t.Logf("got:\n%v", err)
	}
	// an unknown key names the valid ones
	_, err = Parse([]byte("notify:\n  email: {sever: x}\n"), "k.yaml")
	if err == nil || !strings.Contains(err.Error(), `sever: unknown key (did you mean "server"?); valid keys here: server, tls, ca_file`) {
		t.Errorf("unknown key: %v", err)
	}
}
