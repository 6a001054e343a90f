package config

import (
	"slices"
	"strings"
	"testing"
)

func TestAdminSection(t *testing.T) {
	tests := []struct {
		name  string
		admin string
		err   string // substring of the error, "" for none
		hosts []string
	}{
		{"loopback plaintext", `{listen: "127.0.0.1:8080"}`, "", []string{"127.0.0.1", "localhost", "::1"}},
		{"ipv6 loopback", `{listen: "[::1]:8080"}`, "", []string{"::1", "localhost", "127.0.0.1"}},
		{"off", `{}`, "", nil},
		{"public plaintext refused", `{listen: "192.0.2.10:8080"}`,
			"c.yaml:2:17: admin.listen: 192.0.2.10:8080 is not a loopback address", nil},
		{"wildcard plaintext refused", `{listen: "0.0.0.0:8080"}`, "admin.listen: 0.0.0.0:8080 is not a loopback address", nil},
		{"public plaintext said explicitly", `{listen: "192.0.2.10:8080", insecure_plaintext: true}`, "",
			[]string{"192.0.2.10", "localhost", "127.0.0.1", "::1"}},
		{"public with tls", `{listen: "0.0.0.0:8443", tls: {cert: a.pem, key: b.pem}}`, "", []string{"localhost", "127.0.0.1", "::1"}},
		{"tls half", `{listen: "127.0.0.1:8443", tls: {cert: a.pem}}`, "admin.tls: admin.tls.cert and admin.tls.key go together", nil},
		{"hosts given", `{listen: "127.0.0.1:8080", hosts: [Admin.Example.NET., "[::1]"]}`, "", []string{"admin.example.net", "::1"}},
		{"host with port", `{listen: "127.0.0.1:8080", hosts: ["a.example:8080"]}`, "admin.hosts[0]: must be a host name or IP address without a port", nil},
		{"star not alone", `{listen: "127.0.0.1:8080", hosts: ["*", localhost]}`, `admin.hosts[0]: "*" (any Host) stands alone`, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte("listen: [udp://127.0.0.1:5060]\nadmin: "+tc.admin+"\n"), "c.yaml")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("want error %q, got %v", tc.err, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(c.Admin.Hosts, tc.hosts) {
				t.Errorf("hosts %q, want %q", c.Admin.Hosts, tc.hosts)
			}
		})
	}
}
