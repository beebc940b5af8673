package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
	"github.com/tezos-dsn/dsn/internal/dsnclient"
	"github.com/tezos-dsn/dsn/lab"
)

// TestPartition cuts the 7-node lab 4|3 (no side holds a quorum of 5: no
// commit anywhere, no fork), heals it (commits resume), then cuts it 5|2
// (the majority orders transactions alone; the minority catches up after
// the heal). All nodes end with the same pre-blocks.
func TestPartition(t *testing.T) {
	l := startLab(t, 7)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	committed := func(n int) float64 { return l.Committed(ctx, n) }
	l.WaitCommitting(ctx)

	// 4|3: nothing may commit on either side once in-flight messages settle.
	for _, n := range []int{5, 6, 7} {
		l.Partition(lab.Service(n))
	}
	time.Sleep(2 * time.Second) // settle: what was in flight may still commit
	before := [8]float64{}
	for n := 1; n <= 4; n++ {
		before[n] = committed(n)
	}
	time.Sleep(4 * time.Second) // the property is "nothing happens": there is no event to wait for
	for n := 1; n <= 4; n++ {
		if c := committed(n); c != before[n] {
			t.Fatalf("node %d committed %v -> %v without a quorum (4|3)", n, before[n], c)
		}
	}
	for _, n := range []int{5, 6, 7} {
		l.Heal(lab.Service(n))
	}
	waitFor(t, time.Minute, "commits to resume after the 4|3 heal", func() bool { return committed(1) > before[1]+2 })

	// 5|2: the majority orders transactions on its own.
	l.Partition(lab.Service(6))
	l.Partition(lab.Service(7))
	txs := make([][]byte, 200)
	for i := range txs {
		txs[i] = []byte(fmt.Sprintf("partition-tx-%04d", i))
	}
	acked, err := dsnclient.SubmitAll(ctx, []dsnv1.TransactionsClient{l.Transactions(1), l.Transactions(2)}, 2, txs)
	if err != nil || acked != uint64(len(txs)) {
		t.Fatalf("the 5-node majority acknowledged %d of %d: %v", acked, len(txs), err)
	}
	want := map[string]bool{}
	for _, tx := range txs {
		want[string(tx)] = true
	}
	until := func(pb *dsnv1.PreBlock) bool {
		got, _ := dsnclient.Transactions([]*dsnv1.PreBlock{pb})
		for tx := range got {
			delete(want, tx)
		}
		return len(want) == 0
	}
	if _, err := dsnclient.ReadExport(ctx, l.Export(1), 0, until); err != nil {
		t.Fatalf("majority: %v", err)
	}
	l.Heal(lab.Service(6))
	l.Heal(lab.Service(7))
	var ref []*dsnv1.PreBlock
	for n := 1; n <= 7; n++ {
		for _, tx := range txs {
			want[string(tx)] = true
		}
		pbs, err := dsnclient.ReadExport(ctx, l.Export(n), 0, until)
		if err != nil {
			t.Fatalf("node %d after the heal: %v", n, err)
		}
		if ref == nil {
			ref = pbs
		}
		if err := dsnclient.SamePrefix(ref, pbs); err != nil {
			t.Fatalf("node %d vs node 1 after the partitions: %v", n, err)
		}
	}
	t.Logf("4|3 held still, 5|2 ordered %d transactions on the majority; %d pre-blocks identical on all 7 after healing", len(txs), len(ref))
}

// TestPauseTwo freezes two containers (SIGSTOP through docker pause): the
// other five go on committing; unpaused, the two catch up and export the
// same pre-blocks as the rest.
func TestPauseTwo(t *testing.T) {
	l := startLab(t, 7)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	committed := func(n int) float64 { return l.Committed(ctx, n) }
	l.WaitCommitting(ctx)
	l.Pause(lab.Service(3))
	l.Pause(lab.Service(4))
	c0 := committed(1)
	waitFor(t, time.Minute, "commits with 2 of 7 frozen", func() bool { return committed(1) >= c0+5 })
	l.Unpause(lab.Service(3))
	l.Unpause(lab.Service(4))
	target := committed(1)
	waitFor(t, time.Minute, "the unfrozen nodes to catch up", func() bool { return committed(3) >= target && committed(4) >= target })
	var ref []*dsnv1.PreBlock
	for n := 1; n <= 7; n++ {
		pbs, err := dsnclient.ReadExport(ctx, l.Export(n), 0, func(pb *dsnv1.PreBlock) bool { return float64(pb.Index) >= target })
		if err != nil {
			t.Fatalf("node %d: %v", n, err)
		}
		if ref == nil {
			ref = pbs
		}
		if err := dsnclient.SamePrefix(ref, pbs); err != nil {
			t.Fatalf("node %d vs node 1: %v", n, err)
		}
	}
	t.Logf("2 of 7 frozen: commits went on (%v -> %v); unfrozen, all 7 export the same %d pre-blocks", c0, target, len(ref))
}
