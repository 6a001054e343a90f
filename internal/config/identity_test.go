package config

import "testing"

func TestIdentityKeys(t *testing.T) {
	c, err := Parse([]byte(`
listen: [udp://127.0.0.1:5060]
upstreams: [{name: pbx, targets: [udp://192.0.2.10:5060]}]
trunks:
  - {name: cust, allow: [198.51.100.7], upstream: pbx}
  - {name: carrier, allow: [203.0.113.1], upstream: pbx, trust_identity: true}
  - name: phones
    auth: digest
    realm: phones.example
    algorithms: [SHA-256]
    upstream: pbx
    caller_id: rewrite
    accounts:
      - {username: "1001", ha1: {sha-256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}, numbers: ["+15551110000/2", "+15551110042", "+1555222*"]}
`), "id.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if tr := c.Trunk("cust"); tr.TrustIdentity || tr.CallerID != CallerIDRefuse {
		t.Errorf("defaults: trust_identity %v, caller_id %q", tr.TrustIdentity, tr.CallerID)
	}
	if !c.Trunk("carrier").TrustIdentity {
		t.Error("trust_identity: true not read")
	}
	ph := c.Trunk("phones")
	nums := ph.Digest.Accounts[0].Numbers
	if ph.CallerID != CallerIDRewrite || len(nums) != 3 || RewriteNumber(nums) != "+15551110042" {
		t.Fatalf("phones: caller_id %q, numbers %+v", ph.CallerID, nums)
	}
	for _, tc := range []struct {
		tn   string
		want bool
	}{
		{"+15551110000", true}, {"+15551110099", true}, {"+155511100", false}, {"+155511100999", false},
		{"+15551110042", true}, {"+15552229", true}, {"+15552229999999", true}, {"+1555333", false}, {"+1555222x", false},
	} {
		got := false
		for _, n := range nums {
			got = got || n.Contains(tc.tn)
		}
		if got != tc.want {
			t.Errorf("%s in %v: %v, want %v", tc.tn, nums, got, tc.want)
		}
	}
}
