package route

import (
	"fmt"
	"testing"

	"github.com/sipwarden/sipwarden/internal/config"
)

func TestLookup(t *testing.T) {
	yaml := `listen: [udp://127.0.0.1:5060]
upstreams: [{name: pbx, targets: [udp://127.0.0.1:5080]}]
trunks:
  - {name: range, allow: [10.0.0.1], upstream: pbx, numbers: ["+15551230000/4"]}
  - {name: exact, allow: [10.0.0.2], upstream: pbx, numbers: ["+15551234567"]}
  - {name: star, allow: [10.0.0.3], upstream: pbx, numbers: ["+1555*"]}
  - {name: uk, allow: [10.0.0.4], upstream: pbx, numbers: ["+4420*", "+442079460*"]}
`
	cfg, err := config.Parse([]byte(yaml), "t")
	if err != nil {
		t.Fatal(err)
	}
	tab := NewTable(cfg)
	for num, want := range map[string]string{
		"+15551230001":  "range",
		"+15551234567":  "exact", // exact beats the range it falls in
		"+15551239999":  "range",
		"+155512300011": "star", // one digit too many for the range
		"+15559999999":  "star",
		"+442079460123": "uk",
		"+4420":         "uk",
		"+16175550000":  "",
		"+1":            "",
	} {
		got := ""
		if tr := tab.Lookup([]byte(num)); tr != nil {
			got = tr.Name
		}
		if got != want {
			t.Errorf("Lookup(%s) = %q, want %q", num, got, want)
		}
	}
	n := []byte("+15559999999")
	if a := testing.AllocsPerRun(1000, func() { tab.Lookup(n) }); a != 0 {
		t.Errorf("%v allocations per lookup", a)
	}
}

func BenchmarkLookup100k(b *testing.B) {
	yaml := "listen: [udp://127.0.0.1:5060]\nupstreams: [{name: pbx, targets: [udp://127.0.0.1:5080]}]\ntrunks:\n"
	for i := range 1000 {
		yaml += fmt.Sprintf("  - name: t%d\n    allow: [10.%d.%d.1]\n    upstream: pbx\n    numbers: [", i, i/256, i%256)
		for j := range 100 {
			if j > 0 {
				yaml += ", "
			}
			yaml += fmt.Sprintf(`"+1%03d%07d"`, 200+i%800, i*100+j)
		}
		yaml += "]\n"
	}
	cfg, err := config.Parse([]byte(yaml), "bench")
	if err != nil {
		b.Fatal(err)
	}
	tab := NewTable(cfg)
	nums := [][]byte{[]byte("+12000000050"), []byte("+19999999999")}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		tab.Lookup(nums[i&1])
		i++
	}
}
