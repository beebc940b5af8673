package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
	"github.com/tezos-dsn/dsn/internal/dsnclient"
	"github.com/tezos-dsn/dsn/internal/load"
	"github.com/tezos-dsn/dsn/lab"
)

// TestSevenNodes runs the whole lab in containers — 7 consensus nodes, the
// sequencer, the rollup node and the L1 sandbox: load in, identical
// pre-blocks out of every node, every acknowledged transaction ordered
// exactly once; transactions through the sequencer's API reach "verified"
// (the rollup node's kernel re-derived the ordering from the certificates
// the sequencer posted through the L1), and the kernel's blocks equal the
// nodes' pre-blocks; then two nodes killed (SIGKILL) under load, commits
// go on, and once restarted they export the same complete sequence, which
// the kernel verifies too.
func TestSevenNodes(t *testing.T) {
	start := time.Now()
	l := startLab(t, 7)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	l.WaitCommitting(ctx)
	t.Logf("7 containers up and committing %s after start", time.Since(start).Round(100*time.Millisecond))
	// The lab's nodes serve Go's profiles beside their metrics (profiling).
	if resp, err := http.Get("http://" + l.addr(1, lab.MetricsPort) + "/debug/pprof/cmdline"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("node 1's /debug/pprof/cmdline: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	rng := rand.New(rand.NewPCG(1, 2))
	stamped := func(first, n int) [][]byte {
		var txs [][]byte
		for i := range n {
			txs = append(txs, load.Make(rng, 512, time.Now(), uint64(first+i)))
		}
		return txs
	}
	all := map[string]bool{}
	// Clients are made once: finding a published port runs docker-compose
	// (about 0.3 s), which must not count in the figures below.
	txClients := map[int]dsnv1.TransactionsClient{}
	for n := 1; n <= 7; n++ {
		txClients[n] = l.Transactions(n)
	}
	submit := func(via []int, txs [][]byte) {
		t.Helper()
		var clients []dsnv1.TransactionsClient
		for _, n := range via {
			clients = append(clients, txClients[n])
		}
		acked, err := dsnclient.SubmitAll(ctx, clients, len(via), txs)
		if err != nil || acked != uint64(len(txs)) {
			t.Fatalf("acknowledged %d of %d: %v", acked, len(txs), err)
		}
		for _, tx := range txs {
			all[string(tx)] = true
		}
	}
	// follow reads node n from the start until every submitted transaction
	// is in, and checks each is there exactly once.
	follow := func(n int) []*dsnv1.PreBlock {
		t.Helper()
		want := len(all)
		var seen int
		pbs, err := dsnclient.ReadExport(ctx, l.Export(n), 0, func(pb *dsnv1.PreBlock) bool {
			got, err := dsnclient.Transactions([]*dsnv1.PreBlock{pb})
			if err != nil {
				t.Errorf("node %d: %v", n, err)
				return true
			}
			for tx := range got {
				if all[tx] {
					seen++
				}
			}
			return seen >= want
		})
		if err != nil {
			t.Fatalf("node %d export: %v (saw %d of %d)", n, err, seen, want)
		}
		got, err := dsnclient.Transactions(pbs)
		if err != nil {
			t.Fatal(err)
		}
		for tx := range all {
			if got[tx] != 1 {
				t.Fatalf("node %d ordered a transaction %d times", n, got[tx])
			}
		}
		return pbs
	}
	agree := func(ref []*dsnv1.PreBlock, n int, pbs []*dsnv1.PreBlock) {
		t.Helper()
		if err := dsnclient.SamePrefix(ref, pbs); err != nil {
			t.Fatalf("node %d vs node 1: %v", n, err)
		}
	}

	// Ordering: 600 transactions through three nodes.
	sent := time.Now()
	submit([]int{1, 2, 3}, stamped(1, 600))
	acked := time.Since(sent)
	ref := follow(1)
	t.Logf("600 transactions of 512 bytes: all acknowledged %s and all ordered on node 1 %s after the first was sent",
		acked.Round(time.Millisecond), time.Since(sent).Round(time.Millisecond))
	for n := 2; n <= 7; n++ {
		agree(ref, n, follow(n))
	}

	// Through the sequencer's HTTP API: each transaction reaches
	// "verified" (services/sequencer's tests check the index and position
	// against Export), and the nodes agree on the result.
	seqURL := "http://" + l.addr(0, lab.SequencerPort)
	var viaAPI []string
	for i := range 20 {
		tx := []byte(fmt.Sprintf("via-sequencer-%02d", i))
		resp, err := http.Post(seqURL+"/v1/transactions", "application/octet-stream", bytes.NewReader(tx))
		if err != nil {
			t.Fatal(err)
		}
		var st struct{ ID, Status string }
		json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("sequencer: %s", resp.Status)
		}
		viaAPI = append(viaAPI, st.ID)
		all[string(tx)] = true
	}
	posted := time.Now()
	waitFor(t, 2*time.Minute, "the sequencer to report every transaction verified", func() bool {
		for _, id := range viaAPI {
			resp, err := http.Get(seqURL + "/v1/transactions/" + id)
			if err != nil {
				return false
			}
			var st struct{ Status string }
			json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if st.Status != "verified" {
				return false
			}
		}
		return true
	})
	t.Logf("20 transactions through the sequencer verified by the kernel %s after the first was posted", time.Since(posted).Round(time.Millisecond))
	ref = follow(1)
	l.KernelAgrees(ref)

	// Two nodes killed with SIGKILL under load: the other five go on.
	l.Kill(lab.Service(6))
	l.Kill(lab.Service(7))
	submit([]int{1, 4, 5}, stamped(1001, 600))
	agree(ref, 1, follow(1))

	// Restarted from their volumes, they catch up and export the same
	// complete sequence as everyone else.
	l.Start(lab.Service(6))
	l.Start(lab.Service(7))
	// A restarted container gets new host ports (Docker chooses them).
	txClients[6], txClients[7] = l.Transactions(6), l.Transactions(7)
	submit([]int{6, 7}, stamped(2001, 100))
	ref = follow(1)
	for n := 2; n <= 7; n++ {
		agree(ref, n, follow(n))
	}
	blocks := l.KernelAgrees(ref)
	t.Logf("%d pre-blocks identical on all 7 nodes after 2 were killed and restarted, the first %d verified by the kernel; e2e wall time %s",
		len(ref), blocks, time.Since(start).Round(100*time.Millisecond))
}
