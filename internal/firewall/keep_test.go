package firewall

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sipwarden/sipwarden/internal/banlist"
)

// kernel records what Keep wrote.
type kernel struct {
	mu     sync.Mutex
	writes [][]netip.Prefix
	fail   bool
}

func (k *kernel) Replace(p []netip.Prefix) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fail {
		return errors.New("netlink: operation not permitted")
	}
	k.writes = append(k.writes, slices.Clone(p))
	return nil
}

func (k *kernel) last() (int, []string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.writes) == 0 {
		return 0, nil
	}
	var out []string
	for _, p := range k.writes[len(k.writes)-1] {
		out = append(out, p.String())
	}
	slices.Sort(out)
	return len(k.writes), out
}

func TestKeepMirrorsChangesAndExpiries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		list := banlist.New(nil, banlist.Options{})
		if _, err := list.Add(netip.MustParsePrefix("192.0.2.1/32"), "flood", "flood", time.Hour); err != nil {
			t.Fatal(err)
		}
		list.AddFeed("apiban", []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")})
		if _, err := list.AddSparingPeers(netip.MustParsePrefix("198.51.101.0/24"), "unknown_prefix_probe", "acl", time.Hour); err != nil {
			t.Fatal(err)
		}
		k := &kernel{}
		go Keep(ctx, k, list, KeepOptions{Poll: 100 * time.Millisecond, Retry: time.Second})

		synctest.Wait()
		n, got := k.last()
		if n != 1 || !slices.Equal(got, []string{"192.0.2.1/32"}) {
			t.Fatalf("first write %d: %v, want the one rule ban, no feed entry and no ban that spares peers", n, got)
		}

		// A new ban reaches the kernel within one poll.
		if _, err := list.Add(netip.MustParsePrefix("203.0.113.0/24"), "flood", "flood", 10*time.Second); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		if n, got = k.last(); n != 2 || !slices.Equal(got, []string{"192.0.2.1/32", "203.0.113.0/24"}) {
			t.Fatalf("after a ban, write %d: %v", n, got)
		}

		// Nothing changes: nothing is written.
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if n, _ = k.last(); n != 2 {
			t.Fatalf("%d writes without a change, want 2", n)
		}

		// The 10 s ban expires: it leaves the kernel without waiting for a sweep.
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if n, got = k.last(); n != 3 || !slices.Equal(got, []string{"192.0.2.1/32"}) {
			t.Fatalf("after the expiry, write %d: %v", n, got)
		}

		// A failing kernel is retried after Retry, not in a busy loop.
		k.mu.Lock()
		k.fail = true
		k.mu.Unlock()
		list.Remove(netip.MustParsePrefix("192.0.2.1/32"))
		time.Sleep(500 * time.Millisecond)
		k.mu.Lock()
		k.fail = false
		k.mu.Unlock()
		time.Sleep(200 * time.Millisecond)
		synctest.Wait()
		if n, _ = k.last(); n != 3 {
			t.Fatalf("write %d during the retry wait", n)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if n, got = k.last(); n != 4 || len(got) != 0 {
			t.Fatalf("after the retry, write %d: %v, want an empty set", n, got)
		}
	})
}

// A rule's ban of a stranger's address is mirrored; once a reload makes
// that address a configured peer, it leaves the kernel (the gate lets the
// peer in, the kernel must too).
func TestKeepDropsRuleBansOfPeers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		list := banlist.New(nil, banlist.Options{})
		list.SetPeerCheck(func(netip.Addr) bool { return false })
		if _, err := list.AddSparingPeers(netip.MustParsePrefix("192.0.2.7/32"), "flood_invite", "flood", time.Hour); err != nil {
			t.Fatal(err)
		}
		k := &kernel{}
		go Keep(ctx, k, list, KeepOptions{Poll: 100 * time.Millisecond, Retry: time.Second})
		synctest.Wait()
		if _, got := k.last(); !slices.Equal(got, []string{"192.0.2.7/32"}) {
			t.Fatalf("first write %v, want the stranger's address", got)
		}
		peer := netip.MustParseAddr("192.0.2.7")
		list.SetPeerCheck(func(a netip.Addr) bool { return a == peer })
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		if _, got := k.last(); len(got) != 0 {
			t.Fatalf("after the reload, kernel holds %v, want nothing", got)
		}
	})
}
