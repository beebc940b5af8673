package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
	"github.com/tezos-dsn/dsn/internal/bullshark"
	"github.com/tezos-dsn/dsn/internal/store"
)

// txServer is the client-facing Transactions service.
type txServer struct {
	dsnv1.UnimplementedTransactionsServer
	n *Node
}

func (s *txServer) check(tx *dsnv1.Transaction) error {
	switch {
	case tx == nil || len(tx.Transaction) == 0:
		return status.Error(codes.InvalidArgument, "empty transaction")
	case len(tx.Transaction) > s.n.cfg.MaxTransactionSize:
		return status.Errorf(codes.InvalidArgument, "transaction of %d bytes exceeds the limit of %d bytes",
			len(tx.Transaction), s.n.cfg.MaxTransactionSize)
	}
	return nil
}

func submitStatus(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "canceled before acknowledgement")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline before acknowledgement")
	case errors.Is(err, ErrStopped):
		return status.Error(codes.Unavailable, "node stopping; retry on another node")
	}
	return status.Error(codes.Internal, err.Error())
}

// SubmitTransaction returns once the transaction is stored on a quorum of
// workers and queued durably.
func (s *txServer) SubmitTransaction(ctx context.Context, tx *dsnv1.Transaction) (*dsnv1.SubmitTransactionResponse, error) {
	if err := s.check(tx); err != nil {
		return nil, err
	}
	if err := s.n.Submit(ctx, tx.Transaction); err != nil {
		return nil, submitStatus(err)
	}
	return &dsnv1.SubmitTransactionResponse{}, nil
}

// SubmitTransactionStream submits every transaction of the stream; it
// answers once all are acknowledged, with their count. Submissions are
// pipelined: many may wait for their batch at once.
func (s *txServer) SubmitTransactionStream(st dsnv1.Transactions_SubmitTransactionStreamServer) error {
	ctx := st.Context()
	results := make(chan error, 1024)
	inflight := 0
	var accepted uint64
	var firstErr error
	collect := func() {
		if err := <-results; err != nil && firstErr == nil {
			firstErr = err
		} else if err == nil {
			accepted++
		}
		inflight--
	}
	for {
		tx, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if err := s.check(tx); err != nil {
			for inflight > 0 {
				collect()
			}
			return status.Errorf(codes.InvalidArgument, "transaction %d: %s (%d before it acknowledged)",
				accepted+uint64(inflight)+1, status.Convert(err).Message(), accepted)
		}
		for inflight >= cap(results) {
			collect()
		}
		inflight++
		go func(b []byte) { results <- s.n.Submit(ctx, b) }(tx.Transaction)
	}
	for inflight > 0 {
		collect()
	}
	if firstErr != nil {
		return submitStatus(firstErr)
	}
	return st.SendAndClose(&dsnv1.SubmitTransactionStreamResponse{Accepted: accepted})
}

// exportServer streams committed sub-DAGs (pre-blocks).
type exportServer struct {
	dsnv1.UnimplementedExportServer
	n *Node
}

// Export replays pre-blocks from the store and then follows new commits;
// the same loop serves both, so the switch from history to live has no gap.
// A batch not fetched yet delays the stream (with heartbeats), never skips.
func (s *exportServer) Export(req *dsnv1.ExportRequest, st dsnv1.Export_ExportServer) error {
	n := s.n
	ctx := st.Context()
	next := req.From + 1
	if req.From == ^uint64(0) {
		return status.Error(codes.InvalidArgument, "from: no index follows 2^64-1")
	}
	hb := time.NewTicker(n.cfg.HeartbeatInterval.Duration)
	defer hb.Stop()
	for {
		head, changed := n.Head()
		if next <= head {
			pb, err := loadPreBlock(n.store, next)
			if err == nil {
				if err := st.Send(&dsnv1.ExportResponse{Item: &dsnv1.ExportResponse_PreBlock{PreBlock: pb}}); err != nil {
					return err
				}
				next++
				continue
			}
			if !errors.Is(err, errNotYet) {
				n.log.Error("export", "index", next, "err", err)
				return status.Errorf(codes.Internal, "pre-block %d: %v", next, err)
			}
			select { // the batch is being fetched: poll, keep the heartbeat
			case <-ctx.Done():
				return ctx.Err()
			case <-n.stopped:
				return status.Error(codes.Unavailable, "node stopping")
			case <-time.After(20 * time.Millisecond):
				continue
			case <-hb.C:
			}
		} else {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-n.stopped:
				return status.Error(codes.Unavailable, "node stopping")
			case <-changed:
				continue
			case <-hb.C:
			}
		}
		if err := st.Send(&dsnv1.ExportResponse{Item: &dsnv1.ExportResponse_Heartbeat{Heartbeat: &dsnv1.Heartbeat{
			Head: head, UnixMs: uint64(time.Now().UnixMilli())}}}); err != nil {
			return err
		}
	}
}

// errNotYet: a committed sub-DAG whose batches this node is still fetching.
var errNotYet = errors.New("node: batches not stored yet")

// loadPreBlock assembles pre-block idx from the store.
func loadPreBlock(st *pebbleStore, idx uint64) (*dsnv1.PreBlock, error) {
	raw, ok := st.Get(store.SubDAGKey(idx))
	if !ok {
		return nil, fmt.Errorf("sub-DAG %d not stored", idx)
	}
	rec, err := bullshark.DecodeRecord(raw)
	if err != nil {
		return nil, err
	}
	pb := &dsnv1.PreBlock{Index: rec.Index, Leader: rec.Leader[:], CommitTimestamp: rec.CommitTimestamp}
	for _, d := range rec.Certificates {
		cert, c, err := loadCertificate(st, d)
		if err != nil {
			return nil, err
		}
		pb.Certificates = append(pb.Certificates, cert)
		bs := &dsnv1.CertificateBatches{}
		for _, bd := range c.Header.Payload {
			b, ok := st.Get(store.BatchKey(bd))
			if !ok {
				return nil, fmt.Errorf("batch %s of sub-DAG %d: %w", bd.Short(), idx, errNotYet)
			}
			bs.Batches = append(bs.Batches, b)
		}
		pb.Batches = append(pb.Batches, bs)
	}
	for _, d := range rec.Support {
		cert, _, err := loadCertificate(st, d)
		if err != nil {
			return nil, err
		}
		pb.Support = append(pb.Support, cert)
	}
	return pb, nil
}
