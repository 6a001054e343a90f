package main

import (
	"encoding/binary"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// enableRxStamps asks the kernel to stamp each datagram as it reaches c
// (SO_TIMESTAMPNS: CLOCK_REALTIME, like the senders' time.Now).
func enableRxStamps(c *net.UDPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("setsockopt SO_TIMESTAMPNS: %w", serr)
	}
	return nil
}

// rxStamp returns the SCM_TIMESTAMPNS time (Unix nanoseconds) among the
// control messages in oob.
func rxStamp(oob []byte) (int64, bool) {
	const tsLen = 16 // struct timespec on 64-bit Linux
	for len(oob) >= unix.SizeofCmsghdr {
		l := int(binary.NativeEndian.Uint64(oob))
		level := int32(binary.NativeEndian.Uint32(oob[8:]))
		typ := int32(binary.NativeEndian.Uint32(oob[12:]))
		if l < unix.SizeofCmsghdr || l > len(oob) {
			return 0, false
		}
		if level == unix.SOL_SOCKET && typ == unix.SCM_TIMESTAMPNS && l >= unix.CmsgLen(tsLen) {
			d := oob[unix.CmsgLen(0):]
			sec := int64(binary.NativeEndian.Uint64(d))
			nsec := int64(binary.NativeEndian.Uint64(d[8:]))
			return sec*1e9 + nsec, true
		}
		oob = oob[min(len(oob), unix.CmsgSpace(l-unix.CmsgLen(0))):]
	}
	return 0, false
}
