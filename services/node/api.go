package node

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
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
	// Refused before the disk fills: a node that runs out of space mid-commit
	// stops (pebble cannot go on), and takes its clients down with it.
	if err := s.n.lowOnSpace(); err != nil {
		return status.Error(codes.ResourceExhausted, err.Error())
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

// SubmitTransaction returns once the transaction's batch is committed.
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
			return status.Errorf(status.Code(err), "transaction %d: %s (%d before it acknowledged)",
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
