// Package sdk is a small Go SDK for Tezos smart-rollup kernels built with
// DSN's toolchain (GOOS=wasip1, then `dsn kernel link`): typed wrappers for
// the smart_rollup_core host functions. On wasip1 it calls the host; the
// host-side stubs (other platforms) only exist so that kernel packages
// compile natively — kernel logic is tested through internal/pvm.
package sdk

import "errors"

// Error is a negative host return code.
type Error int32

func (e Error) Error() string { return "sdk: host error " + itoa(int32(e)) }

// ErrNotWasm is returned by the host stubs outside wasip1.
var ErrNotWasm = errors.New("sdk: host functions exist only in the PVM")

// Message is one inbox message.
type Message struct {
	Level, ID uint32
	Payload   []byte
}

// MaxInput is the largest inbox message.
const MaxInput = 4096

func itoa(v int32) string {
	if v == 0 {
		return "0"
	}
	neg := v < 0
	if neg {
		v = -v
	}
	var b [12]byte
	i := len(b)
	for v > 0 {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}
