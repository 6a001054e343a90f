package testbed

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RawUA is a minimal SIP user agent on a raw socket, for what SIPp cannot
// do: TLS, exact retransmissions, and asserting that nothing comes back.
type RawUA struct {
	T       *testing.T
	Network string // udp, tcp, tls
	IP      string
	UDP     *net.UDPConn
	Stream  net.Conn
	Reader  *bufio.Reader
	TLSConf *tls.Config
}

func NewRawUA(t *testing.T, network, ip string) *RawUA {
	t.Helper()
	ua := &RawUA{T: t, Network: network, IP: ip}
	if network == "udp" {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
		if err != nil {
			t.Fatal(err)
		}
		ua.UDP = c
		t.Cleanup(func() { c.Close() })
	}
	return ua
}

func (ua *RawUA) LocalAddr() string {
	if ua.UDP != nil {
		return ua.UDP.LocalAddr().String()
	}
	if ua.Stream != nil {
		return ua.Stream.LocalAddr().String()
	}
	return ua.IP + ":5060"
}

func (ua *RawUA) Dial(target string) {
	ua.T.Helper()
	if ua.Network == "udp" || ua.Stream != nil {
		return
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ua.IP)}, Timeout: 5 * time.Second}
	var c net.Conn
	var err error
	if ua.Network == "tls" {
		c, err = tls.DialWithDialer(&d, "tcp", target, ua.TLSConf)
	} else {
		c, err = d.Dial("tcp", target)
	}
	if err != nil {
		ua.T.Fatalf("dial %s %s: %v", ua.Network, target, err)
	}
	ua.Stream = c
	ua.Reader = bufio.NewReader(c)
	ua.T.Cleanup(func() { c.Close() })
}

func (ua *RawUA) Send(target string, msg string) {
	ua.T.Helper()
	b := []byte(strings.ReplaceAll(msg, "\n", "\r\n"))
	if ua.UDP != nil {
		addr, _ := net.ResolveUDPAddr("udp", target)
		if _, err := ua.UDP.WriteToUDP(b, addr); err != nil {
			ua.T.Fatal(err)
		}
		return
	}
	ua.Dial(target)
	if _, err := ua.Stream.Write(b); err != nil {
		ua.T.Fatal(err)
	}
}

// RawMsg is a received message with its headers in a map (first value of each, lower-case names).
type RawMsg struct {
	Raw        string
	Code       int
	Method     string
	Headers    map[string][]string
	RetryAfter string
}

func (m *RawMsg) Get(name string) string {
	if v := m.Headers[strings.ToLower(name)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func ParseRaw(b []byte) *RawMsg {
	m := &RawMsg{Raw: string(b), Headers: map[string][]string{}}
	head, _, _ := strings.Cut(m.Raw, "\r\n\r\n")
	lines := strings.Split(head, "\r\n")
	if strings.HasPrefix(lines[0], "SIP/2.0 ") {
		m.Code, _ = strconv.Atoi(strings.Fields(lines[0])[1])
	} else {
		m.Method = strings.Fields(lines[0])[0]
	}
	for _, l := range lines[1:] {
		name, value, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		k := strings.ToLower(strings.TrimSpace(name))
		m.Headers[k] = append(m.Headers[k], strings.TrimSpace(value))
	}
	m.RetryAfter = m.Get("Retry-After")
	return m
}

// Recv returns the next message, or nil after timeout.
func (ua *RawUA) Recv(timeout time.Duration) *RawMsg {
	ua.T.Helper()
	if ua.UDP != nil {
		buf := make([]byte, 65536)
		_ = ua.UDP.SetReadDeadline(time.Now().Add(timeout))
		n, _, err := ua.UDP.ReadFromUDP(buf)
		if err != nil {
			return nil
		}
		return ParseRaw(buf[:n])
	}
	if ua.Stream == nil {
		return nil
	}
	_ = ua.Stream.SetReadDeadline(time.Now().Add(timeout))
	var head bytes.Buffer
	for {
		line, err := ua.Reader.ReadString('\n')
		if err != nil {
			return nil
		}
		if line == "\r\n" && head.Len() == 0 {
			continue // keepalive
		}
		head.WriteString(line)
		if line == "\r\n" {
			break
		}
	}
	m := ParseRaw(head.Bytes())
	if n, _ := strconv.Atoi(m.Get("Content-Length")); n > 0 {
		body := make([]byte, n)
		if _, err := io.ReadFull(ua.Reader, body); err != nil {
			return nil
		}
		m.Raw += string(body)
	}
	return m
}

// Invite sends an INVITE and returns the first response other than 100 (code 0 on timeout).
func (ua *RawUA) Invite(target, callID string) *RawMsg {
	ua.T.Helper()
	ua.Send(target, ua.InviteText(target, callID, "z9hG4bK-"+callID, 1))
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		m := ua.Recv(time.Until(deadline))
		if m == nil {
			break
		}
		if m.Code > 100 && m.Get("Call-ID") == callID {
			return m
		}
	}
	return &RawMsg{}
}

func (ua *RawUA) Via(branch string) string {
	return fmt.Sprintf("SIP/2.0/%s %s;branch=%s;rport", strings.ToUpper(ua.Network), ua.LocalAddr(), branch)
}

func (ua *RawUA) InviteText(target, callID, branch string, cseq int) string {
	body := "v=0\no=- 1 1 IN IP4 127.0.0.2\ns=-\nc=IN IP4 127.0.0.2\nt=0 0\nm=audio 40000 RTP/AVP 0\n"
	body = strings.ReplaceAll(body, "\n", "\r\n")
	return fmt.Sprintf(`INVITE sip:+15551230001@%s SIP/2.0
Via: %s
From: <sip:+15550001000@127.0.0.2>;tag=f-%s
To: <sip:+15551230001@%s>
Call-ID: %s
CSeq: %d INVITE
Contact: <sip:caller@%s;transport=%s>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: %d

%s`, target, ua.Via(branch), callID, target, callID, cseq, ua.LocalAddr(), ua.Network, len(body), strings.ReplaceAll(body, "\r\n", "\n"))
}
