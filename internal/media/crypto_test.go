package media

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
)

var key30 = base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcd"))
var key28 = base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789ab"))

func TestParseCrypto(t *testing.T) {
	tests := []struct {
		in    string
		tag   uint32
		suite Suite
		err   error
	}{
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + key30, 1, AES_CM_128_HMAC_SHA1_80, nil},
		{"2 AES_CM_128_HMAC_SHA1_32 inline:" + key30 + "|2^31", 2, AES_CM_128_HMAC_SHA1_32, nil},
		{"3 AEAD_AES_128_GCM inline:" + key28, 3, AEAD_AES_128_GCM, nil},
		{"123456789 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|1048576 WSH=64 KDR=0", 123456789, AES_CM_128_HMAC_SHA1_80, nil},
		{"1  AES_CM_128_HMAC_SHA1_80\tinline:" + key30, 1, AES_CM_128_HMAC_SHA1_80, nil},
		// refused
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|2^20|1:4", 0, 0, ErrUnsupportedCrypto},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|1:4", 0, 0, ErrUnsupportedCrypto},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + ";inline:" + key30, 0, 0, ErrUnsupportedCrypto},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + " UNENCRYPTED_SRTP", 0, 0, ErrUnsupportedCrypto},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + " UNAUTHENTICATED_SRTP", 0, 0, ErrUnsupportedCrypto},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + " KDR=24", 0, 0, ErrUnsupportedCrypto},
		{"1 AES_256_CM_HMAC_SHA1_80 inline:" + key30, 0, 0, ErrUnsupportedCrypto},
		{"1 F8_128_HMAC_SHA1_80 inline:" + key30, 0, 0, ErrUnsupportedCrypto},
		{"1 AES_CM_128_HMAC_SHA1_80 uri:" + key30, 0, 0, ErrUnsupportedCrypto},
		// malformed
		{"", 0, 0, ErrMalformedCrypto},
		{"1 AES_CM_128_HMAC_SHA1_80", 0, 0, ErrMalformedCrypto},
		{"x AES_CM_128_HMAC_SHA1_80 inline:" + key30, 0, 0, ErrMalformedCrypto},
		{"1234567890 AES_CM_128_HMAC_SHA1_80 inline:" + key30, 0, 0, ErrMalformedCrypto},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + key28, 0, 0, ErrMalformedCrypto},
		{"1 AEAD_AES_128_GCM inline:" + key30, 0, 0, ErrMalformedCrypto},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:!!!notbase64", 0, 0, ErrMalformedCrypto},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|2^x", 0, 0, ErrMalformedCrypto},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|", 0, 0, ErrMalformedCrypto},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|2^31|", 0, 0, ErrMalformedCrypto},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + strings.Repeat("A", 2000), 0, 0, ErrMalformedCrypto},
	}
	for _, tt := range tests {
		c, err := ParseCrypto(tt.in)
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("ParseCrypto(%.60q) error = %v, want %v", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseCrypto(%.60q): %v", tt.in, err)
			continue
		}
		if c.Tag != tt.tag || c.Suite != tt.suite || len(c.Key) != tt.suite.keyLen() {
			t.Errorf("ParseCrypto(%.60q) = %d %v %d-byte key", tt.in, c.Tag, c.Suite, len(c.Key))
		}
		// Round trip.
		c2, err := ParseCrypto(c.attrValue())
		if err != nil || c2.Tag != c.Tag || c2.Suite != c.Suite || string(c2.Key) != string(c.Key) {
			t.Errorf("round trip of %.60q: %v", tt.in, err)
		}
	}
}

// Keys must not leak through fmt or slog, whatever the verb.
func TestKeyRedacted(t *testing.T) {
	c, err := ParseCrypto("1 AES_CM_128_HMAC_SHA1_80 inline:" + key30)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s %x", c, c, c, c.Key, c.Key), c.String(),
		fmt.Sprintf("%v", c.Key.LogValue()),
	} {
		if strings.Contains(s, key30) || strings.Contains(s, "0123456789") || strings.Contains(s, "3031323334") {
			t.Errorf("key leaked: %s", s)
		}
	}
}

func TestNewKeyContexts(t *testing.T) {
	for _, s := range offeredSuites {
		k, err := newKey(s)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := (Crypto{Tag: 1, Suite: s, Key: k}).context(); err != nil {
			t.Errorf("%v: %v", s, err)
		}
	}
}

func FuzzParseCrypto(f *testing.F) {
	f.Add("1 AES_CM_128_HMAC_SHA1_80 inline:" + key30)
	f.Add("2 AES_CM_128_HMAC_SHA1_32 inline:" + key30 + "|2^31|1:4 WSH=64")
	f.Add("3 AEAD_AES_128_GCM inline:" + key28 + "|1048576")
	f.Add("1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + ";inline:" + key30 + " UNENCRYPTED_SRTCP")
	f.Fuzz(func(t *testing.T, in string) {
		c, err := ParseCrypto(in)
		if err != nil {
			return
		}
		if len(c.Key) != c.Suite.keyLen() || c.Suite == SuiteNone {
			t.Fatalf("accepted %q with suite %v and %d-byte key", in, c.Suite, len(c.Key))
		}
		c2, err := ParseCrypto(c.attrValue())
		if err != nil || c2.Tag != c.Tag || c2.Suite != c.Suite || string(c2.Key) != string(c.Key) {
			t.Fatalf("round trip of %q: %v", in, err)
		}
		if _, err := c.context(); err != nil {
			t.Fatalf("context of accepted %q: %v", in, err)
		}
	})
}
