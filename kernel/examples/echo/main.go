// Command echo is an example kernel in Go: it writes every inbox message
// back to the outbox and the debug log, and counts them in /counter.
// Build it with `dsn kernel build --pkg ./kernel/examples/echo --out echo.wasm`.
package main

import (
	"encoding/binary"
	"fmt"

	"github.com/tezos-dsn/dsn/kernel/sdk"
)

//lint:ignore U1000 called by the PVM through the wasm export
//go:wasmexport kernel_run
func kernelRun() {
	var count uint32
	if v, ok, _ := sdk.Read("/counter"); ok && len(v) == 4 {
		count = binary.LittleEndian.Uint32(v)
	}
	for {
		m, ok, err := sdk.ReadInput()
		if err != nil || !ok {
			break
		}
		count++
		if string(m.Payload) == "\x01panic" {
			panic("echo: asked to panic") // becomes a readable debug line, then a trap
		}
		sdk.Debug(fmt.Sprintf("echo: level %d message %d: %d bytes\n", m.Level, m.ID, len(m.Payload)))
		if err := sdk.WriteOutput(m.Payload); err != nil {
			sdk.Debug("echo: outbox: " + err.Error() + "\n")
		}
	}
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], count)
	if err := sdk.Write("/counter", b[:]); err != nil {
		panic(err)
	}
}

func main() {}
