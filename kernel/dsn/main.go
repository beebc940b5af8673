// Command dsn is the DSN rollup kernel: it reads the inbox and runs
// kernel/state, the Bullshark replica that re-derives the ordering from
// certified data, keeping its state under /dsn/ in durable storage (the
// layout is in kernel/state's doc and docs/kernel.md). Build it with
// `dsn kernel build --pkg ./kernel/dsn --out dsn.wasm`.
package main

import (
	"fmt"
	"runtime/debug"

	"github.com/tezos-dsn/dsn/kernel/sdk"
	"github.com/tezos-dsn/dsn/kernel/state"
)

// durable is kernel/state's Store over PVM durable storage under /dsn/. A
// host error on one of our own well-formed paths is a bug: it panics, and
// the PVM records the trap.
type durable struct{}

func (durable) Get(k string) ([]byte, bool) {
	v, ok, err := sdk.Read("/dsn/" + k)
	if err != nil {
		panic(fmt.Sprintf("dsn: read /dsn/%s: %v", k, err))
	}
	return v, ok
}

func (durable) Put(k string, v []byte) {
	if err := sdk.Write("/dsn/"+k, v); err != nil {
		panic(fmt.Sprintf("dsn: write /dsn/%s: %v", k, err))
	}
}

func (durable) Delete(k string) {
	if err := sdk.Delete("/dsn/" + k); err != nil {
		panic(fmt.Sprintf("dsn: delete /dsn/%s: %v", k, err))
	}
}

//lint:ignore U1000 called by the PVM through the wasm export
//go:wasmexport kernel_run
func kernelRun() {
	// Every kernel_run starts from a fresh instance and its memory is
	// dropped at the end: collecting garbage during the run is wasted
	// work, so the collector runs only if the heap nears the limit (the
	// PVM host gives 256 MiB; see internal/pvm.Config.MaxMemoryPages).
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(160 << 20)
	rollup, _, err := sdk.Metadata()
	if err != nil {
		sdk.Debug(fmt.Sprintf("dsn: rollup metadata: %v", err))
		return
	}
	// Writes are buffered for the run and flushed once at its end (see
	// state.Overlay): chunks and batches consumed within the level never
	// touch durable storage, and a run that traps writes nothing (so no
	// defer: a panic must not flush).
	st := state.NewOverlay(durable{})
	m, err := state.Load(st, rollup, state.Digests{}, sdk.Debug)
	if err != nil {
		// Without its setup the kernel cannot verify anything: it reads
		// nothing, and the inputs of this level are dropped.
		sdk.Debug(fmt.Sprintf("dsn: %v", err))
		return
	}
	level := ^uint32(0)
	for {
		msg, ok, err := sdk.ReadInput()
		if err != nil || !ok {
			m.EndLevel()
			st.Flush()
			return
		}
		if msg.Level != level {
			if level != ^uint32(0) {
				m.EndLevel()
			}
			level = msg.Level
			m.StartLevel(level)
		}
		if p := msg.Payload; len(p) > 0 && p[0] == 0x01 {
			m.Input(msg.Level, p[1:])
		}
	}
}

func main() {}
