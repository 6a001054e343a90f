package limits

import (
	"fmt"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/sip"
)

func TestTokenBucket(t *testing.T) {
	tr := bucket{tokens: -1}
	now := time.Unix(1000, 0)
	// burst 3 at 2 calls/s: three pass at once, the fourth waits one second
	for i := range 3 {
		if ok, _ := tr.take(now, 2, 3); !ok {
			t.Fatalf("call %d refused within the burst", i)
		}
	}
	ok, wait := tr.take(now, 2, 3)
	if ok || wait != 1 {
		t.Fatalf("4th call: ok=%v retry=%d, want refused with Retry-After 1", ok, wait)
	}
	if ok, _ := tr.take(now.Add(500*time.Millisecond), 2, 3); !ok {
		t.Fatal("one token after 0.5 s at 2/s")
	}
	if ok, _ := tr.take(now.Add(500*time.Millisecond), 2, 3); ok {
		t.Fatal("only one token after 0.5 s")
	}
	if ok, _ := tr.take(now, 0, 0); !ok {
		t.Fatal("rate 0 is unlimited")
	}
	// 60/1m: the 61st registration waits a second
	reg := bucket{tokens: -1}
	for range 60 {
		reg.take(now, 1, 60)
	}
	if ok, wait := reg.take(now, 1, 60); ok || wait != 1 {
		t.Fatalf("61st registration: ok=%v retry=%d", ok, wait)
	}
}

const digestYAML = `
listen: [udp://127.0.0.1:5060]
upstreams: [{name: pbx, targets: [udp://127.0.0.1:5080]}]
trunks:
  - name: hosted
    auth: digest
    realm: edge.example
    upstream: pbx
    algorithms: [SHA-256]
    limits: {concurrent: 3, registrations: 4/1m}
    accounts:
      - {username: "1001", ha1: {sha-256: 1e0e1cbd5c76f3ff5a0a3ea2f38c6c1dbd0fd5a5d5c3b2e2f7b25d1c5a3b8f11}, limits: {concurrent: 1, cps: 2/1m, registrations: 2/1m}}
      - {username: "1002", ha1: {sha-256: 2e0e1cbd5c76f3ff5a0a3ea2f38c6c1dbd0fd5a5d5c3b2e2f7b25d1c5a3b8f22}}
`

// An account's limits hold within its trunk's: one account's calls and
// registrations are refused while the trunk still has room for the others.
func TestAccountLimits(t *testing.T) {
	cfg, err := config.Parse([]byte(digestYAML), "t")
	if err != nil {
		t.Fatal(err)
	}
	reg := NewRegistry(nil)
	st, _ := NewStage(cfg, reg, nil)
	msg := func(method string) *sip.Msg {
		var m sip.Msg
		if err := m.Parse([]byte(method + " sip:+15551230001@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: 1\r\nCSeq: 1 " + method + "\r\nContent-Length: 0\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		return &m
	}
	invite, register := msg("INVITE"), msg("REGISTER")
	handle := func(m *sip.Msg, account string) (chain.Verdict, *chain.Request) {
		req := &chain.Request{Msg: m, PeerKind: chain.PeerTrunk, Trunk: &cfg.Trunks[0], Account: account}
		v := st.Handle(req)
		if v.Action == chain.Reply {
			req.ReleaseHolds() // as the proxy does with a refused request
		}
		return v, req
	}

	clock := time.Unix(1000, 0)
	reg.now = func() time.Time { return clock }
	expect := func(what string, v chain.Verdict, code int, reason string) {
		t.Helper()
		if code == 0 && v.Action != chain.Continue || code != 0 && (int(v.Code) != code || v.Reason != reason || v.RetryAfter == 0) {
			t.Fatalf("%s: %+v, want %d %s", what, v, code, reason)
		}
	}

	// calls: 1001 may place 2 a minute (burst 1) and have 1 up; the trunk 3 up
	v, first := handle(invite, "1001")
	expect("first call of 1001", v, 0, "")
	v, _ = handle(invite, "1001")
	expect("second call of 1001 at once", v, 503, "account_cps_limit")
	if v.RetryAfter != 30 {
		t.Errorf("Retry-After %d, want 30 (one token every 30 s)", v.RetryAfter)
	}
	clock = clock.Add(30 * time.Second)
	v, _ = handle(invite, "1001")
	expect("second call of 1001 while the first is up", v, 503, "account_concurrent_limit")
	if n := reg.Active("hosted"); n != 1 {
		t.Fatalf("the refused call kept its trunk slot: active %d", n)
	}
	for i := range 2 {
		v, _ = handle(invite, "1002")
		expect(fmt.Sprintf("call %d of 1002", i), v, 0, "")
	}
	v, _ = handle(invite, "1002")
	expect("fourth call on the trunk", v, 503, "concurrent_limit")
	var holds [chain.MaxHolds]chain.Releaser
	if n := first.TakeHolds(&holds); n != 2 {
		t.Fatalf("1001's call holds %d slots, want the trunk's and the account's", n)
	}
	holds[0].Release()
	holds[1].Release()
	if reg.AccountActive("hosted", "1001") != 0 || reg.Active("hosted") != 2 {
		t.Fatalf("after the end of 1001's call: account %d, trunk %d", reg.AccountActive("hosted", "1001"), reg.Active("hosted"))
	}

	// registrations: 1001 2 a minute, the trunk 4 a minute
	for i := range 2 {
		v, _ = handle(register, "1001")
		expect(fmt.Sprintf("registration %d of 1001", i), v, 0, "")
	}
	v, _ = handle(register, "1001")
	expect("third registration of 1001", v, 429, "account_register_limit")
	v, _ = handle(register, "1002")
	expect("registration of 1002", v, 0, "")
	v, _ = handle(register, "1002")
	expect("fifth registration on the trunk", v, 429, "register_limit")
	clock = clock.Add(time.Minute)
	v, _ = handle(register, "1001")
	expect("a minute later", v, 0, "")
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
