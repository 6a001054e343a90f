// Command regload is a load generator for SIP registrars with digest
// authentication: it starts authenticated REGISTER transactions at a given
// rate (REGISTER, 401 with a challenge, REGISTER with an Authorization header
// answering it with qop=auth, 200) against any server over UDP, with MD5 or
// SHA-256 (RFC 7616, RFC 8760), and prints how many succeeded, how many
// failed and why, the rate achieved and the latency of the transactions.
//
// It exists because SIPp 3.6 only computes MD5 digests: bench/register.sh
// uses it for both sipwarden and Kamailio, so that the two servers face the
// same client. The digest is computed by github.com/icholy/digest (already a
// dependency of sipwarden's tests) from an HA1 computed once per account, as a
// phone caches it, so that the generator spends its CPU on the protocol, not
// on hashing.
//
// Accounts are numbered usernames (-first, -accounts) sharing one password.
// Registration k uses account k mod -accounts; an account always uses the same
// socket, so its Contact never changes (a refresh, not a new binding). Every
// transaction has its own Call-ID. A request without an answer is
// retransmitted after 500 ms, then 1 s, 2 s, 4 s (RFC 3261 timer E), and the
// registration fails after -timeout. Loopback only.
//
//	go run ./bench/regload -dst 127.0.0.1:15060 -algorithm SHA-256 -rate 1000 -n 10000
//	go run ./bench/regload -print-accounts sipwarden -algorithm MD5 -accounts 1000
package main

import (
	"bytes"
	"crypto/md5" //nolint:gosec // the MD5 digest algorithm is what is being measured
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"hash"
	"net"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/icholy/digest"
)

type config struct {
	dst       netip.AddrPort
	src       netip.Addr
	domain    string
	realm     string
	algorithm string
	rate      int
	n         int
	accounts  int
	first     int
	password  string
	sockets   int
	timeout   time.Duration
	maxTime   time.Duration
}

func main() {
	var c config
	dst := flag.String("dst", "127.0.0.1:5060", "registrar address:port (loopback)")
	src := flag.String("src", "127.0.0.46", "source address (loopback)")
	flag.StringVar(&c.domain, "domain", "", "host of the Request-URI, From and To (default: the -dst address)")
	flag.StringVar(&c.realm, "realm", "phones.example.test", "realm, for -print-accounts (registrations take the challenge's)")
	flag.StringVar(&c.algorithm, "algorithm", "MD5", "digest algorithm to answer: MD5 or SHA-256 (a challenge of that algorithm must be offered)")
	flag.IntVar(&c.rate, "rate", 100, "registrations started per second")
	flag.IntVar(&c.n, "n", 1000, "registrations in total")
	flag.IntVar(&c.accounts, "accounts", 1000, "accounts, numbered from -first")
	flag.IntVar(&c.first, "first", 2000, "first account's username")
	flag.StringVar(&c.password, "password", "Kq7!vzBench#Lm2xR9", "password of every account")
	flag.IntVar(&c.sockets, "sockets", 4, "UDP sockets (source ports), each with its own receiving goroutine")
	flag.DurationVar(&c.timeout, "timeout", 8*time.Second, "a registration without a final 200 after this long has failed")
	flag.DurationVar(&c.maxTime, "max-time", 5*time.Minute, "stop after this long whatever happened (at most 10m)")
	printAccounts := flag.String("print-accounts", "", "print the accounts instead of registering: \"sipwarden\" (YAML list of accounts with the -algorithm HA1)")
	flag.Parse()

	var err error
	if c.dst, err = netip.ParseAddrPort(*dst); err != nil || !c.dst.Addr().IsLoopback() {
		fatalf("-dst must be a loopback address:port")
	}
	if c.src, err = netip.ParseAddr(*src); err != nil || !c.src.IsLoopback() || !c.src.Is4() {
		fatalf("-src must be an IPv4 loopback address")
	}
	if c.domain == "" {
		c.domain = c.dst.Addr().String()
	}
	if newHash(c.algorithm) == nil {
		fatalf("-algorithm must be MD5 or SHA-256")
	}
	if c.rate < 1 || c.n < 1 || c.accounts < 1 || c.sockets < 1 || c.timeout <= 0 || c.maxTime <= 0 || c.maxTime > 10*time.Minute {
		fatalf("-rate, -n, -accounts, -sockets must be >= 1; -timeout > 0; -max-time between 0 and 10m")
	}
	switch *printAccounts {
	case "":
	case "sipwarden":
		key := strings.ToLower(c.algorithm)
		for i := range c.accounts {
			u := strconv.Itoa(c.first + i)
			fmt.Printf("      - {username: %q, ha1: {%s: %s}}\n", u, key, ha1(c.algorithm, u, c.realm, c.password))
		}
		return
	default:
		fatalf("-print-accounts: only \"sipwarden\"")
	}
	res, err := run(c)
	if err != nil {
		fatalf("%v", err)
	}
	res.print(os.Stdout)
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "regload: "+format+"\n", a...)
	os.Exit(2)
}

func newHash(algorithm string) hash.Hash {
	switch strings.ToUpper(algorithm) {
	case "MD5":
		return md5.New() //nolint:gosec // see the import
	case "SHA-256":
		return sha256.New()
	}
	return nil
}

// ha1 is H(username:realm:password) in lower-case hex (RFC 7616 section 3.4.2).
func ha1(algorithm, username, realm, password string) string {
	h := newHash(algorithm)
	h.Write([]byte(username + ":" + realm + ":" + password))
	return hex.EncodeToString(h.Sum(nil))
}

// reg is one registration in flight.
type reg struct {
	account  int
	callID   string
	tag      string
	cseq     int // 1: waiting for the challenge; 2: waiting for the 200
	msg      []byte
	started  time.Time
	nextSend time.Time
	interval time.Duration
	sends    int
}

type sock struct {
	conn    *net.UDPConn
	contact string // host:port of the socket
	mu      sync.Mutex
	pending map[string]*reg
}

type results struct {
	started, ok, retrans atomic.Int64
	mu                   sync.Mutex
	failures             map[string]int
	latencies            []time.Duration
	elapsed              time.Duration
	rate, n              int
	algorithm            string
}

func (r *results) fail(reason string) {
	r.mu.Lock()
	r.failures[reason]++
	r.mu.Unlock()
}

func (r *results) success(d time.Duration) {
	r.ok.Add(1)
	r.mu.Lock()
	r.latencies = append(r.latencies, d)
	r.mu.Unlock()
}

// print writes one line of key=value pairs, for scripts, then the failure reasons.
func (r *results) print(f *os.File) {
	r.mu.Lock()
	defer r.mu.Unlock()
	failed := 0
	reasons := make([]string, 0, len(r.failures))
	for k, v := range r.failures {
		failed += v
		reasons = append(reasons, fmt.Sprintf("%s:%d", k, v))
	}
	sort.Strings(reasons)
	slices.Sort(r.latencies)
	pct := func(p float64) float64 {
		if len(r.latencies) == 0 {
			return 0
		}
		return float64(r.latencies[int(p*float64(len(r.latencies)-1))].Microseconds()) / 1000
	}
	fmt.Fprintf(f, "algorithm=%s rate=%d n=%d started=%d ok=%d failed=%d elapsed=%.3f achieved=%.0f retrans=%d p50_ms=%.2f p99_ms=%.2f failures=%s\n",
		r.algorithm, r.rate, r.n, r.started.Load(), r.ok.Load(), failed, r.elapsed.Seconds(),
		float64(r.ok.Load())/r.elapsed.Seconds(), r.retrans.Load(), pct(0.5), pct(0.99), strings.Join(reasons, ","))
}

func run(c config) (*results, error) {
	res := &results{failures: map[string]int{}, rate: c.rate, n: c.n, algorithm: c.algorithm}
	ha1s := make([]string, c.accounts)
	for i := range ha1s {
		// the realm of the challenge is checked against -realm when answering
		ha1s[i] = ha1(c.algorithm, strconv.Itoa(c.first+i), c.realm, c.password)
	}
	socks := make([]*sock, c.sockets)
	for i := range socks {
		conn, err := net.DialUDP("udp4", &net.UDPAddr{IP: c.src.AsSlice()}, net.UDPAddrFromAddrPort(c.dst))
		if err != nil {
			return nil, fmt.Errorf("socket: %w", err)
		}
		_ = conn.SetReadBuffer(4 << 20)
		_ = conn.SetWriteBuffer(4 << 20)
		defer conn.Close()
		socks[i] = &sock{conn: conn, contact: conn.LocalAddr().String(), pending: map[string]*reg{}}
	}
	prefix := make([]byte, 6)
	_, _ = rand.Read(prefix)
	runID := hex.EncodeToString(prefix)

	var done atomic.Int64 // registrations finished, either way
	allDone := make(chan struct{})
	finish := func() {
		if done.Add(1) == int64(c.n) {
			close(allDone)
		}
	}
	start := time.Now()
	for _, s := range socks {
		go s.receive(c, res, ha1s, finish)
	}
	// retransmissions and timeouts
	stopTimers := make(chan struct{})
	go func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopTimers:
				return
			case now := <-t.C:
				for _, s := range socks {
					s.timers(now, c.timeout, res, finish)
				}
			}
		}
	}()
	// pacing: start what is due every millisecond
	go func() {
		k := 0
		for k < c.n {
			due := min(int(time.Since(start).Seconds()*float64(c.rate))+1, c.n)
			for ; k < due; k++ {
				acc := k % c.accounts
				s := socks[acc%len(socks)]
				r := &reg{account: acc, callID: fmt.Sprintf("%s-%d@regload", runID, k), tag: strconv.Itoa(k), cseq: 1}
				r.msg = s.register(c, r, "")
				s.mu.Lock()
				s.pending[r.callID] = r
				now := time.Now()
				r.started, r.nextSend, r.interval, r.sends = now, now.Add(500*time.Millisecond), 500*time.Millisecond, 1
				s.mu.Unlock()
				res.started.Add(1)
				if _, err := s.conn.Write(r.msg); err != nil {
					// ECONNREFUSED/ENOBUFS: the retransmission timer tries again
					continue
				}
			}
			time.Sleep(time.Millisecond)
		}
	}()
	select {
	case <-allDone:
	case <-time.After(c.maxTime):
		res.fail("max_time")
	}
	res.elapsed = time.Since(start)
	close(stopTimers)
	return res, nil
}

// register builds the REGISTER of r (with an Authorization header when auth is set).
func (s *sock) register(c config, r *reg, auth string) []byte {
	user := strconv.Itoa(c.first + r.account)
	var b bytes.Buffer
	b.Grow(512 + len(auth))
	fmt.Fprintf(&b, "REGISTER sip:%s SIP/2.0\r\n", c.domain)
	fmt.Fprintf(&b, "Via: SIP/2.0/UDP %s;branch=z9hG4bK%s-%d;rport\r\n", s.contact, strings.TrimSuffix(r.callID, "@regload"), r.cseq)
	b.WriteString("Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "From: <sip:%s@%s>;tag=%s\r\n", user, c.domain, r.tag)
	fmt.Fprintf(&b, "To: <sip:%s@%s>\r\n", user, c.domain)
	fmt.Fprintf(&b, "Call-ID: %s\r\n", r.callID)
	fmt.Fprintf(&b, "CSeq: %d REGISTER\r\n", r.cseq)
	fmt.Fprintf(&b, "Contact: <sip:%s@%s>\r\n", user, s.contact)
	if auth != "" {
		fmt.Fprintf(&b, "Authorization: %s\r\n", auth)
	}
	b.WriteString("Expires: 600\r\nUser-Agent: regload\r\nContent-Length: 0\r\n\r\n")
	return b.Bytes()
}

func (s *sock) timers(now time.Time, timeout time.Duration, res *results, finish func()) {
	var resend [][]byte
	s.mu.Lock()
	for id, r := range s.pending {
		if now.Sub(r.started) > timeout {
			delete(s.pending, id)
			res.fail(fmt.Sprintf("timeout_cseq%d", r.cseq))
			finish()
			continue
		}
		if now.After(r.nextSend) {
			r.interval = min(2*r.interval, 4*time.Second)
			r.nextSend = now.Add(r.interval)
			r.sends++
			resend = append(resend, r.msg)
		}
	}
	s.mu.Unlock()
	for _, m := range resend {
		res.retrans.Add(1)
		_, _ = s.conn.Write(m)
	}
}

func (s *sock) receive(c config, res *results, ha1s []string, finish func()) {
	buf := make([]byte, 65535)
	for {
		n, err := s.conn.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // ECONNREFUSED before the server listens, and the like
		}
		code, callID, cseq, challenges, ok := parseResponse(buf[:n])
		if !ok || code < 200 {
			continue
		}
		s.mu.Lock()
		r := s.pending[callID]
		if r == nil || r.cseq != cseq {
			s.mu.Unlock()
			continue // a retransmitted answer to a transaction already done
		}
		switch {
		case code == 401 && cseq == 1:
			auth, err := answer(c, r, challenges, ha1s[r.account])
			if err != nil {
				delete(s.pending, callID)
				s.mu.Unlock()
				res.fail(err.Error())
				finish()
				continue
			}
			r.cseq = 2
			r.msg = s.register(c, r, auth)
			now := time.Now()
			r.nextSend, r.interval = now.Add(500*time.Millisecond), 500*time.Millisecond
			msg := r.msg
			s.mu.Unlock()
			_, _ = s.conn.Write(msg)
		case code == 200 && cseq == 2:
			delete(s.pending, callID)
			s.mu.Unlock()
			res.success(time.Since(r.started))
			finish()
		default:
			delete(s.pending, callID)
			s.mu.Unlock()
			res.fail(fmt.Sprintf("status%d_cseq%d", code, cseq))
			finish()
		}
	}
}

// answer picks the challenge of the wanted algorithm (a server may offer
// several, strongest first) and computes the Authorization header value.
func answer(c config, r *reg, challenges []string, ha1 string) (string, error) {
	for _, h := range challenges {
		ch, err := digest.ParseChallenge(h)
		if err != nil {
			continue
		}
		alg := ch.Algorithm
		if alg == "" {
			alg = "MD5"
		}
		if !strings.EqualFold(alg, c.algorithm) {
			continue
		}
		if ch.Realm != c.realm {
			return "", errors.New("realm_mismatch")
		}
		cnonce := make([]byte, 8)
		_, _ = rand.Read(cnonce)
		cred, err := digest.Digest(ch, digest.Options{
			Method:   "REGISTER",
			URI:      "sip:" + c.domain,
			Username: strconv.Itoa(c.first + r.account),
			A1:       ha1,
			Count:    1,
			Cnonce:   hex.EncodeToString(cnonce),
		})
		if err != nil {
			return "", errors.New("digest_error")
		}
		return cred.String(), nil
	}
	return "", errors.New("no_challenge_of_algorithm")
}

// parseResponse extracts what the generator needs from a SIP response: the
// status code, Call-ID, CSeq number and the WWW-Authenticate values. Compact
// header forms are not expected from registrars, except i for Call-ID.
func parseResponse(b []byte) (code int, callID string, cseq int, challenges []string, ok bool) {
	head, _, _ := bytes.Cut(b, []byte("\r\n\r\n"))
	lines := strings.Split(string(head), "\r\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "SIP/2.0 ") || len(lines[0]) < 11 {
		return 0, "", 0, nil, false
	}
	code, err := strconv.Atoi(lines[0][8:11])
	if err != nil {
		return 0, "", 0, nil, false
	}
	for _, l := range lines[1:] {
		name, value, found := strings.Cut(l, ":")
		if !found {
			continue
		}
		value = strings.TrimSpace(value)
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "call-id", "i":
			callID = value
		case "cseq":
			num, _, _ := strings.Cut(value, " ")
			cseq, _ = strconv.Atoi(num)
		case "www-authenticate":
			challenges = append(challenges, value)
		}
	}
	return code, callID, cseq, challenges, callID != "" && cseq > 0
}
