package proxy

import (
	"bytes"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/acl"
	"github.com/sipwarden/sipwarden/internal/cdr"
	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/limits"
	"github.com/sipwarden/sipwarden/internal/route"
	"github.com/sipwarden/sipwarden/internal/sanity"
	"github.com/sipwarden/sipwarden/internal/sip"
	"github.com/sipwarden/sipwarden/internal/transport"
)

// recorder is a Sender that keeps what the proxy sends instead of sending it.
type recorder struct {
	l      *transport.Listener
	mu     sync.Mutex
	sent   []sent
	keep   bool
	last   []byte
	invite []byte
	resp   []byte // the last response sent
}

// lastInvite returns the last INVITE the proxy sent.
func (r *recorder) lastInvite() []byte { return r.invite }

type sent struct {
	dst netip.AddrPort
	b   []byte
}

func (r *recorder) Send(_ sip.Transport, _ *transport.Listener, dst netip.AddrPort, _ *transport.Conn, b []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if bytes.HasPrefix(b, []byte("SIP/2.0 ")) {
		r.resp = append(r.resp[:0], b...)
	} else {
		r.last = append(r.last[:0], b...) // the last request sent: the PBX answers it
		if bytes.HasPrefix(b, []byte("INVITE ")) {
			r.invite = append(r.invite[:0], b...)
		}
	}
	if r.keep {
		r.sent = append(r.sent, sent{dst, append([]byte(nil), b...)})
	}
	return nil
}

func (r *recorder) ListenerFor(sip.Transport, netip.Addr) *transport.Listener { return r.l }

type cdrs struct {
	mu   sync.Mutex
	recs []cdr.Record
}

func (c *cdrs) Write(r cdr.Record) { c.mu.Lock(); c.recs = append(c.recs, r); c.mu.Unlock() }

const testConfig = `
listen: [udp://127.0.0.1:5060]
upstreams: [{name: pbx, targets: [udp://127.0.0.3:5080]}]
trunks: [{name: acme, allow: [127.0.0.2/32], upstream: pbx, numbers: ["+15551230000/4"], limits: {concurrent: 100000}}]
`

// newTestProxy builds a proxy with the real chain and a recording sender; it
// returns the proxy's single worker to drive synchronously.
func newTestProxy(t testing.TB) (*Proxy, *worker, *recorder, *cdrs) {
	return newTestProxyWith(t)
}

// newTestProxyWith puts extra stages before route.
func newTestProxyWith(t testing.TB, extra ...chain.Stage) (*Proxy, *worker, *recorder, *cdrs) {
	return newTestProxyCfg(t, testConfig, extra...)
}

// newTestProxyCfg is newTestProxyWith over another configuration.
func newTestProxyCfg(t testing.TB, yaml string, extra ...chain.Stage) (*Proxy, *worker, *recorder, *cdrs) {
	cfg, err := config.Parse([]byte(yaml), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := acl.NewStage(cfg, nil, nil, nil, nil)
	lim, _ := limits.NewStage(cfg, limits.NewRegistry(nil), nil)
	rt, _ := route.NewStage(cfg, nil, nil)
	tm, err := transport.NewManager(transport.Options{}, transport.HandlerFunc(func(p *transport.Packet) { p.Release() }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tm.Close() })
	l, err := tm.Listen(sip.UDP, netip.MustParseAddrPort("127.0.0.1:0"), "127.0.0.1:5060")
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{l: l}
	store := &cdrs{}
	p, err := New(Options{
		Sender:  rec,
		Runtime: &Runtime{Config: cfg, Chain: chain.New(nil, append(append([]chain.Stage{a, sanity.New(), lim}, extra...), rt)...), Alternates: rt.Alternates},
		CDR:     store,
		Workers: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	p.SetListeners([]*transport.Listener{l})
	w := p.workers[0]
	return p, w, rec, store
}

var (
	uac = netip.MustParseAddrPort("127.0.0.2:5060")
	uas = netip.MustParseAddrPort("127.0.0.3:5080")
)

// feed hands b to the worker as if received from src (synchronously, on the test goroutine:
// the worker goroutine is idle because nothing is queued).
func (w *worker) feed(src netip.AddrPort, b []byte) {
	p := &transport.Packet{Buf: b, Src: src, Local: netip.MustParseAddrPort("127.0.0.1:5060"), Transport: sip.UDP, Received: time.Now()}
	w.now = time.Now()
	w.handle(p)
}

// callMessages appends the caller's INVITE, ACK and BYE for call n into bufs.
type callBufs struct{ invite, ack, bye, resp, tail []byte }

func (c *callBufs) build(n int) {
	c.invite = append(c.invite[:0], "INVITE sip:+15551230001@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-i"...)
	c.invite = strconv.AppendInt(c.invite, int64(n), 10)
	c.invite = append(c.invite, ";rport\r\nFrom: <sip:+15550001000@127.0.0.2>;tag=f1\r\nTo: <sip:+15551230001@127.0.0.1>\r\nCall-ID: c"...)
	c.invite = strconv.AppendInt(c.invite, int64(n), 10)
	c.invite = append(c.invite, "\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@127.0.0.2:5060>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: 10\r\n\r\nv=0\r\ns=-\r\n"...)
	for i, method := range []string{"ACK", "BYE"} {
		b := &c.ack
		if i == 1 {
			b = &c.bye
		}
		*b = append((*b)[:0], method...)
		*b = append(*b, " sip:pbx@127.0.0.3:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-"...)
		*b = append(*b, method...)
		*b = strconv.AppendInt(*b, int64(n), 10)
		*b = append(*b, "\r\nRoute: <sip:127.0.0.1:5060;lr>\r\nFrom: <sip:+15550001000@127.0.0.2>;tag=f1\r\nTo: <sip:+15551230001@127.0.0.1>;tag=t1\r\nCall-ID: c"...)
		*b = strconv.AppendInt(*b, int64(n), 10)
		*b = append(*b, "\r\nCSeq: "...)
		*b = strconv.AppendInt(*b, int64(i+1), 10)
		*b = append(*b, ' ')
		*b = append(*b, method...)
		*b = append(*b, "\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"...)
	}
}

// respond answers the request the proxy last sent (to the PBX).
func respond(w *worker, rec *recorder, c *callBufs, code int) { respondFrom(w, rec, c, code, uas) }

// respondFrom answers the request the proxy last sent, from src.
func respondFrom(w *worker, rec *recorder, c *callBufs, code int, src netip.AddrPort) {
	var m sip.Msg
	_ = m.Parse(rec.last)
	var extra []byte
	if code > 100 && code < 300 && m.Method() == sip.INVITE {
		extra = []byte("Contact: <sip:pbx@127.0.0.3:5080>\r\n")
	}
	c.resp = sip.AppendResponse(c.resp[:0], &m, code, sip.ReasonText(code), []byte("t1"), "", extra)
	w.feed(src, c.resp)
	if code >= 200 && code < 300 && m.Method() == sip.INVITE {
		c.target(rec.resp)
	}
}

// target points the caller's ACK and BYE at the Contact of resp, the 2xx
// the caller got (with topology hiding: sipwarden's, with the dialog handle).
func (c *callBufs) target(resp []byte) {
	var m sip.Msg
	if m.Parse(resp) != nil {
		return
	}
	na, _, err := sip.ParseNameAddr(m.Get(sip.HdrContact))
	if err != nil {
		return
	}
	for _, b := range []*[]byte{&c.ack, &c.bye} {
		sp := bytes.IndexByte(*b, ' ')
		end := bytes.Index(*b, []byte(" SIP/2.0\r\n"))
		if sp < 0 || end < sp {
			continue
		}
		c.tail = append(c.tail[:0], (*b)[end:]...)
		*b = append(append((*b)[:sp+1], na.URI...), c.tail...)
	}
}

// relayCall runs one whole call through the worker: INVITE, 180, 200, ACK, BYE, 200.
func relayCall(w *worker, rec *recorder, c *callBufs, n int) {
	c.build(n)
	w.feed(uac, c.invite)
	respond(w, rec, c, 180)
	respond(w, rec, c, 200)
	w.feed(uac, c.ack)
	w.feed(uac, c.bye)
	respond(w, rec, c, 200)
}

func TestRelayCall(t *testing.T) {
	p, w, rec, store := newTestProxy(t)
	rec.keep = true
	var c callBufs
	relayCall(w, rec, &c, 1)
	// what went where
	var toPBX, toCaller []sip.Msg
	for _, s := range rec.sent {
		var m sip.Msg
		if err := m.Parse(s.b); err != nil {
			t.Fatalf("proxy sent an unparseable message: %v\n%s", err, s.b)
		}
		switch s.dst {
		case uas:
			toPBX = append(toPBX, m)
		case uac:
			toCaller = append(toCaller, m)
		default:
			t.Fatalf("sent to %v", s.dst)
		}
	}
	if len(toPBX) != 3 || toPBX[0].Method() != sip.INVITE || toPBX[1].Method() != sip.ACK || toPBX[2].Method() != sip.BYE {
		t.Fatalf("to the PBX: %d messages", len(toPBX))
	}
	inv := &toPBX[0]
	v, _ := inv.TopVia()
	if !bytes.HasPrefix(v.Branch, []byte(branchPrefix)) || inv.Count(sip.HdrVia) != 2 || inv.MaxForwards() != 69 ||
		string(inv.Get(sip.HdrRecordRoute)) != "<sip:127.0.0.1:5060;lr>" {
		t.Errorf("forwarded INVITE:\n%s", inv.Bytes())
	}
	if toPBX[2].Get(sip.HdrRoute) != nil {
		t.Errorf("our Route entry was not consumed:\n%s", toPBX[2].Bytes())
	}
	codes := []int{}
	for i := range toCaller {
		codes = append(codes, toCaller[i].StatusCode())
		if toCaller[i].Count(sip.HdrVia) != 1 {
			t.Errorf("response to the caller still carries our Via:\n%s", toCaller[i].Bytes())
		}
	}
	if len(codes) != 4 || codes[0] != 100 || codes[1] != 180 || codes[2] != 200 || codes[3] != 200 {
		t.Errorf("to the caller: %v, want [100 180 200 200]", codes)
	}
	if p.ActiveCalls() != 0 || len(store.recs) != 1 || store.recs[0].Disposition != cdr.Answered || store.recs[0].To != "+15551230001" {
		t.Errorf("active %d, CDRs %+v", p.ActiveCalls(), store.recs)
	}
}

// BenchmarkRelayCall is the proxy's whole work for one call (six messages
// relayed, our own 100 Trying, the chain for the INVITE, the CDR), without
// the sockets.
func BenchmarkRelayCall(b *testing.B) {
	_, w, rec, _ := newTestProxy(b)
	var c callBufs
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		n++
		relayCall(w, rec, &c, n)
	}
}

// BenchmarkChainInvite is the chain alone (acl, sanity, limits, route) for one initial INVITE.
func BenchmarkChainInvite(b *testing.B) {
	p, _, _, _ := newTestProxy(b)
	rt := p.Runtime()
	var c callBufs
	c.build(1)
	var m sip.Msg
	_ = m.Parse(c.invite)
	var req chain.Request
	b.ReportAllocs()
	for b.Loop() {
		req.Reset()
		req.Msg, req.Src, req.Transport, req.Config = &m, uac, sip.UDP, rt.Config
		if v, _ := rt.Chain.Run(&req); v.Action != chain.Forward {
			b.Fatalf("verdict %+v", v)
		}
		req.ReleaseHolds()
	}
}
