package node_test

import (
	"context"
	"math"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
	"github.com/tezos-dsn/dsn/internal/preblock"
	"github.com/tezos-dsn/dsn/services/node/nodetest"
)

func TestExportReplaysThenFollowsWithoutGaps(t *testing.T) {
	cl := nodetest.Start(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	first := makeTxs("a", 300, 80)
	if _, err := cl.SubmitAll(ctx, []int{0, 1}, 2, first); err != nil {
		t.Fatal(err)
	}
	history, err := cl.ReadExport(ctx, 2, 0, until(t, first))
	if err != nil {
		t.Fatal(err)
	}
	// A client that has the first k pre-blocks resumes at k+1 from disk and
	// then follows live commits: no gap, no duplicate, same content.
	k := uint64(len(history) / 2)
	st, err := cl.Export(3).Export(ctx, &dsnv1.ExportRequest{From: k})
	if err != nil {
		t.Fatal(err)
	}
	second := makeTxs("b", 300, 80)
	go cl.SubmitAll(ctx, []int{2, 3}, 2, second)
	want := map[string]bool{}
	for _, tx := range second {
		want[string(tx)] = true
	}
	next := k + 1
	heartbeats := 0
	rd := preblock.NewReader(st)
	for len(want) > 0 {
		pb, hb, err := rd.PreBlock()
		if err != nil {
			t.Fatal(err)
		}
		if hb != nil {
			heartbeats++
			continue
		}
		if pb.Index != next {
			t.Fatalf("got pre-block %d, want %d", pb.Index, next)
		}
		if pb.Index <= uint64(len(history)) && string(pb.Leader) != string(history[pb.Index-1].Leader) {
			t.Fatalf("nodes 2 and 3 serve different pre-block %d", pb.Index)
		}
		next++
		for tx := range orderedTxs(t, []*dsnv1.PreBlock{pb}) {
			delete(want, tx)
		}
	}
}

func TestExportWaitsBeyondHeadAndRejectsBadRequests(t *testing.T) {
	cl := nodetest.Start(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	head, _ := cl.Node(0).Head()
	st, err := cl.Export(0).Export(ctx, &dsnv1.ExportRequest{From: head + 1000})
	if err != nil {
		t.Fatal(err)
	}
	r, err := st.Recv()
	if err != nil || r.GetHeartbeat() == nil {
		t.Fatalf("a request beyond the head must wait with heartbeats, got %v %v", r, err)
	}
	bad, err := cl.Export(0).Export(ctx, &dsnv1.ExportRequest{From: math.MaxUint64})
	if err == nil {
		_, err = bad.Recv()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("from = 2^64-1: %v", err)
	}
}
