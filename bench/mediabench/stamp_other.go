//go:build !linux

package main

import (
	"errors"
	"net"
)

func enableRxStamps(*net.UDPConn) error {
	return errors.New("kernel receive timestamps (SO_TIMESTAMPNS) need Linux")
}

func rxStamp([]byte) (int64, bool) { return 0, false }
