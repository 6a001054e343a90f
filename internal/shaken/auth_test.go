package shaken

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestAttestation(t *testing.T) {
	tests := []struct {
		s    Source
		want string
	}{
		{Source{Known: true, Authenticated: true, OwnsNumber: true}, AttestA},
		{Source{Known: true, Authenticated: true}, AttestB},
		{Source{Known: true, OwnsNumber: true}, AttestB}, // not authenticated: never A
		{Source{Known: true}, AttestB},
		{Source{Known: true, Authenticated: true, OwnsNumber: true, Gateway: true}, AttestC},
		{Source{Gateway: true}, AttestC},
		{Source{}, ""},
		{Source{Authenticated: true, OwnsNumber: true}, ""},
	}
	for _, tc := range tests {
		got, err := Attestation(tc.s)
		if got != tc.want || (tc.want == "") != errors.Is(err, ErrNotSigned) {
			t.Errorf("Attestation(%+v) = %q, %v; want %q", tc.s, got, err, tc.want)
		}
	}
}

func TestLoadSigningKey(t *testing.T) {
	dir := t.TempDir()
	key := testKey(t)
	pemKey, err := KeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // umask
			t.Fatal(err)
		}
		return p
	}
	ok := write("ok.key", pemKey, 0o600)
	if k, err := LoadSigningKey(ok); err != nil || !k.Equal(key) {
		t.Fatalf("0600 key: %v", err)
	}
	if _, err := LoadSigningKey(write("group.key", pemKey, 0o640)); err != nil {
		t.Fatalf("0640 key: %v", err)
	}
	for _, mode := range []os.FileMode{0o644, 0o604, 0o666, 0o602} {
		if _, err := LoadSigningKey(write("open.key", pemKey, mode)); err == nil {
			t.Errorf("mode %04o accepted", mode)
		}
	}
	if _, err := LoadSigningKey(write("junk.key", []byte("junk"), 0o600)); err == nil {
		t.Error("junk accepted")
	}
	if _, err := LoadSigningKey(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file accepted")
	}
	if _, err := LoadSigningKey(dir); err == nil {
		t.Error("directory accepted")
	}
}

func TestSignCallDate(t *testing.T) {
	l := newLab(t)
	s, err := NewSigner(l.pki.LeafKey, l.x5u, true)
	if err != nil {
		t.Fatal(err)
	}
	s.Now = l.clk.Now
	if _, err := NewSigner(l.pki.LeafKey, l.x5u, false); err == nil {
		t.Fatal("loopback x5u accepted without relaxing")
	}
	// no Date: iat is now and a Date header is returned
	sg, err := s.SignCall("15551230001", []string{"15559870002"}, AttestA, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := http.ParseTime(sg.Date)
	if err != nil || d.Unix() != sg.IAT || sg.IAT != l.clk.Now().Unix() || !ValidUUID(sg.OrigID) {
		t.Fatalf("signed %+v (%v)", sg, err)
	}
	if r := l.v.VerifyMsg(invite(t, sg.Identity)); !r.Passed() || r.Attest != "A" {
		t.Fatalf("our own signature: %+v", r)
	}
	// a Date 30s ago becomes the iat; no Date added
	date := l.clk.Now().Add(-30 * time.Second).UTC().Format(http.TimeFormat)
	sg, err = s.SignCall("15551230001", []string{"15559870002"}, AttestB, "123e4567-e89b-12d3-a456-426655440000", []byte(date))
	if err != nil || sg.Date != "" || sg.IAT != l.clk.Now().Add(-30*time.Second).Unix() {
		t.Fatalf("with Date: %+v %v", sg, err)
	}
	for _, bad := range []string{l.clk.Now().Add(-2 * time.Minute).UTC().Format(http.TimeFormat),
		l.clk.Now().Add(2 * time.Minute).UTC().Format(http.TimeFormat), "yesterday"} {
		if _, err := s.SignCall("15551230001", []string{"15559870002"}, AttestA, "", []byte(bad)); !errors.Is(err, ErrStaleDate) {
			t.Errorf("Date %q: %v", bad, err)
		}
	}
	if _, err := s.SignCall("+15551230001", []string{"15559870002"}, AttestA, "", nil); err == nil {
		t.Error("non-canonical orig signed")
	}
}

func TestCallNumbers(t *testing.T) {
	m := inviteFrom(t, "<sip:+1-555-123-0001@a>;tag=1", "<sip:bob@b>", "sip:+15559870002@b", "")
	if _, _, err := CallNumbers(m, false, ""); !errors.Is(err, ErrNoTN) {
		t.Fatalf("To bob: %v", err)
	}
	o, d, err := CallNumbers(m, true, "")
	if err != nil || o != "15551230001" || d != "15559870002" {
		t.Fatalf("R-URI: %q %q %v", o, d, err)
	}
	m = inviteFrom(t, "<sip:+15551230001@a>;tag=1", "<sip:+15559870002@b>", "sip:x@b", "<sip:+15551239999@a>")
	if o, d, err := CallNumbers(m, false, ""); err != nil || o != "15551239999" || d != "15559870002" {
		t.Fatalf("PAI first: %q %q %v", o, d, err)
	}
	m = inviteFrom(t, "<sip:anonymous@a>;tag=1", "<sip:+15559870002@b>", "sip:x@b", "")
	if _, _, err := CallNumbers(m, false, ""); !errors.Is(err, ErrNoTN) {
		t.Fatalf("anonymous: %v", err)
	}
}

func BenchmarkSignCall(b *testing.B) {
	key := testKey(b)
	s, _ := NewSigner(key, "https://cert.example.org/sp.pem", false)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.SignCall("15551230001", []string{"15559870002"}, AttestA, "", nil); err != nil {
			b.Fatal(err)
		}
	}
}

func TestCountryCode(t *testing.T) {
	m := inviteFrom(t, "<sip:2155551212@pbx>;tag=1", "<sip:+15559870002@b>", "sip:+15559870002@b", "")
	if o, _, err := CallNumbers(m, false, "1"); err != nil || o != "12155551212" {
		t.Fatalf("national From with country code 1: %q %v", o, err)
	}
	if o, _, _ := CallNumbers(m, false, ""); o != "2155551212" {
		t.Fatalf("without country code: %q", o)
	}
	m = inviteFrom(t, "<sip:+442079460000@pbx>;tag=1", "<sip:+15559870002@b>", "sip:+15559870002@b", "")
	if o, _, _ := CallNumbers(m, false, "1"); o != "442079460000" {
		t.Fatalf("international From: %q", o)
	}
	// verification: a national From matches orig.tn with the country code
	l := newLab(t)
	v, _ := NewVerifier(VerifierConfig{Roots: l.pki.Roots(), Certs: l.cache, Now: l.clk.Now, CountryCode: "1", Budget: 5 * time.Second})
	c := l.claims()
	c.Orig = "12155551212"
	id := l.identity(t, l.pki.LeafKey, l.x5u, c)
	m = inviteFrom(t, "<sip:2155551212@carrier>;tag=1", "<sip:5559870002@pbx>", "sip:5559870002@pbx", "", id)
	if r := v.VerifyMsg(m); !r.Passed() {
		t.Fatalf("national numbers with country code 1: %+v", r)
	}
	if r := l.v.VerifyMsg(m); r.Reason != ReasonOrigMismatch {
		t.Fatalf("national numbers without country code: %+v", r)
	}
}
