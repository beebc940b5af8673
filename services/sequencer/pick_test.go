package sequencer_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
	"github.com/tezos-dsn/dsn/services/sequencer"
)

// ackAfter is a node's Transactions API that acknowledges after a delay,
// counting the submissions it got.
type ackAfter struct {
	dsnv1.UnimplementedTransactionsServer
	delay time.Duration
	got   atomic.Int64
}

func (a *ackAfter) SubmitTransaction(ctx context.Context, _ *dsnv1.Transaction) (*dsnv1.SubmitTransactionResponse, error) {
	a.got.Add(1)
	select {
	case <-time.After(a.delay):
		return &dsnv1.SubmitTransactionResponse{}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// withNodes serves each fake node's Transactions API and returns a
// sequencer submitting to them.
func withNodes(t *testing.T, nodes []*ackAfter) *sequencer.Sequencer {
	t.Helper()
	var eps []sequencer.Endpoint
	for _, n := range nodes {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := grpc.NewServer()
		dsnv1.RegisterTransactionsServer(srv, n)
		go srv.Serve(lis)
		t.Cleanup(srv.Stop)
		eps = append(eps, sequencer.Endpoint{Transactions: lis.Addr().String(), Export: lis.Addr().String()})
	}
	s, err := sequencer.New(sequencer.DefaultConfig(eps), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// A node slow to acknowledge (its transactions wait for its late
// certificates) gets few submissions; the others share the load, and the
// slow one is still probed now and then.
func TestSubmissionsAvoidASlowNode(t *testing.T) {
	nodes := []*ackAfter{{delay: time.Millisecond}, {delay: time.Millisecond}, {delay: 200 * time.Millisecond}, {delay: time.Millisecond}}
	s := withNodes(t, nodes)
	const total = 400
	for i := range total {
		if _, err := s.Submit(context.Background(), []byte(fmt.Sprint("tx ", i))); err != nil {
			t.Fatal(err)
		}
	}
	slow := nodes[2].got.Load()
	t.Logf("submissions per node: %d %d %d %d", nodes[0].got.Load(), nodes[1].got.Load(), slow, nodes[3].got.Load())
	// Round robin would give it 100: it gets its first turn, before
	// anything is known, and a probe in each 4 × 64 submissions.
	if slow > 5 || slow < 2 {
		t.Fatalf("the slow node got %d of %d submissions, want 2 to 5", slow, total)
	}
	for i, n := range nodes {
		if i != 2 && n.got.Load() < total/4 {
			t.Fatalf("fast node %d got %d of %d submissions: the load is not spread evenly", i, n.got.Load(), total)
		}
	}
}

// Under concurrent submissions a node that has not answered yet is judged
// by how long its oldest submission has waited: its turns go to the
// others before its first answer comes back.
func TestConcurrentSubmissionsAvoidAHangingNode(t *testing.T) {
	nodes := []*ackAfter{{delay: time.Millisecond}, {delay: 2 * time.Second}, {delay: time.Millisecond}, {delay: time.Millisecond}}
	s := withNodes(t, nodes)
	const total, senders = 600, 60
	var wg sync.WaitGroup
	for w := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < total; i += senders {
				if _, err := s.Submit(context.Background(), []byte(fmt.Sprint("tx ", i))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	hanging := nodes[1].got.Load()
	t.Logf("submissions per node: %d %d %d %d", nodes[0].got.Load(), hanging, nodes[2].got.Load(), nodes[3].got.Load())
	// Round robin would give it 150. Here it gets 31-37; judged by its
	// answers alone, without the age of what it holds, 58: every sender
	// that meets it before its first answer stays with it (the bound
	// leaves room for a loaded machine).
	if hanging > total/8 {
		t.Fatalf("the hanging node got %d of %d submissions, want at most %d", hanging, total, total/8)
	}
}
