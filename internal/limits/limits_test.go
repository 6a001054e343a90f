package limits

import (
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/sip"
)

func TestTokenBucket(t *testing.T) {
	var tr Trunk
	tr.tokens = -1
	now := time.Unix(1000, 0)
	// burst 3 at 2 calls/s: three pass at once, the fourth waits one second
	for i := range 3 {
		if ok, _ := tr.allowCall(now, 2, 3); !ok {
			t.Fatalf("call %d refused within the burst", i)
		}
	}
	ok, wait := tr.allowCall(now, 2, 3)
	if ok || wait != 1 {
		t.Fatalf("4th call: ok=%v retry=%d, want refused with Retry-After 1", ok, wait)
	}
	if ok, _ := tr.allowCall(now.Add(500*time.Millisecond), 2, 3); !ok {
		t.Fatal("one token after 0.5 s at 2/s")
	}
	if ok, _ := tr.allowCall(now.Add(500*time.Millisecond), 2, 3); ok {
		t.Fatal("only one token after 0.5 s")
	}
	if ok, _ := tr.allowCall(now, 0, 0); !ok {
		t.Fatal("cps 0 is unlimited")
	}
}

func TestStageConcurrentAndReload(t *testing.T) {
	yaml := "listen: [udp://127.0.0.1:5060]\nupstreams: [{name: pbx, targets: [udp://127.0.0.1:5080]}]\n" +
		"trunks: [{name: acme, allow: [127.0.0.2], upstream: pbx, limits: {concurrent: 2}}]\n"
	cfg, err := config.Parse([]byte(yaml), "t")
	if err != nil {
		t.Fatal(err)
	}
	reg := NewRegistry(nil)
	st, _ := NewStage(cfg, reg, nil)
	var m sip.Msg
	if err := m.Parse([]byte("INVITE sip:+15551230001@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: 1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	var holds [chain.MaxHolds]chain.Releaser
	call := func() (chain.Verdict, *chain.Request) {
		req := &chain.Request{Msg: &m, PeerKind: chain.PeerTrunk, Trunk: &cfg.Trunks[0]}
		return st.Handle(req), req
	}
	v1, r1 := call()
	v2, _ := call()
	v3, _ := call()
	if v1.Action != chain.Continue || v2.Action != chain.Continue || v3.Action != chain.Reply || v3.Code != 503 || v3.RetryAfter == 0 || v3.Reason != "concurrent_limit" {
		t.Fatalf("verdicts %+v %+v %+v", v1, v2, v3)
	}
	if n := r1.TakeHolds(&holds); n != 1 {
		t.Fatalf("holds %d", n)
	}
	holds[0].Release()
	// a reload builds a new stage over the same registry: the call still up counts
	cfg2, _ := config.Parse([]byte(yaml), "t")
	st2, _ := NewStage(cfg2, reg, nil)
	req := &chain.Request{Msg: &m, PeerKind: chain.PeerTrunk, Trunk: &cfg2.Trunks[0]}
	if v := st2.Handle(req); v.Action != chain.Continue {
		t.Fatalf("after release: %+v", v)
	}
	req = &chain.Request{Msg: &m, PeerKind: chain.PeerTrunk, Trunk: &cfg2.Trunks[0]}
	if v := st2.Handle(req); v.Code != 503 {
		t.Fatalf("limit across reload: %+v (active %d)", v, reg.Active("acme"))
	}
}
