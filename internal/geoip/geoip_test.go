package geoip

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// WriteTestDB writes a country database mapping each CIDR to its ISO code
// (tests of this package and of the registrar use it).
func writeTestDB(t testing.TB, countries map[string]string) string {
	t.Helper()
	w, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "GeoLite2-Country", RecordSize: 24, IncludeReservedNetworks: true})
	if err != nil {
		t.Fatal(err)
	}
	for cidr, iso := range countries {
		_, n, err := net.ParseCIDR(cidr)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Insert(n, mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.String(iso)}}); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "country.mmdb")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := w.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCountry(t *testing.T) {
	db, err := Open(writeTestDB(t, map[string]string{"198.51.100.0/24": "US", "203.0.113.0/24": "FR", "2001:db8:1::/48": "DE"}))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for addr, want := range map[string]string{
		"198.51.100.7":       "US",
		"203.0.113.200":      "FR",
		"::ffff:203.0.113.1": "FR", // IPv4-mapped
		"2001:db8:1:2::1":    "DE",
		"192.0.2.1":          "", // not in the database
		"2001:db8:2::1":      "",
	} {
		if got := db.Country(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Country(%s) = %q, want %q", addr, got, want)
		}
	}
}

func TestOpenRefusesGarbage(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.mmdb")
	if err := os.WriteFile(p, []byte("not a database"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(p); err == nil {
		t.Fatal("a file that is no MaxMind database was opened")
	}
}
