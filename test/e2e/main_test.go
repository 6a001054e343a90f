// Package e2e runs the real sipwarden binary against real peers (SIPp,
// baresip, secsipidx, tshark, and Go clients on raw sockets where SIPp cannot
// go: TLS, exact retransmissions, silence checks) on loopback addresses, with
// the harness of package testbed. Every run is bounded in time and count.
//
// Addresses: the trunk's peers send from 127.0.0.2, the upstream PBX listens
// on 127.0.0.3, unknown sources use 127.0.0.9; sipwarden listens on 127.0.0.1.
package e2e

import (
	"testing"

	"github.com/sipwarden/sipwarden/test/testbed"
)

func TestMain(m *testing.M) { testbed.Main(m) }
