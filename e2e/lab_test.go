// Package e2e holds the black-box end-to-end tests: the lab's containers
// (rendered from a manifest by package lab, run through testcontainers-go
// by lab/labtest) driven through their published ports. Without a Docker
// engine they skip with one line.
package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
	"github.com/tezos-dsn/dsn/lab"
	"github.com/tezos-dsn/dsn/lab/labtest"
	"github.com/tezos-dsn/dsn/services/stacktest"
)

// Lab is a running lab and the tests' helpers around it.
type Lab struct {
	*labtest.Lab
	t *testing.T
	m *lab.Manifest
}

// startLab starts a lab of n nodes (with the given link perturbations),
// on Docker-chosen host ports.
func startLab(t *testing.T, nodes int, shapes ...lab.Shape) *Lab {
	t.Helper()
	m := &lab.Manifest{Name: fmt.Sprintf("dsn-e2e-%d-%s", os.Getpid(), t.Name()), Nodes: nodes, Seed: 1, Shapes: shapes}
	l := labtest.Start(t, m)
	return &Lab{Lab: l, t: t, m: m}
}

// addr returns the host address of node n's container port (n = 0: the
// sequencer's).
func (l *Lab) addr(n, port int) string {
	l.t.Helper()
	service := "sequencer"
	if n > 0 {
		service = lab.Service(n)
	}
	return l.Addr(service, port)
}

func (l *Lab) dial(n, port int) *grpc.ClientConn {
	l.t.Helper()
	conn, err := grpc.NewClient(l.addr(n, port), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { conn.Close() })
	return conn
}

// Transactions and Export return clients of node n's APIs.
func (l *Lab) Transactions(n int) dsnv1.TransactionsClient {
	return dsnv1.NewTransactionsClient(l.dial(n, lab.TransactionsPort))
}

// Export returns a client of node n's Export API.
func (l *Lab) Export(n int) dsnv1.ExportClient {
	return dsnv1.NewExportClient(l.dial(n, lab.ExportPort))
}

// Metrics scrapes node n.
func (l *Lab) Metrics(ctx context.Context, n int) (map[string]float64, error) {
	return lab.Scrape(ctx, l.addr(n, lab.MetricsPort))
}

// Committed returns node n's last committed index, or -1 if it does not
// answer.
func (l *Lab) Committed(ctx context.Context, n int) float64 {
	g, err := l.Metrics(ctx, n)
	if err != nil {
		return -1
	}
	return g["dsn_committed_subdags"]
}

// WaitCommitting waits until every node has committed a pre-block.
func (l *Lab) WaitCommitting(ctx context.Context) {
	l.t.Helper()
	waitFor(l.t, 90*time.Second, "every node to commit", func() bool {
		for n := 1; n <= l.m.Nodes; n++ {
			if l.Committed(ctx, n) < 1 {
				return false
			}
		}
		return true
	})
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// KernelAgrees waits until the rollup node's kernel has written a block
// for every pre-block of ref (node 1's Export), then checks each block
// against its pre-block: the same leader and the same transactions, in
// order. It returns how many blocks it checked.
func (l *Lab) KernelAgrees(ref []*dsnv1.PreBlock) int {
	l.t.Helper()
	if len(ref) == 0 {
		return 0
	}
	rpc := stacktest.RollupRPC("http://" + l.Addr("rollup-node", lab.RollupPort))
	last := ref[len(ref)-1].Index
	waitFor(l.t, 3*time.Minute, fmt.Sprintf("the kernel to write block %d", last), func() bool {
		return rpc.KernelHead() >= last
	})
	for _, pb := range ref {
		b, err := rpc.KernelBlock(pb.Index)
		if err != nil {
			l.t.Fatal(err)
		}
		if err := stacktest.SameAsPreBlock(b, pb); err != nil {
			l.t.Fatal(err)
		}
	}
	return len(ref)
}
