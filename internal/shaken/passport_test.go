package shaken

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"math/big"
	"strings"
	"testing"
)

// The RFC 8588 section 6 example: what we sign must be exactly these bytes.
func TestCanonicalJSONRFC8588(t *testing.T) {
	h := Header{Alg: AlgES256, PPT: PPTShaken, Typ: TypPass, X5U: "https://cert.example.org/passport.cer"}
	c := Claims{Attest: "A", Orig: "12155551212", Dest: []string{"12125551213"}, IAT: 1443208345,
		OrigID: "123e4567-e89b-12d3-a456-426655440000"}
	const wantH = `{"alg":"ES256","ppt":"shaken","typ":"passport","x5u":"https://cert.example.org/passport.cer"}`
	const wantC = `{"attest":"A","dest":{"tn":["12125551213"]},"iat":1443208345,"orig":{"tn":"12155551212"},"origid":"123e4567-e89b-12d3-a456-426655440000"}`
	if got := string(h.AppendJSON(nil)); got != wantH {
		t.Errorf("header\n got %s\nwant %s", got, wantH)
	}
	if got := string(c.AppendJSON(nil)); got != wantC {
		t.Errorf("claims\n got %s\nwant %s", got, wantC)
	}
	// escaping: quotes, backslashes and control bytes, and no HTML escaping
	h.X5U = "https://a/b&c\"d\\e\x01"
	if got, want := string(h.AppendJSON(nil)), `{"alg":"ES256","ppt":"shaken","typ":"passport","x5u":"https://a/b&c\"d\\e\u0001"}`; got != want {
		t.Errorf("escaped: got %s want %s", got, want)
	}
}

func rfc7515Key(t testing.TB) *ecdsa.PublicKey {
	t.Helper()
	dec := func(s string) *big.Int {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return new(big.Int).SetBytes(b)
	}
	return &ecdsa.PublicKey{Curve: elliptic.P256(),
		X: dec("f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU"),
		Y: dec("x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0")}
}

// RFC 7515 appendix A.3: an ES256 JWS whose signature is raw R||S.
func TestES256RFC7515A3(t *testing.T) {
	const tok = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"
	// It is no PASSporT, so build the PASSporT value by hand around it.
	i := strings.LastIndexByte(tok, '.')
	sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
	if err != nil || len(sig) != 64 {
		t.Fatalf("signature: %v, %d bytes", err, len(sig))
	}
	p := &PASSporT{signingInput: []byte(tok[:i])}
	copy(p.sig[:], sig)
	if err := p.VerifySignature(rfc7515Key(t)); err != nil {
		t.Fatalf("A.3 signature does not verify: %v", err)
	}
	p.sig[63] ^= 1
	if err := p.VerifySignature(rfc7515Key(t)); !errors.Is(err, ErrSignature) {
		t.Fatalf("tampered A.3 signature: %v", err)
	}
	// and ParsePASSporT sees it as a JWS of another type
	if _, err := ParsePASSporT([]byte(tok)); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("A.3 token as passport: %v, want ErrUnsupported", err)
	}
}

func testKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testClaims() *Claims {
	return &Claims{Attest: "A", Orig: "15551230001", Dest: []string{"15559870002"}, IAT: 1790000000,
		OrigID: "123e4567-e89b-12d3-a456-426655440000"}
}

func TestSignParseVerify(t *testing.T) {
	key := testKey(t)
	tok, err := Sign(key, "https://cert.example.org/sp.pem", testClaims())
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePASSporT([]byte(tok))
	if err != nil {
		t.Fatal(err)
	}
	if p.Header.X5U != "https://cert.example.org/sp.pem" || p.Claims.Orig != "15551230001" ||
		p.Claims.Dest[0] != "15559870002" || p.Claims.IAT != 1790000000 || p.Claims.Attest != "A" {
		t.Fatalf("parsed %+v", p)
	}
	if err := p.VerifySignature(&key.PublicKey); err != nil {
		t.Fatal(err)
	}
	if err := p.VerifySignature(&testKey(t).PublicKey); !errors.Is(err, ErrSignature) {
		t.Fatalf("other key: %v", err)
	}
}

func TestSignRefuses(t *testing.T) {
	key := testKey(t)
	for name, mod := range map[string]func(*Claims){
		"attest D":    func(c *Claims) { c.Attest = "D" },
		"orig +":      func(c *Claims) { c.Orig = "+15551230001" },
		"no dest":     func(c *Claims) { c.Dest = nil },
		"long orig":   func(c *Claims) { c.Orig = "1234567890123456" },
		"bad origid":  func(c *Claims) { c.OrigID = "x" },
		"no iat":      func(c *Claims) { c.IAT = 0 },
		"dest letter": func(c *Claims) { c.Dest = []string{"1555a"} },
	} {
		c := testClaims()
		mod(c)
		if _, err := Sign(key, "https://x/y", c); err == nil {
			t.Errorf("%s: signed", name)
		}
	}
	k384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := Sign(k384, "https://x/y", testClaims()); err == nil {
		t.Error("P-384 key accepted")
	}
}

// signRaw signs arbitrary header and claims JSON, as another implementation might.
func signRaw(t testing.TB, key *ecdsa.PrivateKey, hdr, claims string) string {
	t.Helper()
	in := b64.EncodeToString([]byte(hdr)) + "." + b64.EncodeToString([]byte(claims))
	sig, err := signES256(key, []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	return in + "." + b64.EncodeToString(sig[:])
}

func TestParsePASSporTTolerance(t *testing.T) {
	key := testKey(t)
	const x5u = `"x5u":"https://cert.example.org/sp.pem"`
	tests := []struct {
		name, hdr, claims string
		err               error
	}{
		{"canonical", `{"alg":"ES256","ppt":"shaken","typ":"passport",` + x5u + `}`,
			`{"attest":"A","dest":{"tn":["15559870002"]},"iat":1790000000,"orig":{"tn":"15551230001"},"origid":"123e4567-e89b-12d3-a456-426655440000"}`, nil},
		{"non-canonical order and spaces", `{ "x5u":"https://cert.example.org/sp.pem", "typ":"passport", "ppt":"shaken", "alg":"ES256" }`,
			"{\n \"origid\":\"123e4567-e89b-12d3-a456-426655440000\",\"orig\":{\"tn\":\"15551230001\"},\"iat\":1790000000, \"dest\":{\"tn\":[\"15559870002\"]},\"attest\":\"A\"}", nil},
		{"dest tn as a string", `{"alg":"ES256","ppt":"shaken","typ":"passport",` + x5u + `}`,
			`{"attest":"A","dest":{"tn":"15559870002"},"iat":1790000000,"orig":{"tn":"15551230001"},"origid":"123e4567-e89b-12d3-a456-426655440000"}`, nil},
		{"extra claims", `{"alg":"ES256","ppt":"shaken","typ":"passport",` + x5u + `}`,
			`{"attest":"A","dest":{"tn":["15559870002"],"uri":["sip:a@b"]},"iat":1790000000.0,"orig":{"tn":"15551230001"},"origid":"123e4567-e89b-12d3-a456-426655440000","rcd":{"nam":"x"}}`, nil},
		{"div", `{"alg":"ES256","ppt":"div","typ":"passport",` + x5u + `}`, `{}`, ErrUnsupported},
		{"rcd", `{"alg":"ES256","ppt":"rcd","typ":"passport",` + x5u + `}`, `{}`, ErrUnsupported},
		{"no ppt", `{"alg":"ES256","typ":"passport",` + x5u + `}`, `{}`, ErrUnsupported},
		{"RS256", `{"alg":"RS256","ppt":"shaken","typ":"passport",` + x5u + `}`, `{}`, ErrUnsupported},
		{"no x5u", `{"alg":"ES256","ppt":"shaken","typ":"passport"}`, `{}`, ErrMalformed},
		{"bad attest", `{"alg":"ES256","ppt":"shaken","typ":"passport",` + x5u + `}`,
			`{"attest":"X","dest":{"tn":["15559870002"]},"iat":1790000000,"orig":{"tn":"15551230001"},"origid":"x"}`, ErrMalformed},
		{"no orig", `{"alg":"ES256","ppt":"shaken","typ":"passport",` + x5u + `}`,
			`{"attest":"A","dest":{"tn":["15559870002"]},"iat":1790000000,"origid":"x"}`, ErrMalformed},
		{"no iat", `{"alg":"ES256","ppt":"shaken","typ":"passport",` + x5u + `}`,
			`{"attest":"A","dest":{"tn":["15559870002"]},"orig":{"tn":"15551230001"},"origid":"x"}`, ErrMalformed},
		{"iat string", `{"alg":"ES256","ppt":"shaken","typ":"passport",` + x5u + `}`,
			`{"attest":"A","dest":{"tn":["15559870002"]},"iat":"1790000000","orig":{"tn":"15551230001"},"origid":"x"}`, ErrMalformed},
		{"too many dest", `{"alg":"ES256","ppt":"shaken","typ":"passport",` + x5u + `}`,
			`{"attest":"A","dest":{"tn":["1","2","3","4","5","6","7","8","9","10","11","12","13","14","15","16","17"]},"iat":1790000000,"orig":{"tn":"15551230001"},"origid":"x"}`, ErrMalformed},
		{"json garbage", `{"alg":"ES256",`, `{}`, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := signRaw(t, key, tc.hdr, tc.claims)
			p, err := ParsePASSporT([]byte(tok))
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := p.VerifySignature(&key.PublicKey); err != nil {
				t.Fatalf("signature over non-canonical bytes: %v", err)
			}
			if p.Claims.Orig != "15551230001" || p.Claims.Dest[0] != "15559870002" || p.Claims.IAT != 1790000000 {
				t.Fatalf("claims %+v", p.Claims)
			}
		})
	}
	for _, bad := range []string{"", "a", "a.b", ".b.c", "a..c", "!!.b.c", "e30.e30.AAAA", "e30.e30." + strings.Repeat("A", 86)} {
		if _, err := ParsePASSporT([]byte(bad)); err == nil {
			t.Errorf("ParsePASSporT(%q) accepted", bad)
		}
	}
}

func TestCanonicalTN(t *testing.T) {
	for in, want := range map[string]string{"+1 (555) 123-0001": "15551230001", "15551230001": "15551230001",
		"": "", "+": "", "1555a": "", "+1234567890123456": "", "1+2": ""} {
		got, ok := CanonicalTN(in)
		if got != want || ok != (want != "") {
			t.Errorf("CanonicalTN(%q) = %q %v", in, got, ok)
		}
	}
}

func TestNewUUID(t *testing.T) {
	u, err := NewUUID(nil)
	if err != nil || !ValidUUID(u) || u[14] != '4' {
		t.Fatalf("%q %v", u, err)
	}
}

func FuzzParseIdentity(f *testing.F) {
	key := testKey(f)
	tok, _ := Sign(key, "https://cert.example.org/sp.pem", testClaims())
	f.Add(string(AppendIdentity(nil, tok, "https://cert.example.org/sp.pem")))
	f.Add(`a.b.c;info=<https://x>;ppt="shaken";alg=ES256, d.e.f;ppt=div`)
	f.Add(`a.b.c ; info = "<x>" ; y`)
	f.Fuzz(func(t *testing.T, s string) {
		SplitIdentities([]byte(s), func(v []byte) bool {
			id, err := ParseIdentity(v)
			if err == nil {
				if len(id.Token) == 0 || len(id.Token) > MaxIdentityLen {
					t.Fatalf("token of %d bytes", len(id.Token))
				}
				_, _ = ParsePASSporT(id.Token)
			}
			return true
		})
	})
}

func FuzzParsePASSporT(f *testing.F) {
	key := testKey(f)
	tok, _ := Sign(key, "https://cert.example.org/sp.pem", testClaims())
	f.Add(tok)
	f.Add(signRaw(f, key, `{"alg":"ES256","ppt":"shaken","x5u":"h"}`, `{"attest":"A","dest":{"tn":"1"},"iat":1.5,"orig":{"tn":"2"},"origid":"u"}`))
	f.Add("e30.e30.e30")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePASSporT([]byte(s))
		if err == nil {
			if p.Claims.IAT <= 0 || len(p.Claims.Dest) == 0 || len(p.Claims.Dest) > MaxDestTNs || p.Header.X5U == "" {
				t.Fatalf("accepted incomplete passport %+v", p)
			}
			_ = p.VerifySignature(&key.PublicKey)
		}
	})
}

func BenchmarkSign(b *testing.B) {
	key := testKey(b)
	c := testClaims()
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = AppendSigned(buf[:0], key, "https://cert.example.org/sp.pem", c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseAndVerify(b *testing.B) {
	key := testKey(b)
	tok, _ := Sign(key, "https://cert.example.org/sp.pem", testClaims())
	v := AppendIdentity(nil, tok, "https://cert.example.org/sp.pem")
	b.ReportAllocs()
	for b.Loop() {
		id, err := ParseIdentity(v)
		if err != nil {
			b.Fatal(err)
		}
		p, err := ParsePASSporT(id.Token)
		if err != nil {
			b.Fatal(err)
		}
		if err := p.VerifySignature(&key.PublicKey); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParsePASSporT(b *testing.B) {
	key := testKey(b)
	tok := []byte(mustSign(b, key))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParsePASSporT(tok); err != nil {
			b.Fatal(err)
		}
	}
}

func mustSign(t testing.TB, key *ecdsa.PrivateKey) string {
	tok, err := Sign(key, "https://cert.example.org/sp.pem", testClaims())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestAppendDERSig(t *testing.T) {
	cases := [][64]byte{{}, {0x80}, {31: 1, 32: 0x7f}}
	for i := 0; i < 50; i++ {
		var s [64]byte
		_, _ = rand.Read(s[:])
		if i%5 == 0 {
			s[0], s[1] = 0, 0
		}
		cases = append(cases, s)
	}
	for _, sig := range cases {
		want, err := asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])})
		if err != nil {
			t.Fatal(err)
		}
		if got := appendDERSig(nil, &sig); !bytes.Equal(got, want) {
			t.Fatalf("appendDERSig(% x)\n got % x\nwant % x", sig, got, want)
		}
	}
}

func TestRawFromDER(t *testing.T) {
	for i := 0; i < 50; i++ {
		var s [64]byte
		_, _ = rand.Read(s[:])
		if i%4 == 0 {
			s[0], s[33] = 0, 0
		}
		var got [64]byte
		if !rawFromDER(&got, appendDERSig(nil, &s)) || got != s {
			t.Fatalf("round trip of % x: % x", s, got)
		}
	}
	var out [64]byte
	for _, bad := range [][]byte{nil, {0x30}, {0x30, 0x02, 0x02, 0x00}, {0x31, 0x06, 0x02, 0x01, 1, 0x02, 0x01, 1},
		{0x30, 0x07, 0x02, 0x01, 1, 0x02, 0x01, 1, 0}, {0x30, 0x06, 0x02, 0x05, 1, 0x02, 0x01, 1}} {
		if rawFromDER(&out, bad) {
			t.Errorf("rawFromDER(% x) accepted", bad)
		}
	}
}
