// Package redteam is the red-team suite: one end-to-end test per attack that
// once turned the edge against the carrier it protects (a peer banned on
// forged evidence, a call carried past its limits and fraud meter, a password
// oracle, a reflection, the protected side showing through, ...). Each test
// runs the real binary with real peers through package testbed, is named
// after its attack, and asserts what sipwarden does now. docs/security.md
// lists the attacks and the test that shows each.
package redteam

import (
	"testing"

	"github.com/sipwarden/sipwarden/test/testbed"
)

func TestMain(m *testing.M) { testbed.Main(m) }
