package sequencer_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"testing"
	"time"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
	"github.com/tezos-dsn/dsn/internal/dsnclient"
	"github.com/tezos-dsn/dsn/services/sequencer"
	"github.com/tezos-dsn/dsn/services/stacktest"
)

// Transactions through the sequencer's API reach "verified": the rollup
// node's kernel re-derived the ordering from the certificates the
// sequencer posted through the L1, and each transaction sits in the
// kernel's block at the index and position of the DSN's Export stream.
func TestTransactionsReachVerified(t *testing.T) {
	s := stacktest.Start(t, stacktest.Options{})
	_, url, _ := s.Sequencer(t)
	const n = 100
	var ids []string
	start := time.Now()
	for i := range n {
		r := do(t, "POST", url+"/v1/transactions", "application/octet-stream", fmt.Appendf(nil, "verified-tx-%03d", i))
		if r.code != http.StatusAccepted {
			t.Fatalf("tx %d: %d %s", i, r.code, r.err)
		}
		ids = append(ids, r.st.ID)
	}
	deadline := time.Now().Add(90 * time.Second)
	final := map[string]sequencer.Status{}
	for len(final) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d transactions verified after 90 s", len(final), n)
		}
		for _, id := range ids {
			if _, ok := final[id]; ok {
				continue
			}
			if r := do(t, "GET", url+"/v1/transactions/"+id, "", nil); r.st.Status == "verified" {
				final[id] = r.st
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%d transactions verified %.1f s after the first submission; rollup at L1 level %d", n, time.Since(start).Seconds(), s.Rollup.Head())
	// The kernel's blocks hold them where the DSN's Export does.
	var top uint64
	for _, st := range final {
		if *st.Block != *st.Index {
			t.Fatalf("%s: verified in block %d, ordered in pre-block %d", st.ID, *st.Block, *st.Index)
		}
		top = max(top, *st.Index)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	export, err := s.Cluster.ReadExport(ctx, 0, 0, func(pb *dsnv1.PreBlock) bool { return pb.Index >= top })
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string][2]uint64{}
	for _, pb := range export {
		ds, err := dsnclient.TransactionDigests(pb)
		if err != nil {
			t.Fatal(err)
		}
		for i, d := range ds {
			pos[hex.EncodeToString(d[:])] = [2]uint64{pb.Index, uint64(i)}
		}
	}
	for _, st := range final {
		if p, ok := pos[st.ID]; !ok || p[0] != *st.Index || p[1] != uint64(*st.Position) {
			t.Fatalf("%s: verified at %d/%d, Export has %v", st.ID, *st.Index, *st.Position, p)
		}
	}
}

// Posting survives its failures: the sequencer's upstream node is stopped
// mid-run, the sequencer is restarted (a new one resumes from the rollup's
// DAG), and a second sequencer posts the same DAG all along. Every
// submitted transaction lands in the kernel's blocks exactly once, and the
// kernel's blocks equal the DSN's Export stream.
func TestPostingSurvivesFailures(t *testing.T) {
	s := stacktest.Start(t, stacktest.Options{})
	_, a, stopA := s.Sequencer(t)
	s.Sequencer(t) // a second poster of the same DAG
	submitted := map[string]bool{}
	submit := func(url string, from, n int) {
		for i := from; i < from+n; i++ {
			tx := fmt.Appendf(nil, "survive-%04d", i)
			r := do(t, "POST", url+"/v1/transactions", "application/octet-stream", tx)
			if r.code != http.StatusAccepted {
				t.Fatalf("tx %d: %d %s", i, r.code, r.err)
			}
			submitted[r.st.ID] = true
			time.Sleep(5 * time.Millisecond)
		}
	}
	submit(a, 0, 100)
	s.Cluster.StopNode(0) // every sequencer's first node: submission and the DAG stream fail over
	submit(a, 100, 100)
	stopA()
	_, a2, _ := s.Sequencer(t) // restarted: resumes from the rollup's DAG
	submit(a2, 200, 100)

	// Wait until the kernel's blocks hold every transaction.
	deadline := time.Now().Add(2 * time.Minute)
	var head uint64
	seen := map[string]int{}
	for {
		for n := head + 1; n <= s.KernelHead(); n++ {
			b, err := s.KernelBlock(n)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range b.Transactions {
				seen[hex.EncodeToString(d[:])]++
			}
			head = n
		}
		all := true
		for id := range submitted {
			all = all && seen[id] > 0
		}
		if all {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 2 minutes the kernel's blocks 1..%d hold %d of %d transactions", head, len(seen), len(submitted))
		}
		time.Sleep(200 * time.Millisecond)
	}
	for id := range submitted {
		if seen[id] != 1 {
			t.Fatalf("%s is %d times in the kernel's blocks", id, seen[id])
		}
	}
	// The kernel's blocks 1..head equal node 1's Export.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	export, err := s.Cluster.ReadExport(ctx, 1, 0, func(pb *dsnv1.PreBlock) bool { return pb.Index >= head })
	if err != nil {
		t.Fatal(err)
	}
	for _, pb := range export {
		b, err := s.KernelBlock(pb.Index)
		if err != nil {
			t.Fatal(err)
		}
		if err := stacktest.SameAsPreBlock(b, pb); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d transactions, each once in the kernel's %d blocks, equal to the DSN's Export, through a node failure, a sequencer restart and a second poster", len(submitted), head)
}
