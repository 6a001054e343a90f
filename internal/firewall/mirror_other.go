//go:build !linux

package firewall

import (
	"errors"
	"net/netip"
)

// Mirror needs Linux's nftables; elsewhere OpenMirror fails.
type Mirror struct{}

// MirrorOptions configure OpenMirror.
type MirrorOptions struct {
	Table string
	Ports []uint16
	NetNS int
}

// OpenMirror fails: nftables exists only on Linux.
func OpenMirror(MirrorOptions) (*Mirror, error) {
	return nil, errors.New("nftables mirror: needs Linux")
}

// Replace does nothing.
func (m *Mirror) Replace([]netip.Prefix) error { return nil }

// Close does nothing.
func (m *Mirror) Close() error { return nil }
