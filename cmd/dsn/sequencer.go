package main

import (
	"context"
	crand "crypto/rand"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tezos-dsn/dsn/internal/config"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/services/node/localnet"
	"github.com/tezos-dsn/dsn/services/sequencer"
)

func sequencerCommand() command {
	return command{name: "sequencer", summary: "serve the public transaction API in front of the consensus nodes", run: runSequencer}
}

func runSequencer(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sequencer", flag.ContinueOnError)
	listen := fs.String("listen", ":8080", "HTTP API address")
	nodes := fs.String("nodes", "127.0.0.1:64012/127.0.0.1:64011", "consensus nodes: TRANSACTIONS/EXPORT address pairs, comma-separated")
	rollup := fs.String("rollup", "", "rollup node RPC URL (octez-smart-rollup-node API) to post to; empty: no posting")
	mockRollup := fs.String("mock-rollup", "", "for development without a rollup node: run the kernel's state machine in the sequencer, set up with this committee file (with --mock-consensus: the word consensus, for its committee)")
	mockConsensus := fs.Int("mock-consensus", 0, "for development without consensus nodes: run a committee of this many nodes (1-9) in the sequencer's process, on loopback, and use it instead of --nodes")
	mockDir := fs.String("mock-consensus-dir", "", "where --mock-consensus keeps the committee's keys, configs and stores (empty: a new temporary directory)")
	rateLimit := fs.Float64("rate-limit", 200, "API requests a second per client address (0: no limit)")
	rateBurst := fs.Int("rate-burst", 400, "bursts of that many requests per client address")
	maxTx := fs.Int("max-transaction-size", 256<<10, "largest transaction in bytes (the nodes' max_transaction_size)")
	postInterval := fs.Duration("post-interval", 0, "how often the DAG read so far is posted as one submission (0: the default, 100ms)")
	postTurn := fs.String("post-turn", "", "I/K: with K sequencers posting one DSN, post only the rounds of turn I (0..K-1), windows of --post-window rounds, and another's only when it is --post-failover late; empty: post everything")
	postWindow := fs.Uint64("post-window", 20, "rounds in one posting turn (with --post-turn)")
	postFailover := fs.Duration("post-failover", 10*time.Second, "how long another sequencer's turn may lag before this one posts it (with --post-turn)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("service", "sequencer")
	// The API's address is taken first: the nodes of --mock-consensus
	// listen on ports the OS picks, and must not take it.
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *listen, err)
	}
	defer lis.Close()
	var eps []sequencer.Endpoint
	var mockCommittee *narwhal.Committee
	if *mockConsensus != 0 {
		nw, err := startMockConsensus(*mockConsensus, *mockDir, log)
		if err != nil {
			return err
		}
		defer nw.Close()
		for _, e := range nw.Endpoints() {
			eps = append(eps, sequencer.Endpoint{Transactions: e.Transactions, Export: e.Export})
		}
		mockCommittee = nw.Committee
	} else {
		for _, pair := range strings.Split(*nodes, ",") {
			tx, ex, ok := strings.Cut(strings.TrimSpace(pair), "/")
			if !ok || tx == "" || ex == "" {
				return fmt.Errorf("--nodes: %q is not TRANSACTIONS/EXPORT", pair)
			}
			eps = append(eps, sequencer.Endpoint{Transactions: tx, Export: ex})
		}
	}
	cfg := sequencer.DefaultConfig(eps)
	cfg.MaxTransactionSize = *maxTx
	if *postInterval < 0 {
		return fmt.Errorf("--post-interval: %s is negative", *postInterval)
	}
	if *postInterval > 0 {
		cfg.PostInterval = *postInterval
	}
	if *postTurn != "" {
		i, k, ok := strings.Cut(*postTurn, "/")
		var err1, err2 error
		cfg.PostTurn, err1 = strconv.Atoi(i)
		cfg.PostTurns, err2 = strconv.Atoi(k)
		if !ok || err1 != nil || err2 != nil || cfg.PostTurns < 1 || cfg.PostTurn < 0 || cfg.PostTurn >= cfg.PostTurns {
			return fmt.Errorf("--post-turn: %q is not I/K with 0 <= I < K", *postTurn)
		}
	}
	if *postWindow == 0 || *postFailover <= 0 {
		return fmt.Errorf("--post-window and --post-failover must be positive")
	}
	cfg.PostWindow, cfg.PostFailover = *postWindow, *postFailover
	cfg.Rollup = *rollup
	if *mockRollup != "" {
		if *rollup != "" {
			return fmt.Errorf("--rollup and --mock-rollup: choose one")
		}
		if *mockRollup == "consensus" {
			if mockCommittee == nil {
				return fmt.Errorf("--mock-rollup consensus: needs --mock-consensus")
			}
			cfg.MockRollup = mockCommittee
		} else {
			c, err := config.LoadCommittee(*mockRollup)
			if err != nil {
				return fmt.Errorf("--mock-rollup: %w", err)
			}
			cfg.MockRollup = c
		}
	}
	cfg.RateLimit, cfg.RateBurst = *rateLimit, *rateBurst
	s, err := sequencer.New(cfg, log)
	if err != nil {
		return err
	}
	defer s.Close()
	go s.Follow(ctx)
	if cfg.Rollup != "" || cfg.MockRollup != nil {
		go s.Post(ctx)
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(c)
	}()
	log.Info("sequencer started", "listen", lis.Addr().String(), "nodes", len(eps))
	if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// startMockConsensus runs a committee of n nodes in this process
// (services/node/localnet): real consensus, certificates and Export on
// loopback ports, for development without a lab.
func startMockConsensus(n int, dir string, log *slog.Logger) (*localnet.Net, error) {
	if n < 1 || n > 9 {
		return nil, fmt.Errorf("--mock-consensus: %d nodes, want 1 to 9", n)
	}
	if dir == "" {
		d, err := os.MkdirTemp("", "dsn-mock-consensus-")
		if err != nil {
			return nil, fmt.Errorf("--mock-consensus: %w", err)
		}
		dir = d
	}
	nw, err := localnet.Up(dir, n, crand.Reader, log.With("service", "mock-consensus"))
	if err != nil {
		return nil, fmt.Errorf("--mock-consensus: %w", err)
	}
	log.Info("mock consensus started", "nodes", n, "dir", nw.Dir, "committee", filepath.Join(nw.Dir, "committee.toml"))
	for _, r := range nw.Nodes {
		go func() {
			<-r.Done()
			if err := r.Err(); err != nil { // not a stop by Close
				log.Error("mock consensus node stopped", "node", r.Config.Name, "err", err)
			}
		}()
	}
	return nw, nil
}
