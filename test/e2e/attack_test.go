package e2e

import (
	"github.com/sipwarden/sipwarden/test/testbed"

	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestUnderAttack is the short form of the attack scenario (bench/attack.sh
// runs the long one): legitimate calls from the trunk at 100 calls/s while
// ten strangers flood INVITE and REGISTER at about 20,000 messages/s in all
// and a scanner sweeps. Every legitimate call completes, every flooder is
// banned within a second, nobody but the trunk gets a reply, and memory stays
// bounded.
func TestUnderAttack(t *testing.T) {
	if testing.Short() {
		t.Skip("attack scenario skipped in -short mode")
	}
	// bench/attack.sh runs the long form through these variables.
	calls := envInt("SIPWARDEN_ATTACK_CALLS", 500)
	rate := envInt("SIPWARDEN_ATTACK_CPS", 100)
	attackers := envInt("SIPWARDEN_ATTACKERS", 10)
	perSecond := envInt("SIPWARDEN_ATTACK_PPS", 2000) // per attacker
	attackFor := time.Duration(calls/rate) * time.Second
	pbx := testbed.FreePort(t)
	testbed.StartUAS(t, "uas.xml", pbx)
	e := testbed.StartEdge(t, baseConfig, pbx, params("udp"))
	target, _ := net.ResolveUDPAddr("udp", e.SIPAddr())
	rssBefore := rss(t, e.Cmd.Process.Pid)

	var sent, answered atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	stop := make(chan struct{})
	for i := range attackers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ip := fmt.Sprintf("127.0.0.%d", 10+i)
			c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			go func() { // count anything that comes back
				buf := make([]byte, 2048)
				for {
					if _, _, err := c.ReadFromUDP(buf); err != nil {
						return
					}
					answered.Add(1)
				}
			}()
			method := "INVITE"
			if i%2 == 1 {
				method = "REGISTER"
			}
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			n := 0
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				for range perSecond / 100 {
					n++
					msg := fmt.Sprintf("%s sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP %s:5060;branch=z9hG4bK-a%d\r\nFrom: <sip:100@x>;tag=%d\r\nTo: <sip:100@127.0.0.1>\r\nCall-ID: flood-%d-%d\r\nCSeq: 1 %s\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
						method, ip, n, n, i, n, method)
					if _, err := c.WriteToUDP([]byte(msg), target); err == nil {
						sent.Add(1)
					}
				}
			}
		}()
	}
	// a scanner sweeps extensions with a scanner User-Agent
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := testbed.NewRawUA(t, "udp", "127.0.0.30")
		for ext := 100; ext < 200; ext++ {
			sc.Send(e.SIPAddr(), fmt.Sprintf("OPTIONS sip:%d@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-s%d\nFrom: \"sipvicious\"<sip:%d@127.0.0.1>;tag=1\nTo: <sip:%d@127.0.0.1>\nCall-ID: scan-%d\nCSeq: 1 OPTIONS\nUser-Agent: friendly-scanner\nContent-Length: 0\n\n", ext, sc.LocalAddr(), ext, ext, ext, ext))
			time.Sleep(5 * time.Millisecond)
		}
		// it listens until the attack ends: the legitimate calls and the
		// flood go on through sipwarden meanwhile
		for {
			select {
			case <-stop:
				return
			default:
			}
			if m := sc.Recv(100 * time.Millisecond); m != nil {
				t.Errorf("the scanner got an answer:\n%s", m.Raw)
				return
			}
		}
	}()

	res := testbed.RunSipp(t, attackFor+90*time.Second, testbed.UACArgs("uac.xml", e.SIPAddr(), calls, rate)...)
	if time.Since(start) < attackFor {
		time.Sleep(attackFor - time.Since(start))
	}
	close(stop)
	wg.Wait()
	elapsed := time.Since(start)

	if min := calls * 999 / 1000; res.Successful < min {
		t.Errorf("legitimate calls under attack: %s, want >= %d successful", testbed.FmtCalls(res), min)
	}
	if n := answered.Load(); n != 0 {
		t.Errorf("attackers got %d answers, want none", n)
	}
	perSec := float64(sent.Load()) / elapsed.Seconds()
	if perSec < 15000 {
		t.Logf("attack rate only %.0f messages/s on this machine (aim: 20,000)", perSec)
	}
	// every flooder banned, each within a second of the attack's start
	out, err := exec.Command(testbed.Binary, "ban", "list", "--config", filepath.Join(e.Dir, "sipwarden.yaml"), "--format", "json").CombinedOutput()
	if err != nil {
		t.Fatalf("ban list: %v\n%s", err, out)
	}
	var bans []struct{ Prefix, Reason, Created string }
	if err := json.Unmarshal(out, &bans); err != nil {
		t.Fatalf("ban list: %v\n%s", err, out)
	}
	var banned []netip.Prefix
	for _, b := range bans {
		created, err := time.Parse(time.RFC3339Nano, b.Created)
		if err != nil || created.Sub(start) > time.Second {
			t.Errorf("%s banned at %s, more than 1 s after the attack began at %s", b.Prefix, b.Created, start.UTC().Format(time.RFC3339Nano))
		}
		if p, err := netip.ParsePrefix(b.Prefix); err == nil {
			banned = append(banned, p)
		}
	}
	// Each flooder is banned by address, or with its /24 when the flooders
	// of one /24 together went over the block's budget first (such a ban
	// spares the trunk and the PBX, which share 127.0.0.0/24 here).
	for i := range attackers {
		a := netip.AddrFrom4([4]byte{127, 0, 0, byte(10 + i)})
		if !slices.ContainsFunc(banned, func(p netip.Prefix) bool { return p.Contains(a) }) {
			t.Errorf("flooder %s not banned (bans: %v)", a, bans)
		}
	}
	blocked := e.Metric(`sipwarden_transport_dropped_total{reason="blocked",transport="UDP"}`)
	rssAfter := rss(t, e.Cmd.Process.Pid)
	t.Logf("attack: %d messages in %v (%.0f/s), %.0f dropped before parsing; legitimate: %s; RSS %d -> %d KiB; events lost by the log sink: %.0f",
		sent.Load(), elapsed.Round(time.Millisecond), perSec, blocked, testbed.FmtCalls(res), rssBefore, rssAfter,
		e.Metric(`sipwarden_events_lost_total{subscriber="log"}`))
	if rssAfter > 256*1024 {
		t.Errorf("RSS %d KiB after the attack: memory not bounded", rssAfter)
	}
}

// rss returns the resident set size of pid in KiB.
func rss(t *testing.T, pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			n, _ := strconv.Atoi(strings.Fields(line)[1])
			return n
		}
	}
	return -1
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
