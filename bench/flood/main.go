// Command flood sends SIP INVITE datagrams as fast as it can (or at a given
// rate) from one source address to one destination, for a bounded time, and
// prints how many it sent. bench/bandrop.sh uses it to measure how fast a
// proxy drops the traffic of a banned source. Loopback only.
//
//	go run ./bench/flood -src 127.0.0.9 -dst 127.0.0.1:15060 -for 10s
package main

import (
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"
)

func main() {
	src := flag.String("src", "127.0.0.9", "source address (loopback)")
	dst := flag.String("dst", "127.0.0.1:5060", "destination address:port (loopback)")
	dur := flag.Duration("for", 10*time.Second, "how long to send (at most 10m)")
	rate := flag.Int("rate", 0, "datagrams per second (0: as fast as possible)")
	senders := flag.Int("senders", 2, "sending sockets (source ports), each on its own goroutine")
	flag.Parse()

	to, err := netip.ParseAddrPort(*dst)
	from, err2 := netip.ParseAddr(*src)
	if err != nil || err2 != nil || !to.Addr().IsLoopback() || !from.IsLoopback() || *dur <= 0 || *dur > 10*time.Minute || *senders < 1 {
		fmt.Fprintln(os.Stderr, "flood: -src and -dst must be loopback addresses, -for between 0 and 10m, -senders >= 1")
		os.Exit(2)
	}
	msg := []byte("INVITE sip:+15551230001@127.0.0.1 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + *src + ":5060;branch=z9hG4bKflood\r\n" +
		"From: <sip:flood@" + *src + ">;tag=1\r\nTo: <sip:+15551230001@127.0.0.1>\r\n" +
		"Call-ID: flood@" + *src + "\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n" +
		"Contact: <sip:flood@" + *src + ":5060>\r\nUser-Agent: flood\r\nContent-Length: 0\r\n\r\n")

	var sent atomic.Int64
	deadline := time.Now().Add(*dur)
	perSender := 0.0
	if *rate > 0 {
		perSender = float64(*rate) / float64(*senders)
	}
	var wg sync.WaitGroup
	for range *senders {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: from.AsSlice()})
		if err != nil {
			fmt.Fprintln(os.Stderr, "flood:", err)
			os.Exit(1)
		}
		defer c.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			pc := ipv4.NewPacketConn(c)
			ua := net.UDPAddrFromAddrPort(to)
			batch := make([]ipv4.Message, 64)
			for i := range batch {
				batch[i] = ipv4.Message{Buffers: [][]byte{msg}, Addr: ua}
			}
			start := time.Now()
			var mine int64
			for time.Now().Before(deadline) {
				n := len(batch)
				if perSender > 0 {
					due := int64(time.Since(start).Seconds()*perSender) - mine
					if due <= 0 {
						time.Sleep(time.Millisecond)
						continue
					}
					n = int(min(due, int64(n)))
				}
				k, err := pc.WriteBatch(batch[:n], 0)
				if err != nil {
					continue // ENOBUFS/ECONNREFUSED: the victim is swamped or gone; keep going
				}
				mine += int64(k)
				sent.Add(int64(k))
			}
		}()
	}
	wg.Wait()
	fmt.Println(sent.Load())
}
