// Package geoip names the country of an IP address from a MaxMind-format
// database (GeoLite2-Country, GeoIP2-Country, or any .mmdb whose records
// carry country.iso_code), for the registration-hijack signals of the
// registrar: an account that suddenly registers from another country.
//
// The reader is github.com/oschwald/maxminddb-golang/v2, the reference Go
// reader of the format (memory-mapped, safe for concurrent lookups).
package geoip

import (
	"fmt"
	"net/netip"

	"github.com/oschwald/maxminddb-golang/v2"
)

// DB is an open country database.
type DB struct {
	r *maxminddb.Reader
}

// Open opens the database at path.
func Open(path string) (*DB, error) {
	r, err := maxminddb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open GeoIP database %s: %w", path, err)
	}
	return &DB{r: r}, nil
}

type record struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
}

// Country returns the ISO 3166-1 alpha-2 code of a's country, or "" when the
// database does not know it (private addresses, a failed lookup).
func (db *DB) Country(a netip.Addr) string {
	var rec record
	if err := db.r.Lookup(a.Unmap()).Decode(&rec); err != nil {
		return ""
	}
	return rec.Country.ISOCode
}

// Close releases the database.
func (db *DB) Close() error { return db.r.Close() }
