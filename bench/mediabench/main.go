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
// Latency is measured from the sender's clock just before its write to the
// kernel's receive timestamp on the leg-B socket (SO_TIMESTAMPNS), so the
// generator's own read scheduling is not in it; compare with a -direct run
// (no relay) for what the relay adds. sipwarden's relay also reports its own
// delay (kernel receipt on its socket to the end of its sendto, the
// sipwarden_media_relay_delay_seconds histogram). -relay-cpus pins the
// relay (taskset); pin the generator with taskset when starting it.
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
	"runtime"
	"runtime/metrics"
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
	"golang.org/x/net/ipv4"

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
	// Procs is the relay's GOMAXPROCS (its number of pollers).
	Procs int `json:"procs,omitempty"`
	// GCs is the relay's count of completed GC cycles.
	GCs uint64 `json:"gcs,omitempty"`
	// Delay is the relay's own delay histogram (-relay-delay): cumulative
	// counts per upper bound.
	Delay hist `json:"delay,omitempty"`
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
	relayCPUs := flag.String("relay-cpus", "", "run sipwarden's relay under `taskset -c LIST` (e.g. 1); pin the generator itself with taskset -c when starting it, and rtpengine likewise")
	relayNice := flag.Int("relay-autogroup-nice", 0, "start sipwarden's relay in a session of its own whose autogroup has this nice value (-20..19; 0: the generator's session): the kernel (sched_autogroup) shares CPU between sessions, not processes, so on a shared machine nice alone does not raise a process's share")
	relayDelay := flag.Bool("relay-delay", true, "turn on the relay's own delay histogram (media.Config.MeasureDelay) and report it")
	receivers := flag.Int("receivers", 4, "leg-B sockets shared by all streams, each read in batches (recvmmsg) by a goroutine of its own")
	perStream := flag.Bool("socket-per-stream", false, "one leg-A and one leg-B socket per stream, read by a goroutine each (the earlier setup; the relay's sendto then also pays for waking a receiver per packet)")
	pace := flag.Duration("pace", time.Millisecond, "sender granularity: packets due within this of each other leave in one burst (senders sleep only longer than this)")
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
		if err := runRelay(lo, hi, *relayDelay); err != nil {
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
	if *senders < 1 || *receivers < 1 || *pace <= 0 || *dur < 20*time.Millisecond {
		fmt.Fprintln(os.Stderr, "-senders, -receivers and -pace must be positive, -d at least 20ms")
		os.Exit(2)
	}
	o := opts{n: *n, dur: *dur, suite: s, ports: *ports, senders: *senders, direct: *direct,
		receivers: *receivers, perStream: *perStream, relayCPUs: *relayCPUs, relayNice: *relayNice, relayDelay: *relayDelay, pace: *pace}
	if err := run(o, be); err != nil {
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

// opts are the parameters of one run.
type opts struct {
	n          int
	dur        time.Duration
	suite      media.Suite
	ports      string
	senders    int
	receivers  int
	perStream  bool
	direct     bool
	relayCPUs  string
	relayNice  int
	relayDelay bool
	pace       time.Duration
}

// relayServer is sipwarden's relay under test with the bench's request
// protocol: in the child process (runRelay) or in a test's process.
type relayServer struct {
	r   *media.Relay
	reg *prometheus.Registry
	pol media.Policy
}

func newRelayServer(lo, hi int, measureDelay bool) (*relayServer, error) {
	reg := prometheus.NewRegistry()
	r, err := media.New(media.Config{PortMin: lo, PortMax: hi, Registerer: reg, Timeout: time.Hour, MeasureDelay: measureDelay})
	if err != nil {
		return nil, err
	}
	pol, err := media.TrunkPolicy(media.TrunkSRTPBridge, media.TrunkMediaRelay, false, media.LegB)
	if err != nil {
		r.Shutdown()
		return nil, err
	}
	return &relayServer{r: r, reg: reg, pol: pol}, nil
}

// serve answers one request (not "quit").
func (rs *relayServer) serve(req request) response {
	var resp response
	var body []byte
	var err error
	switch req.Op {
	case "offer":
		body, err = rs.r.Offer(req.Call, media.Leg(req.Leg), []byte(req.SDP), rs.pol)
	case "answer":
		body, err = rs.r.Answer(req.Call, media.Leg(req.Leg), []byte(req.SDP))
	case "stats":
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		resp.CPU = float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
		resp.Forwarded, resp.Dropped, resp.Delay = counters(rs.reg)
		resp.Procs = runtime.GOMAXPROCS(0)
		gc := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
		metrics.Read(gc)
		if gc[0].Value.Kind() == metrics.KindUint64 {
			resp.GCs = gc[0].Value.Uint64()
		}
	default:
		err = fmt.Errorf("unknown op %q", req.Op)
	}
	if err != nil {
		resp.Err = err.Error()
	}
	resp.SDP = string(body)
	return resp
}

// runRelay is the child: a relay driven by JSON lines on stdin.
func runRelay(lo, hi int, measureDelay bool) error {
	rs, err := newRelayServer(lo, hi, measureDelay)
	if err != nil {
		return err
	}
	defer rs.r.Shutdown()
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64<<10), 64<<10)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var req request
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			return err
		}
		if req.Op == "quit" {
			return nil
		}
		if err := out.Encode(rs.serve(req)); err != nil {
			return err
		}
	}
	return in.Err()
}

func counters(reg *prometheus.Registry) (fwd, drop float64, delay hist) {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "sipwarden_media_packets_forwarded_total":
				fwd += m.GetCounter().GetValue()
			case "sipwarden_media_packets_dropped_total":
				drop += m.GetCounter().GetValue()
			case media.DelayMetricName:
				h := m.GetHistogram()
				for _, b := range h.GetBucket() {
					delay.Bounds = append(delay.Bounds, b.GetUpperBound())
					delay.Counts = append(delay.Counts, b.GetCumulativeCount())
				}
				delay.Total = h.GetSampleCount()
			}
		}
	}
	return fwd, drop, delay
}

// child is the relay process.
type child struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func (c *child) pid() int { return c.cmd.Process.Pid }

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

// stream is one call: a plain sender facing leg A, an SRTP receiver facing
// leg B. Streams share their sockets unless -socket-per-stream: the relay
// latches each of its sockets to the address it hears from, whichever
// other streams use it too, and the receivers tell streams apart by SSRC.
type stream struct {
	a, b     *net.UDPConn
	relayA   netip.AddrPort // where A sends
	dec      *srtp.Context
	received atomic.Uint64
	badAuth  atomic.Uint64
	noStamp  atomic.Uint64 // packets without a kernel receive timestamp
	// Receiver-owned, nanoseconds from the send: to the kernel's receipt on
	// leg B (what the relay adds, plus a sendto), and to the end of the
	// receiver's read and decryption (the generator's scheduling too).
	latKernel, latUser []int64
}

// backend is the relay under test: sipwarden's in a child process, or rtpengine.
type backend interface {
	do(request) (response, error)
	pid() int // 0: unknown
}

func run(o opts, be backend) error {
	if be == nil {
		c, err := startChild(o)
		if err != nil {
			return err
		}
		be = c
	}
	defer func() { _, _ = be.do(request{Op: "quit"}) }()
	_, err := measure(be, o)
	return err
}

func startChild(o opts) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"-serve", "-ports", o.ports, "-relay-delay=" + strconv.FormatBool(o.relayDelay)}
	cmd := exec.Command(exe, args...)
	if o.relayCPUs != "" {
		// taskset execs the relay: the child's pid is the relay's.
		cmd = exec.Command("taskset", append([]string{"-c", o.relayCPUs, exe}, args...)...)
	}
	if o.relayNice != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
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
	if o.relayNice != 0 {
		// A new session has an autogroup of its own (when the kernel has
		// sched_autogroup on); its nice weighs it against the others.
		ag := "/proc/" + strconv.Itoa(cmd.Process.Pid) + "/autogroup"
		if err := os.WriteFile(ag, []byte(strconv.Itoa(o.relayNice)), 0); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return nil, fmt.Errorf("relay autogroup nice: %w", err)
		}
	}
	c := &child{cmd: cmd, in: stdin, out: bufio.NewScanner(stdout)}
	c.out.Buffer(make([]byte, 64<<10), 64<<10)
	return c, nil
}

// result is what a run measured (the rest is printed).
type result struct {
	sent, received, undecryptable uint64
	latKernel                     []int64 // sorted, nanoseconds
	relayDelay                    hist    // the relay's own (sipwarden with -relay-delay)
}

func measure(c backend, o opts) (result, error) {
	var res result
	n, dur, suite, nsend, direct := o.n, o.dur, o.suite, o.senders, o.direct
	var aSocks, bSocks []*net.UDPConn
	defer func() {
		for _, u := range append(aSocks, bSocks...) {
			_ = u.Close()
		}
	}()
	open := func(list *[]*net.UDPConn, rx bool) (*net.UDPConn, error) {
		u, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
		if err != nil {
			return nil, err
		}
		*list = append(*list, u)
		if rx {
			_ = u.SetReadBuffer(4 << 20) // capped by net.core.rmem_max
			if err := enableRxStamps(u); err != nil {
				return nil, err
			}
		}
		return u, nil
	}
	if !o.perStream {
		for range nsend {
			if _, err := open(&aSocks, false); err != nil {
				return res, err
			}
		}
		for range o.receivers {
			if _, err := open(&bSocks, true); err != nil {
				return res, err
			}
		}
	}
	streams := make([]*stream, n)
	for i := range streams {
		var a, b *net.UDPConn
		var err error
		if o.perStream {
			if a, err = open(&aSocks, false); err == nil {
				b, err = open(&bSocks, true)
			}
			if err != nil {
				return res, err
			}
		} else {
			// Stream i is sent by sender i%nsend, from that sender's socket.
			a, b = aSocks[i%nsend], bSocks[i%len(bSocks)]
		}
		st, err := setup(c, i, suite, a, b)
		if err != nil {
			return res, fmt.Errorf("stream %d: %w", i, err)
		}
		streams[i] = st
		if direct {
			st.relayA = netip.MustParseAddrPort(st.b.LocalAddr().String())
			st.dec = nil
		}
	}

	start := time.Now()
	expected := int(dur / (20 * time.Millisecond))
	var wg sync.WaitGroup
	for _, st := range streams {
		st.latKernel = make([]int64, 0, expected+16)
		st.latUser = make([]int64, 0, expected+16)
	}
	for _, b := range bSocks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			receive(b, streams)
		}()
	}
	before, err := c.do(request{Op: "stats"})
	if err != nil {
		return res, err
	}
	var selfBefore syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &selfBefore)

	var sent atomic.Uint64
	var swg sync.WaitGroup
	late := make([][]int64, nsend)
	for g := 0; g < nsend; g++ {
		swg.Add(1)
		go func() {
			defer swg.Done()
			n, l := send(streams, g, nsend, start, expected, o.pace)
			sent.Add(n)
			late[g] = l
		}()
	}
	swg.Wait()
	elapsed := time.Since(start)
	time.Sleep(300 * time.Millisecond) // in flight
	after, err := c.do(request{Op: "stats"})
	if err != nil {
		return res, err
	}
	var selfAfter syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &selfAfter)
	for _, b := range bSocks {
		_ = b.SetReadDeadline(time.Now())
	}
	wg.Wait()

	var recv, bad, noStamp uint64
	var latK, latU []int64
	for _, st := range streams {
		recv += st.received.Load()
		bad += st.badAuth.Load()
		noStamp += st.noStamp.Load()
		latK = append(latK, st.latKernel...)
		latU = append(latU, st.latUser...)
	}
	cpu := after.CPU - before.CPU
	fwd := after.Forwarded - before.Forwarded
	self := float64((selfAfter.Utime.Nano()+selfAfter.Stime.Nano())-(selfBefore.Utime.Nano()+selfBefore.Stime.Nano())) / 1e9
	s := sent.Load()
	if direct {
		fmt.Printf("BASELINE without the relay: streams %d, plain RTP from A straight to B, %.1f s, pace %v\n", n, elapsed.Seconds(), o.pace)
	} else {
		fmt.Printf("streams %d, suite %s, plain RTP -> SRTP, %.1f s, pace %v\n", n, suite, elapsed.Seconds(), o.pace)
	}
	procs := ""
	if after.Procs > 0 {
		procs = fmt.Sprintf(" (GOMAXPROCS %d)", after.Procs)
	}
	fmt.Printf("CPUs: generator %s, relay %s%s; autogroups: generator %s, relay %s; load average %s\n",
		cpusAllowed(os.Getpid()), cpusAllowed(c.pid()), procs, autogroup(os.Getpid()), autogroup(c.pid()), loadavg())
	fmt.Printf("packets sent %d, received %d, loss %.3f %%, undecryptable %d\n", s, recv, 100*float64(s-min(s, recv))/float64(max(s, 1)), bad)
	// The relay flushes its counters every 64 packets per socket: the
	// receivers' count is the exact one.
	fmt.Printf("relay: %.0f packets/s relayed (counters: forwarded %.0f, dropped %.0f)\n", float64(recv)/elapsed.Seconds(), fwd, after.Dropped-before.Dropped)
	fmt.Printf("relay CPU %.2f s (%.1f %% of one core), %.2f us per packet\n", cpu, 100*cpu/elapsed.Seconds(), 1e6*cpu/float64(max(recv, 1)))
	fmt.Printf("load generator CPU %.2f s\n", self)
	if !direct && after.Procs > 0 {
		fmt.Printf("relay GC cycles during the traffic: %d\n", after.GCs-before.GCs)
	}
	if noStamp > 0 {
		return res, fmt.Errorf("%d packets came without a kernel receive timestamp (SO_TIMESTAMPNS)", noStamp)
	}
	// A generator held off its CPU sends late and then catches up in a
	// burst, which queues in the relay: its lateness explains such tails.
	fmt.Printf("generator's send lateness (sent - due): %s\n", quantiles(slices.Concat(late...)))
	fmt.Printf("latency sender->kernel receipt on leg B: %s\n", quantiles(latK))
	fmt.Printf("latency sender->after read+decrypt:     %s\n", quantiles(latU))
	if d := after.Delay.sub(before.Delay); d.Total > 0 {
		fmt.Printf("relay's own delay (its socket's kernel receipt -> sendto done), %d packets: p50 %s ms, p99 %s ms, p99.9 %s ms\n",
			d.Total, d.quantile(0.50), d.quantile(0.99), d.quantile(0.999))
	}
	res.sent, res.received, res.undecryptable = s, recv, bad
	res.latKernel = latK
	res.relayDelay = after.Delay.sub(before.Delay)
	return res, nil
}

// quantiles formats p50, p99, p99.9 and max of nanosecond samples in ms.
func quantiles(ns []int64) string {
	if len(ns) == 0 {
		return "no samples"
	}
	slices.Sort(ns)
	pct := func(p float64) float64 {
		return float64(ns[min(len(ns)-1, int(p*float64(len(ns))))]) / 1e6
	}
	return fmt.Sprintf("p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, max %.3f ms", pct(0.50), pct(0.99), pct(0.999), pct(1))
}

// cpusAllowed is the CPU list a process may run on (/proc/PID/status).
func cpusAllowed(pid int) string {
	if pid <= 0 {
		return "?"
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// autogroup is a process's scheduling autogroup and its nice ("?" without
// sched_autogroup).
func autogroup(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/autogroup")
	if err != nil || pid <= 0 {
		return "?"
	}
	return strings.TrimPrefix(strings.TrimSpace(string(b)), "/")
}

// loadavg is the 1, 5 and 15 minute load average.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}

// setup creates one call: offer from the plain leg A, answer from the SRTP leg B.
func setup(c backend, i int, suite media.Suite, a, b *net.UDPConn) (*stream, error) {
	st := &stream{a: a, b: b}
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
// Packets due within pace of each other leave together: in one sendmmsg
// when the streams share the sender's socket. It also returns, per packet,
// how late it left (nanoseconds after its due time; negative: early).
func send(streams []*stream, g, nsend int, start time.Time, count int, pace time.Duration) (uint64, []int64) {
	var mine []*stream
	var offs []time.Duration
	for i := g; i < len(streams); i += nsend {
		mine = append(mine, streams[i])
		offs = append(offs, time.Duration(i)*20*time.Millisecond/time.Duration(len(streams)))
	}
	if len(mine) == 0 {
		return 0, nil
	}
	late := make([]int64, 0, count*len(mine))
	shared := true
	for _, st := range mine {
		shared = shared && st.a == mine[0].a
	}
	pc := ipv4.NewPacketConn(mine[0].a)
	pkts := make([][]byte, len(mine))
	batch := make([]ipv4.Message, 0, len(mine))
	for j := range pkts {
		pkts[j] = make([]byte, 12+160)
	}
	var sent uint64
	flush := func() {
		for len(batch) > 0 {
			n, err := pc.WriteBatch(batch, 0)
			if err != nil {
				batch = batch[:0]
				return
			}
			sent += uint64(n)
			batch = batch[n:]
		}
		batch = batch[:0]
	}
	for k := 0; k < count; k++ {
		base := start.Add(time.Duration(k) * 20 * time.Millisecond)
		for j, st := range mine {
			// Sleep only when the next packet is over pace away: packets
			// due within that time go out together, which keeps the
			// generator's own wake-ups (and CPU) low.
			if d := time.Until(base.Add(offs[j])); d > pace {
				flush()
				time.Sleep(d)
			}
			pkt := pkts[j]
			h := rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(k), Timestamp: uint32(k * 160), SSRC: uint32(j*nsend + g + 1)}
			_, _ = h.MarshalTo(pkt)
			// Wall-clock time: the receivers compare it with the kernel's
			// receive timestamp (SO_TIMESTAMPNS, CLOCK_REALTIME).
			now := time.Now()
			binary.BigEndian.PutUint64(pkt[12:], uint64(now.UnixNano()))
			late = append(late, int64(now.Sub(base.Add(offs[j]))))
			if shared {
				batch = append(batch, ipv4.Message{Buffers: [][]byte{pkt}, Addr: net.UDPAddrFromAddrPort(st.relayA)})
				continue
			}
			if _, err := st.a.WriteToUDPAddrPort(pkt, st.relayA); err == nil {
				sent++
			}
		}
		flush()
	}
	return sent, late
}

// receive reads, decrypts and timestamps the packets of the streams
// received on b until its deadline is set, in batches (recvmmsg). The
// kernel stamps each datagram as it reaches the socket (SO_TIMESTAMPNS), so
// that the latency measured to that stamp does not depend on when this
// goroutine gets to read it. A packet's stream is its SSRC minus one.
func receive(b *net.UDPConn, streams []*stream) {
	pc := ipv4.NewPacketConn(b)
	msgs := make([]ipv4.Message, 64)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 1500)}
		msgs[i].OOB = make([]byte, 128)
	}
	plain := make([]byte, 1500)
	var hdr rtp.Header
	for {
		n, err := pc.ReadBatch(msgs, 0)
		if err != nil {
			return
		}
		for i := range msgs[:n] {
			m := &msgs[i]
			raw := m.Buffers[0][:m.N]
			if len(raw) < 12 {
				continue
			}
			idx := int(binary.BigEndian.Uint32(raw[8:12])) - 1
			if idx < 0 || idx >= len(streams) || streams[idx].b != b {
				continue
			}
			st := streams[idx]
			p := raw
			if st.dec != nil {
				p, err = st.dec.DecryptRTP(plain, raw, &hdr)
			}
			if err != nil || len(p) < 12+8 {
				st.badAuth.Add(1)
				continue
			}
			done := time.Now().UnixNano()
			sentAt := int64(binary.BigEndian.Uint64(p[12:]))
			rx, ok := rxStamp(m.OOB[:m.NN])
			if !ok {
				st.noStamp.Add(1)
				continue
			}
			st.latKernel = append(st.latKernel, rx-sentAt)
			st.latUser = append(st.latUser, done-sentAt)
			st.received.Add(1)
		}
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
