// Package sandbox is the lab's Tezos L1: a single process that bakes one
// level every block_time and carries real smart_rollup_add_messages
// operations (internal/tezos encoding, ed25519 tz1 signatures), so that the
// rollup node can follow an L1 and post to it where octez and flextesa
// images are not available.
//
// Layers: chain.go is the pure core (validation, mempool, block building;
// no clock, no I/O); store.go is the pebble store (one synced batch per
// level); this file is the runtime that owns the clock, the baker
// goroutine and the HTTP server (api.go), which speaks the octez L1 RPC
// shapes the rollup node needs plus GET /dsn/inbox/{level}.
//
// Every level is durable before any RPC shows it; the mempool is in memory
// only, as in octez, so operations not yet included when the process stops
// are lost. docs/sandbox.md lists what differs from a real Tezos node.
package sandbox

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/tezos-dsn/dsn/internal/tezos"
)

// Sandbox is one running L1 sandbox. Create it with New, then Run it.
type Sandbox struct {
	cfg     Config
	log     *slog.Logger
	store   *store
	metrics *metrics
	now     func() time.Time

	mu      sync.Mutex // guards chain and headCh; held across a level's synced write
	chain   *chain
	headCh  chan struct{} // closed (and replaced) when a new head is applied
	stopped chan struct{} // closed when Run stops; ends the monitor streams

	addrMu sync.Mutex
	addr   string

	requests sync.WaitGroup // RPC handlers running; the store closes after them
}

// New validates cfg, opens (or initialises) the chain in cfg.DataDir and
// returns the sandbox, ready to Run. A new data dir gets a random chain
// seed and level 0 at cfg.GenesisTimestamp (or now).
func New(cfg Config, log *slog.Logger) (*Sandbox, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	accounts, err := cfg.accountKeys()
	if err != nil {
		return nil, err
	}
	st, err := openStore(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	s := &Sandbox{cfg: cfg, log: log, store: st, now: time.Now,
		headCh: make(chan struct{}), stopped: make(chan struct{})}
	if err := s.recover(accounts); err != nil {
		st.close()
		return nil, err
	}
	s.metrics = newMetrics(s)
	return s, nil
}

// recover loads the head, the live window and the counters, writing
// genesis first on an empty store.
func (s *Sandbox) recover(accounts map[[20]byte]ed25519.PublicKey) error {
	head, ok, err := s.store.head()
	if err != nil {
		return fmt.Errorf("read head: %w", err)
	}
	if !ok {
		var seed [32]byte
		if _, err := rand.Read(seed[:]); err != nil {
			return fmt.Errorf("chain seed: %w", err)
		}
		ts := s.cfg.GenesisTimestamp
		if ts.IsZero() {
			ts = s.now()
		}
		g := genesisBlock(seed, ts.Unix())
		if err := s.store.commit(g); err != nil {
			return fmt.Errorf("write genesis: %w", err)
		}
		s.log.Info("genesis written", "hash", tezos.EncodeBlockHash(g.hash), "timestamp", ts.UTC().Format(time.RFC3339))
	}
	var recent []*block
	for l := max(0, head-int64(s.cfg.MaxOperationsTTL)+1); l <= head; l++ {
		b, ok, err := s.store.block(l)
		if err != nil {
			return fmt.Errorf("read level %d: %w", l, err)
		}
		if !ok {
			return fmt.Errorf("read level %d: %w: missing below head %d", l, errCorrupt, head)
		}
		recent = append(recent, b)
	}
	counters, err := s.store.counters()
	if err != nil {
		return fmt.Errorf("read counters: %w", err)
	}
	s.chain = newChain(accounts, s.cfg.MaxOperationsTTL, s.cfg.MaxBlockBytes, recent, counters)
	return nil
}

// Addr returns the address the RPC server bound, once Run has started it.
func (s *Sandbox) Addr() string {
	s.addrMu.Lock()
	defer s.addrMu.Unlock()
	return s.addr
}

// Run serves the RPC and bakes until ctx ends or a store write fails. It
// closes the store before returning. Run may be called once.
func (s *Sandbox) Run(ctx context.Context) error {
	defer s.store.close()
	lis, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.cfg.Listen, err)
	}
	s.addrMu.Lock()
	s.addr = lis.Addr().String()
	s.addrMu.Unlock()
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("rpc server stopped", "err", err)
		}
	}()
	s.mu.Lock()
	head := s.chain.head
	s.mu.Unlock()
	s.log.Info("sandbox started", "listen", s.Addr(), "data_dir", s.cfg.DataDir, "block_time", s.cfg.BlockTime.String(),
		"head", head.level, "head_hash", tezos.EncodeBlockHash(head.hash), "accounts", len(s.cfg.Accounts))

	err = s.bakeLoop(ctx)

	close(s.stopped) // monitor streams return, so Shutdown does not wait for them
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	srv.Shutdown(c)
	cancel()
	srv.Close()
	<-served
	s.requests.Wait()
	s.mu.Lock()
	head = s.chain.head
	s.mu.Unlock()
	s.log.Info("sandbox stopped", "head", head.level, "err", err)
	return err
}

// bakeLoop bakes one level per tick.
func (s *Sandbox) bakeLoop(ctx context.Context) error {
	t := time.NewTicker(s.cfg.BlockTime.Duration)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := s.bake(); err != nil {
				return err
			}
		}
	}
}

// bake proposes, persists and applies the next level, then wakes the
// monitor streams. NB: the lock is held across the synced write so that no
// injection slips between propose and apply (apply expects the mempool
// propose saw); injections wait for one fsync at most.
func (s *Sandbox) bake() error {
	s.mu.Lock()
	b := s.chain.propose(s.now().Unix())
	if err := s.store.commit(b); err != nil {
		s.mu.Unlock()
		return err
	}
	outdated := s.chain.apply(b)
	close(s.headCh)
	s.headCh = make(chan struct{})
	mempool := len(s.chain.mempool)
	s.mu.Unlock()

	bytes := 0
	for _, op := range b.ops {
		bytes += len(op.Bytes())
	}
	s.metrics.baked.Inc()
	s.metrics.included.Add(float64(len(b.ops)))
	s.metrics.outdated.Add(float64(len(outdated)))
	level := slog.LevelInfo
	if len(b.ops) == 0 {
		level = slog.LevelDebug
	}
	s.log.Log(context.Background(), level, "baked", "level", b.level, "hash", tezos.EncodeBlockHash(b.hash),
		"timestamp", b.timestamp, "operations", len(b.ops), "bytes", bytes, "mempool", mempool)
	for _, op := range outdated {
		s.log.Info("operation dropped: branch outdated", "operation", tezos.EncodeOperationHash(op.Hash()),
			"source", tezos.EncodeTz1(op.Contents.Source), "branch", tezos.EncodeBlockHash(op.Branch))
	}
	return nil
}

// Inject validates an operation and adds it to the mempool; it returns the
// operation hash, or the rejection (an *RPCError) if refused.
func (s *Sandbox) Inject(raw []byte) ([32]byte, error) {
	s.mu.Lock()
	op, rej := s.chain.inject(raw)
	s.mu.Unlock()
	var h [32]byte
	if op != nil {
		h = op.Hash()
	}
	if rej != nil {
		s.metrics.rejected.WithLabelValues(rej.id).Inc()
		attrs := []any{"id", rej.id, "msg", rej.msg}
		if op != nil {
			attrs = append(attrs, "operation", tezos.EncodeOperationHash(h), "source", tezos.EncodeTz1(op.Contents.Source),
				"counter", op.Contents.Counter)
		}
		s.log.Info("operation rejected", attrs...)
		return h, &RPCError{Kind: rej.kind, ID: rej.id, Msg: rej.msg}
	}
	s.log.Debug("operation accepted", "operation", tezos.EncodeOperationHash(h), "source", tezos.EncodeTz1(op.Contents.Source),
		"counter", op.Contents.Counter, "messages", len(op.Contents.Messages))
	return h, nil
}

// headBlock returns the current head and the channel closed at the next one.
func (s *Sandbox) headBlock() (*block, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.chain.head, s.headCh
}

// blockAt returns the block at level (from the store: the chain keeps only
// the live window in memory).
func (s *Sandbox) blockAt(level int64) (*block, bool, error) {
	if level < 0 {
		return nil, false, nil
	}
	return s.store.block(level)
}
