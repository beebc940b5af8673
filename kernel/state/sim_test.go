package state_test

import (
	"encoding/binary"
	"testing"

	"golang.org/x/crypto/blake2b"

	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/sim"
	"github.com/tezos-dsn/dsn/kernel/state"
)

// The kernel replays simulator runs with faults — lossy links, a partition,
// crashes, Byzantine equivocators, voters for everything, withholders and
// garbage, a long outage — from an honest node's DAG, and commits exactly
// the sequence that node committed.
func TestKernelReplaysSimulatorRuns(t *testing.T) {
	for mix := range sim.Mixes {
		seed := int64(100 + mix)
		opts := sim.OptionsForMix(seed, mix)
		node := 0
		for opts.Byzantine[node] != sim.Honest {
			node++
		}
		out, _, err := sim.RunOutcome(opts, node)
		if err != nil {
			t.Fatalf("mix %d: %v", mix, err)
		}
		var dag []state.Entry
		for _, e := range out.DAG {
			complete := true
			for _, b := range e.Batches {
				complete = complete && b != nil
			}
			if complete {
				dag = append(dag, state.Entry{Certificate: e.Certificate, Batches: e.Batches})
			}
		}
		st := mapStore{}
		state.Setup(st, out.Committee, out.GCDepth)
		feed(t, st, messages(t, dag, 21), 40)
		head := binary.BigEndian.Uint64(st["head"])
		if head+2 < uint64(len(out.Committed)) || head > uint64(len(out.Committed)) {
			t.Fatalf("mix %d: kernel head %d, node committed %d", mix, head, len(out.Committed))
		}
		for _, sd := range out.Committed[:head] {
			b, ok, err := state.ReadBlock(st, sd.Index)
			if err != nil || !ok {
				t.Fatalf("mix %d block %d: %v", mix, sd.Index, err)
			}
			if b.Leader != sd.Leader.Digest() {
				t.Fatalf("mix %d block %d: another leader", mix, sd.Index)
			}
			var want []narwhal.Digest
			for _, c := range sd.Certificates {
				for _, e := range out.DAG {
					if e.Certificate.Digest() == c.Digest() {
						for _, batch := range e.Batches {
							for _, tx := range batch.Transactions {
								want = append(want, blake2b.Sum256(tx))
							}
						}
					}
				}
			}
			if len(want) != len(b.Transactions) {
				t.Fatalf("mix %d block %d: %d transactions, the node %d", mix, sd.Index, len(b.Transactions), len(want))
			}
			for i := range want {
				if want[i] != b.Transactions[i] {
					t.Fatalf("mix %d block %d: transaction %d differs", mix, sd.Index, i)
				}
			}
		}
		t.Logf("mix %d (%s): %d certificates, kernel committed %d of the node's %d sub-DAGs identically", mix, opts, len(dag), head, len(out.Committed))
	}
}
