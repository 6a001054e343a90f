//go:build !unix

package fraudsim

import "time"

// cpuTime is not measured on this system (0): the report gives the wall time.
func cpuTime() time.Duration { return 0 }
