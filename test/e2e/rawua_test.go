package e2e

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

// rawUA is a minimal SIP user agent on a raw socket, for what SIPp cannot
// do: TLS, exact retransmissions, and asserting that nothing comes back.
type rawUA struct {
	t       *testing.T
	network string // udp, tcp, tls
	ip      string
	udp     *net.UDPConn
	stream  net.Conn
	reader  *bufio.Reader
	tlsConf *tls.Config
}

func newRawUA(t *testing.T, network, ip string) *rawUA {
	t.Helper()
	ua := &rawUA{t: t, network: network, ip: ip}
	if network == "udp" {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
		if err != nil {
			t.Fatal(err)
		}
		ua.udp = c
		t.Cleanup(func() { c.Close() })
	}
	return ua
}

func (ua *rawUA) localAddr() string {
	if ua.udp != nil {
		return ua.udp.LocalAddr().String()
	}
	if ua.stream != nil {
		return ua.stream.LocalAddr().String()
	}
	return ua.ip + ":5060"
}

func (ua *rawUA) dial(target string) {
	ua.t.Helper()
	if ua.network == "udp" || ua.stream != nil {
		return
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ua.ip)}, Timeout: 5 * time.Second}
	var c net.Conn
	var err error
	if ua.network == "tls" {
		c, err = tls.DialWithDialer(&d, "tcp", target, ua.tlsConf)
	} else {
		c, err = d.Dial("tcp", target)
	}
	if err != nil {
		ua.t.Fatalf("dial %s %s: %v", ua.network, target, err)
	}
	ua.stream = c
	ua.reader = bufio.NewReader(c)
	ua.t.Cleanup(func() { c.Close() })
}

func (ua *rawUA) send(target string, msg string) {
	ua.t.Helper()
	b := []byte(strings.ReplaceAll(msg, "\n", "\r\n"))
	if ua.udp != nil {
		addr, _ := net.ResolveUDPAddr("udp", target)
		if _, err := ua.udp.WriteToUDP(b, addr); err != nil {
			ua.t.Fatal(err)
		}
		return
	}
	ua.dial(target)
	if _, err := ua.stream.Write(b); err != nil {
		ua.t.Fatal(err)
	}
}

// rawMsg is a received message with its headers in a map (first value of each, lower-case names).
type rawMsg struct {
	raw        string
	code       int
	method     string
	headers    map[string][]string
	retryAfter string
}

func (m *rawMsg) get(name string) string {
	if v := m.headers[strings.ToLower(name)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func parseRaw(b []byte) *rawMsg {
	m := &rawMsg{raw: string(b), headers: map[string][]string{}}
	head, _, _ := strings.Cut(m.raw, "\r\n\r\n")
	lines := strings.Split(head, "\r\n")
	if strings.HasPrefix(lines[0], "SIP/2.0 ") {
		m.code, _ = strconv.Atoi(strings.Fields(lines[0])[1])
	} else {
		m.method = strings.Fields(lines[0])[0]
	}
	for _, l := range lines[1:] {
		name, value, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		k := strings.ToLower(strings.TrimSpace(name))
		m.headers[k] = append(m.headers[k], strings.TrimSpace(value))
	}
	m.retryAfter = m.get("Retry-After")
	return m
}

// recv returns the next message, or nil after timeout.
func (ua *rawUA) recv(timeout time.Duration) *rawMsg {
	ua.t.Helper()
	if ua.udp != nil {
		buf := make([]byte, 65536)
		_ = ua.udp.SetReadDeadline(time.Now().Add(timeout))
		n, _, err := ua.udp.ReadFromUDP(buf)
		if err != nil {
			return nil
		}
		return parseRaw(buf[:n])
	}
	if ua.stream == nil {
		return nil
	}
	_ = ua.stream.SetReadDeadline(time.Now().Add(timeout))
	var head bytes.Buffer
	for {
		line, err := ua.reader.ReadString('\n')
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
	m := parseRaw(head.Bytes())
	if n, _ := strconv.Atoi(m.get("Content-Length")); n > 0 {
		body := make([]byte, n)
		if _, err := io.ReadFull(ua.reader, body); err != nil {
			return nil
		}
		m.raw += string(body)
	}
	return m
}

// invite sends an INVITE and returns the first response other than 100 (code 0 on timeout).
func (ua *rawUA) invite(target, callID string) *rawMsg {
	ua.t.Helper()
	ua.send(target, ua.inviteText(target, callID, "z9hG4bK-"+callID, 1))
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		m := ua.recv(time.Until(deadline))
		if m == nil {
			break
		}
		if m.code > 100 && m.get("Call-ID") == callID {
			return m
		}
	}
	return &rawMsg{}
}

func (ua *rawUA) via(branch string) string {
	return fmt.Sprintf("SIP/2.0/%s %s;branch=%s;rport", strings.ToUpper(ua.network), ua.localAddr(), branch)
}

func (ua *rawUA) inviteText(target, callID, branch string, cseq int) string {
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

%s`, target, ua.via(branch), callID, target, callID, cseq, ua.localAddr(), ua.network, len(body), strings.ReplaceAll(body, "\r\n", "\n"))
}
