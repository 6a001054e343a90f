package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/sip"
	"github.com/sipwarden/sipwarden/internal/testenv"
	"github.com/sipwarden/sipwarden/test/testbed"
)

// refused are the RFC 4475 requests a proxy must refuse, with the status it
// answers a known peer (internal/sanity's table test has the full list).
var refused = map[string]int{
	"badinv01": 400, "clerr": 400, "ncl": 400, "scalar02": 400, "quotbal": 400, "ltgtruri": 400,
	"lwsruri": 400, "lwsstart": 400, "trws": 400, "escruri": 400, "regbadct": 400, "badaspec": 400,
	"baddn": 400, "badvers": 505, "mismatch01": 400, "mismatch02": 400, "unkscm": 416, "novelsc": 416,
	"bext01": 420, "multi01": 400, "mcl01": 400, "zeromf": 483,
}

// TestRFC4475OnTheWire sends the 49 torture messages through the real binary:
// from a trunk, the malformed requests are answered with the RFC's code and
// never reach the PBX; from an unknown address nothing comes back at all.
func TestRFC4475OnTheWire(t *testing.T) {
	files, _ := filepath.Glob("../../internal/sip/testdata/rfc4475/*.dat")
	if len(files) != 49 {
		t.Fatalf("%d torture messages, want 49", len(files))
	}
	pbxPort := testbed.FreePort(t)
	pbx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.3"), Port: pbxPort})
	if err != nil {
		t.Fatal(err)
	}
	defer pbx.Close()
	// Most torture messages have a Via without port: answers go to port
	// 5060. The trunk and the stranger get addresses of their own, so that
	// no SIPp of another test (whose "-p 0" tries 5060 first) holds the port.
	e := testbed.StartEdge(t, strings.ReplaceAll(baseConfig, "127.0.0.2", "127.0.0.42"), pbxPort, params("udp"))
	dst, _ := net.ResolveUDPAddr("udp", e.SIPAddr())
	trunk := testenv.ListenUDP(t, "127.0.0.42:5060")
	stranger := testenv.ListenUDP(t, "127.0.0.49:5060")

	buf := make([]byte, 65536)
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".dat")
		b, _ := os.ReadFile(f)
		var m sip.Msg
		_ = m.Parse(b)
		v, verr := m.TopVia()
		if _, err := stranger.WriteToUDP(b, dst); err != nil {
			t.Fatal(err)
		}
		code, want := refused[name]
		if _, err := trunk.WriteToUDP(b, dst); err != nil {
			t.Fatal(err)
		}
		if !want || verr != nil || (v.Port != 0 && v.Port != 5060) || v.RPort {
			continue // the answer, if any, goes to another port
		}
		// Answers to earlier messages (100 Trying for forwarded INVITEs...) may
		// arrive first: look for the one with this message's Call-ID.
		got := -1
		deadline := time.Now().Add(time.Second)
		for got < 0 {
			_ = trunk.SetReadDeadline(deadline)
			n, _, err := trunk.ReadFromUDP(buf)
			if err != nil {
				break
			}
			var r sip.Msg
			if r.Parse(buf[:n]) == nil && string(r.CallID()) == string(m.CallID()) && r.StatusCode() >= 200 {
				got = r.StatusCode()
			}
		}
		if got != code {
			t.Errorf("%s: answered %d, want %d", name, got, code)
		}
	}
	// Nothing refused may have reached the PBX; nothing at all may have reached the stranger.
	_ = stranger.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if n, _, err := stranger.ReadFromUDP(buf); err == nil {
		t.Errorf("unknown source got an answer:\n%s", buf[:n])
	}
	for {
		_ = pbx.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, _, err := pbx.ReadFromUDP(buf)
		if err != nil {
			break
		}
		var m sip.Msg
		_ = m.Parse(buf[:n])
		for name := range refused {
			if bytes := string(m.CallID()); bytes != "" && strings.HasPrefix(bytes, name+".") {
				t.Errorf("refused message %s reached the PBX", name)
			}
		}
	}
}
