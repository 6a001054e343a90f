package media

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/sdp/v3"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Relay.
type Config struct {
	// Addr is the address the relay's sockets bind to (default 127.0.0.1).
	Addr netip.Addr
	// Advertise is the address written into SDP (default Addr): the
	// public address when the relay is behind a 1:1 NAT.
	Advertise netip.Addr
	// PortMin and PortMax bound the ports (default 30000-39999). Each
	// relayed stream takes two even/odd pairs, one facing each leg.
	PortMin, PortMax int
	// Timeout closes a session whose streams saw no packet for this long
	// (default 60s). Streams on hold do not count.
	Timeout time.Duration
	// MaxPacketRate caps the packets per second one socket accepts (default
	// 400: eight times an audio stream; video needs more). Negative: no cap.
	MaxPacketRate int
	// MeasureDelay turns on kernel receive timestamps (SO_TIMESTAMPNS) on
	// the relay's sockets and the histogram sipwarden_media_relay_delay_seconds
	// of the time each forwarded packet spent in the relay (Linux only). It
	// costs a timestamp per packet in the kernel and a clock read and a
	// histogram update per packet in the relay.
	MeasureDelay bool
	// OnTimeout, when set, is called (from the relay's own goroutine) with
	// the Call-ID of a session whose media stopped for Timeout, so the proxy
	// can end the call; the call's end closes the session (Close), so its
	// CDR records the legs' security. A session still open after another
	// Timeout is closed by the relay. Without OnTimeout the relay closes it
	// at once.
	OnTimeout func(callID string)
	// Logger receives session-level logs (never keys). Default: slog.Default().
	Logger *slog.Logger
	// Registerer receives the sipwarden_media_* metrics (nil: not registered).
	Registerer prometheus.Registerer
}

// Defaults of Config.
const (
	DefaultPortMin       = 30000
	DefaultPortMax       = 39999
	DefaultTimeout       = 60 * time.Second
	DefaultMaxPacketRate = 400
	// unansweredTimeout reaps sessions whose offer was never answered (a
	// proxy that forgot to Close): longer than any ringing call.
	unansweredTimeout = 10 * time.Minute
)

// Relay anchors the media of calls. It is safe for concurrent use; all
// methods take the call's SIP Call-ID as its key.
type Relay struct {
	cfg     Config
	ports   *Ports
	pollers []*poller
	// nextPoller spreads new streams over the pollers in turn.
	nextPoller atomic.Uint32
	met        *metrics
	params     relayParams
	log        *slog.Logger

	mu       sync.Mutex
	sessions map[string]*session
	closed   bool

	stop   chan struct{}
	reaper sync.WaitGroup
}

// session is the relay's state for one call.
type session struct {
	callID  string
	mu      sync.Mutex
	neg     negotiation
	streams map[int]*relayStream // by leg A's RTP port
	// fresh are streams opened by the offer being processed.
	fresh    []*relayStream
	answered time.Time // last answer committed (zero: none yet)
	created  time.Time
	security [2]LegSecurity
	closed   bool
	// timedOut is when the inactivity timeout asked the proxy to end the
	// call (zero: not yet); the proxy's close records the legs' security.
	timedOut time.Time
	// readers are the session's socket readers.
	readers sync.WaitGroup
}

// LegSecurity is the media security of one leg of a call, for the CDR.
type LegSecurity struct {
	// Relayed is true when the relay anchors the leg's media.
	Relayed bool
	// SRTP is true when every active stream on the leg uses SRTP.
	SRTP bool
	// Suite is the SRTP suite of the first secure stream (SuiteNone without SRTP).
	Suite Suite
}

// String formats the security for a CDR field: "srtp:AES_CM_128_HMAC_SHA1_80",
// "rtp", or "" when nothing was negotiated.
func (l LegSecurity) String() string {
	switch {
	case l.SRTP && l.Suite != SuiteNone:
		return "srtp:" + l.Suite.String()
	case l.SRTP:
		return "srtp"
	case l.Relayed:
		return "rtp"
	}
	return ""
}

// New creates a relay and starts its inactivity reaper. Shutdown stops it.
func New(cfg Config) (*Relay, error) {
	if !cfg.Addr.IsValid() {
		cfg.Addr = netip.MustParseAddr("127.0.0.1")
	}
	if !cfg.Advertise.IsValid() {
		cfg.Advertise = cfg.Addr
	}
	if cfg.Advertise.IsUnspecified() {
		return nil, fmt.Errorf("media advertise address %s: set the address peers reach the relay at", cfg.Advertise)
	}
	if cfg.PortMin == 0 && cfg.PortMax == 0 {
		cfg.PortMin, cfg.PortMax = DefaultPortMin, DefaultPortMax
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxPacketRate == 0 {
		cfg.MaxPacketRate = DefaultMaxPacketRate
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ports, err := NewPorts(cfg.PortMin, cfg.PortMax)
	if err != nil {
		return nil, err
	}
	r := &Relay{
		cfg:      cfg,
		ports:    ports,
		met:      newMetrics(cfg.Registerer),
		log:      cfg.Logger,
		sessions: map[string]*session{},
		stop:     make(chan struct{}),
	}
	r.params = relayParams{met: r.met, onLatch: r.latched}
	if cfg.MaxPacketRate > 0 {
		r.params.rateGap = int64(time.Second) / int64(cfg.MaxPacketRate)
		r.params.rateBurst = int64(time.Second) / 4 // a quarter second of packets at once
	}
	var delay prometheus.Histogram
	if cfg.MeasureDelay {
		delay = newDelayMetric(cfg.Registerer)
	}
	r.pollers, err = newPollers(runtime.GOMAXPROCS(0), &r.params, cfg.PortMin, cfg.PortMax-cfg.PortMin+2, delay)
	if err != nil {
		return nil, err
	}
	r.reaper.Add(1)
	go r.reap()
	return r, nil
}

func (r *Relay) latched(s *socket, src netip.AddrPort) {
	r.met.latched.Inc()
	r.log.Debug("media latched", "call_id", s.callID, "leg", s.leg.String(), "kind", s.kind.String(), "src", src.String())
}

// Offer handles the SDP offer of an initial INVITE (or any offer: on a call
// the relay already knows it works as Update and keeps the call's policy).
// from is the leg that sent it; the result is the SDP to send to the other
// leg. An error leaves no state behind for a new call; SIPStatus maps it to
// a reply (ErrSRTPRequired: 488 with a Warning).
func (r *Relay) Offer(callID string, from Leg, body []byte, pol Policy) ([]byte, error) {
	s, created, err := r.session(callID, pol)
	if err != nil {
		return nil, err
	}
	out, err := r.offer(s, from, body)
	if err != nil && created {
		r.Close(callID)
	}
	return out, err
}

// Update handles an offer inside an existing call (re-INVITE, UPDATE) from
// either leg. Streams keep their ports and keys where they continue; new
// m-lines get ports; the streams are switched on the answer.
func (r *Relay) Update(callID string, from Leg, body []byte) ([]byte, error) {
	r.mu.Lock()
	s := r.sessions[callID]
	r.mu.Unlock()
	if s == nil {
		return nil, ErrNoSession
	}
	return r.offer(s, from, body)
}

// Answer handles the SDP answer from leg from (in a 183 or 200, or in the
// ACK of an offerless INVITE) and returns the SDP for the offerer. Forwarding
// starts (or changes) when it returns. A repeated answer (the 200 after a
// 183 with SDP, or another fork) replaces the previous one.
func (r *Relay) Answer(callID string, from Leg, body []byte) ([]byte, error) {
	r.mu.Lock()
	s := r.sessions[callID]
	r.mu.Unlock()
	if s == nil {
		return nil, ErrNoSession
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sd, out, done, err := s.begin(from, body)
	if done {
		return out, err
	}
	released, err := s.neg.answer(from, sd)
	if err != nil {
		return nil, err
	}
	r.release(s, released)
	r.apply(s)
	s.answered = time.Now()
	return marshal(sd)
}

// Security returns the media security of both legs of a call.
func (r *Relay) Security(callID string) (sec [2]LegSecurity, ok bool) {
	r.mu.Lock()
	s := r.sessions[callID]
	r.mu.Unlock()
	if s == nil {
		return sec, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.security, true
}

// Close ends the call's media (BYE, CANCEL, a failed INVITE): its sockets
// close, its readers end and its ports return to the range before Close
// returns. It returns the legs' security for the CDR. Closing an unknown
// call does nothing.
func (r *Relay) Close(callID string) [2]LegSecurity {
	r.mu.Lock()
	s := r.sessions[callID]
	delete(r.sessions, callID)
	if s != nil {
		r.met.sessions.Dec()
	}
	r.mu.Unlock()
	if s == nil {
		return [2]LegSecurity{}
	}
	return r.closeSession(s)
}

// Sessions returns the number of calls with media state.
func (r *Relay) Sessions() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sessions)
}

// PortsInUse returns the port pairs allocated.
func (r *Relay) PortsInUse() int { return r.ports.InUse() }

// Shutdown closes every session and stops the relay; it returns when all
// its goroutines have ended.
func (r *Relay) Shutdown() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	all := r.sessions
	r.sessions = map[string]*session{}
	r.met.sessions.Set(0)
	r.mu.Unlock()
	close(r.stop)
	r.reaper.Wait()
	for _, s := range all {
		r.closeSession(s)
	}
	stopPollers(r.pollers)
}

func (r *Relay) session(callID string, pol Policy) (s *session, created bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, false, ErrClosed
	}
	if s = r.sessions[callID]; s != nil {
		return s, false, nil
	}
	s = &session{
		callID:  callID,
		neg:     negotiation{pol: pol, addr: r.cfg.Advertise},
		streams: map[int]*relayStream{},
		created: time.Now(),
	}
	r.sessions[callID] = s
	r.met.sessions.Inc()
	return s, true, nil
}

// begin is the common start of an offer or answer from leg from (s.mu
// held): it parses body, and with a direct policy it only checks it and
// records the leg's security. done reports that the caller is finished
// (direct media, or an error) and must return out, err.
func (s *session) begin(from Leg, body []byte) (sd *sdp.SessionDescription, out []byte, done bool, err error) {
	if s.closed {
		return nil, nil, true, ErrNoSession
	}
	if sd, err = parseSDP(body); err != nil {
		return nil, nil, true, err
	}
	if s.neg.pol.Direct {
		secure, err := checkDirect(s.neg.pol, from, sd)
		if err != nil {
			return nil, nil, true, err
		}
		s.security[from] = LegSecurity{SRTP: secure}
		out, err = marshal(sd)
		return nil, out, true, err
	}
	return sd, nil, false, nil
}

func (r *Relay) offer(s *session, from Leg, body []byte) (out []byte, err error) {
	defer func() {
		res := "ok"
		if err != nil {
			_, _, res = SIPStatus(err)
		}
		r.met.offers.WithLabelValues(res).Inc()
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	sd, out, done, err := s.begin(from, body)
	if done {
		return out, err
	}
	// A new offer replaces one still pending (an INVITE retried after a
	// 401/407, or glare): the streams it opened go, and their ports are
	// back in the range before new ones are taken.
	var wg sync.WaitGroup
	for _, p := range s.neg.abandon() {
		if st := s.streams[p[LegA]]; st != nil {
			wg.Add(1)
			r.closeStream(s, st, wg.Done)
		}
	}
	wg.Wait()
	s.fresh = s.fresh[:0]
	alloc := func(int) ([2]int, error) { return r.openStream(s) }
	if err := s.neg.offer(from, sd, alloc); err != nil {
		for _, st := range s.fresh {
			r.closeStream(s, st)
		}
		s.fresh = s.fresh[:0]
		return nil, err
	}
	s.fresh = s.fresh[:0]
	return marshal(sd)
}

// openStream allocates two port pairs, binds them and starts the readers.
// Ports another program holds are skipped (a few tries).
func (r *Relay) openStream(s *session) ([2]int, error) {
	var lastErr error
	for try := 0; try < 8; try++ {
		pa, err := r.ports.Get()
		if err != nil {
			return [2]int{}, err
		}
		pb, err := r.ports.Get()
		if err != nil {
			r.ports.Put(pa)
			return [2]int{}, err
		}
		st, err := openStream(r.cfg.Addr, s.callID, pa, pb)
		if err != nil {
			r.ports.Put(pa)
			r.ports.Put(pb)
			lastErr = err
			continue
		}
		r.met.ports.Add(2)
		r.met.streams.Inc()
		s.readers.Add(1)
		// In turn, not by port: ports are handed out in pairs of pairs, so
		// a port-derived choice put every stream on the same poller.
		w := r.pollers[r.nextPoller.Add(1)%uint32(len(r.pollers))]
		if err := w.add(st); err != nil {
			w.remove(st, r.freeStream(s, st))
			return [2]int{}, fmt.Errorf("media relay: %w", err)
		}
		s.streams[pa] = st
		s.fresh = append(s.fresh, st)
		return st.ports, nil
	}
	return [2]int{}, fmt.Errorf("%w: bind: %v", ErrNoPorts, lastErr)
}

// closeStream hands the stream to its poller to close; then (optional) runs.
func (r *Relay) closeStream(s *session, st *relayStream, then ...func()) {
	if s.streams[st.ports[LegA]] != st {
		for _, f := range then {
			f()
		}
		return
	}
	delete(s.streams, st.ports[LegA])
	free := r.freeStream(s, st)
	st.poller.remove(st, func() {
		free()
		for _, f := range then {
			f()
		}
	})
}

// freeStream returns what runs once a stream's sockets are closed: its
// ports go back to the range and the session stops waiting for it.
func (r *Relay) freeStream(s *session, st *relayStream) func() {
	return func() {
		r.ports.Put(st.ports[LegA])
		r.ports.Put(st.ports[LegB])
		r.met.ports.Sub(2)
		r.met.streams.Dec()
		s.readers.Done()
	}
}

func (r *Relay) release(s *session, released [][2]int) {
	for _, p := range released {
		if st := s.streams[p[LegA]]; st != nil {
			r.closeStream(s, st)
		}
	}
}

// closeSession closes the session's streams and waits for their readers.
func (r *Relay) closeSession(s *session) [2]LegSecurity {
	s.mu.Lock()
	sec := s.security
	if !s.closed {
		s.closed = true
		for _, st := range s.streams {
			r.closeStream(s, st)
		}
	}
	s.mu.Unlock()
	s.readers.Wait()
	return sec
}

// apply turns the committed negotiation into forwarding: one config per
// socket, keeping SRTP contexts whose keys did not change, and a fresh
// latch where the leg's address changed.
func (r *Relay) apply(s *session) {
	var sec [2]LegSecurity
	sec[LegA].Relayed, sec[LegB].Relayed = true, true
	secureAll := [2]bool{true, true}
	active := 0
	for i := range s.neg.streams {
		ns := &s.neg.streams[i]
		if ns.rejected {
			continue
		}
		st := s.streams[ns.ports[LegA]]
		if st == nil {
			continue
		}
		active++
		for leg := LegA; leg <= LegB; leg++ {
			in, out := &ns.sides[leg], &ns.sides[leg.other()]
			if !in.secure {
				secureAll[leg] = false
			} else if sec[leg].Suite == SuiteNone {
				sec[leg].Suite = in.recv.Suite
			}
			expRTP, expRTCP, _ := in.remote()
			dstRTP, dstRTCP, _ := out.remote()
			for k := kind(0); k < nKinds; k++ {
				sock := st.socks[leg][k]
				old := sock.cfg.Load()
				c := &fwdConfig{expect: expRTP, dst: dstRTP}
				if k == kindRTCP {
					c.expect, c.dst = expRTCP, dstRTCP
				}
				if in.secure {
					c.decKey = in.recv
					if old != nil && old.dec != nil && sameKey(old.decKey, in.recv) {
						c.dec = old.dec
					} else if ctx, err := in.recv.context(); err == nil {
						c.dec = ctx
					} else {
						r.log.Error("media: SRTP context", "call_id", s.callID, "leg", leg.String(), "err", err)
					}
				}
				if out.secure {
					c.encKey = out.send
					if old != nil && old.enc != nil && sameKey(old.encKey, out.send) {
						c.enc = old.enc
					} else if ctx, err := out.send.context(); err == nil {
						c.enc = ctx
					} else {
						r.log.Error("media: SRTP context", "call_id", s.callID, "leg", leg.other().String(), "err", err)
					}
				}
				if old != nil && old.expect != c.expect {
					sock.latched.Store(nil) // the peer moved: learn its source again
				}
				if (in.secure && c.dec == nil) || (out.secure && c.enc == nil) {
					// Never fall back to clear RTP on an SRTP leg: drop everything.
					c = nil
				}
				sock.cfg.Store(c)
			}
		}
	}
	for leg := range sec {
		sec[leg].SRTP = active > 0 && secureAll[leg]
		if !sec[leg].SRTP {
			sec[leg].Suite = SuiteNone
		}
	}
	s.security = sec
}

func sameKey(a, b Crypto) bool { return a.Suite == b.Suite && bytes.Equal(a.Key, b.Key) }

// reap closes sessions whose media stopped for the timeout, and sessions
// whose offer was never answered for much longer.
func (r *Relay) reap() {
	defer r.reaper.Done()
	every := min(r.cfg.Timeout/4, 5*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case now := <-t.C:
			for _, id := range r.idle(now) {
				r.timeout(id, now)
			}
		}
	}
}

// timeout ends the session of callID, idle at now. With OnTimeout the proxy
// is asked to end the call, and the call's end closes the session, so that
// the CDR records the security of both legs; a session the proxy has not
// closed after the timeout again (no dialog there) is closed here.
func (r *Relay) timeout(callID string, now time.Time) {
	r.mu.Lock()
	s := r.sessions[callID]
	r.mu.Unlock()
	if s == nil {
		return
	}
	s.mu.Lock()
	first := s.timedOut.IsZero()
	if first {
		s.timedOut = now
	}
	overdue := !first && now.Sub(s.timedOut) > r.cfg.Timeout
	s.mu.Unlock()
	if first {
		r.met.timeouts.Inc()
		r.log.Info("media timeout", "call_id", callID, "after", r.cfg.Timeout.String())
	}
	switch {
	case first && r.cfg.OnTimeout != nil:
		r.cfg.OnTimeout(callID)
	case first || overdue:
		r.Close(callID)
	}
}

// idle lists the sessions to close at now.
func (r *Relay) idle(now time.Time) []string {
	r.mu.Lock()
	all := make([]*session, 0, len(r.sessions))
	for _, s := range r.sessions {
		all = append(all, s)
	}
	r.mu.Unlock()
	var ids []string
	for _, s := range all {
		s.mu.Lock()
		if s.idle(now, r.cfg.Timeout) {
			ids = append(ids, s.callID)
		}
		s.mu.Unlock()
	}
	return ids
}

// idle reports whether the session has seen no media for timeout. Streams
// on hold (0.0.0.0 or a=inactive on either side) are not expected to carry
// media and are left to the dialog's own timeout.
func (s *session) idle(now time.Time, timeout time.Duration) bool {
	if s.answered.IsZero() {
		return !s.neg.pol.Direct && now.Sub(s.created) > unansweredTimeout
	}
	last := s.answered.UnixNano()
	expecting := false
	for i := range s.neg.streams {
		ns := &s.neg.streams[i]
		if ns.rejected || ns.onHold() {
			continue
		}
		st := s.streams[ns.ports[LegA]]
		if st == nil {
			continue
		}
		expecting = true
		last = max(last, st.lastSeen())
	}
	return expecting && now.UnixNano()-last > int64(timeout)
}

func (ns *stream) onHold() bool {
	for _, sd := range ns.sides {
		if sd.addr.IsUnspecified() || sd.inactive {
			return true
		}
	}
	return false
}

func marshal(sd *sdp.SessionDescription) ([]byte, error) {
	b, err := sd.Marshal()
	if err != nil {
		return nil, errors.Join(ErrBadSDP, err)
	}
	return b, nil
}
