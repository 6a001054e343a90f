package acl

import (
	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
)

// A Resolver identifies the trunk of a request whose source address matches
// no allow prefix: trunks with auth: digest may have no fixed address (roaming
// phones). It returns nil when the request belongs to no such trunk. It must
// not block, and must not keep req.
type Resolver func(req *chain.Request) *config.Trunk

// SetResolver installs r (the auth stage's Resolve). A request it identifies
// goes on as the trunk's, and still has to authenticate in the auth stage;
// everything else from an unknown source stays unknown (dropped or 403).
func (s *Stage) SetResolver(r Resolver) { s.resolve = r }
