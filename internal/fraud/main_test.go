package fraud

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind (Engine.Run stops with its context).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
