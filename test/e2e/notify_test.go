package e2e

import (
	"github.com/sipwarden/sipwarden/test/testbed"

	"encoding/json"
	"fmt"
	"io"
	"mime/quotedprintable"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/events/smtptest"
)

const notifyConfig = baseConfig + `notify:
  webhooks:
    - {url: "{{index .Extra "hook"}}/services/T0KEN", format: slack}
  email:
    server: "{{index .Extra "smtp"}}"
    ca_file: "{{index .Extra "ca"}}"
    username: alerts
    password_file: "{{index .Extra "pass"}}"
    from: "sipwarden <Edge@example.net>"
    to: [noc@example.net]
    subject_prefix: "[e2e]"
`

// TestBanIsNotified: a probing stranger is banned, and the ban reaches a
// Slack-format webhook and, over STARTTLS with AUTH, a mailbox, each once;
// the password and the webhook's token stay out of the log.
func TestBanIsNotified(t *testing.T) {
	dir := t.TempDir()
	caFile, passFile := filepath.Join(dir, "mail-ca.pem"), filepath.Join(dir, "smtp.pass")
	if err := os.WriteFile(passFile, []byte("e2e-pa55\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	peer := smtptest.Start(t, caFile)
	var mu sync.Mutex
	var texts []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Text string }
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		texts = append(texts, body.Text)
		mu.Unlock()
	}))
	defer hook.Close()
	extra := params("udp")
	extra["hook"], extra["smtp"], extra["ca"], extra["pass"] = hook.URL, peer.Addr, caFile, passFile
	pbx := testbed.FreePort(t)
	e := testbed.StartEdge(t, notifyConfig, pbx, extra)
	// a stranger probes past the default rule (20 requests at once)
	ua := testbed.NewRawUA(t, "udp", "127.0.0.9")
	for i := range 30 {
		ua.Send(e.SIPAddr(), fmt.Sprintf("OPTIONS sip:100@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-probe%d\nFrom: <sip:100@1.1.1.1>;tag=1\nTo: <sip:100@127.0.0.1>\nCall-ID: probe-%d\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n", ua.LocalAddr(), i, i))
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(texts)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no webhook POST within 5s of the ban")
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.Stop() // the e-mail digest waits 10 s for company; the shutdown sends it
	mu.Lock()
	defer mu.Unlock()
	if len(texts) != 1 || !strings.HasPrefix(texts[0], "sipwarden: 1 event\n• ") || !strings.Contains(texts[0], " ban reason=unknown_source_probe: ban 127.0.0.9/32") {
		t.Errorf("webhook texts %q", texts)
	}
	auths, mails := peer.Auths(), peer.Mails()
	if len(auths) != 1 || auths[0] != "alerts:e2e-pa55" || len(mails) != 1 {
		t.Fatalf("auths %q, %d mails", auths, len(mails))
	}
	m, err := mail.ReadMessage(strings.NewReader(mails[0]))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(quotedprintable.NewReader(m.Body))
	if subj := m.Header.Get("Subject"); subj != "[e2e] ban unknown_source_probe" || !strings.Contains(string(body), " ban reason=unknown_source_probe: ban 127.0.0.9/32") {
		t.Errorf("subject %q, body:\n%s", subj, body)
	}
	if logs := e.Logs.String(); strings.Contains(logs, "e2e-pa55") || strings.Contains(logs, "T0KEN") {
		t.Errorf("a secret in the log:\n%s", logs)
	}
}
