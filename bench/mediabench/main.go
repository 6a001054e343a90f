// Command mediabench drives N concurrent G.711 streams (50 packets/s, 160-byte
// payload) through sipwarden's media relay with plain RTP -> SRTP bridging
// over loopback, and reports packets/s, relay CPU per packet, loss and the
// added one-way latency (p50/p99).
//
// The relay runs in a child process (this binary with -serve), driven over
// stdin/stdout with the relay's Offer/Answer API, so that its CPU time
// (getrusage of the child) is not mixed with the load generator's. Leg A is
// a plain-RTP PBX (the senders), leg B an SRTP trunk (the receivers, which
// decrypt every packet with the key the relay offered them).
//
//	go run ./bench/mediabench -n 100 -d 20s
//	go run ./bench/mediabench -n 500 -d 20s -suite AEAD_AES_128_GCM
//
// Latency is measured from just before the sender's write to just after the
// receiver's read and decryption: it includes both processes' scheduling on
// a shared machine, so it is an upper bound of what the relay adds.
package main

import (
	"bufio"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipwarden/sipwarden/internal/media"
)

type request struct {
	Op   string `json:"op"`
	Call string `json:"call,omitempty"`
	Leg  int    `json:"leg,omitempty"`
	SDP  string `json:"sdp,omitempty"`
}

type response struct {
	SDP       string  `json:"sdp,omitempty"`
	Err       string  `json:"err,omitempty"`
	CPU       float64 `json:"cpu,omitempty"` // seconds of user+system time
	Forwarded float64 `json:"forwarded,omitempty"`
	Dropped   float64 `json:"dropped,omitempty"`
}

func main() {
	serve := flag.Bool("serve", false, "run the relay (child process)")
	n := flag.Int("n", 100, "concurrent streams")
	dur := flag.Duration("d", 20*time.Second, "duration of the measured traffic")
	suite := flag.String("suite", "AES_CM_128_HMAC_SHA1_80", "SRTP suite of the SRTP leg")
	ports := flag.String("ports", "40000-44999", "relay port range")
	senders := flag.Int("senders", 4, "sender goroutines")
	ng := flag.String("rtpengine", "", "drive rtpengine at this ng address (host:port) instead of sipwarden's relay, for a side-by-side run")
	ngPid := flag.String("rtpengine-pidfile", "/tmp/rtpengine.pid", "rtpengine's pidfile (its CPU is read from /proc)")
	direct := flag.Bool("direct", false, "baseline: send from A straight to B, bypassing the relay (plain RTP), to measure the load generator's own latency")
	flag.Parse()
	lo, hi, err := parseRange(*ports)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if *serve {
		if f := os.Getenv("MEDIABENCH_CPUPROFILE"); f != "" {
			pf, err := os.Create(f)
			if err == nil && pprof.StartCPUProfile(pf) == nil {
				defer pprof.StopCPUProfile()
			}
		}
		if err := runRelay(lo, hi); err != nil {
			fmt.Fprintln(os.Stderr, "relay:", err)
			pprof.StopCPUProfile()
			os.Exit(1)
		}
		return
	}
	s := media.ParseSuite(*suite)
	if s == media.SuiteNone {
		fmt.Fprintf(os.Stderr, "unknown suite %q\n", *suite)
		os.Exit(2)
	}
	if *n < 1 || 4*(*n) > hi-lo+1 {
		fmt.Fprintf(os.Stderr, "-n %d needs %d ports; the range has %d\n", *n, 4*(*n), hi-lo+1)
		os.Exit(2)
	}
	var be backend
	if *ng != "" {
		nb, err := newNGBackend(*ng, *ngPid)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		be = nb
	}
	if err := run(*n, *dur, s, *ports, *senders, *direct, be); err != nil {
		fmt.Fprintln(os.Stderr, "mediabench:", err)
		os.Exit(1)
	}
}

func parseRange(s string) (int, int, error) {
	a, b, ok := strings.Cut(s, "-")
	lo, err1 := strconv.Atoi(a)
	hi, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("bad port range %q (want min-max)", s)
	}
	return lo, hi, nil
}

// runRelay is the child: a relay driven by JSON lines on stdin.
func runRelay(lo, hi int) error {
	reg := prometheus.NewRegistry()
	r, err := media.New(media.Config{PortMin: lo, PortMax: hi, Registerer: reg, Timeout: time.Hour})
	if err != nil {
		return err
	}
	defer r.Shutdown()
	pol, err := media.TrunkPolicy(media.TrunkSRTPBridge, media.TrunkMediaRelay, false, media.LegB)
	if err != nil {
		return err
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64<<10), 64<<10)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var req request
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			return err
		}
		var resp response
		var body []byte
		switch req.Op {
		case "offer":
			body, err = r.Offer(req.Call, media.Leg(req.Leg), []byte(req.SDP), pol)
		case "answer":
			body, err = r.Answer(req.Call, media.Leg(req.Leg), []byte(req.SDP))
		case "stats":
			var ru syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
			resp.CPU = float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
			resp.Forwarded, resp.Dropped = counters(reg)
		case "quit":
			return nil
		default:
			err = fmt.Errorf("unknown op %q", req.Op)
		}
		if err != nil {
			resp.Err = err.Error()
		}
		resp.SDP = string(body)
		if err := out.Encode(resp); err != nil {
			return err
		}
	}
	return in.Err()
}

func counters(reg *prometheus.Registry) (fwd, drop float64) {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "sipwarden_media_packets_forwarded_total":
				fwd += m.GetCounter().GetValue()
			case "sipwarden_media_packets_dropped_total":
				drop += m.GetCounter().GetValue()
			}
		}
	}
	return fwd, drop
}

// child is the relay process.
type child struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func (c *child) do(req request) (response, error) {
	var resp response
	if req.Op == "quit" {
		b, _ := json.Marshal(req)
		_, _ = c.in.Write(append(b, '\n'))
		_ = c.in.Close()
		return resp, c.cmd.Wait()
	}
	b, _ := json.Marshal(req)
	if _, err := c.in.Write(append(b, '\n')); err != nil {
		return resp, err
	}
	if !c.out.Scan() {
		return resp, fmt.Errorf("relay process ended: %v", c.out.Err())
	}
	if err := json.Unmarshal(c.out.Bytes(), &resp); err != nil {
		return resp, err
	}
	if resp.Err != "" {
		return resp, errors.New(resp.Err)
	}
	return resp, nil
}

// stream is one call: a plain sender facing leg A, an SRTP receiver facing leg B.
type stream struct {
	a, b     *net.UDPConn
	relayA   netip.AddrPort // where A sends
	dec      *srtp.Context
	received atomic.Uint64
	badAuth  atomic.Uint64
	lat      []int32 // microseconds, receiver-owned
}

// backend is the relay under test: sipwarden's in a child process, or rtpengine.
type backend interface {
	do(request) (response, error)
}

func run(n int, dur time.Duration, suite media.Suite, ports string, nsend int, direct bool, be backend) error {
	if be == nil {
		c, err := startChild(ports)
		if err != nil {
			return err
		}
		be = c
	}
	defer func() { _, _ = be.do(request{Op: "quit"}) }()
	return measure(be, n, dur, suite, nsend, direct)
}

func startChild(ports string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "-serve", "-ports", ports)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, in: stdin, out: bufio.NewScanner(stdout)}
	c.out.Buffer(make([]byte, 64<<10), 64<<10)
	return c, nil
}

func measure(c backend, n int, dur time.Duration, suite media.Suite, nsend int, direct bool) error {

	streams := make([]*stream, n)
	for i := range streams {
		st, err := setup(c, i, suite)
		if err != nil {
			return fmt.Errorf("stream %d: %w", i, err)
		}
		streams[i] = st
		defer st.a.Close()
		defer st.b.Close()
		if direct {
			st.relayA = netip.MustParseAddrPort(st.b.LocalAddr().String())
			st.dec = nil
		}
	}

	start := time.Now()
	expected := int(dur / (20 * time.Millisecond))
	var wg sync.WaitGroup
	for _, st := range streams {
		st.lat = make([]int32, 0, expected+16)
		wg.Add(1)
		go func() {
			defer wg.Done()
			st.receive(start)
		}()
	}
	before, err := c.do(request{Op: "stats"})
	if err != nil {
		return err
	}
	var selfBefore syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &selfBefore)

	var sent atomic.Uint64
	var swg sync.WaitGroup
	for g := 0; g < nsend; g++ {
		swg.Add(1)
		go func() {
			defer swg.Done()
			sent.Add(send(streams, g, nsend, start, expected))
		}()
	}
	swg.Wait()
	elapsed := time.Since(start)
	time.Sleep(300 * time.Millisecond) // in flight
	after, err := c.do(request{Op: "stats"})
	if err != nil {
		return err
	}
	var selfAfter syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &selfAfter)
	for _, st := range streams {
		_ = st.b.SetReadDeadline(time.Now())
	}
	wg.Wait()

	var recv, bad uint64
	var lat []int32
	for _, st := range streams {
		recv += st.received.Load()
		bad += st.badAuth.Load()
		lat = append(lat, st.lat...)
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / 1000
	}
	cpu := after.CPU - before.CPU
	fwd := after.Forwarded - before.Forwarded
	self := float64((selfAfter.Utime.Nano()+selfAfter.Stime.Nano())-(selfBefore.Utime.Nano()+selfBefore.Stime.Nano())) / 1e9
	s := sent.Load()
	if direct {
		fmt.Printf("BASELINE without the relay: streams %d, plain RTP from A straight to B, %.1f s\n", n, elapsed.Seconds())
	} else {
		fmt.Printf("streams %d, suite %s, plain RTP -> SRTP, %.1f s\n", n, suite, elapsed.Seconds())
	}
	fmt.Printf("packets sent %d, received %d, loss %.3f %%, undecryptable %d\n", s, recv, 100*float64(s-min(s, recv))/float64(max(s, 1)), bad)
	// The relay flushes its counters every 64 packets per socket: the
	// receivers' count is the exact one.
	fmt.Printf("relay: %.0f packets/s relayed (counters: forwarded %.0f, dropped %.0f)\n", float64(recv)/elapsed.Seconds(), fwd, after.Dropped-before.Dropped)
	fmt.Printf("relay CPU %.2f s (%.1f %% of one core), %.2f us per packet\n", cpu, 100*cpu/elapsed.Seconds(), 1e6*cpu/float64(max(recv, 1)))
	fmt.Printf("load generator CPU %.2f s\n", self)
	fmt.Printf("latency sender->receiver: p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, max %.3f ms\n", pct(0.50), pct(0.99), pct(0.999), pct(1))
	return nil
}

// setup creates one call: offer from the plain leg A, answer from the SRTP leg B.
func setup(c backend, i int, suite media.Suite) (*stream, error) {
	st := &stream{}
	var err error
	lo := net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0"))
	if st.a, err = net.ListenUDP("udp", lo); err != nil {
		return nil, err
	}
	if st.b, err = net.ListenUDP("udp", lo); err != nil {
		return nil, err
	}
	_ = st.b.SetReadBuffer(1 << 20)
	call := "bench-" + strconv.Itoa(i)
	pa := st.a.LocalAddr().(*net.UDPAddr).Port
	pb := st.b.LocalAddr().(*net.UDPAddr).Port
	offer := sdp(pa, "RTP/AVP", "")
	resp, err := c.do(request{Op: "offer", Call: call, Leg: int(media.LegA), SDP: offer})
	if err != nil {
		return nil, err
	}
	// The relay's offer to B lists one key per suite: pick ours, keep the relay's key to decrypt.
	var tag string
	for _, line := range strings.Split(resp.SDP, "\r\n") {
		v, ok := strings.CutPrefix(line, "a=crypto:")
		if !ok {
			continue
		}
		cr, err := media.ParseCrypto(v)
		if err != nil || cr.Suite != suite {
			continue
		}
		tag = strconv.Itoa(int(cr.Tag))
		if st.dec, err = context(cr.Suite, cr.Key); err != nil {
			return nil, err
		}
	}
	if tag == "" {
		return nil, fmt.Errorf("relay offered no %s", suite)
	}
	// B's own key (the relay decrypts nothing from B in this benchmark).
	key := make([]byte, 30)
	if suite == media.AEAD_AES_128_GCM {
		key = key[:28]
	}
	for j := range key {
		key[j] = byte(i + j)
	}
	answer := sdp(pb, "RTP/SAVP", "a=crypto:"+tag+" "+suite.String()+" inline:"+b64(key))
	resp, err = c.do(request{Op: "answer", Call: call, Leg: int(media.LegB), SDP: answer})
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(resp.SDP, "\r\n") {
		if f, ok := strings.CutPrefix(line, "m=audio "); ok {
			p, _ := strconv.Atoi(strings.Fields(f)[0])
			st.relayA = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(p))
		}
	}
	if !st.relayA.IsValid() {
		return nil, errors.New("no m=audio in the relay's answer")
	}
	return st, nil
}

func sdp(port int, proto, extra string) string {
	s := "v=0\r\no=bench 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio " +
		strconv.Itoa(port) + " " + proto + " 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n"
	if extra != "" {
		s += extra + "\r\n"
	}
	return s
}

func context(s media.Suite, key []byte) (*srtp.Context, error) {
	prof, salt := srtp.ProtectionProfileAes128CmHmacSha1_80, 14
	switch s {
	case media.AES_CM_128_HMAC_SHA1_32:
		prof = srtp.ProtectionProfileAes128CmHmacSha1_32
	case media.AEAD_AES_128_GCM:
		prof, salt = srtp.ProtectionProfileAeadAes128Gcm, 12
	}
	return srtp.CreateContext(key[:len(key)-salt], key[len(key)-salt:], prof)
}

// send paces the streams g, g+nsend, ... at 50 packets/s each, spread evenly
// over the 20 ms period, for count periods. It returns the packets sent.
func send(streams []*stream, g, nsend int, start time.Time, count int) uint64 {
	var mine []*stream
	var offs []time.Duration
	for i := g; i < len(streams); i += nsend {
		mine = append(mine, streams[i])
		offs = append(offs, time.Duration(i)*20*time.Millisecond/time.Duration(len(streams)))
	}
	pkt := make([]byte, 12+160)
	var sent uint64
	for k := 0; k < count; k++ {
		base := start.Add(time.Duration(k) * 20 * time.Millisecond)
		for j, st := range mine {
			// Sleep only when the next packet is over a millisecond away:
			// packets due within that millisecond go out together, which
			// keeps the generator's own wake-ups (and CPU) low.
			if d := time.Until(base.Add(offs[j])); d > time.Millisecond {
				time.Sleep(d)
			}
			h := rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(k), Timestamp: uint32(k * 160), SSRC: uint32(j*nsend + g + 1)}
			_, _ = h.MarshalTo(pkt)
			binary.BigEndian.PutUint64(pkt[12:], uint64(time.Since(start)))
			if _, err := st.a.WriteToUDPAddrPort(pkt, st.relayA); err == nil {
				sent++
			}
		}
	}
	return sent
}

// receive reads, decrypts and timestamps relayed packets until the deadline is set.
func (st *stream) receive(start time.Time) {
	buf := make([]byte, 1500)
	plain := make([]byte, 1500)
	var hdr rtp.Header
	for {
		n, _, err := st.b.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		p := buf[:n]
		if st.dec != nil {
			p, err = st.dec.DecryptRTP(plain, buf[:n], &hdr)
		}
		if err != nil || len(p) < 12+8 {
			st.badAuth.Add(1)
			continue
		}
		sentAt := time.Duration(binary.BigEndian.Uint64(p[12:]))
		st.lat = append(st.lat, int32((time.Since(start)-sentAt)/time.Microsecond))
		st.received.Add(1)
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
