package sequencer_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
	"github.com/tezos-dsn/dsn/internal/dsnclient"
	"github.com/tezos-dsn/dsn/services/node/nodetest"
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
	// The event stream, opened before the first submission.
	events, err := http.Get(url + "/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer events.Body.Close()
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
	// The stream said each transaction was ordered, then verified.
	kinds := map[string]string{}
	sc := bufio.NewScanner(events.Body)
	sc.Buffer(nil, 1<<20)
	var kind string
	for len(kinds) < n || !allVerified(kinds) {
		if !sc.Scan() {
			t.Fatalf("event stream ended: %v (%d transactions seen)", sc.Err(), len(kinds))
		}
		line := sc.Text()
		if k, ok := strings.CutPrefix(line, "event: "); ok {
			kind = k
		} else if d, ok := strings.CutPrefix(line, "data: "); ok {
			var st sequencer.Status
			if err := json.Unmarshal([]byte(d), &st); err != nil || st.Status != kind {
				t.Fatalf("event %q with data %s", kind, d)
			}
			if kinds[st.ID] == "" && kind != "ordered" || kinds[st.ID] == "verified" {
				t.Fatalf("%s: event %s after %q", st.ID, kind, kinds[st.ID])
			}
			kinds[st.ID] = kind
		}
	}
	// The rollup's view through the API: head, the block, the committee.
	var head struct {
		Block        uint64 `json:"block"`
		OrderingHash string `json:"ordering_hash"`
	}
	getJSON(t, url+"/v1/head", &head)
	if head.Block < top || len(head.OrderingHash) != 64 {
		t.Fatalf("head %+v, want a block ≥ %d and an ordering hash", head, top)
	}
	var one sequencer.Status
	for _, st := range final {
		one = st
		break
	}
	var blk struct{ Transactions []string }
	getJSON(t, fmt.Sprintf("%s/v1/blocks/%d", url, *one.Block), &blk)
	if *one.Position >= len(blk.Transactions) || blk.Transactions[*one.Position] != one.ID {
		t.Fatalf("GET /v1/blocks/%d does not hold %s at %d", *one.Block, one.ID, *one.Position)
	}
	var auth struct{ Authorities []struct{ Stake uint64 } }
	getJSON(t, url+"/v1/authorities", &auth)
	if len(auth.Authorities) != s.Cluster.Size() {
		t.Fatalf("GET /v1/authorities: %d authorities, want %d", len(auth.Authorities), s.Cluster.Size())
	}
	if r := do(t, "GET", url+"/v1/blocks/999999999", "", nil); r.code != http.StatusNotFound {
		t.Fatalf("a block not yet written: %d", r.code)
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

// Posting survives its failures, on a 7-node committee with 1,000
// transactions from 8 clients: the sequencer's upstream node is stopped
// mid-run, the sequencer is restarted (a new one resumes from the rollup's
// DAG), and a second sequencer posts the same DAG all along. Every
// submitted transaction lands in the kernel's blocks exactly once, and the
// kernel's blocks equal the DSN's Export stream.
func TestPostingSurvivesFailures(t *testing.T) {
	s := stacktest.Start(t, stacktest.Options{Nodes: 7})
	_, a, stopA := s.Sequencer(t)
	s.Sequencer(t) // a second poster of the same DAG
	submitted := map[string]bool{}
	submit := func(url string, from, n int) { submitAll(t, url, "survive", from, n, submitted) }
	submit(a, 0, 400)
	s.Cluster.StopNode(0) // every sequencer's first node: submission and the DAG stream fail over
	submit(a, 400, 300)
	stopA()
	_, a2, _ := s.Sequencer(t) // restarted: resumes from the rollup's DAG
	submit(a2, 700, 300)
	head := kernelHoldsOnce(t, s, submitted)
	t.Logf("%d transactions, each once in the kernel's %d blocks, equal to the DSN's Export, through a node failure, a sequencer restart and a second poster", len(submitted), head)
}

// Two sequencers taking turns post each window of rounds once between
// them; when one stops, the other posts its turns after PostFailover, and
// every transaction still lands once in the kernel's blocks. (A turn late
// by PostFailover is taken over by design, and a loaded machine — CI runs
// packages side by side — can stall the rollup that long now and then: a
// few certificates taken while both run is allowed, a quarter is not.)
func TestPostingInTurns(t *testing.T) {
	s := stacktest.Start(t, stacktest.Options{})
	turn := func(i int) func(*sequencer.Config) {
		return func(c *sequencer.Config) {
			c.PostTurn, c.PostTurns, c.PostWindow, c.PostFailover = i, 2, 10, 5*time.Second
		}
	}
	seqA, a, _ := s.SequencerWith(t, turn(0))
	seqB, b, stopB := s.SequencerWith(t, turn(1))
	submitted := map[string]bool{}
	submit := func(url string, from, n int) { submitAll(t, url, "turns", from, n, submitted) }
	submit(a, 0, 100)
	submit(b, 100, 100)
	kernelHoldsOnce(t, s, submitted)
	pa, pb := seqA.PostedBytes(), seqB.PostedBytes()
	ca, cb, ta, tb := seqA.PostedCertificates(), seqB.PostedCertificates(), seqA.TurnCertificatesTaken(), seqB.TurnCertificatesTaken()
	t.Logf("posted in turns: A %d bytes, %d certificates (%d of B's turns); B %d bytes, %d certificates (%d of A's)", pa, ca, ta, pb, cb, tb)
	if pa == 0 || pb == 0 || 4*ta > ca || 4*tb > cb {
		t.Fatalf("turns not shared: A posted %d certificates, %d of them B's turns; B %d, %d of them A's", ca, ta, cb, tb)
	}
	stopB()
	submit(a, 200, 100)
	head := kernelHoldsOnce(t, s, submitted)
	if seqA.TurnCertificatesTaken() == ta {
		t.Fatal("B stopped, yet A posted none of its turns")
	}
	t.Logf("B stopped: A posted %d more bytes, %d certificates of B's turns; %d transactions once in the kernel's %d blocks",
		seqA.PostedBytes()-pa, seqA.TurnCertificatesTaken()-ta, len(submitted), head)
}

// submitAll posts transactions <prefix>-<from>… to <from+n-1> through the
// API at url from 8 clients at once (each waits for its acknowledgement)
// and adds their ids to submitted.
func submitAll(t *testing.T, url, prefix string, from, n int, submitted map[string]bool) {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	var failed []string
	next := from
	for range 8 {
		wg.Go(func() {
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= from+n {
					return
				}
				resp, err := http.Post(url+"/v1/transactions", "application/octet-stream", bytes.NewReader(fmt.Appendf(nil, "%s-%04d", prefix, i)))
				if err != nil {
					mu.Lock()
					failed = append(failed, fmt.Sprintf("tx %d: %v", i, err))
					mu.Unlock()
					continue
				}
				var st sequencer.Status
				json.NewDecoder(resp.Body).Decode(&st)
				resp.Body.Close()
				mu.Lock()
				if resp.StatusCode != http.StatusAccepted {
					failed = append(failed, fmt.Sprintf("tx %d: %s", i, resp.Status))
				} else {
					submitted[st.ID] = true
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d of %d submissions failed, first: %s", len(failed), n, failed[0])
	}
}

// kernelHoldsOnce waits until the kernel's blocks hold every submitted
// transaction, checks that each is there once and that the blocks equal
// node 1's Export, and returns the kernel's head.
func kernelHoldsOnce(t *testing.T, s *stacktest.Stack, submitted map[string]bool) uint64 {
	t.Helper()
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
	return head
}

func allVerified(kinds map[string]string) bool {
	for _, k := range kinds {
		if k != "verified" {
			return false
		}
	}
	return true
}

func getJSON(t *testing.T, url string, out any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// With --mock-rollup (no rollup node, no L1) the sequencer runs the
// kernel's state machine itself: transactions reach "verified" in its
// blocks, at the index and position of the DSN's Export.
func TestMockRollupVerifies(t *testing.T) {
	cl := nodetest.Start(t, 4)
	var eps []sequencer.Endpoint
	for i := range cl.Size() {
		eps = append(eps, sequencer.Endpoint{Transactions: cl.Node(i).Addr("transactions"), Export: cl.Node(i).Addr("export")})
	}
	cfg := sequencer.DefaultConfig(eps)
	cfg.MockRollup = cl.Committee
	seq, err := sequencer.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go seq.Follow(ctx)
	go seq.Post(ctx)
	srv := httptest.NewServer(seq.Handler())
	defer srv.Close()
	var ids []string
	for i := range 30 {
		r := do(t, "POST", srv.URL+"/v1/transactions", "application/octet-stream", fmt.Appendf(nil, "mock-%02d", i))
		if r.code != http.StatusAccepted {
			t.Fatalf("tx %d: %d %s", i, r.code, r.err)
		}
		ids = append(ids, r.st.ID)
	}
	deadline := time.Now().Add(time.Minute)
	for _, id := range ids {
		for {
			r := do(t, "GET", srv.URL+"/v1/transactions/"+id, "", nil)
			if r.st.Status == "verified" {
				if *r.st.Block != *r.st.Index {
					t.Fatalf("%s: block %d, index %d", id, *r.st.Block, *r.st.Index)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s after a minute", id, r.st.Status)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	var head struct{ Block uint64 }
	getJSON(t, srv.URL+"/v1/head", &head)
	if head.Block == 0 {
		t.Fatal("GET /v1/head: no block")
	}
}
