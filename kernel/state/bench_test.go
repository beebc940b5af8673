package state_test

import (
	"encoding/binary"
	"testing"

	"github.com/tezos-dsn/dsn/kernel/state"
)

// BenchmarkMachine feeds a real committee's DAG (4 rounds per submission)
// through the state machine natively, over a write-back overlay per level
// as the kernel does: the protocol work without the PVM.
func BenchmarkMachine(b *testing.B) {
	run := sharedRun(b)
	msgs := messages(b, run.dag, 28)
	var blocks uint64
	for b.Loop() {
		st := mapStore{}
		state.Setup(st, run.committee, run.gcDepth)
		feed(b, st, msgs, 20)
		blocks = binary.BigEndian.Uint64(st["head"])
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N)/float64(blocks), "ms/subdag")
}
