//go:build linux

package media

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/sys/unix"
)

// With MeasureDelay, each forwarded packet lands in the delay histogram
// with a delay that is positive and below the test's own wait, and the
// relay still forwards and decrypts as without it.
func TestRelayMeasureDelay(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := newTestRelay(t, Config{Registerer: reg, MeasureDelay: true})
	pol, _ := TrunkPolicy("bridge", "relay", false, LegB)
	a, b := newPeer(t, "127.0.0.1"), newPeer(t, "127.0.0.1")
	call(t, r, "d", pol, a, b, "RTP/AVP", nil, "RTP/SAVP")
	const n = 20
	start := time.Now()
	for i := range n {
		payload := []byte{byte(i), 1, 2, 3}
		a.sendRTP(payload)
		expectPayload(t, b, payload)
	}
	// The relay observes a packet's delay after its sendto returns, which
	// may be after the receiver has read it: wait a little for the last one.
	var h *dto.Histogram
	found := false
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == DelayMetricName {
				found, h = true, mf.GetMetric()[0].GetHistogram()
			}
		}
		if !found || h.GetSampleCount() >= n || time.Now().After(deadline) {
			break
		}
	}
	elapsed := time.Since(start)
	if found {
		if h.GetSampleCount() != n {
			t.Errorf("histogram has %d samples, want %d", h.GetSampleCount(), n)
		}
		if s := h.GetSampleSum(); s <= 0 || s > elapsed.Seconds() {
			t.Errorf("sum of delays %v s, want in (0, %v]", s, elapsed.Seconds())
		}
	}
	if !found {
		t.Fatalf("%s not registered", DelayMetricName)
	}
}

// Without MeasureDelay there is no histogram (and no timestamps).
func TestRelayNoDelayMetricByDefault(t *testing.T) {
	reg := prometheus.NewRegistry()
	newTestRelay(t, Config{Registerer: reg})
	if n, err := testutil.GatherAndCount(reg, DelayMetricName); err != nil || n != 0 {
		t.Errorf("%s: %d series (err %v), want none", DelayMetricName, n, err)
	}
}

// probeRig is a relayed call (leg A plain, leg B SRTP) plus a socket of
// the test's own standing in for the relay's leg-A RTP socket: the test
// drives the poller's read path on it instead of the poller goroutine.
type probeRig struct {
	w     *poller
	a     *peer
	probe *socket
	self  netip.AddrPort // the probe's address
	buf   *buffers
	oob   *[8]uint64
}

func newProbeRig(t *testing.T) *probeRig {
	t.Helper()
	r := newTestRelay(t, Config{Registerer: prometheus.NewRegistry(), MeasureDelay: true, MaxPacketRate: -1})
	pol, _ := TrunkPolicy("bridge", "relay", false, LegB)
	a, b := newPeer(t, "127.0.0.1"), newPeer(t, "127.0.0.1")
	call(t, r, "probe", pol, a, b, "RTP/AVP", nil, "RTP/SAVP")
	u, err := openUDP(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.close)
	if err := unix.SetsockoptInt(u.fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(u.fd)
	if err != nil {
		t.Fatal(err)
	}
	var sock *socket
	for _, st := range r.sessions["probe"].streams {
		sock = st.socks[LegA][kindRTP]
	}
	probe := &socket{sock: u, kind: kindRTP, leg: LegA, out: sock.out}
	probe.cfg.Store(sock.cfg.Load())
	src := netip.MustParseAddrPort(a.rtp.LocalAddr().String())
	probe.latched.Store(&src)
	return &probeRig{
		w: r.pollers[0], a: a, probe: probe,
		self: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(sa.(*unix.SockaddrInet4).Port)),
		buf:  newBuffers(), oob: new([8]uint64),
	}
}

func (p *probeRig) send(t *testing.T, pkt []byte) {
	if _, err := p.a.rtp.WriteToUDPAddrPort(pkt, p.self); err != nil {
		t.Fatal(err)
	}
}

// queue sends pkt to the probe and waits until the kernel has queued it on
// the probe's socket: loopback delivery may be deferred to ksoftirqd on a
// loaded machine, after sendto returns.
func (p *probeRig) queue(t *testing.T, pkt []byte) {
	t.Helper()
	before := rmemAlloc(t, p.probe.sock.fd)
	p.send(t, pkt)
	for deadline := time.Now().Add(2 * time.Second); rmemAlloc(t, p.probe.sock.fd) <= before; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a datagram sent on loopback not queued within 2s")
		}
	}
}

// rmemAlloc is the memory of fd's receive queue (SO_MEMINFO, whose first
// field is SK_MEMINFO_RMEM_ALLOC): it grows with every datagram queued.
func rmemAlloc(t *testing.T, fd int) uint32 {
	t.Helper()
	var mi [9]uint32 // SK_MEMINFO_VARS
	l := uint32(unsafe.Sizeof(mi))
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_MEMINFO,
		uintptr(unsafe.Pointer(&mi)), uintptr(unsafe.Pointer(&l)), 0); e != 0 {
		t.Fatalf("SO_MEMINFO: %v", e)
	}
	return mi[0]
}

func (p *probeRig) samples(t *testing.T) uint64 {
	var m dto.Metric
	if err := p.w.delay.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// The read-and-forward path (recvmsg, handle, delay histogram) allocates
// nothing per packet either.
func TestReadSocketAllocs(t *testing.T) {
	p := newProbeRig(t)
	pkts := make([][]byte, 300)
	for i := range pkts {
		pkts[i] = p.a.packet(make([]byte, 160))
	}
	before := p.samples(t)
	i := 0
	allocs := testing.AllocsPerRun(200, func() {
		p.send(t, pkts[i])
		i++
		deadline := time.Now().Add(time.Second)
		for p.w.readSocket(p.probe, p.buf, p.oob, time.Now().UnixNano(), 1) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("datagram not received")
			}
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per packet", allocs)
	}
	// Every packet was forwarded, with its kernel timestamp.
	if got := p.samples(t) - before; got != uint64(i) {
		t.Errorf("delay histogram got %d samples, want %d", got, i)
	}
}

// readSocket reads what is queued up to its limit, and stops at the first
// read that finds nothing.
func TestReadSocketDrains(t *testing.T) {
	p := newProbeRig(t)
	tests := []struct {
		queued, limit, want int
	}{
		{0, 1, 0},
		{0, drainMax, 0},
		{1, 1, 1},
		{1, drainMax, 1},
		{3, drainMax, 3},
		{3, 1, 1}, // the other two stay queued: read by the next call
		{drainMax + 2, drainMax, drainMax},
	}
	for _, tt := range tests {
		for range tt.queued {
			p.queue(t, p.a.packet(make([]byte, 160)))
		}
		if got := p.w.readSocket(p.probe, p.buf, p.oob, time.Now().UnixNano(), tt.limit); got != tt.want {
			t.Errorf("%d queued, limit %d: read %d, want %d", tt.queued, tt.limit, got, tt.want)
		}
		// Empty the socket for the next case.
		for n := 1; n > 0; {
			n = p.w.readSocket(p.probe, p.buf, p.oob, time.Now().UnixNano(), drainMax)
		}
	}
}

// rxStamp reads SCM_TIMESTAMPNS and tolerates any control-message layout.
func TestRxStamp(t *testing.T) {
	hdr := unix.SizeofCmsghdr
	ts := int(unsafe.Sizeof(unix.Timespec{}))
	msg := func(level, typ int32, l int, sec, nsec int64) []byte {
		b := make([]byte, unix.CmsgSpace(ts))
		binary.NativeEndian.PutUint64(b, uint64(l))
		binary.NativeEndian.PutUint32(b[8:], uint32(level))
		binary.NativeEndian.PutUint32(b[12:], uint32(typ))
		binary.NativeEndian.PutUint64(b[hdr:], uint64(sec))
		binary.NativeEndian.PutUint64(b[hdr+8:], uint64(nsec))
		return b
	}
	good := msg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, unix.CmsgLen(ts), 1700000000, 123)
	other := msg(unix.IPPROTO_IP, unix.IP_TTL, unix.CmsgLen(4), 0, 0)
	tests := []struct {
		name string
		in   []byte
		want int64
	}{
		{"timestamp", good, 1700000000*1e9 + 123},
		{"after another message", append(append([]byte{}, other[:unix.CmsgSpace(4)]...), good...), 1700000000*1e9 + 123},
		{"empty", nil, 0},
		{"other message only", other, 0},
		{"truncated timespec", good[:hdr+4], 0},
		{"length below header", msg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, 3, 1, 1), 0},
		{"length past the buffer", msg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, 4096, 1, 1), 0},
		{"timestamp too short", msg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, unix.CmsgLen(4), 1, 1), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var oob [8]uint64
			n := copy(unsafe.Slice((*byte)(unsafe.Pointer(&oob[0])), len(oob)*8), tt.in)
			if got := rxStamp(&oob, n); got != tt.want {
				t.Errorf("rxStamp = %d, want %d", got, tt.want)
			}
		})
	}
}
