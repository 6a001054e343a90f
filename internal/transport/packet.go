package transport

import (
	"net/netip"
	"sync"
	"time"

	"github.com/sipwarden/sipwarden/internal/sip"
)

// Packet is one received SIP message: a datagram, or one framed message of a stream.
type Packet struct {
	// Buf holds the message; it belongs to the packet until Release.
	Buf []byte
	// Src is the peer's address (always unmapped: 4-in-6 becomes IPv4).
	Src netip.AddrPort
	// Local is the address of the listener it arrived on.
	Local     netip.AddrPort
	Transport sip.Transport
	// Conn is the stream connection (nil for UDP).
	Conn     *Conn
	Listener *Listener
	// Received is when it was read.
	Received time.Time

	pool *sync.Pool
	buf  *[]byte
}

// Release returns the packet's buffers to their pools. The handler calls it
// exactly once, when it is done with the packet.
func (p *Packet) Release() {
	if p.pool != nil && p.buf != nil {
		p.pool.Put(p.buf)
	}
	*p = Packet{}
	packetPool.Put(p)
}

var packetPool = sync.Pool{New: func() any { return new(Packet) }}

// sizeClasses are the pooled buffer sizes for received messages.
var sizeClasses = [...]int{2048, 8192, 65536}

var bufPools = func() [len(sizeClasses)]*sync.Pool {
	var p [len(sizeClasses)]*sync.Pool
	for i, size := range sizeClasses {
		size := size
		p[i] = &sync.Pool{New: func() any { b := make([]byte, size); return &b }}
	}
	return p
}()

// newPacket copies b into a pooled buffer of the smallest class that fits.
func newPacket(b []byte) *Packet {
	p := packetPool.Get().(*Packet)
	for i, size := range sizeClasses {
		if len(b) <= size {
			bp := bufPools[i].Get().(*[]byte)
			p.pool, p.buf = bufPools[i], bp
			p.Buf = (*bp)[:len(b)]
			copy(p.Buf, b)
			return p
		}
	}
	p.Buf = append([]byte(nil), b...)
	return p
}

// Handler receives packets. HandlePacket is called from reader goroutines;
// it takes ownership of p and must return quickly.
type Handler interface {
	HandlePacket(p *Packet)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(p *Packet)

// HandlePacket calls f(p).
func (f HandlerFunc) HandlePacket(p *Packet) { f(p) }

// Gate is the pre-parse check (the ban list implements it). It is called for
// every datagram and every accepted connection and must not allocate.
type Gate interface {
	Blocked(addr netip.Addr) bool
}
