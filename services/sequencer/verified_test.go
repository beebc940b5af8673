package sequencer_test

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/blake2b"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
	"github.com/tezos-dsn/dsn/internal/config"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/pvm"
	"github.com/tezos-dsn/dsn/internal/tezos"
	"github.com/tezos-dsn/dsn/internal/wasmlink"
	"github.com/tezos-dsn/dsn/kernel/state"
	"github.com/tezos-dsn/dsn/services/node/nodetest"
	"github.com/tezos-dsn/dsn/services/rollupnode"
	"github.com/tezos-dsn/dsn/services/sandbox"
	"github.com/tezos-dsn/dsn/services/sequencer"
)

// stack is a whole DSN in one process: a committee, the L1 sandbox, a
// rollup node running the DSN kernel (built from kernel/dsn) and
// sequencers posting to it.
type stack struct {
	cl     *nodetest.Cluster
	eps    []sequencer.Endpoint // the nodes' addresses, taken while all run
	rollup string               // rollup node RPC URL
	node   *rollupnode.Node
}

func startStack(t *testing.T, nodes int) *stack {
	t.Helper()
	kernel, err := wasmlink.Build(context.Background(), "../..", "./kernel/dsn")
	if err != nil {
		t.Fatal(err)
	}
	cl := nodetest.Start(t, nodes)
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())

	sbCfg := sandbox.TestConfig(t.TempDir())
	sbCfg.BlockTime.Duration = 250 * time.Millisecond
	sb, err := sandbox.New(sbCfg, log)
	if err != nil {
		t.Fatal(err)
	}
	sbDone := make(chan struct{})
	go func() { sb.Run(ctx); close(sbDone) }()
	for sb.Addr() == "" {
		time.Sleep(5 * time.Millisecond)
	}

	dir := t.TempDir()
	kernelFile, setupFile := filepath.Join(dir, "dsn.wasm"), filepath.Join(dir, "setup.json")
	d := pvm.NewDurable()
	state.Setup(d.Under("/dsn/"), cl.Committee, config.TestNode().Consensus.GCDepth)
	setup, _ := json.Marshal(pvm.SetupFrom(d, "/dsn"))
	if err := os.WriteFile(kernelFile, kernel, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(setupFile, setup, 0o644); err != nil {
		t.Fatal(err)
	}
	rc := rollupnode.DefaultConfig()
	rc.DataDir, rc.L1, rc.Rollup = filepath.Join(dir, "rollup"), "http://"+sb.Addr(), "sr18hRM2ke5FCVvjhqkDAhGPMzbPCrzJ8wrU"
	rc.BootSectorFile, rc.SetupFile = kernelFile, setupFile
	for _, a := range tezos.BootstrapAccounts[:3] {
		rc.BatchingKeys = append(rc.BatchingKeys, a.SecretKey)
	}
	rn, err := rollupnode.Open(ctx, rc, log)
	if err != nil {
		t.Fatal(err)
	}
	rnDone := make(chan struct{})
	go func() { rn.Run(ctx); close(rnDone) }()
	srv := httptest.NewServer(rn.Handler())
	t.Cleanup(func() {
		srv.Close()
		cancel()
		<-rnDone
		<-sbDone
		rn.Close()
	})
	var eps []sequencer.Endpoint
	for i := range cl.Size() {
		eps = append(eps, sequencer.Endpoint{Transactions: cl.Node(i).Addr("transactions"), Export: cl.Node(i).Addr("export")})
	}
	return &stack{cl: cl, eps: eps, rollup: srv.URL, node: rn}
}

// sequencerFor starts a sequencer that posts to the stack's rollup node.
func (s *stack) sequencerFor(t *testing.T) (*httptest.Server, context.CancelFunc) {
	t.Helper()
	cfg := sequencer.DefaultConfig(s.eps)
	cfg.Rollup = s.rollup
	seq, err := sequencer.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go seq.Follow(ctx)
	go seq.Post(ctx)
	srv := httptest.NewServer(seq.Handler())
	t.Cleanup(func() { srv.Close(); cancel(); seq.Close() })
	return srv, cancel
}

// Transactions through the sequencer's API reach "verified": the rollup
// node's kernel re-derived the ordering from the certificates the
// sequencer posted through the L1, and each transaction sits in the
// kernel's block at the index and position of the DSN's Export stream.
func TestTransactionsReachVerified(t *testing.T) {
	s := startStack(t, 4)
	srv, _ := s.sequencerFor(t)
	const n = 100
	var ids []string
	start := time.Now()
	for i := range n {
		r := do(t, "POST", srv.URL+"/v1/transactions", "application/octet-stream", fmt.Appendf(nil, "verified-tx-%03d", i))
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
			if r := do(t, "GET", srv.URL+"/v1/transactions/"+id, "", nil); r.st.Status == "verified" {
				final[id] = r.st
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%d transactions verified %.1f s after the first submission; rollup at L1 level %d", n, time.Since(start).Seconds(), s.node.Head())
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
	export, err := s.cl.ReadExport(ctx, 0, 0, func(pb *dsnv1.PreBlock) bool { return pb.Index >= top })
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string][2]uint64{}
	for _, pb := range export {
		for i, id := range txIDs(t, pb) {
			pos[id] = [2]uint64{pb.Index, uint64(i)}
		}
	}
	for _, st := range final {
		if p, ok := pos[st.ID]; !ok || p[0] != *st.Index || p[1] != uint64(*st.Position) {
			t.Fatalf("%s: verified at %d/%d, Export has %v", st.ID, *st.Index, *st.Position, p)
		}
	}
}

// txIDs lists a pre-block's transaction ids (hex BLAKE2b-256) in order.
func txIDs(t *testing.T, pb *dsnv1.PreBlock) []string {
	t.Helper()
	var out []string
	for _, cb := range pb.Batches {
		for _, raw := range cb.Batches {
			b, err := narwhal.DecodeBatch(raw)
			if err != nil {
				t.Fatal(err)
			}
			for _, tx := range b.Transactions {
				d := blake2b.Sum256(tx)
				out = append(out, hex.EncodeToString(d[:]))
			}
		}
	}
	return out
}

// rollupValue reads a durable value at the rollup node's head.
func rollupValue(t *testing.T, base, key string) ([]byte, bool) {
	t.Helper()
	resp, err := http.Get(base + "/global/block/head/durable/wasm_2_0_0/value?key=" + key)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h *string
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil || h == nil {
		return nil, false
	}
	v, err := hex.DecodeString(*h)
	return v, err == nil
}

type oneValue []byte

func (v oneValue) Get(string) ([]byte, bool) { return v, true }
func (oneValue) Put(string, []byte)          {}
func (oneValue) Delete(string)               {}

// Posting survives its failures: the sequencer's upstream node is stopped
// mid-run, the sequencer is restarted (a new one resumes from the rollup's
// DAG), and a second sequencer posts the same DAG all along. Every
// submitted transaction lands in the kernel's blocks exactly once, and the
// kernel's blocks equal the DSN's Export stream.
func TestPostingSurvivesFailures(t *testing.T) {
	s := startStack(t, 4)
	a, stopA := s.sequencerFor(t)
	s.sequencerFor(t) // a second poster of the same DAG
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
	submit(a.URL, 0, 100)
	s.cl.StopNode(0) // every sequencer's first node: submission and the DAG stream fail over
	submit(a.URL, 100, 100)
	stopA()
	a2, _ := s.sequencerFor(t) // restarted: resumes from the rollup's DAG
	submit(a2.URL, 200, 100)

	// Wait until the kernel's blocks hold every transaction.
	deadline := time.Now().Add(2 * time.Minute)
	var head uint64
	seen := map[string]int{}
	for {
		if v, ok := rollupValue(t, s.rollup, "/dsn/head"); ok && len(v) == 8 {
			for n := head + 1; n <= binary.BigEndian.Uint64(v); n++ {
				raw, ok := rollupValue(t, s.rollup, fmt.Sprintf("/dsn/blocks/%d", n))
				if !ok {
					t.Fatalf("block %d not readable", n)
				}
				b, _, err := state.ReadBlock(oneValue(raw), 0)
				if err != nil {
					t.Fatal(err)
				}
				for _, d := range b.Transactions {
					seen[hex.EncodeToString(d[:])]++
				}
				head = n
			}
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
	export, err := s.cl.ReadExport(ctx, 1, 0, func(pb *dsnv1.PreBlock) bool { return pb.Index >= head })
	if err != nil {
		t.Fatal(err)
	}
	for _, pb := range export {
		raw, _ := rollupValue(t, s.rollup, fmt.Sprintf("/dsn/blocks/%d", pb.Index))
		b, _, err := state.ReadBlock(oneValue(raw), 0)
		if err != nil || b.Leader != narwhal.Digest(pb.Leader) {
			t.Fatalf("block %d: %v, or its leader differs from the pre-block's", pb.Index, err)
		}
		want := txIDs(t, pb)
		if len(want) != len(b.Transactions) {
			t.Fatalf("block %d: %d transactions, pre-block %d", pb.Index, len(b.Transactions), len(want))
		}
		for i, d := range b.Transactions {
			if hex.EncodeToString(d[:]) != want[i] {
				t.Fatalf("block %d: transaction %d differs", pb.Index, i)
			}
		}
	}
	t.Logf("%d transactions, each once in the kernel's %d blocks, equal to the DSN's Export, through a node failure, a sequencer restart and a second poster", len(submitted), head)
}
