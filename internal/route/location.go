package route

import (
	"net/netip"
	"strings"

	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/sip"
)

// A Location is where a registered account can be reached: the contact URI
// it registered (the Request-URI of calls to it) and the address, port and
// transport its REGISTER came from (where calls are sent, so that a phone
// behind NAT is reached through the mapping, or the very TCP/TLS connection,
// it registered over).
type Location struct {
	URI       string
	Transport sip.Transport
	Addr      netip.AddrPort
}

// A Locator finds the most recent location of account user of trunk (the
// registrar's bindings); false when the account has none in force.
type Locator func(trunk *config.Trunk, user string) (Location, bool)

// hosted indexes the digest trunks with a registrar by their domains: calls
// from their upstream to sip:user@domain go to the account's registration.
type hosted struct {
	byDomain map[string][]*config.Trunk
}

func newHosted(cfg *config.Config) hosted {
	h := hosted{byDomain: map[string][]*config.Trunk{}}
	for i := range cfg.Trunks {
		tr := &cfg.Trunks[i]
		if tr.Auth != config.AuthDigest || !tr.Digest.Registrar.Enabled {
			continue
		}
		for _, d := range tr.Digest.Domains {
			h.byDomain[d] = append(h.byDomain[d], tr)
		}
	}
	return h
}

// trunkFor returns the registrar trunk served by upstream that has an
// account user in domain host, or nil.
func (h hosted) trunkFor(host []byte, user []byte, upstream string) *config.Trunk {
	if len(h.byDomain) == 0 || len(user) == 0 {
		return nil
	}
	trunks := h.byDomain[strings.ToLower(string(host))]
	for _, tr := range trunks {
		if tr.Upstream != upstream {
			continue
		}
		for j := range tr.Digest.Accounts {
			if tr.Digest.Accounts[j].Username == string(user) {
				return tr
			}
		}
	}
	return nil
}
