package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// ngBackend drives rtpengine over its ng control protocol (bencoded
// dictionaries over UDP, "<cookie> <dict>"), for a side-by-side run with
// the same load: rtpengine bridges the plain offer from leg A to SRTP
// (SDES) towards leg B, like sipwarden's bridge policy.
type ngBackend struct {
	conn    *net.UDPConn
	pidfile string
	cookie  atomic.Uint64
}

func newNGBackend(addr, pidfile string) (*ngBackend, error) {
	ap, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	c, err := net.DialUDP("udp", nil, ap)
	if err != nil {
		return nil, err
	}
	return &ngBackend{conn: c, pidfile: pidfile}, nil
}

func (n *ngBackend) do(req request) (response, error) {
	var resp response
	switch req.Op {
	case "stats":
		cpu, err := procCPU(n.pidfile)
		resp.CPU = cpu
		return resp, err
	case "quit":
		return resp, n.conn.Close()
	}
	d := map[string]any{"call-id": req.Call, "from-tag": "a-" + req.Call, "sdp": req.SDP}
	switch req.Op {
	case "offer":
		d["command"] = "offer"
		d["transport-protocol"] = "RTP/SAVP"
	case "answer":
		d["command"] = "answer"
		d["to-tag"] = "b-" + req.Call
	default:
		return resp, fmt.Errorf("unknown op %q", req.Op)
	}
	cookie := strconv.FormatUint(n.cookie.Add(1), 10)
	msg := append([]byte(cookie+" "), bencode(d)...)
	if _, err := n.conn.Write(msg); err != nil {
		return resp, err
	}
	buf := make([]byte, 65536)
	_ = n.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		m, err := n.conn.Read(buf)
		if err != nil {
			return resp, fmt.Errorf("rtpengine: %w", err)
		}
		c, body, _ := bytes.Cut(buf[:m], []byte(" "))
		if string(c) != cookie {
			continue
		}
		v, _, err := bdecode(body)
		if err != nil {
			return resp, fmt.Errorf("rtpengine reply: %w", err)
		}
		dict, _ := v.(map[string]any)
		if r, _ := dict["result"].(string); r != "ok" {
			return resp, fmt.Errorf("rtpengine: %v %v", dict["result"], dict["error-reason"])
		}
		resp.SDP, _ = dict["sdp"].(string)
		return resp, nil
	}
}

func (n *ngBackend) pid() int {
	b, err := os.ReadFile(n.pidfile)
	if err != nil {
		return 0
	}
	p, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return p
}

// procCPU reads the user+system CPU seconds of the process in pidfile.
func procCPU(pidfile string) (float64, error) {
	b, err := os.ReadFile(pidfile)
	if err != nil {
		return 0, err
	}
	st, err := os.ReadFile("/proc/" + strings.TrimSpace(string(b)) + "/stat")
	if err != nil {
		return 0, err
	}
	// Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
	i := bytes.LastIndexByte(st, ')')
	f := strings.Fields(string(st[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (ut + stime) / 100, nil // USER_HZ is 100 on Linux
}

func bencode(v any) []byte {
	switch x := v.(type) {
	case string:
		return []byte(strconv.Itoa(len(x)) + ":" + x)
	case int:
		return []byte("i" + strconv.Itoa(x) + "e")
	case []string:
		b := []byte("l")
		for _, s := range x {
			b = append(b, bencode(s)...)
		}
		return append(b, 'e')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b := []byte("d")
		for _, k := range keys {
			b = append(b, bencode(k)...)
			b = append(b, bencode(x[k])...)
		}
		return append(b, 'e')
	}
	panic(fmt.Sprintf("bencode: %T", v))
}

func bdecode(b []byte) (any, []byte, error) {
	if len(b) == 0 {
		return nil, nil, errors.New("truncated")
	}
	switch {
	case b[0] == 'i':
		i := bytes.IndexByte(b, 'e')
		if i < 0 {
			return nil, nil, errors.New("bad integer")
		}
		n, err := strconv.Atoi(string(b[1:i]))
		return n, b[i+1:], err
	case b[0] == 'l':
		var l []any
		b = b[1:]
		for len(b) > 0 && b[0] != 'e' {
			v, rest, err := bdecode(b)
			if err != nil {
				return nil, nil, err
			}
			l, b = append(l, v), rest
		}
		if len(b) == 0 {
			return nil, nil, errors.New("unterminated list")
		}
		return l, b[1:], nil
	case b[0] == 'd':
		d := map[string]any{}
		b = b[1:]
		for len(b) > 0 && b[0] != 'e' {
			k, rest, err := bdecode(b)
			if err != nil {
				return nil, nil, err
			}
			ks, ok := k.(string)
			if !ok {
				return nil, nil, errors.New("non-string key")
			}
			v, rest, err := bdecode(rest)
			if err != nil {
				return nil, nil, err
			}
			d[ks], b = v, rest
		}
		if len(b) == 0 {
			return nil, nil, errors.New("unterminated dictionary")
		}
		return d, b[1:], nil
	case b[0] >= '0' && b[0] <= '9':
		i := bytes.IndexByte(b, ':')
		if i < 0 {
			return nil, nil, errors.New("bad string")
		}
		n, err := strconv.Atoi(string(b[:i]))
		if err != nil || n < 0 || i+1+n > len(b) {
			return nil, nil, errors.New("bad string length")
		}
		return string(b[i+1 : i+1+n]), b[i+1+n:], nil
	}
	return nil, nil, fmt.Errorf("unexpected byte %q", b[0])
}
