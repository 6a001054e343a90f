package sqlite

import (
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/sipwarden/sipwarden/internal/registrar"
	"github.com/sipwarden/sipwarden/internal/sip"
)

// TestBindingsSurviveRestart registers through one registrar, flushes, and
// opens the file again: the bindings and the known sources are back.
func TestBindingsSurviveRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "registrar.db")
	st, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := registrar.Load(st)
	if err != nil {
		t.Fatal(err)
	}
	stop := r.Persist(time.Hour, nil)
	now := time.Now()
	req := &registrar.Request{Contacts: []registrar.Contact{{URI: "sip:1001@10.0.0.1:5060;transport=tcp", Instance: "<urn:uuid:1>", Expires: 600}},
		Expires: -1, CallID: "c1", CSeq: 7, Source: netip.MustParseAddrPort("192.0.2.1:40000"), Transport: sip.TCP,
		Local: netip.MustParseAddrPort("127.0.0.1:5060"), UserAgent: "Phone/1"}
	if res := r.Apply("phones\x001001", registrar.Options{}, req, now); res.Code != 200 {
		t.Fatal(res)
	}
	r.Apply("phones\x001002", registrar.Options{}, &registrar.Request{Contacts: []registrar.Contact{{URI: "sip:1002@10.0.0.2", Expires: -1}}, Expires: -1,
		CallID: "c2", CSeq: 1, Source: netip.MustParseAddrPort("192.0.2.2:5060"), Transport: sip.UDP}, now)
	// 1002 removes its binding: its rows go
	r.Apply("phones\x001002", registrar.Options{}, &registrar.Request{Wildcard: true, Expires: 0, CallID: "c2", CSeq: 2,
		Source: netip.MustParseAddrPort("192.0.2.2:5060")}, now)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	st.Close()

	st2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	r2, err := registrar.Load(st2)
	if err != nil {
		t.Fatal(err)
	}
	bs := r2.Bindings("phones\x001001", now)
	if len(bs) != 1 {
		t.Fatalf("bindings after restart: %+v", bs)
	}
	b := bs[0]
	if b.Contact != req.Contacts[0].URI || b.Instance != "<urn:uuid:1>" || b.Source != req.Source || b.Transport != sip.TCP ||
		b.Local != req.Local || b.UserAgent != "Phone/1" || b.CSeq != 7 || b.Expires.Sub(now).Round(time.Second) != 600*time.Second {
		t.Fatalf("binding after restart: %+v", b)
	}
	if bs := r2.Bindings("phones\x001002", now); len(bs) != 0 {
		t.Fatalf("a removed binding came back: %+v", bs)
	}
	// the known source survived: a registration from another /24 is news
	res := r2.Apply("phones\x001001", registrar.Options{}, &registrar.Request{Contacts: []registrar.Contact{{URI: "sip:1001@10.9.9.9", Expires: -1}},
		Expires: -1, CallID: "c9", CSeq: 1, Source: netip.MustParseAddrPort("198.51.100.1:5060")}, now)
	if len(res.Changes) != 1 || res.Changes[0].Kind != registrar.NewPrefix {
		t.Fatalf("changes after restart: %+v", res.Changes)
	}
}
