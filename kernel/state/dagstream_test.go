package state_test

import (
	"context"
	"testing"
	"time"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
	"github.com/tezos-dsn/dsn/internal/dsnclient"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/preblock"
	"github.com/tezos-dsn/dsn/kernel/state"
	"github.com/tezos-dsn/dsn/services/node/nodetest"
)

// A node's ExportDAG stream is what a rollup poster forwards: read live
// from a real committee, it comes in causal order with every batch, and
// fed to the kernel's state machine it yields exactly the node's Export.
func TestKernelFollowsTheNodeDAGStream(t *testing.T) {
	cl := nodetest.Start(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	txs := make([][]byte, 300)
	for i := range txs {
		txs[i] = []byte{byte(i), byte(i >> 8), 'd', 'a', 'g'}
	}
	go cl.SubmitAll(ctx, []int{0, 1}, 2, txs)

	// Follow node 1's DAG live until it passes round 40.
	var dag []state.Entry
	seen := map[narwhal.Digest]bool{}
	err := dsnclient.ReadDAG(ctx, cl.Export(1), 0, func(e *preblock.DAGEntry) bool {
		c, err := narwhal.DecodeCertificate(e.Certificate)
		if err != nil {
			t.Fatal(err)
		}
		if c.Round() > 1 {
			for _, p := range c.Header.Parents {
				if !seen[p] {
					t.Fatalf("certificate %d/%d came before its parent %s", c.Author(), c.Round(), p.Short())
				}
			}
		}
		seen[c.Digest()] = true
		if e.Withheld {
			t.Fatalf("certificate %d/%d withheld in a healthy committee", c.Author(), c.Round())
		}
		entry := state.Entry{Certificate: c}
		for j, raw := range e.Batches {
			b, err := narwhal.DecodeBatch(raw)
			if err != nil || b.Digest() != c.Header.Payload[j] {
				t.Fatalf("certificate %d/%d: batch %d does not match its digest", c.Author(), c.Round(), j)
			}
			entry.Batches = append(entry.Batches, b)
		}
		dag = append(dag, entry)
		return c.Round() < 40
	})
	if err != nil {
		t.Fatal(err)
	}
	st := mapStore{}
	state.Setup(st, cl.Committee, 50)
	feed(t, st, messages(t, dag, 16), 10)
	head, _ := state.Load(st, rollup, state.Digests{}, func(string) {})
	export, err := cl.ReadExport(ctx, 1, 0, func(pb *dsnv1.PreBlock) bool { return pb.Index >= head.Head() })
	if err != nil {
		t.Fatal(err)
	}
	got := checkAgainstExport(t, st, export)
	t.Logf("%d certificates from the live DAG stream: the kernel committed %d blocks, equal to node 1's Export", len(dag), got)
	if got < 10 {
		t.Fatalf("only %d blocks", got)
	}
}
