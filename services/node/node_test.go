package node_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
	"github.com/tezos-dsn/dsn/internal/config"
	"github.com/tezos-dsn/dsn/internal/dsnclient"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/services/node/nodetest"
)

func makeTxs(prefix string, n, size int) [][]byte {
	txs := make([][]byte, n)
	for i := range txs {
		tx := make([]byte, size)
		copy(tx, fmt.Sprintf("%s-%08d|", prefix, i))
		txs[i] = tx
	}
	return txs
}

// orderedTxs decodes the transactions of pre-blocks, counting each.
func orderedTxs(t *testing.T, pbs []*dsnv1.PreBlock) map[string]int {
	t.Helper()
	seen, err := dsnclient.Transactions(pbs)
	if err != nil {
		t.Fatal(err)
	}
	return seen
}

// until returns a ReadExport stop function that is true once every one of
// txs has been seen.
func until(t *testing.T, txs [][]byte) func(*dsnv1.PreBlock) bool {
	want := map[string]bool{}
	for _, tx := range txs {
		want[string(tx)] = true
	}
	return func(pb *dsnv1.PreBlock) bool {
		for tx := range orderedTxs(t, []*dsnv1.PreBlock{pb}) {
			delete(want, tx)
		}
		return len(want) == 0
	}
}

func covers(seen map[string]int, txs [][]byte) bool {
	for _, tx := range txs {
		if seen[string(tx)] == 0 {
			return false
		}
	}
	return true
}

// dagTxs counts the transactions in node i's certified DAG.
func dagTxs(t *testing.T, cl *nodetest.Cluster, i int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	err := cl.Node(i).ScanCertificates(func(c *narwhal.Certificate, batches [][]byte) {
		for _, raw := range batches {
			if raw == nil {
				continue
			}
			b, err := narwhal.DecodeBatch(raw)
			if err != nil {
				t.Fatal(err)
			}
			for _, tx := range b.Transactions {
				seen[string(tx)]++
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return seen
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSevenNodesOrderEveryAcknowledgedTransactionOnce(t *testing.T) {
	cl := nodetest.Start(t, 7)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	txs := makeTxs("tx", 10_000, 64)
	start := time.Now()
	acked, err := cl.SubmitAll(ctx, []int{0, 1, 2, 3, 4, 5, 6}, 14, txs)
	if err != nil || acked != uint64(len(txs)) {
		t.Fatalf("acknowledged %d of %d: %v", acked, len(txs), err)
	}
	t.Logf("%d transactions acknowledged in %s", len(txs), time.Since(start).Round(time.Millisecond))
	var first []*dsnv1.PreBlock
	for i := 0; i < cl.Size(); i++ {
		pbs, err := cl.ReadExport(ctx, i, 0, until(t, txs))
		if err != nil {
			t.Fatalf("node %d export: %v", i, err)
		}
		ordered := orderedTxs(t, pbs)
		for _, tx := range txs {
			if n := ordered[string(tx)]; n != 1 {
				t.Fatalf("node %d ordered %q %d times", i, tx[:12], n)
			}
		}
		if first == nil {
			first = pbs
			continue
		}
		for k := 0; k < min(len(first), len(pbs)); k++ {
			a, b := first[k], pbs[k]
			if a.Index != b.Index || string(a.Leader) != string(b.Leader) || len(a.Certificates) != len(b.Certificates) {
				t.Fatalf("node %d disagrees with node 0 at pre-block %d", i, k+1)
			}
			for j := range a.Certificates {
				ca, _ := narwhal.DecodeCertificate(a.Certificates[j])
				cb, _ := narwhal.DecodeCertificate(b.Certificates[j])
				if ca.Digest() != cb.Digest() {
					t.Fatalf("node %d disagrees with node 0 inside pre-block %d", i, k+1)
				}
			}
		}
	}
	t.Logf("ordered on all nodes after %s", time.Since(start).Round(time.Millisecond))
	// The certified DAG holds every acknowledged transaction, exactly once
	// among the certificates consensus committed. Another copy can only sit
	// in a certificate consensus did not commit: when the commit rule skips
	// an own certificate, its author proposes the batch again, which is how
	// an acknowledged transaction is still ordered exactly once.
	committed := map[narwhal.Digest]bool{}
	for _, pb := range first {
		for _, raw := range pb.Certificates {
			c, _ := narwhal.DecodeCertificate(raw)
			committed[c.Digest()] = true
		}
	}
	for i := 0; i < cl.Size(); i++ {
		waitFor(t, 30*time.Second, fmt.Sprintf("node %d to store every batch", i), func() bool { return covers(dagTxs(t, cl, i), txs) })
		inCommitted := map[string]int{}
		err := cl.Node(i).ScanCertificates(func(c *narwhal.Certificate, batches [][]byte) {
			if !committed[c.Digest()] {
				return
			}
			for _, raw := range batches {
				b, err := narwhal.DecodeBatch(raw)
				if err != nil {
					t.Errorf("node %d: committed batch missing or bad: %v", i, err)
					return
				}
				for _, tx := range b.Transactions {
					inCommitted[string(tx)]++
				}
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, tx := range txs {
			if inCommitted[string(tx)] != 1 {
				t.Fatalf("node %d: %q is %d times in committed certificates", i, tx[:12], inCommitted[string(tx)])
			}
		}
	}
}

func TestProgressWithTwoNodesDownAndRestartWithoutEquivocation(t *testing.T) {
	cl := nodetest.Start(t, 7)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cl.StopNode(5)
	cl.StopNode(6)
	r0 := cl.Node(0).Status().DAGRound
	txs := makeTxs("down", 1000, 100)
	acked, err := cl.SubmitAll(ctx, []int{0, 1, 2, 3, 4}, 5, txs)
	if err != nil || acked != uint64(len(txs)) {
		t.Fatalf("acknowledged %d of %d with 2 nodes down: %v", acked, len(txs), err)
	}
	if _, err := cl.ReadExport(ctx, 1, 0, until(t, txs)); err != nil {
		t.Fatal(err)
	}
	r1 := cl.Node(0).Status().DAGRound
	if r1 <= r0+2 {
		t.Fatalf("rounds did not advance with 2 of 7 down: %d -> %d", r0, r1)
	}
	cl.StartNode(5)
	waitFor(t, time.Minute, "the restarted node to rejoin", func() bool { return cl.Node(5).Status().Round > r1 })
	more := makeTxs("after", 200, 100)
	if acked, err := cl.SubmitAll(ctx, []int{5}, 2, more); err != nil || acked != 200 {
		t.Fatalf("restarted node acknowledged %d of 200: %v", acked, err)
	}
	cl.StopNode(0) // crash-restart a node that took part throughout
	cl.StartNode(0)
	if _, err := cl.ReadExport(ctx, 0, 0, until(t, more)); err != nil {
		t.Fatal(err)
	}
	// Never two different certificates for one (author, round), on any node.
	seen := map[[2]uint64]narwhal.Digest{}
	for i := 0; i < 6; i++ {
		err := cl.Node(i).ScanCertificates(func(c *narwhal.Certificate, _ [][]byte) {
			k := [2]uint64{uint64(c.Author()), c.Round()}
			if d, ok := seen[k]; ok && d != c.Digest() {
				t.Fatalf("author %d signed two headers in round %d", c.Author(), c.Round())
			}
			seen[k] = c.Digest()
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestBadTransactionsAreRejectedClearly(t *testing.T) {
	cl := nodetest.Start(t, 4, func(c *config.Node) { c.MaxTransactionSize = 1024 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client := cl.Transactions(0)
	for _, tc := range []struct {
		tx   []byte
		want string
	}{{nil, "empty transaction"}, {make([]byte, 1025), "transaction of 1025 bytes exceeds the limit of 1024 bytes"}} {
		_, err := client.SubmitTransaction(ctx, &dsnv1.Transaction{Transaction: tc.tx})
		if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != tc.want {
			t.Errorf("got %v, want InvalidArgument %q", err, tc.want)
		}
	}
	// Far over the limit, gRPC refuses the message before buffering it:
	// its receive limit follows max_transaction_size, not the protocol's 6 MiB.
	_, err := client.SubmitTransaction(ctx, &dsnv1.Transaction{Transaction: make([]byte, 64<<10)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a 64 KiB transaction with a 1 KiB limit: %v, want ResourceExhausted", err)
	}
	if _, err := client.SubmitTransaction(ctx, &dsnv1.Transaction{Transaction: []byte("fine")}); err != nil {
		t.Fatalf("a good transaction after bad ones: %v", err)
	}
}

// Two nodes stopped for many GC depths under load and restarted: all seven
// export the same complete sequence, and the restarted nodes fetched
// batches of committed certificates that were already below their GC
// horizon (the catch-up that once stalled Export for good).
func TestRestartedNodesExportTheSameCompleteSequence(t *testing.T) {
	cl := nodetest.Start(t, 7, func(c *config.Node) { c.Consensus.GCDepth = 4 })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	before := makeTxs("before", 200, 200)
	if _, err := cl.SubmitAll(ctx, []int{0, 1, 2, 3, 4, 5, 6}, 7, before); err != nil {
		t.Fatal(err)
	}
	cl.StopNode(5)
	cl.StopNode(6)
	r0 := cl.Node(0).Status().DAGRound
	during := makeTxs("during", 3000, 200)
	if _, err := cl.SubmitAll(ctx, []int{0, 1, 2, 3, 4}, 5, during); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "rounds to pass many GC depths", func() bool { return cl.Node(0).Status().DAGRound > r0+40 })
	cl.StartNode(5)
	cl.StartNode(6)
	after := makeTxs("after", 200, 200)
	if _, err := cl.SubmitAll(ctx, []int{5, 6}, 2, after); err != nil {
		t.Fatal(err)
	}
	all := append(append(append([][]byte{}, before...), during...), after...)
	var ref []*dsnv1.PreBlock
	for i := range cl.Size() {
		pbs, err := cl.ReadExport(ctx, i, 0, until(t, all))
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		for tx, n := range orderedTxs(t, pbs) {
			if n != 1 {
				t.Fatalf("node %d ordered %q %d times", i, tx[:16], n)
			}
		}
		if ref == nil {
			ref = pbs
		}
		// Identical content: index, leader, certificate digests, batches
		// (signer sets and support may differ between nodes).
		if err := dsnclient.SamePrefix(ref, pbs); err != nil {
			t.Fatalf("node %d vs node 0: %v", i, err)
		}
	}
	below := cl.Node(5).Status().FetchedBelowGC + cl.Node(6).Status().FetchedBelowGC
	t.Logf("restarted nodes fetched %d committed batches below their GC horizon; %d pre-blocks", below, len(ref))
	if below == 0 {
		t.Fatal("the restarted nodes fetched no batch below their GC horizon: the test no longer covers that catch-up")
	}
}

// An acknowledgement does not depend on the acknowledging node: the
// transactions a node acknowledged are ordered by the others after that
// node is destroyed with its disk for good, the moment it answered.
func TestAcknowledgedSurvivesItsNodeDestroyed(t *testing.T) {
	cl := nodetest.Start(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	txs := makeTxs("doomed", 200, 100)
	acked, err := cl.SubmitAll(ctx, []int{3}, 4, txs)
	if err != nil || acked != uint64(len(txs)) {
		t.Fatalf("acknowledged %d of %d: %v", acked, len(txs), err)
	}
	// At once: node 3 stops and its data directory is erased.
	dir := cl.DataDir(3)
	cl.StopNode(3)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	pbs, err := cl.ReadExport(ctx, 0, 0, until(t, txs))
	if err != nil {
		t.Fatalf("node 0 did not order what node 3 acknowledged: %v", err)
	}
	seen := orderedTxs(t, pbs)
	for _, tx := range txs {
		if seen[string(tx)] != 1 {
			t.Fatalf("%q ordered %d times", tx[:12], seen[string(tx)])
		}
	}
}
