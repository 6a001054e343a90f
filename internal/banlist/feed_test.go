package banlist_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/banlist"
)

func TestParseFeed(t *testing.T) {
	plain := "# a comment\n192.0.2.1\n198.51.100.0/24 # trailing\n\n2001:db8::/48\nnot-an-ip\n::ffff:203.0.113.9\n"
	got, skipped, err := banlist.ParseFeed(strings.NewReader(plain), banlist.FormatPlain)
	if err != nil || skipped != 1 || len(got) != 4 || got[0].String() != "192.0.2.1/32" || got[3].String() != "203.0.113.9/32" {
		t.Fatalf("plain: %v skipped %d %v", got, skipped, err)
	}
	apiban := `{"ipaddress":["192.0.2.7","2001:db8::9","bogus"],"ID":"1700000000"}`
	got, skipped, err = banlist.ParseFeed(strings.NewReader(apiban), banlist.FormatAPIBAN)
	if err != nil || skipped != 1 || len(got) != 2 || got[1].String() != "2001:db8::9/128" {
		t.Fatalf("apiban: %v skipped %d %v", got, skipped, err)
	}
	if _, _, err := banlist.ParseFeed(strings.NewReader("<html>"), banlist.FormatAPIBAN); err == nil {
		t.Fatal("HTML accepted as an APIBAN feed")
	}
	if _, _, err := banlist.ParseFeed(strings.NewReader(strings.Repeat("1", banlist.MaxFeedBytes+1)), banlist.FormatPlain); err != banlist.ErrFeedTooLarge {
		t.Fatalf("oversize feed: %v", err)
	}
}

func FuzzParseFeed(f *testing.F) {
	f.Add([]byte("192.0.2.1\n10.0.0.0/8\n"), false)
	f.Add([]byte(`{"ipaddress":["192.0.2.7"],"ID":"1"}`), true)
	f.Fuzz(func(t *testing.T, b []byte, apiban bool) {
		format := banlist.FormatPlain
		if apiban {
			format = banlist.FormatAPIBAN
		}
		ps, _, err := banlist.ParseFeed(strings.NewReader(string(b)), format)
		if err == nil {
			for _, p := range ps {
				if !p.IsValid() {
					t.Fatalf("invalid prefix from %q", b)
				}
			}
		}
	})
}

// TestRunFeed refreshes a feed over HTTP (loopback) and from a file; a failed
// refresh keeps the last good entries.
func TestRunFeed(t *testing.T) {
	body := `{"ipaddress":["192.0.2.7"],"ID":"1"}`
	var fail atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if fail.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, body)
	}))
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "block.txt")
	_ = os.WriteFile(file, []byte("198.51.100.0/24\n"), 0o600)

	l := banlist.New(nil, banlist.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reports := make(chan error, 100)
	report := func(_ banlist.FeedSource, _, _ int, err error) { reports <- err }
	go l.RunFeed(ctx, banlist.FeedSource{Name: "apiban", URL: srv.URL, Format: banlist.FormatAPIBAN, Refresh: 20 * time.Millisecond}, srv.Client(), report)
	go l.RunFeed(ctx, banlist.FeedSource{Name: "local", File: file, Format: banlist.FormatPlain, Refresh: time.Hour}, nil, report)
	for range 2 {
		if err := <-reports; err != nil {
			t.Fatal(err)
		}
	}
	if !l.Blocked(netip.MustParseAddr("192.0.2.7")) || !l.Blocked(netip.MustParseAddr("198.51.100.77")) {
		t.Fatal("feed entries not installed")
	}
	fail.Store(true)
	for err := range reports {
		if err != nil {
			break
		}
	}
	if !l.Blocked(netip.MustParseAddr("192.0.2.7")) {
		t.Fatal("a failed refresh dropped the last good entries")
	}
	if len(l.List(false)) != 0 || len(l.List(true)) != 2 {
		t.Fatalf("List: %d without feeds, %d with", len(l.List(false)), len(l.List(true)))
	}
}
