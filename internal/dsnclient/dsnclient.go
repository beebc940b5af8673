// Package dsnclient is the client side of a consensus node's public APIs:
// submitting transactions on pipelined streams and reading the Export
// stream as whole pre-blocks. The in-process test harness
// (services/node/nodetest), the container e2e tests and the tools share it;
// the sequencer's client with failover will build on it.
package dsnclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/blake2b"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/preblock"
)

// SubmitAll sends txs on `streams` concurrent streams, spread over the
// given nodes in turn, and returns how many were acknowledged (stored on a
// quorum and queued durably) and the first error.
func SubmitAll(ctx context.Context, nodes []dsnv1.TransactionsClient, streams int, txs [][]byte) (uint64, error) {
	type res struct {
		n   uint64
		err error
	}
	out := make(chan res, streams)
	for s := 0; s < streams; s++ {
		client := nodes[s%len(nodes)]
		go func(s int) {
			st, err := client.SubmitTransactionStream(ctx)
			if err != nil {
				out <- res{err: err}
				return
			}
			for k := s; k < len(txs); k += streams {
				if err := st.Send(&dsnv1.Transaction{Transaction: txs[k]}); err != nil {
					break
				}
			}
			resp, err := st.CloseAndRecv()
			if err != nil {
				out <- res{err: err}
				return
			}
			out <- res{n: resp.Accepted}
		}(s)
	}
	var total uint64
	var firstErr error
	for s := 0; s < streams; s++ {
		r := <-out
		total += r.n
		if r.err != nil && firstErr == nil {
			firstErr = r.err
		}
	}
	return total, firstErr
}

// ReadExport reads pre-blocks from index from+1 on until stop returns true
// after one of them, ctx ends, or the stream fails.
func ReadExport(ctx context.Context, client dsnv1.ExportClient, from uint64, stop func(*dsnv1.PreBlock) bool) ([]*dsnv1.PreBlock, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := client.Export(ctx, &dsnv1.ExportRequest{From: from})
	if err != nil {
		return nil, err
	}
	var got []*dsnv1.PreBlock
	rd := preblock.NewReader(st)
	for {
		pb, _, err := rd.PreBlock()
		if errors.Is(err, io.EOF) {
			return got, fmt.Errorf("export stream ended")
		}
		if err != nil {
			return got, err
		}
		if pb != nil {
			got = append(got, pb)
			if stop(pb) {
				return got, nil
			}
		}
	}
}

// SameOrdering reports how two nodes' copies of a pre-block differ in what
// every node must agree on: index, leader, certificate digests (in order)
// and batches. Signer sets and support certificates may differ; nil means
// the same.
func SameOrdering(a, b *dsnv1.PreBlock) error {
	if a.Index != b.Index || !bytes.Equal(a.Leader, b.Leader) || len(a.Certificates) != len(b.Certificates) || len(a.Batches) != len(b.Batches) {
		return fmt.Errorf("pre-block %d/%d: index, leader or certificate count differ", a.Index, b.Index)
	}
	for i := range a.Certificates {
		ca, err1 := narwhal.DecodeCertificate(a.Certificates[i])
		cb, err2 := narwhal.DecodeCertificate(b.Certificates[i])
		if err1 != nil || err2 != nil || ca.Digest() != cb.Digest() {
			return fmt.Errorf("pre-block %d: certificate %d differs", a.Index, i)
		}
		if len(a.Batches[i].Batches) != len(b.Batches[i].Batches) {
			return fmt.Errorf("pre-block %d: batches of certificate %d differ", a.Index, i)
		}
		for j := range a.Batches[i].Batches {
			if !bytes.Equal(a.Batches[i].Batches[j], b.Batches[i].Batches[j]) {
				return fmt.Errorf("pre-block %d: batch %d of certificate %d differs", a.Index, j, i)
			}
		}
	}
	return nil
}

// SamePrefix reports the first pre-block two nodes' sequences disagree on
// (SameOrdering), over the length of the shorter one.
func SamePrefix(a, b []*dsnv1.PreBlock) error {
	for k := range min(len(a), len(b)) {
		if err := SameOrdering(a[k], b[k]); err != nil {
			return err
		}
	}
	return nil
}

// Transactions counts each transaction of the pre-blocks, checking that
// every batch matches its certificate's digest.
func Transactions(pbs []*dsnv1.PreBlock) (map[string]int, error) {
	seen := map[string]int{}
	err := eachTransaction(pbs, func(_ *dsnv1.PreBlock, tx []byte) { seen[string(tx)]++ })
	return seen, err
}

// TransactionDigests returns the BLAKE2b-256 digests of a pre-block's
// transactions in order: what the rollup kernel's block for the same
// index holds (kernel/state.Block).
func TransactionDigests(pb *dsnv1.PreBlock) ([]narwhal.Digest, error) {
	var out []narwhal.Digest
	err := eachTransaction([]*dsnv1.PreBlock{pb}, func(_ *dsnv1.PreBlock, tx []byte) { out = append(out, blake2b.Sum256(tx)) })
	return out, err
}

// eachTransaction calls fn for each transaction of the pre-blocks, in
// order, checking that every batch matches its certificate's digest.
func eachTransaction(pbs []*dsnv1.PreBlock, fn func(*dsnv1.PreBlock, []byte)) error {
	for _, pb := range pbs {
		if len(pb.Batches) != len(pb.Certificates) {
			return fmt.Errorf("pre-block %d: %d batch lists for %d certificates", pb.Index, len(pb.Batches), len(pb.Certificates))
		}
		for i, raw := range pb.Certificates {
			c, err := narwhal.DecodeCertificate(raw)
			if err != nil {
				return fmt.Errorf("pre-block %d: %w", pb.Index, err)
			}
			if len(pb.Batches[i].Batches) != len(c.Header.Payload) {
				return fmt.Errorf("pre-block %d certificate %d: %d batches for %d digests", pb.Index, i, len(pb.Batches[i].Batches), len(c.Header.Payload))
			}
			for j, rb := range pb.Batches[i].Batches {
				b, err := narwhal.DecodeBatch(rb)
				if err != nil {
					return fmt.Errorf("pre-block %d: %w", pb.Index, err)
				}
				if b.Digest() != c.Header.Payload[j] {
					return fmt.Errorf("pre-block %d: a batch does not match its digest", pb.Index)
				}
				for _, tx := range b.Transactions {
					fn(pb, tx)
				}
			}
		}
	}
	return nil
}

// ReadDAG follows a node's certified DAG (ExportDAG) from fromRound on and
// calls fn with each certificate and its batches until fn returns false,
// ctx ends, or the stream fails.
func ReadDAG(ctx context.Context, client dsnv1.ExportClient, fromRound uint64, fn func(*preblock.DAGEntry) bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := client.ExportDAG(ctx, &dsnv1.ExportDAGRequest{FromRound: fromRound})
	if err != nil {
		return err
	}
	rd := preblock.NewDAGReader(st, 0)
	for {
		e, _, err := rd.Next()
		if err != nil {
			return err
		}
		if e != nil && !fn(e) {
			return nil
		}
	}
}
