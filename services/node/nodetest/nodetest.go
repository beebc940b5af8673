// Package nodetest runs a committee of consensus nodes inside one process,
// over real gRPC on 127.0.0.1 with pebble in temporary directories: the
// harness for services/node's tests and the benchmarks in bench/.
package nodetest

import (
	"context"
	"log/slog"
	"math/rand"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
	"github.com/tezos-dsn/dsn/internal/config"
	"github.com/tezos-dsn/dsn/internal/dsnclient"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/kernel/state"
	"github.com/tezos-dsn/dsn/services/node"
	"github.com/tezos-dsn/dsn/services/node/localnet"
)

// Cluster is a running in-process committee.
type Cluster struct {
	tb        testing.TB
	Dir       string
	Committee *narwhal.Committee
	cfgs      []*config.Node
	nodes     []*localnet.Running
	tracer    node.Tracer
}

// Option adjusts every node's config before start.
type Option func(*config.Node)

// Start generates a committee of n nodes with fast test parameters, starts
// them all, and registers their shutdown with tb.Cleanup.
func Start(tb testing.TB, n int, opts ...Option) *Cluster {
	tb.Helper()
	return StartTraced(tb, n, nil, opts...)
}

// StartTraced is Start with a tracer installed on every node (nil: none).
//
// NB: a p2p port is chosen free, closed, and bound again by its node a
// moment later; another test process may take it in between. A cluster
// that loses that race is stopped and started again on fresh ports.
func StartTraced(tb testing.TB, n int, tr node.Tracer, opts ...Option) *Cluster {
	tb.Helper()
	for attempt := 1; ; attempt++ {
		cl, err := tryStart(tb, n, tr, opts...)
		if err == nil {
			tb.Cleanup(func() {
				for i := range cl.nodes {
					cl.StopNode(i)
				}
			})
			return cl
		}
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			tb.Fatal(err)
		}
		tb.Logf("cluster start, attempt %d: %v; again on fresh ports", attempt, err)
	}
}

func tryStart(tb testing.TB, n int, tr node.Tracer, opts ...Option) (*Cluster, error) {
	dir := tb.TempDir()
	base := config.TestNode()
	base.LogLevel = "warn"
	c, cfgs, err := localnet.Write(dir, n, rand.New(rand.NewSource(int64(n))), base, func(nc *config.Node) {
		for _, o := range opts {
			o(nc)
		}
	})
	if err != nil {
		tb.Fatal(err)
	}
	cl := &Cluster{tb: tb, Dir: dir, Committee: c, cfgs: cfgs, nodes: make([]*localnet.Running, n), tracer: tr}
	for i := range cl.nodes {
		if err := cl.startNode(i); err != nil {
			for j := range cl.nodes {
				cl.StopNode(j)
			}
			return nil, err
		}
	}
	return cl, nil
}

// Size returns the number of nodes.
func (cl *Cluster) Size() int { return len(cl.nodes) }

// StartNode starts (or restarts, from its store) node i.
func (cl *Cluster) StartNode(i int) {
	cl.tb.Helper()
	if err := cl.startNode(i); err != nil {
		cl.tb.Fatal(err)
	}
}

// TryStartNode starts node i with extra node options and returns the
// error of a node that does not start (a refused store) instead of failing
// the test.
func (cl *Cluster) TryStartNode(i int, opts ...node.Option) error {
	return cl.startNode(i, opts...)
}

// DataDir returns node i's data directory.
func (cl *Cluster) DataDir(i int) string { return cl.cfgs[i].Path(cl.cfgs[i].DataDir) }

// RestartFromCopy makes stopped node i start, next time, on a copy of its
// data directory: what a new process finds on disk. After a fatal store
// error pebble may keep the store open, and its lock, until the process
// exits (pebblefatal.Close), so this process cannot open the directory
// itself again.
func (cl *Cluster) RestartFromCopy(i int) {
	cl.tb.Helper()
	src := cl.DataDir(i)
	dst := strings.TrimSuffix(src, string(os.PathSeparator)) + ".restarted"
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		cl.tb.Fatalf("copy %s: %v", src, err)
	}
	cl.cfgs[i].DataDir = dst
}

// WaitStopped waits until node i stops on its own (a fatal error) and
// returns what its Run returned; the test fails if it runs on past timeout.
func (cl *Cluster) WaitStopped(i int, timeout time.Duration) error {
	cl.tb.Helper()
	r := cl.nodes[i]
	if r == nil {
		cl.tb.Fatalf("%s is not running", cl.cfgs[i].Name)
	}
	select {
	case <-r.Done():
		cl.nodes[i] = nil
		return r.Stop()
	case <-time.After(timeout):
		cl.tb.Fatalf("%s still runs after %s", cl.cfgs[i].Name, timeout)
		return nil
	}
}

func (cl *Cluster) startNode(i int, opts ...node.Option) error {
	if cl.nodes[i] != nil {
		return nil
	}
	level := slog.LevelWarn
	if os.Getenv("DSN_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if cl.tracer != nil {
		opts = append(opts, node.WithTracer(cl.tracer))
	}
	r, err := localnet.Start(cl.cfgs[i], log, opts...)
	if err != nil {
		return err
	}
	cl.nodes[i] = r
	return nil
}

// StopNode stops node i and waits for it; its store stays on disk.
func (cl *Cluster) StopNode(i int) {
	r := cl.nodes[i]
	if r == nil {
		return
	}
	if err := r.Stop(); err != nil {
		cl.tb.Errorf("%s: %v", cl.cfgs[i].Name, err)
	}
	cl.nodes[i] = nil
}

// Node returns running node i, or nil if stopped.
func (cl *Cluster) Node(i int) *node.Node {
	if cl.nodes[i] == nil {
		return nil
	}
	return cl.nodes[i].Node
}

func (cl *Cluster) dial(addr string) *grpc.ClientConn {
	cl.tb.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		cl.tb.Fatal(err)
	}
	cl.tb.Cleanup(func() { conn.Close() })
	return conn
}

// Transactions returns a client of node i's Transactions service.
func (cl *Cluster) Transactions(i int) dsnv1.TransactionsClient {
	return dsnv1.NewTransactionsClient(cl.dial(cl.Node(i).Addr("transactions")))
}

// Export returns a client of node i's Export service.
func (cl *Cluster) Export(i int) dsnv1.ExportClient {
	return dsnv1.NewExportClient(cl.dial(cl.Node(i).Addr("export")))
}

// SubmitAll sends txs through the nodes `via` on `streams` concurrent
// streams and returns how many were acknowledged.
func (cl *Cluster) SubmitAll(ctx context.Context, via []int, streams int, txs [][]byte) (uint64, error) {
	var clients []dsnv1.TransactionsClient
	for _, i := range via {
		clients = append(clients, cl.Transactions(i))
	}
	return dsnclient.SubmitAll(ctx, clients, streams, txs)
}

// ReadExport reads node i's pre-blocks from index from+1 until stop returns
// true after a pre-block, or ctx ends.
func (cl *Cluster) ReadExport(ctx context.Context, i int, from uint64, stop func(*dsnv1.PreBlock) bool) ([]*dsnv1.PreBlock, error) {
	return dsnclient.ReadExport(ctx, cl.Export(i), from, stop)
}

// CertifiedDAG returns node i's certified DAG in causal order (round, then
// author), each certificate with the batches its header names — what the
// rollup kernel consumes. A certificate whose batches node i lacks is left
// out.
func (cl *Cluster) CertifiedDAG(i int) ([]state.Entry, error) {
	var out []state.Entry
	var decodeErr error
	err := cl.Node(i).ScanCertificates(func(c *narwhal.Certificate, batches [][]byte) {
		e := state.Entry{Certificate: c}
		for _, raw := range batches {
			if raw == nil {
				return
			}
			b, err := narwhal.DecodeBatch(raw)
			if err != nil {
				decodeErr = err
				return
			}
			e.Batches = append(e.Batches, b)
		}
		out = append(out, e)
	})
	if err == nil {
		err = decodeErr
	}
	return out, err
}
