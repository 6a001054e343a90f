package banlist

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"
)

// Feed formats.
const (
	FormatPlain  = "plain"  // one address or CIDR prefix a line; '#' starts a comment
	FormatAPIBAN = "apiban" // {"ipaddress": ["192.0.2.1", ...], "ID": "..."}
)

// Limits on what a feed may hold, so that a broken or hostile feed cannot
// exhaust memory.
const (
	MaxFeedBytes   = 16 << 20
	MaxFeedEntries = 1_000_000
)

// ErrFeedTooLarge is returned for a feed over MaxFeedBytes or MaxFeedEntries.
var ErrFeedTooLarge = errors.New("banlist: feed too large")

// ParseFeed reads the prefixes of a feed. Entries that are not addresses or
// prefixes are skipped and counted in skipped; a feed that is not in the
// format at all is an error.
func ParseFeed(r io.Reader, format string) (prefixes []netip.Prefix, skipped int, err error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFeedBytes+1))
	if err != nil {
		return nil, 0, err
	}
	if len(data) > MaxFeedBytes {
		return nil, 0, ErrFeedTooLarge
	}
	var entries []string
	switch format {
	case FormatAPIBAN:
		var doc struct {
			IPAddress []string `json:"ipaddress"`
			ID        string   `json:"ID"`
		}
		if err := json.Unmarshal(data, &doc); err != nil {
			return nil, 0, fmt.Errorf("apiban feed: %w", err)
		}
		entries = doc.IPAddress
	case FormatPlain, "":
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 0, 4096), 4096)
		for sc.Scan() {
			line := sc.Text()
			if i := strings.IndexByte(line, '#'); i >= 0 {
				line = line[:i]
			}
			if line = strings.TrimSpace(line); line != "" {
				entries = append(entries, line)
			}
		}
		if err := sc.Err(); err != nil {
			return nil, 0, fmt.Errorf("plain feed: %w", err)
		}
	default:
		return nil, 0, fmt.Errorf("banlist: unknown feed format %q (plain or apiban)", format)
	}
	if len(entries) > MaxFeedEntries {
		return nil, 0, ErrFeedTooLarge
	}
	for _, e := range entries {
		p, err := parseEntry(e)
		if err != nil {
			skipped++
			continue
		}
		prefixes = append(prefixes, p)
	}
	return prefixes, skipped, nil
}

func parseEntry(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return normalize(p), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// FeedSource is one configured feed.
type FeedSource struct {
	Name    string
	URL     string // http(s) URL, or
	File    string // a local file
	Format  string
	Refresh time.Duration
}

// Fetch reads the feed's current prefixes.
func (f FeedSource) Fetch(ctx context.Context, client *http.Client) ([]netip.Prefix, int, error) {
	if f.File != "" {
		fh, err := os.Open(f.File)
		if err != nil {
			return nil, 0, err
		}
		defer fh.Close()
		return ParseFeed(fh, f.Format)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.URL, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("User-Agent", "sipwarden")
	resp, err := client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("feed %s: HTTP %s", f.Name, resp.Status)
	}
	return ParseFeed(resp.Body, f.Format)
}

// RunFeed refreshes feed f into l every f.Refresh until ctx ends. A failed
// refresh keeps the entries of the last good one. report is told of every
// outcome (for logs and metrics).
func (l *List) RunFeed(ctx context.Context, f FeedSource, client *http.Client, report func(f FeedSource, n, skipped int, err error)) {
	refresh := f.Refresh
	if refresh <= 0 {
		refresh = time.Hour
	}
	for {
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		prefixes, skipped, err := f.Fetch(fctx, client)
		cancel()
		if err == nil {
			l.AddFeed(f.Name, prefixes)
		}
		if report != nil {
			report(f, len(prefixes), skipped, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(refresh):
		}
	}
}
