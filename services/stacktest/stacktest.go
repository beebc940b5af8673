// Package stacktest runs the whole DSN in one process for tests and
// benchmarks: a committee (services/node/nodetest), the L1 sandbox, a
// rollup node running the DSN kernel built from kernel/dsn, and sequencers
// posting to it — the same services the lab runs in containers.
package stacktest

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
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
	"github.com/tezos-dsn/dsn/internal/config"
	"github.com/tezos-dsn/dsn/internal/dsnclient"
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

// Options shape a stack.
type Options struct {
	Nodes        int           // committee size (default 4)
	BlockTime    time.Duration // the sandbox's level interval (default 250 ms)
	BatchingKeys int           // the rollup node's batching accounts (default 3, at most tezos.SandboxAccountCount)
	NodeOptions  []nodetest.Option
}

// Stack is a running in-process DSN.
type Stack struct {
	Cluster   *nodetest.Cluster
	Endpoints []sequencer.Endpoint // the nodes' APIs, taken while all run
	RollupURL string               // the rollup node's RPC
	Rollup    *rollupnode.Node
	L1URL     string // the sandbox's RPC
}

var (
	kernelOnce sync.Once
	kernel     []byte
	kernelErr  error
)

// Kernel returns the DSN kernel, built from kernel/dsn once per process.
func Kernel(tb testing.TB) []byte {
	tb.Helper()
	kernelOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		kernel, kernelErr = wasmlink.Build(context.Background(), root, "./kernel/dsn")
	})
	if kernelErr != nil {
		tb.Fatal(kernelErr)
	}
	return kernel
}

// RollupAddress is the stack rollup's address.
const RollupAddress = "sr18hRM2ke5FCVvjhqkDAhGPMzbPCrzJ8wrU"

// Start runs a stack; everything stops at the end of the test.
func Start(tb testing.TB, o Options) *Stack {
	tb.Helper()
	if o.Nodes == 0 {
		o.Nodes = 4
	}
	if o.BlockTime == 0 {
		o.BlockTime = 250 * time.Millisecond
	}
	if o.BatchingKeys == 0 {
		o.BatchingKeys = 3
	}
	k := Kernel(tb)
	cl := nodetest.Start(tb, o.Nodes, o.NodeOptions...)
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())

	sb := StartSandbox(tb, o.BlockTime)

	dir := tb.TempDir()
	kernelFile, setupFile := filepath.Join(dir, "dsn.wasm"), filepath.Join(dir, "setup.json")
	d := pvm.NewDurable()
	state.Setup(d.Under("/dsn/"), cl.Committee, config.TestNode().Consensus.GCDepth)
	setup, _ := json.Marshal(pvm.SetupFrom(d, "/dsn"))
	if err := os.WriteFile(kernelFile, k, 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(setupFile, setup, 0o644); err != nil {
		tb.Fatal(err)
	}
	rc := rollupnode.DefaultConfig()
	rc.DataDir, rc.L1, rc.Rollup = filepath.Join(dir, "rollup"), "http://"+sb.Addr(), RollupAddress
	rc.BootSectorFile, rc.SetupFile = kernelFile, setupFile
	for _, a := range tezos.SandboxAccounts(o.BatchingKeys) {
		rc.BatchingKeys = append(rc.BatchingKeys, a.SecretKey)
	}
	rn, err := rollupnode.Open(ctx, rc, log)
	if err != nil {
		tb.Fatal(err)
	}
	rnDone := make(chan struct{})
	go func() { rn.Run(ctx); close(rnDone) }()
	srv := httptest.NewServer(rn.Handler())
	tb.Cleanup(func() {
		srv.Close()
		cancel()
		<-rnDone
		rn.Close()
	})
	s := &Stack{Cluster: cl, RollupURL: srv.URL, Rollup: rn, L1URL: "http://" + sb.Addr()}
	for i := range cl.Size() {
		s.Endpoints = append(s.Endpoints, sequencer.Endpoint{Transactions: cl.Node(i).Addr("transactions"), Export: cl.Node(i).Addr("export")})
	}
	return s
}

// StartSandbox runs a `dsn sandbox` (its test configuration: a fresh data
// dir, a free loopback port) at blockTime a level until the test ends.
func StartSandbox(tb testing.TB, blockTime time.Duration) *sandbox.Sandbox {
	tb.Helper()
	cfg := sandbox.TestConfig(tb.TempDir())
	cfg.BlockTime.Duration = blockTime
	sb, err := sandbox.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sb.Run(ctx); close(done) }()
	tb.Cleanup(func() { cancel(); <-done })
	for sb.Addr() == "" {
		time.Sleep(5 * time.Millisecond)
	}
	return sb
}

// Sequencer starts a sequencer posting to the stack's rollup node and
// returns it with its API's URL and a function that stops it (also
// called at the end of the test).
func (s *Stack) Sequencer(tb testing.TB) (*sequencer.Sequencer, string, func()) {
	tb.Helper()
	return s.SequencerWith(tb, nil)
}

// SequencerWith is Sequencer with its config adjusted by tune.
func (s *Stack) SequencerWith(tb testing.TB, tune func(*sequencer.Config)) (*sequencer.Sequencer, string, func()) {
	tb.Helper()
	cfg := sequencer.DefaultConfig(s.Endpoints)
	cfg.Rollup = s.RollupURL
	cfg.RateLimit = 0 // every test client comes from 127.0.0.1
	if tune != nil {
		tune(&cfg)
	}
	seq, err := sequencer.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go seq.Follow(ctx)
	go seq.Post(ctx)
	srv := httptest.NewServer(seq.Handler())
	var once sync.Once
	stop := func() { once.Do(func() { srv.Close(); cancel(); seq.Close() }) }
	tb.Cleanup(stop)
	return seq, srv.URL, stop
}

// Value reads a durable value at the rollup node's head.
func (s *Stack) Value(key string) ([]byte, bool, error) { return RollupRPC(s.RollupURL).Value(key) }

// KernelHead returns the kernel's last block (0: none yet).
func (s *Stack) KernelHead() uint64 { return RollupRPC(s.RollupURL).KernelHead() }

// KernelBlock reads the kernel's block n.
func (s *Stack) KernelBlock(n uint64) (state.Block, error) {
	return RollupRPC(s.RollupURL).KernelBlock(n)
}

// RollupRPC reads the DSN kernel's state through a rollup node's RPC (the
// octez durable-storage calls), at the given base URL: in process or in a
// container.
type RollupRPC string

// Value reads a durable value at the rollup node's head.
func (r RollupRPC) Value(key string) ([]byte, bool, error) {
	resp, err := http.Get(string(r) + "/global/block/head/durable/wasm_2_0_0/value?key=" + key)
	if err != nil {
		return nil, false, err
	}
	defer resp.Body.Close()
	var h *string
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return nil, false, fmt.Errorf("%s: %s: %w", key, resp.Status, err)
	}
	if h == nil {
		return nil, false, nil
	}
	v, err := hex.DecodeString(*h)
	return v, err == nil, err
}

// KernelHead returns the kernel's last block (0: none yet, or unreachable).
func (r RollupRPC) KernelHead() uint64 {
	v, ok, err := r.Value("/dsn/head")
	if err != nil || !ok || len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// KernelBlock reads the kernel's block n.
func (r RollupRPC) KernelBlock(n uint64) (state.Block, error) {
	raw, ok, err := r.Value(fmt.Sprintf("/dsn/blocks/%d", n))
	if err != nil {
		return state.Block{}, err
	}
	if !ok {
		return state.Block{}, fmt.Errorf("kernel block %d: not written", n)
	}
	b, _, err := state.ReadBlock(oneValue(raw), 0)
	return b, err
}

// oneValue hands one raw block record to state.ReadBlock.
type oneValue []byte

func (v oneValue) Get(string) ([]byte, bool) { return v, true }
func (oneValue) Put(string, []byte)          {}
func (oneValue) Delete(string)               {}

// SameAsPreBlock checks the kernel's block against the DSN's pre-block of
// the same index: the same leader and the same transactions, in order.
func SameAsPreBlock(b state.Block, pb *dsnv1.PreBlock) error {
	want, err := dsnclient.TransactionDigests(pb)
	if err != nil {
		return err
	}
	switch {
	case b.Index != pb.Index:
		return fmt.Errorf("kernel block %d against pre-block %d", b.Index, pb.Index)
	case b.Leader != narwhal.Digest(pb.Leader):
		return fmt.Errorf("kernel block %d: its leader differs from the pre-block's", b.Index)
	case !slices.Equal(b.Transactions, want):
		return fmt.Errorf("kernel block %d: %d transactions, the pre-block %d, or in another order", b.Index, len(b.Transactions), len(want))
	}
	return nil
}
