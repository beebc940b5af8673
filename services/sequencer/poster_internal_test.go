package sequencer

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/preblock"
)

// The rollup node is down while 12 MiB of DAG arrive: what waits is
// bounded (past maxPendingSubmissions it is dropped and the stream asked
// to restart from the rollup's DAG), and once the rollup node is back
// every injection fits its body limit and what is pending drains.
func TestPosterRecoversAfterAnOutage(t *testing.T) {
	var up atomic.Bool
	var tooLarge, accepted atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if _, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 16<<20)); err != nil { // as the rollup node
			tooLarge.Add(1)
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		accepted.Add(1)
		w.Write([]byte(`["scmsg"]`))
	}))
	defer srv.Close()
	cfg := DefaultConfig([]Endpoint{{Transactions: "127.0.0.1:1", Export: "127.0.0.1:2"}})
	cfg.Rollup = srv.URL
	s, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := &poster{s: s, rollup: s.rollup, restart: make(chan struct{}, 1)}
	tx := make([]byte, 500<<10)
	add := func(round uint64) {
		rand.Read(tx)
		b := &narwhal.Batch{Transactions: [][]byte{tx}}
		c := &narwhal.Certificate{Header: narwhal.Header{Author: 0, Round: round, Payload: []narwhal.Digest{b.Digest()}}}
		p.add(&preblock.DAGEntry{Certificate: c.Encode(), Batches: [][]byte{b.Encode()}})
	}
	for round := uint64(1); round <= 24; round++ { // 12 MiB while the rollup node is down
		add(round)
	}
	p.mu.Lock()
	waiting := p.bytes
	p.mu.Unlock()
	if waiting > maxPendingSubmissions*cfg.MaxSubmissionBytes {
		t.Fatalf("%d bytes wait for the rollup node, more than the bound", waiting)
	}
	select {
	case <-p.restart:
	default:
		t.Fatal("past the bound, the stream was not asked to restart from the rollup's DAG")
	}
	up.Store(true)
	for round := uint64(25); round <= 30; round++ {
		add(round)
	}
	p.flush(context.Background())
	p.mu.Lock()
	n := len(p.pending)
	p.mu.Unlock()
	if n > 0 || tooLarge.Load() > 0 || accepted.Load() == 0 {
		t.Fatalf("after the outage: %d certificates pending, %d injections too large, %d accepted", n, tooLarge.Load(), accepted.Load())
	}
}
