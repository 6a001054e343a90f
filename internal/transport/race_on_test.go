//go:build race

package transport

// raceEnabled: the race detector drops sync.Pool items at random, so pooled
// buffers are allocated again now and then.
const raceEnabled = true
