package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestShakenGood(t *testing.T) {
	c := parseTestdata(t, "shaken.good.yaml")
	s := c.Shaken
	if !s.Enabled() || s.MaxAge != time.Minute || s.FutureSkew != 5*time.Second || s.FetchBudget != 300*time.Millisecond {
		t.Errorf("shaken %+v", s)
	}
	if s.Cache.DefaultTTL != 12*time.Hour || s.Cache.NegativeTTL != 30*time.Second || s.Cache.MaxFetches != 8 ||
		s.Cache.MaxResponseSize != 32<<10 || s.Cache.StaleWhileRevalidate != time.Hour {
		t.Errorf("cache %+v", s.Cache)
	}
	if s.ReasonHeader != "STIR" {
		t.Errorf("reason_header %q", s.ReasonHeader)
	}
	if s.CountryCode != "1" {
		t.Errorf("country_code %q", s.CountryCode)
	}
	if s.CRL != "soft" {
		t.Errorf("crl default %q", s.CRL)
	}
	if w := s.ShakenTrunk("wholesale"); w == nil || w.Signer != "main" || !w.Gateway || !w.DestFromRURI {
		t.Errorf("wholesale %+v", w)
	}
	if cr := s.ShakenTrunk("carrier"); cr == nil || cr.Verify != ShakenReject {
		t.Errorf("carrier %+v", cr)
	}
	c.resolvePaths("/etc/sipwarden")
	if c.Shaken.TrustAnchors != filepath.Join("/etc/sipwarden", "sti-ca.pem") || c.Shaken.Signers[0].Key != "/etc/sipwarden/shaken.key" {
		t.Errorf("paths %+v", c.Shaken)
	}
	if c, _ := Parse([]byte("listen: [udp://127.0.0.1:5060]\n"), "min"); c.Shaken.Enabled() {
		t.Error("shaken enabled without a section")
	}
}

func TestShakenBad(t *testing.T) {
	b, err := os.ReadFile("testdata/shaken.bad.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse(b, "shaken.bad.yaml")
	if err == nil {
		t.Fatal("accepted")
	}
	want := []string{
		"shaken.bad.yaml:7:16: shaken.future_skew: at most 1m",
		"shaken.bad.yaml:9:7: shaken.signers[0].x5u: is required",
		"shaken.bad.yaml:10:14: shaken.signers[1].name: duplicate signer \"main\"",
		"shaken.bad.yaml:12:27: shaken.trunks[0].sign: no signer is named \"other\"",
		"shaken.bad.yaml:13:15: shaken.trunks[1].trunk: no trunk is named \"nope\"",
		"shaken.bad.yaml:14:15: shaken.trunks[2].trunk: trunk \"acme\" has two shaken entries",
		"shaken.bad.yaml:14:29: shaken.trunks[2].verify: must be mark or reject",
		"shaken.bad.yaml:15:15: shaken.trunks[3].trunk: is required",
		"shaken.bad.yaml:15:7: shaken.trunks[3]: a trunk's calls are either signed (sign) or verified (verify)",
		"shaken.trust_anchors: is required to verify calls",
		"shaken.country_code: must be 1 to 3 digits",
	}
	got := err.Error()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("missing error %q", w)
		}
	}
	if t.Failed() {
		t.Logf("got:\n%s", got)
	}
	if _, err := Parse([]byte("listen: [udp://127.0.0.1:5060]\nshaken: {trsut_anchors: x}\n"), "typo"); err == nil || !strings.Contains(err.Error(), `did you mean "trust_anchors"`) {
		t.Errorf("typo: %v", err)
	}
}
