package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/testenv"
	"github.com/sipwarden/sipwarden/test/testbed"
)

// TestBansMirroredIntoNftables runs sipwarden with firewall.nftables: a ban
// added with the CLI reaches the kernel set, packets from the banned address
// are dropped by nftables (sipwarden's own gate never sees them), traffic
// from other addresses still reaches sipwarden, the unban empties the set,
// and the table is gone when sipwarden stops. Needs root (CI runs as root).
func TestBansMirroredIntoNftables(t *testing.T) {
	testenv.Root(t, "the nftables mirror")
	nft := testbed.RequireTool(t, "nft", "nftables")
	table := fmt.Sprintf("swe2e%d", os.Getpid())
	t.Cleanup(func() { _ = exec.Command(nft, "delete", "table", "inet", table).Run() })
	e := testbed.StartEdge(t, baseConfig+"firewall: {nftables: true, table: "+table+"}\n", testbed.FreePort(t), params("udp"))
	cfgPath := filepath.Join(e.Dir, "sipwarden.yaml")

	list := func() string {
		out, _ := exec.Command(nft, "list", "table", "inet", table).CombinedOutput()
		return string(out)
	}
	waitFor := func(what string, ok func(string) bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !ok(list()) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 5s; the table is:\n%s", what, list())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("table created at start", func(s string) bool { return strings.Contains(s, "set banned4") })

	ban := func(args ...string) {
		t.Helper()
		out, err := exec.Command(testbed.Binary, append([]string{"ban"}, append(args, "--config", cfgPath)...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("sipwarden ban %v: %v\n%s", args, err, out)
		}
	}
	ban("add", "127.0.0.9", "--for", "1h", "--reason", "e2e")
	waitFor("ban mirrored", func(s string) bool { return strings.Contains(s, "127.0.0.9") })

	blocked := `sipwarden_transport_dropped_total{reason="blocked",transport="UDP"}`
	unknown := `sipwarden_acl_unknown_source_total{transport="UDP"}`
	blockedBefore, unknownBefore := e.Metric(blocked), e.Metric(unknown)
	banned := testbed.NewRawUA(t, "udp", "127.0.0.9")
	stranger := testbed.NewRawUA(t, "udp", "127.0.0.8")
	for i := range 50 {
		banned.Send(e.SIPAddr(), banned.InviteText(e.SIPAddr(), fmt.Sprintf("banned-%d", i), fmt.Sprintf("z9hG4bK-b%d", i), 1))
	}
	stranger.Send(e.SIPAddr(), stranger.InviteText(e.SIPAddr(), "stranger-1", "z9hG4bK-s1", 1))
	// The kernel counted all 50 drops, and the stranger's datagram, sent
	// after them, reached sipwarden: whatever of the banned address's
	// traffic would have reached the gate has reached it by now.
	waitFor("all 50 counted by nftables", func(s string) bool { return dropCounter(s) >= 50 })
	waitMetric(t, e, unknown, unknownBefore+1)
	if got := e.Metric(blocked); got != blockedBefore {
		t.Errorf("sipwarden's gate saw %v datagrams of the banned address: the kernel should have dropped them", got-blockedBefore)
	}

	ban("remove", "127.0.0.9")
	waitFor("unban mirrored", func(s string) bool { return !strings.Contains(s, "127.0.0.9") })

	e.Stop()
	if out, err := exec.Command(nft, "list", "table", "inet", table).CombinedOutput(); err == nil {
		t.Errorf("the table outlived sipwarden:\n%s", out)
	}
}

var counterRe = regexp.MustCompile(`counter packets (\d+)`)

// dropCounter sums the packet counters of the mirror's rules.
func dropCounter(table string) int {
	n := 0
	for _, m := range counterRe.FindAllStringSubmatch(table, -1) {
		v, _ := strconv.Atoi(m[1])
		n += v
	}
	return n
}
