package shaken

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}
func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// certServer serves chain at every path, with headers set by hdr, and counts requests.
type certServer struct {
	*httptest.Server
	hits  atomic.Int32
	mu    sync.Mutex
	hdr   http.Header
	code  int
	body  []byte
	block chan struct{} // when not nil, requests wait for it
}

func newCertServer(t *testing.T, body []byte) *certServer {
	s := &certServer{hdr: http.Header{}, code: 200, body: body}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		block, code, b := s.block, s.code, s.body
		for k, v := range s.hdr {
			w.Header()[k] = v
		}
		s.mu.Unlock()
		if block != nil {
			select {
			case <-block:
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/pem-certificate-chain")
		w.WriteHeader(code)
		_, _ = w.Write(b)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *certServer) set(f func(s *certServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func newTestCache(t *testing.T, s *certServer, clk *fakeClock, mod func(*CacheConfig)) *Cache {
	cfg := CacheConfig{Relaxed: true, RootCAs: s.serverPool(), Now: clk.Now}
	if mod != nil {
		mod(&cfg)
	}
	c := NewCache(cfg)
	t.Cleanup(c.Close)
	return c
}

func (s *certServer) serverPool() *x509CertPool {
	p := newX509Pool()
	p.AddCert(s.Certificate())
	return p
}

// waitFor polls cond for up to 5 s (background fetches finish on their own time).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestCacheFreshStaleRefresh(t *testing.T) {
	p := newPKI(t)
	s := newCertServer(t, p.ChainPEM())
	s.hdr.Set("Cache-Control", "public, max-age=120, stale-while-revalidate=60")
	clk := newFakeClock()
	c := newTestCache(t, s, clk, nil)
	url := s.URL + "/sp.pem"

	e, err := c.Get(url, 5*time.Second)
	if err != nil || len(e.Certs) != 2 {
		t.Fatalf("first get: %v", err)
	}
	if _, err := c.Get(url, 0); err != nil || s.hits.Load() != 1 {
		t.Fatalf("cached get: %v, %d fetches", err, s.hits.Load())
	}
	clk.Advance(100 * time.Second)
	if _, err := c.Get(url, 0); err != nil || s.hits.Load() != 1 {
		t.Fatalf("still fresh at 100s: %v, %d fetches", err, s.hits.Load())
	}
	clk.Advance(30 * time.Second) // 130s: stale, within the 60s window
	if e2, err := c.Get(url, 0); err != nil || e2 != e {
		t.Fatalf("stale get must return the old entry at once: %v", err)
	}
	waitFor(t, "the background refresh", func() bool { return s.hits.Load() == 2 })
	waitFor(t, "the refreshed entry", func() bool {
		e3, err := c.Get(url, 0)
		return err == nil && e3 != e
	})
	clk.Advance(120*time.Second + 61*time.Second) // past fresh and stale: a blocking fetch
	if _, err := c.Get(url, 5*time.Second); err != nil || s.hits.Load() != 3 {
		t.Fatalf("expired get: %v, %d fetches", err, s.hits.Load())
	}
	st := c.Stats()
	if st.Hits < 2 || st.Stale < 1 || st.Misses != 2 || st.Fetches != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestCacheLifetime(t *testing.T) {
	clk := newFakeClock()
	c := NewCache(CacheConfig{Now: clk.Now})
	defer c.Close()
	now := clk.Now()
	tests := []struct {
		hdr      map[string]string
		ttl, swr time.Duration
	}{
		{nil, 24 * time.Hour, time.Hour},
		{map[string]string{"Cache-Control": "max-age=3600"}, time.Hour, time.Hour},
		{map[string]string{"Cache-Control": "max-age=3600, s-maxage=600"}, 10 * time.Minute, time.Hour},
		{map[string]string{"Cache-Control": "no-store"}, time.Minute, time.Hour},
		{map[string]string{"Cache-Control": "no-cache, max-age=3600"}, time.Minute, time.Hour},
		{map[string]string{"Cache-Control": "max-age=0"}, time.Minute, time.Hour},
		{map[string]string{"Cache-Control": "max-age=999999999999"}, 7 * 24 * time.Hour, time.Hour},
		{map[string]string{"Cache-Control": "max-age=7200, stale-while-revalidate=30"}, 2 * time.Hour, 30 * time.Second},
		{map[string]string{"Cache-Control": "max-age=7200", "Age": "3600"}, time.Hour, time.Hour},
		{map[string]string{"Cache-Control": `max-age="7200"`}, 2 * time.Hour, time.Hour},
		{map[string]string{"Cache-Control": "max-age=abc"}, 24 * time.Hour, time.Hour},
		{map[string]string{"Expires": now.Add(2 * time.Hour).UTC().Format(http.TimeFormat)}, 2 * time.Hour, time.Hour},
		{map[string]string{"Expires": now.Add(2 * time.Hour).UTC().Format(http.TimeFormat), "Date": now.Add(time.Hour).UTC().Format(http.TimeFormat)}, time.Hour, time.Hour},
		{map[string]string{"Expires": "0"}, time.Minute, time.Hour},
		{map[string]string{"Expires": now.Add(-time.Hour).UTC().Format(http.TimeFormat)}, time.Minute, time.Hour},
	}
	for _, tc := range tests {
		h := http.Header{}
		for k, v := range tc.hdr {
			h.Set(k, v)
		}
		ttl, swr := c.lifetime(h, now)
		// Expires has second precision
		if d := ttl - tc.ttl; d < -time.Second || d > time.Second || swr != tc.swr {
			t.Errorf("%v: ttl %v swr %v, want %v %v", tc.hdr, ttl, swr, tc.ttl, tc.swr)
		}
	}
}

func TestCacheNegative(t *testing.T) {
	s := newCertServer(t, []byte("not found"))
	s.code = 404
	clk := newFakeClock()
	c := newTestCache(t, s, clk, func(cfg *CacheConfig) { cfg.NegativeTTL = 30 * time.Second })
	url := s.URL + "/missing.pem"
	for i := 0; i < 3; i++ {
		if _, err := c.Get(url, 5*time.Second); !errors.Is(err, ErrX5U) {
			t.Fatalf("get %d: %v, want ErrX5U", i, err)
		}
	}
	if s.hits.Load() != 1 {
		t.Fatalf("%d fetches, want 1 (negative cache)", s.hits.Load())
	}
	clk.Advance(31 * time.Second)
	p := newPKI(t)
	s.set(func(s *certServer) { s.code, s.body = 200, p.ChainPEM() })
	if _, err := c.Get(url, 5*time.Second); err != nil || s.hits.Load() != 2 {
		t.Fatalf("after the negative TTL: %v, %d fetches", err, s.hits.Load())
	}
	// garbage is the credential's fault (437), and cached too
	s2 := newCertServer(t, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	c2 := newTestCache(t, s2, clk, nil)
	if _, err := c2.Get(s2.URL+"/bad.pem", 5*time.Second); !errors.Is(err, ErrCertificate) {
		t.Fatalf("garbage: %v, want ErrCertificate", err)
	}
}

func TestCacheFailedRefreshServesStale(t *testing.T) {
	p := newPKI(t)
	s := newCertServer(t, p.ChainPEM())
	s.hdr.Set("Cache-Control", "max-age=60")
	clk := newFakeClock()
	c := newTestCache(t, s, clk, nil)
	url := s.URL + "/sp.pem"
	e, err := c.Get(url, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s.set(func(s *certServer) { s.code = 500 })
	clk.Advance(2 * time.Minute)
	if e2, err := c.Get(url, 0); err != nil || e2 != e {
		t.Fatalf("stale: %v", err)
	}
	waitFor(t, "the failed refresh", func() bool { return c.Stats().FetchErrors == 1 })
	// no new attempt before NegativeTTL, the old certificate still served
	if e2, err := c.Get(url, 0); err != nil || e2 != e || s.hits.Load() != 2 {
		t.Fatalf("after failed refresh: %v, %d fetches", err, s.hits.Load())
	}
}

func TestCacheBudget(t *testing.T) {
	p := newPKI(t)
	s := newCertServer(t, p.ChainPEM())
	block := make(chan struct{})
	s.block = block
	clk := newFakeClock()
	c := newTestCache(t, s, clk, nil)
	url := s.URL + "/slow.pem"
	start := time.Now()
	_, err := c.Get(url, 50*time.Millisecond)
	if el := time.Since(start); !errors.Is(err, ErrFetchPending) || !errors.Is(err, ErrX5U) || el > time.Second {
		t.Fatalf("slow fetch: %v after %v", err, el)
	}
	if _, err := c.Get(url, 0); !errors.Is(err, ErrFetchPending) {
		t.Fatalf("zero budget while pending: %v", err)
	}
	close(block)
	waitFor(t, "the fetch to land", func() bool { _, err := c.Get(url, 0); return err == nil })
	if s.hits.Load() != 1 {
		t.Fatalf("%d fetches, want 1: waiting callers share one fetch", s.hits.Load())
	}
}

func TestCacheConcurrencyBound(t *testing.T) {
	p := newPKI(t)
	s := newCertServer(t, p.ChainPEM())
	block := make(chan struct{})
	var inFlight, peak atomic.Int32
	s.Server.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		for {
			old := peak.Load()
			if n <= old || peak.CompareAndSwap(old, n) {
				break
			}
		}
		<-block
		inFlight.Add(-1)
		_, _ = w.Write(p.ChainPEM())
	})
	c := newTestCache(t, s, newFakeClock(), func(cfg *CacheConfig) { cfg.MaxFetches = 2 })
	for i := 0; i < 6; i++ {
		if _, err := c.Get(s.URL+"/"+strings.Repeat("x", i+1), 0); !errors.Is(err, ErrFetchPending) {
			t.Fatalf("get %d: %v", i, err)
		}
	}
	var release sync.Once
	t.Cleanup(func() { release.Do(func() { close(block) }) }) // a failure does not leave handlers blocked
	waitFor(t, "two fetches in flight", func() bool { return inFlight.Load() == 2 })
	// Release the blocked fetches one at a time: each freed slot goes to a
	// queued fetch (Fetches counts a fetch when it takes a slot), and the
	// others stay queued meanwhile. A third fetch let through at any point
	// would still be blocked in the handler and show in the peak.
	for i := range 4 {
		block <- struct{}{}
		waitFor(t, "a queued fetch in the freed slot", func() bool {
			return c.Stats().Fetches == uint64(3+i) && inFlight.Load() == 2
		})
	}
	release.Do(func() { close(block) })
	waitFor(t, "all fetches", func() bool { return c.Stats().Fetches == 6 && inFlight.Load() == 0 })
	if peak.Load() != 2 {
		t.Fatalf("peak %d concurrent fetches, want 2", peak.Load())
	}
}

func TestCacheBounds(t *testing.T) {
	p := newPKI(t)
	big := append(p.ChainPEM(), make([]byte, 70<<10)...)
	s := newCertServer(t, big)
	clk := newFakeClock()
	c := newTestCache(t, s, clk, func(cfg *CacheConfig) { cfg.MaxEntries = 3 })
	if _, err := c.Get(s.URL+"/big.pem", 5*time.Second); !errors.Is(err, ErrX5U) || !strings.Contains(err.Error(), "larger") {
		t.Fatalf("oversized response: %v", err)
	}
	s.set(func(s *certServer) { s.body = p.ChainPEM() })
	for i := 0; i < 10; i++ {
		clk.Advance(2 * time.Minute) // negative entries expire
		_, _ = c.Get(s.URL+"/"+strings.Repeat("y", i+1), 5*time.Second)
	}
	if n := c.Stats().Entries; n > 3 {
		t.Fatalf("%d entries, bound 3", n)
	}
	// refused URLs are checked before any fetch, even relaxed
	if _, err := c.Get("http://"+s.Listener.Addr().String()+"/x", time.Second); !errors.Is(err, ErrX5U) {
		t.Fatalf("http x5u: %v", err)
	}
	// strict rules: the test server's loopback address is refused without a fetch
	strict := NewCache(CacheConfig{Now: clk.Now})
	defer strict.Close()
	before := s.hits.Load()
	if _, err := strict.Get(s.URL+"/sp.pem", time.Second); !errors.Is(err, ErrX5U) || s.hits.Load() != before {
		t.Fatalf("strict cache fetched from loopback: %v", err)
	}
}

func TestCertEntryCheckMemo(t *testing.T) {
	p := newPKI(t)
	certs, err := ParseCertificates(p.ChainPEM())
	if err != nil {
		t.Fatal(err)
	}
	e := &CertEntry{Certs: certs}
	roots := p.Roots()
	now := time.Now()
	a, err := e.Check(roots, now)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := e.Check(roots, now.Add(time.Minute)); err != nil || b != a {
		t.Fatal("memo not reused")
	}
	if _, err := e.Check(newPKI(t).Roots(), now); !errors.Is(err, ErrCertificate) {
		t.Fatalf("other roots: %v", err)
	}
	if _, err := e.Check(roots, now.Add(2*365*24*time.Hour)); !errors.Is(err, ErrCertificate) {
		t.Fatalf("expired: %v", err)
	}
}

// Many callers at once on a few URLs: one fetch per URL, everyone gets the
// same entry, and nothing races (run with -race).
func TestCacheConcurrentCallers(t *testing.T) {
	p := newPKI(t)
	s := newCertServer(t, p.ChainPEM())
	block := make(chan struct{})
	s.block = block
	c := newTestCache(t, s, newFakeClock(), nil)
	var wg sync.WaitGroup
	results := make([]*CertEntry, 64)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e, err := c.Get(s.URL+"/"+strconv.Itoa(i%4), 5*time.Second)
			if err == nil {
				results[i] = e
			}
		}()
	}
	// The four fetches are blocked at the server: the callers that came
	// meanwhile wait on them.
	waitFor(t, "four fetches at the server", func() bool { return s.hits.Load() == 4 })
	close(block)
	wg.Wait()
	for i, e := range results {
		if e == nil || e != results[i%4] {
			t.Fatalf("caller %d: entry %p, want %p", i, e, results[i%4])
		}
	}
	if n := s.hits.Load(); n != 4 {
		t.Fatalf("%d fetches for 4 URLs", n)
	}
}
