package shaken

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// CacheConfig tunes a certificate Cache. Zero values take the defaults.
type CacheConfig struct {
	// DefaultTTL is how long a certificate is fresh when the response has no
	// caching headers (default 24h).
	DefaultTTL time.Duration
	// MinTTL and MaxTTL clamp what the headers ask for (defaults 1m and 7 days):
	// no-store or max-age=0 cannot make every call refetch.
	MinTTL, MaxTTL time.Duration
	// StaleWhileRevalidate is how long after expiry an entry is still served
	// while a refresh runs in the background (default 1h; a
	// stale-while-revalidate directive in the response overrides it).
	StaleWhileRevalidate time.Duration
	// NegativeTTL is how long a failed fetch is remembered (default 1m).
	NegativeTTL time.Duration
	// MaxEntries bounds the cache (default 10000).
	MaxEntries int
	// MaxFetches bounds concurrent fetches (default 16).
	MaxFetches int
	// MaxBodyBytes bounds a certificate response (default 64 KiB).
	MaxBodyBytes int64
	// MaxCRLBytes bounds a CRL response (default 1 MiB).
	MaxCRLBytes int64
	// FetchTimeout bounds one fetch, from queueing to the last byte (default 5s).
	FetchTimeout time.Duration
	// Relaxed lifts the x5u port and address rules and the dial check (tests and labs only).
	Relaxed bool
	// RootCAs verifies the HTTPS servers of x5u URLs (nil: the system roots).
	RootCAs *x509.CertPool
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// OnFetch, when set, is called after each completed fetch with its
	// duration and error (metrics).
	OnFetch func(d time.Duration, err error)
}

func (c *CacheConfig) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.DefaultTTL, 24*time.Hour)
	def(&c.MinTTL, time.Minute)
	def(&c.MaxTTL, 7*24*time.Hour)
	def(&c.StaleWhileRevalidate, time.Hour)
	def(&c.NegativeTTL, time.Minute)
	def(&c.FetchTimeout, 5*time.Second)
	if c.MaxEntries <= 0 {
		c.MaxEntries = 10000
	}
	if c.MaxFetches <= 0 {
		c.MaxFetches = 16
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 64 << 10
	}
	if c.MaxCRLBytes <= 0 {
		c.MaxCRLBytes = 1 << 20
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// CacheStats are the cache's counters since it was created.
type CacheStats struct {
	Hits, Stale, Misses, Negative, Timeouts, Fetches, FetchErrors uint64
	// FetchSeconds is the total time spent in completed fetches.
	FetchSeconds float64
	Entries      int
}

// Cache fetches signing certificates from x5u URLs and keeps them. Get never
// waits longer than the budget it is given; a fetch it started goes on in
// the background and serves the next call. Safe for concurrent use.
type Cache struct {
	cfg    CacheConfig
	client *http.Client
	sem    chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	entries map[string]*cacheEntry

	hits, stale, misses, negative, timeouts, fetches, fetchErrors atomic.Uint64
	fetchNanos                                                    atomic.Int64
}

// CertEntry is what the cache holds for one URL: the parsed certificates
// (leaf first) and a memo of the last chain check, so that a verifier does
// not re-verify the chain of a cached certificate on every call.
type CertEntry struct {
	Certs []*x509.Certificate
	// CRL is set instead of Certs in entries of GetCRL.
	CRL  *CRL
	memo atomic.Pointer[chainMemo]
}

type chainMemo struct {
	roots   *x509.CertPool
	checked *Checked
	err     error
	until   time.Time // the memo is good until then (and from NotBefore)
}

type cacheEntry struct {
	url      string
	crl      bool          // the entry is a CRL, not certificates
	ready    chan struct{} // closed once the first fetch has finished
	cert     *CertEntry    // nil when err is set
	err      error
	expires  time.Time // fresh until
	staleEnd time.Time // served (while refreshing) until
	retry    time.Time // no refresh attempt before
	fetching bool
}

// NewCache returns a cache; Close stops its fetches.
func NewCache(cfg CacheConfig) *Cache {
	cfg.defaults()
	dialer := &net.Dialer{Timeout: cfg.FetchTimeout}
	if !cfg.Relaxed {
		dialer.Control = dialControl
	}
	tr := &http.Transport{
		Proxy:                  nil, // certificate fetches go direct
		DialContext:            dialer.DialContext,
		TLSClientConfig:        &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    cfg.FetchTimeout,
		ResponseHeaderTimeout:  cfg.FetchTimeout,
		MaxResponseHeaderBytes: 16 << 10,
		MaxIdleConnsPerHost:    2,
		IdleConnTimeout:        90 * time.Second,
		ForceAttemptHTTP2:      true,
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Cache{
		cfg: cfg,
		client: &http.Client{
			Transport: tr,
			// A redirect would take the fetch to a URL the rules never saw.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		sem:     make(chan struct{}, cfg.MaxFetches),
		ctx:     ctx,
		cancel:  cancel,
		entries: make(map[string]*cacheEntry),
	}
}

// Close cancels fetches in progress and waits for them to end.
func (c *Cache) Close() {
	c.cancel()
	c.wg.Wait()
	if tr, ok := c.client.Transport.(*http.Transport); ok {
		tr.CloseIdleConnections()
	}
}

// ErrFetchPending is wrapped when the budget ran out before the certificate arrived.
var ErrFetchPending = errors.New("certificate fetch still in progress")

// Get returns the certificates at x5u. A fresh entry is returned at once;
// an expired one within its stale-while-revalidate window is returned at
// once and refreshed in the background; otherwise a fetch starts and Get
// waits for it at most budget. Errors wrap ErrX5U.
func (c *Cache) Get(x5u string, budget time.Duration) (*CertEntry, error) {
	return c.get(x5u, x5u, false, budget)
}

// GetCRL returns the certificate revocation list at url (a certificate's
// CRL distribution point), cached like certificates. Errors wrap ErrX5U.
func (c *Cache) GetCRL(url string, budget time.Duration) (*CRL, error) {
	e, err := c.get("crl "+url, url, true, budget) // a space cannot start a URL: no collision with x5u keys
	if err != nil {
		return nil, err
	}
	return e.CRL, nil
}

func (c *Cache) get(key, url string, crl bool, budget time.Duration) (*CertEntry, error) {
	now := c.cfg.Now()
	c.mu.Lock()
	e := c.entries[key]
	if e != nil {
		select {
		case <-e.ready:
			switch {
			case now.Before(e.expires):
				cert, err := e.cert, e.err
				c.mu.Unlock()
				if err != nil {
					c.negative.Add(1)
					return nil, err
				}
				c.hits.Add(1)
				return cert, nil
			case e.cert != nil && now.Before(e.staleEnd):
				if !e.fetching && !now.Before(e.retry) {
					e.fetching = true
					c.startFetch(e)
				}
				cert := e.cert
				c.mu.Unlock()
				c.stale.Add(1)
				return cert, nil
			}
			// expired for good: replace it below
			e = nil
		default:
			// first fetch in progress: wait for it below
		}
	}
	if e == nil {
		check := CheckX5U
		if crl {
			check = CheckCRLURL
		}
		if _, err := check(url, c.cfg.Relaxed); err != nil {
			// refused URLs are not remembered: checking is cheaper than a map entry
			c.mu.Unlock()
			return nil, err
		}
		c.makeRoom(now)
		e = &cacheEntry{ready: make(chan struct{}), fetching: true, url: url, crl: crl}
		c.entries[key] = e
		c.startFetch(e)
	}
	c.mu.Unlock()
	c.misses.Add(1)
	if budget <= 0 {
		select {
		case <-e.ready:
		default:
			c.timeouts.Add(1)
			return nil, fmt.Errorf("%w: %w", ErrX5U, ErrFetchPending)
		}
	} else {
		t := time.NewTimer(budget)
		select {
		case <-e.ready:
			t.Stop()
		case <-t.C:
			c.timeouts.Add(1)
			return nil, fmt.Errorf("%w: %w (budget %v)", ErrX5U, ErrFetchPending, budget)
		}
	}
	c.mu.Lock()
	cert, err := e.cert, e.err
	c.mu.Unlock()
	return cert, err
}

// makeRoom drops expired entries when the cache is full, then any idle
// entry if it is still full. Called with c.mu held.
func (c *Cache) makeRoom(now time.Time) {
	if len(c.entries) < c.cfg.MaxEntries {
		return
	}
	for k, e := range c.entries {
		if !e.fetching && !now.Before(e.staleEnd) && !now.Before(e.expires) {
			delete(c.entries, k)
		}
	}
	for k, e := range c.entries {
		if len(c.entries) < c.cfg.MaxEntries {
			return
		}
		if !e.fetching {
			delete(c.entries, k)
		}
	}
}

// startFetch runs a fetch for e in the background. Called with c.mu held and
// e.fetching set.
func (c *Cache) startFetch(e *cacheEntry) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.fetch(e)
	}()
}

func (c *Cache) fetch(e *cacheEntry) {
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.FetchTimeout)
	defer cancel()
	start := time.Now()
	var (
		cert *CertEntry
		hdr  http.Header
		err  error
	)
	select {
	case c.sem <- struct{}{}:
		c.fetches.Add(1)
		cert, hdr, err = c.download(ctx, e.url, e.crl)
		<-c.sem
		d := time.Since(start)
		c.fetchNanos.Add(int64(d))
		if c.cfg.OnFetch != nil {
			c.cfg.OnFetch(d, err)
		}
	case <-ctx.Done():
		err = fmt.Errorf("%w: too many certificate fetches in progress", ErrX5U)
	}
	now := c.cfg.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e.fetching = false
	first := e.cert == nil && e.err == nil
	if err != nil {
		c.fetchErrors.Add(1)
		if !first && e.cert != nil {
			// a failed refresh keeps serving the old certificate until its
			// stale window ends, and waits before trying again
			e.retry = now.Add(c.cfg.NegativeTTL)
			return
		}
		e.err = err
		e.expires = now.Add(c.cfg.NegativeTTL)
		e.staleEnd = e.expires
	} else {
		ttl, swr := c.lifetime(hdr, now)
		e.cert, e.err = cert, nil
		e.expires = now.Add(ttl)
		e.staleEnd = e.expires.Add(swr)
		e.retry = time.Time{}
	}
	if first {
		close(e.ready)
	}
}

func (c *Cache) download(ctx context.Context, x5u string, crl bool) (*CertEntry, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, x5u, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrX5U, err)
	}
	req.Header.Set("Accept", "application/pem-certificate-chain, application/pkix-cert")
	limit := c.cfg.MaxBodyBytes
	if crl {
		req.Header.Set("Accept", "application/pkix-crl")
		limit = c.cfg.MaxCRLBytes
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: fetch %s: %v", ErrX5U, x5u, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("%w: fetch %s: status %d", ErrX5U, x5u, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: fetch %s: %v", ErrX5U, x5u, err)
	}
	if int64(len(body)) > limit {
		return nil, nil, fmt.Errorf("%w: fetch %s: response larger than %d bytes", ErrX5U, x5u, limit)
	}
	if crl {
		list, err := ParseCRL(body)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %s: %v", ErrX5U, x5u, err)
		}
		return &CertEntry{CRL: list}, resp.Header, nil
	}
	certs, err := ParseCertificates(body)
	if err != nil {
		// an unparseable certificate is the credential's fault: 437
		return nil, nil, fmt.Errorf("%w: %s: %v", ErrCertificate, x5u, err)
	}
	return &CertEntry{Certs: certs}, resp.Header, nil
}

// lifetime reads the freshness lifetime and the stale-while-revalidate
// window from the response headers (RFC 9111 section 4.2.1, RFC 5861):
// s-maxage, then max-age, then Expires minus Date; minus Age; clamped to
// [MinTTL, MaxTTL]; no-store and no-cache count as zero (so MinTTL).
func (c *Cache) lifetime(h http.Header, now time.Time) (ttl, swr time.Duration) {
	ttl, swr = -1, c.cfg.StaleWhileRevalidate
	var maxAge, sMaxAge time.Duration = -1, -1
	for _, v := range h.Values("Cache-Control") {
		for d := range strings.SplitSeq(v, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(d), "=")
			val = strings.Trim(val, `"`)
			secs := func() time.Duration {
				n, err := strconv.ParseInt(val, 10, 64)
				if err != nil || n < 0 {
					return -1
				}
				if n > int64(c.cfg.MaxTTL/time.Second) {
					return c.cfg.MaxTTL
				}
				return time.Duration(n) * time.Second
			}
			switch strings.ToLower(name) {
			case "no-store", "no-cache":
				ttl = 0
			case "max-age":
				maxAge = secs()
			case "s-maxage":
				sMaxAge = secs()
			case "stale-while-revalidate":
				if s := secs(); s >= 0 {
					swr = s
				}
			}
		}
	}
	switch {
	case ttl == 0:
	case sMaxAge >= 0:
		ttl = sMaxAge
	case maxAge >= 0:
		ttl = maxAge
	case h.Get("Expires") != "":
		exp, err := http.ParseTime(h.Get("Expires"))
		if err != nil {
			ttl = 0 // an invalid Expires means already expired (RFC 9111 5.3)
			break
		}
		base := now
		if d, err := http.ParseTime(h.Get("Date")); err == nil {
			base = d
		}
		ttl = exp.Sub(base)
	default:
		ttl = c.cfg.DefaultTTL
	}
	if age, err := strconv.ParseInt(h.Get("Age"), 10, 64); err == nil && age > 0 && age < 1<<31 {
		ttl -= time.Duration(age) * time.Second
	}
	ttl = min(max(ttl, c.cfg.MinTTL), c.cfg.MaxTTL)
	return ttl, min(swr, c.cfg.MaxTTL)
}

// Stats returns the counters.
func (c *Cache) Stats() CacheStats {
	c.mu.Lock()
	n := len(c.entries)
	c.mu.Unlock()
	return CacheStats{
		Hits: c.hits.Load(), Stale: c.stale.Load(), Misses: c.misses.Load(), Negative: c.negative.Load(),
		Timeouts: c.timeouts.Load(), Fetches: c.fetches.Load(), FetchErrors: c.fetchErrors.Load(),
		FetchSeconds: time.Duration(c.fetchNanos.Load()).Seconds(), Entries: n,
	}
}

// Check verifies the entry's chain against roots at now (CheckChain),
// reusing the previous result while it holds.
func (e *CertEntry) Check(roots *x509.CertPool, now time.Time) (*Checked, error) {
	if m := e.memo.Load(); m != nil && m.roots == roots && now.Before(m.until) &&
		(m.checked == nil || !now.Before(m.checked.NotBefore)) {
		return m.checked, m.err
	}
	ch, err := CheckChain(e.Certs, roots, now)
	m := &chainMemo{roots: roots, checked: ch, err: err}
	if err == nil {
		m.until = ch.NotAfter
	} else {
		m.until = now.Add(time.Minute) // a failure is re-examined now and then
	}
	e.memo.Store(m)
	return ch, err
}
