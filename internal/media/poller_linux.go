//go:build linux

package media

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// udpSock is a non-blocking UDP socket used through raw system calls: the
// relay's pollers wait on many of them with one epoll instance each, instead
// of parking one goroutine per socket in Go's netpoller (which costs a
// failed read, a goroutine wake-up and often a thread wake-up per packet).
type udpSock struct {
	fd  int
	is6 bool
}

func openUDP(ap netip.AddrPort) (udpSock, error) {
	a := ap.Addr()
	family := unix.AF_INET
	if a.Is6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return udpSock{fd: -1}, fmt.Errorf("socket: %w", err)
	}
	var sa unix.Sockaddr
	if a.Is6() {
		sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
	} else {
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}
	}
	if err := unix.Bind(fd, sa); err != nil {
		_ = unix.Close(fd)
		return udpSock{fd: -1}, fmt.Errorf("bind %s: %w", ap, err)
	}
	return udpSock{fd: fd, is6: a.Is6()}, nil
}

func (u *udpSock) close() {
	if u.fd >= 0 {
		_ = unix.Close(u.fd)
		u.fd = -1
	}
}

func putPort(b *[2]byte, port uint16) { b[0], b[1] = byte(port>>8), byte(port) }

// sendTo sends b to dst without allocating (a raw sendto with the address on the stack).
func (u *udpSock) sendTo(b []byte, dst netip.AddrPort) error {
	if len(b) == 0 {
		return nil
	}
	var sa unsafe.Pointer
	var salen uintptr
	var sa4 unix.RawSockaddrInet4
	var sa6 unix.RawSockaddrInet6
	a := dst.Addr()
	switch {
	case u.is6:
		sa6.Family = unix.AF_INET6
		putPort((*[2]byte)(unsafe.Pointer(&sa6.Port)), dst.Port())
		sa6.Addr = a.As16() // a v4 destination becomes ::ffff:a.b.c.d
		sa, salen = unsafe.Pointer(&sa6), unsafe.Sizeof(sa6)
	case a.Is4():
		sa4.Family = unix.AF_INET
		putPort((*[2]byte)(unsafe.Pointer(&sa4.Port)), dst.Port())
		sa4.Addr = a.As4()
		sa, salen = unsafe.Pointer(&sa4), unsafe.Sizeof(sa4)
	default:
		return errors.New("IPv6 destination from an IPv4 socket")
	}
	_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(u.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0, uintptr(sa), salen)
	if e != 0 {
		return e
	}
	return nil
}

// recvFrom reads one datagram; EAGAIN when none is queued.
func (u *udpSock) recvFrom(b []byte) (int, netip.AddrPort, error) {
	var rsa unix.RawSockaddrAny
	alen := uint32(unsafe.Sizeof(rsa))
	n, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(u.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0,
		uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&alen)))
	if e != 0 {
		return 0, netip.AddrPort{}, e
	}
	return int(n), sockaddrAddrPort(&rsa), nil
}

// recvMsg reads one datagram like recvFrom, with the kernel's receive
// timestamp (Unix nanoseconds) when the socket has SO_TIMESTAMPNS set, else
// 0. oob receives the control messages (8-byte aligned for the timespec).
func (u *udpSock) recvMsg(b []byte, oob *[8]uint64) (int, netip.AddrPort, int64, error) {
	var rsa unix.RawSockaddrAny
	iov := unix.Iovec{Base: &b[0]}
	iov.SetLen(len(b))
	msg := unix.Msghdr{
		Name:    (*byte)(unsafe.Pointer(&rsa)),
		Namelen: uint32(unsafe.Sizeof(rsa)),
		Iov:     &iov,
		Iovlen:  1,
		Control: (*byte)(unsafe.Pointer(&oob[0])),
	}
	msg.SetControllen(int(unsafe.Sizeof(*oob)))
	n, _, e := unix.RawSyscall(unix.SYS_RECVMSG, uintptr(u.fd), uintptr(unsafe.Pointer(&msg)), 0)
	if e != 0 {
		return 0, netip.AddrPort{}, 0, e
	}
	return int(n), sockaddrAddrPort(&rsa), rxStamp(oob, int(msg.Controllen)), nil
}

func sockaddrAddrPort(rsa *unix.RawSockaddrAny) netip.AddrPort {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		r := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		p := (*[2]byte)(unsafe.Pointer(&r.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(r.Addr), uint16(p[0])<<8|uint16(p[1]))
	case unix.AF_INET6:
		r := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		p := (*[2]byte)(unsafe.Pointer(&r.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(r.Addr).Unmap(), uint16(p[0])<<8|uint16(p[1]))
	}
	return netip.AddrPort{}
}

// rxStamp finds the SCM_TIMESTAMPNS control message in the first n bytes of
// oob and returns its time in Unix nanoseconds (0: none).
func rxStamp(oob *[8]uint64, n int) int64 {
	b := unsafe.Slice((*byte)(unsafe.Pointer(&oob[0])), min(n, int(unsafe.Sizeof(*oob))))
	for len(b) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(b) {
			return 0
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS && l >= unix.CmsgLen(int(unsafe.Sizeof(unix.Timespec{}))) {
			return (*unix.Timespec)(unsafe.Pointer(&b[unix.CmsgLen(0)])).Nano()
		}
		b = b[min(len(b), unix.CmsgSpace(l-unix.CmsgLen(0))):]
	}
	return 0
}

// poller is one worker: an epoll instance over the sockets of the streams
// assigned to it, and the goroutine that waits on it. All four sockets of a
// stream belong to one poller, which alone reads them, writes through them
// and closes them, so no socket is closed under a reader.
type poller struct {
	epfd, evfd int
	p          *relayParams
	// delay, when set, receives each forwarded packet's delay in the
	// relay; the sockets then carry kernel receive timestamps.
	delay prometheus.Histogram
	// table maps a port (minus base) to its open socket: the epoll event
	// carries the port, the socket is checked against the event's fd.
	table []atomic.Pointer[socket]
	base  int

	mu       sync.Mutex
	closing  []closeReq
	stopping bool
	stopped  bool // the goroutine has ended: remove closes inline
	done     chan struct{}
}

type closeReq struct {
	st   *relayStream
	done func()
}

// newPollers starts n pollers over a table covering ports [base, base+size);
// delay (nil: none) is the histogram of Config.MeasureDelay.
func newPollers(n int, p *relayParams, base, size int, delay prometheus.Histogram) ([]*poller, error) {
	table := make([]atomic.Pointer[socket], size)
	var ps []*poller
	for i := 0; i < n; i++ {
		w := &poller{p: p, table: table, base: base, delay: delay, done: make(chan struct{})}
		var err error
		if w.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
			stopPollers(ps)
			return nil, fmt.Errorf("epoll_create1: %w", err)
		}
		if w.evfd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
			_ = unix.Close(w.epfd)
			stopPollers(ps)
			return nil, fmt.Errorf("eventfd: %w", err)
		}
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(w.evfd), Pad: -1}
		if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, w.evfd, &ev); err != nil {
			_ = unix.Close(w.epfd)
			_ = unix.Close(w.evfd)
			stopPollers(ps)
			return nil, fmt.Errorf("epoll_ctl eventfd: %w", err)
		}
		ps = append(ps, w)
		go w.run()
	}
	return ps, nil
}

func stopPollers(ps []*poller) {
	for _, w := range ps {
		w.stop()
	}
}

// add registers the stream's sockets; packets are handled from then on.
func (w *poller) add(st *relayStream) error {
	st.poller = w
	var err error
	st.all(func(s *socket) {
		if err != nil {
			return
		}
		if w.delay != nil {
			if e := unix.SetsockoptInt(s.sock.fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); e != nil {
				err = fmt.Errorf("setsockopt SO_TIMESTAMPNS: %w", e)
				return
			}
		}
		w.table[s.port-w.base].Store(s)
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(s.sock.fd), Pad: int32(s.port - w.base)}
		if e := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, s.sock.fd, &ev); e != nil {
			err = fmt.Errorf("epoll_ctl: %w", e)
		}
	})
	return err
}

// remove hands the stream to the poller to close; done runs once its
// sockets are closed (their ports may be reused then).
func (w *poller) remove(st *relayStream, done func()) {
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		w.closeStream(closeReq{st, done})
		return
	}
	w.closing = append(w.closing, closeReq{st, done})
	w.mu.Unlock()
	w.wake()
}

func (w *poller) wake() {
	one := [8]byte{1}
	_, _ = unix.Write(w.evfd, one[:])
}

// stop closes every stream still registered and ends the goroutine.
func (w *poller) stop() {
	w.mu.Lock()
	w.stopping = true
	w.mu.Unlock()
	w.wake()
	<-w.done
}

// drainMax is how many datagrams a poller reads from one ready socket in a
// row when it is under load. One recvmmsg instead of these reads was
// measured and costs more (1,000 streams: 17-17.7 instead of 15.2-15.9 µs
// of relay CPU per packet): at 50 packets/s a socket rarely holds more
// than one datagram, and recvmmsg's attempt at a second one is dearer than
// the single recvfrom.
const drainMax = 8

func (w *poller) run() {
	defer close(w.done)
	events := make([]unix.EpollEvent, 256)
	b := newBuffers()
	oob := new([8]uint64)
	for {
		n, err := unix.EpollWait(w.epfd, events, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			time.Sleep(10 * time.Millisecond) // never spin on a persistent error
			continue
		}
		now := time.Now().UnixNano()
		control := false
		for i := range events[:n] {
			ev := &events[i]
			if ev.Pad < 0 {
				control = true
				continue
			}
			s := w.table[ev.Pad].Load()
			if s == nil || int32(s.sock.fd) != ev.Fd {
				continue
			}
			// Level-triggered: one datagram per event at light load (a
			// socket with more queued is reported again by the next
			// epoll_wait, which costs less than a read that finds nothing).
			// Under load (epoll_wait filled its whole batch) each ready
			// socket is drained of up to drainMax datagrams: the backlog
			// is then real, and a read saves an epoll_wait.
			reads := 1
			if n == len(events) {
				reads = drainMax
			}
			w.readSocket(s, b, oob, now, reads)
		}
		if control && w.control() {
			return
		}
	}
}

// readSocket reads up to limit datagrams from s, one system call each, and
// handles them; it stops at the first read that finds nothing. With the
// delay histogram on, it records each forwarded packet's time from its
// kernel receive timestamp to the end of its forwarding. It returns the
// datagrams read.
func (w *poller) readSocket(s *socket, b *buffers, oob *[8]uint64, now int64, limit int) int {
	for k := range limit {
		var m int
		var src netip.AddrPort
		var stamp int64
		var err error
		if w.delay != nil {
			m, src, stamp, err = s.sock.recvMsg(b.in, oob)
		} else {
			m, src, err = s.sock.recvFrom(b.in)
		}
		if err != nil {
			return k
		}
		res := s.handle(w.p, b.in[:m], b.mid, b.out, src, now)
		s.count(w.p.met, res)
		if stamp != 0 && res == forwarded {
			// A clock stepped back in between would make it negative.
			w.delay.Observe(float64(max(time.Now().UnixNano()-stamp, 0)) / 1e9)
		}
	}
	return limit
}

// control closes the streams handed over by remove, and everything on stop.
func (w *poller) control() (stop bool) {
	var buf [8]byte
	_, _ = unix.Read(w.evfd, buf[:])
	w.mu.Lock()
	reqs := w.closing
	w.closing = nil
	stop = w.stopping
	w.mu.Unlock()
	for _, r := range reqs {
		w.closeStream(r)
	}
	if stop {
		w.mu.Lock()
		// Requests that raced with the stop are served here; later ones inline.
		for _, r := range w.closing {
			w.closeStream(r)
		}
		w.closing, w.stopped = nil, true
		w.mu.Unlock()
		_ = unix.Close(w.epfd)
		_ = unix.Close(w.evfd)
	}
	return stop
}

func (w *poller) closeStream(r closeReq) {
	r.st.all(func(s *socket) {
		if s.sock.fd >= 0 {
			_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, s.sock.fd, nil)
		}
		w.table[s.port-w.base].CompareAndSwap(s, nil)
		s.flush(w.p.met)
		s.sock.close()
	})
	if r.done != nil {
		r.done()
	}
}
