//go:build linux

package main

import (
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sipwarden/sipwarden/internal/media"
)

// inproc is the relay in the test's own process, behind the bench's
// request protocol.
type inproc struct{ rs *relayServer }

func (p inproc) pid() int { return os.Getpid() }

func (p inproc) do(req request) (response, error) {
	if req.Op == "quit" {
		p.rs.r.Shutdown()
		return response{}, nil
	}
	resp := p.rs.serve(req)
	if resp.Err != "" {
		return resp, errors.New(resp.Err)
	}
	return resp, nil
}

// A short run through the relay, with shared and with per-stream sockets,
// and without the relay: every packet arrives, decrypts (the relay's key
// from its SDP) and has a kernel receive timestamp; the relay's own delay
// histogram counts every forwarded packet.
func TestMeasure(t *testing.T) {
	tests := []struct {
		name string
		o    opts
	}{
		{"shared sockets", opts{n: 6, senders: 2, receivers: 2, relayDelay: true}},
		{"socket per stream", opts{n: 6, senders: 2, perStream: true, relayDelay: true}},
		{"direct", opts{n: 4, senders: 1, receivers: 1, direct: true}},
		{"GCM, no delay histogram", opts{n: 3, senders: 1, receivers: 3, suite: media.AEAD_AES_128_GCM}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := 46000 + 100*i
			rs, err := newRelayServer(base, base+99, tt.o.relayDelay)
			if err != nil {
				t.Fatal(err)
			}
			be := inproc{rs}
			defer func() { _, _ = be.do(request{Op: "quit"}) }()
			o := tt.o
			o.dur, o.pace = 200*time.Millisecond, time.Millisecond
			if o.suite == media.SuiteNone {
				o.suite = media.AES_CM_128_HMAC_SHA1_80
			}
			res, err := measure(be, o)
			if err != nil {
				t.Fatal(err)
			}
			want := uint64(o.n * 10) // 10 periods of 20 ms
			if res.sent != want || res.received != want || res.undecryptable != 0 {
				t.Errorf("sent %d, received %d, undecryptable %d; want %d, %d, 0", res.sent, res.received, res.undecryptable, want, want)
			}
			if len(res.latKernel) != int(want) || res.latKernel[0] <= 0 || res.latKernel[len(res.latKernel)-1] > int64(time.Second) {
				t.Errorf("%d kernel-stamped latencies in [%v, %v]", len(res.latKernel), time.Duration(res.latKernel[0]), time.Duration(res.latKernel[len(res.latKernel)-1]))
			}
			switch {
			case o.relayDelay && !o.direct && res.relayDelay.Total != want:
				t.Errorf("relay delay histogram: %d samples, want %d", res.relayDelay.Total, want)
			case !o.relayDelay && res.relayDelay.Total != 0:
				t.Errorf("relay delay histogram without -relay-delay: %d samples", res.relayDelay.Total)
			}
		})
	}
}

func TestHistQuantile(t *testing.T) {
	h := hist{Bounds: []float64{0.001, 0.002, 0.004}, Counts: []uint64{50, 90, 99}, Total: 100}
	tests := []struct {
		q    float64
		want string
	}{
		{0.25, "0.500"}, // a quarter into the first bucket [0, 1 ms]
		{0.5, "1.000"},
		{0.7, "1.500"},
		{0.99, "4.000"},
		{0.999, "> 4.0"},
	}
	for _, tt := range tests {
		if got := h.quantile(tt.q); got != tt.want {
			t.Errorf("quantile(%v) = %s, want %s", tt.q, got, tt.want)
		}
	}
	if got := (hist{}).quantile(0.5); got != "?" {
		t.Errorf("empty histogram: %s", got)
	}
	d := h.sub(hist{Bounds: h.Bounds, Counts: []uint64{40, 40, 40}, Total: 40})
	if d.Total != 60 || d.Counts[0] != 10 || d.Counts[2] != 59 {
		t.Errorf("sub = %+v", d)
	}
	if d := h.sub(hist{}); d.Total != 100 || d.Counts[2] != 99 {
		t.Errorf("sub of an empty snapshot = %+v", d)
	}
}

func TestRxStamp(t *testing.T) {
	stamp := func(level, typ uint32, l uint64, sec, nsec uint64) []byte {
		b := make([]byte, 32)
		binary.NativeEndian.PutUint64(b, l)
		binary.NativeEndian.PutUint32(b[8:], level)
		binary.NativeEndian.PutUint32(b[12:], typ)
		binary.NativeEndian.PutUint64(b[16:], sec)
		binary.NativeEndian.PutUint64(b[24:], nsec)
		return b
	}
	const solSocket, scmTimestampNS = unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS
	tests := []struct {
		name string
		oob  []byte
		want int64
		ok   bool
	}{
		{"timestamp", stamp(solSocket, scmTimestampNS, 32, 2, 5), 2e9 + 5, true},
		{"none", nil, 0, false},
		{"other type", stamp(solSocket, 29, 32, 2, 5), 0, false},
		{"length past the buffer", stamp(solSocket, scmTimestampNS, 64, 2, 5), 0, false},
		{"length below a header", stamp(solSocket, scmTimestampNS, 8, 2, 5), 0, false},
		{"truncated", stamp(solSocket, scmTimestampNS, 32, 2, 5)[:20], 0, false},
	}
	for _, tt := range tests {
		got, ok := rxStamp(tt.oob)
		if got != tt.want || ok != tt.ok {
			t.Errorf("%s: rxStamp = %d, %v; want %d, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}
