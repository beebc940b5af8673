// Package rollupnode is `dsn rollup-node`: a smart-rollup node for the lab,
// serving the subset of octez-smart-rollup-node's RPC the sequencer and
// users need, with octez's paths and JSON shapes, so that the sequencer
// runs unchanged against a real octez rollup node (the lab's `tezos`
// profile).
//
// It originates the rollup from files (kernel and installer setup), follows
// the L1 (`dsn sandbox`), builds each level's inbox (StartOfLevel,
// InfoPerLevel, the level's external messages in operation order,
// EndOfLevel) and runs the kernel in internal/pvm. Each level's durable
// state and its level record (hashes, messages, outbox, verdict) are
// committed in one synced pebble batch, so a restart — kill -9 included —
// resumes at the next level and applies no level twice. A kernel that gets
// stuck marks its level; the node keeps following and serving.
//
// The batcher (batcher.go) packs injected messages into signed
// add_messages operations and injects them into the L1.
//
// What it leaves out (see docs/rollup-node.md): commitments, refutation
// and cementation (there is no L1 protocol to play them against), the
// durable state of any level but the last (history mode "none": the
// level records are kept for every level), L1 reorganisations (the
// sandbox has none).
package rollupnode

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tezos-dsn/dsn/internal/pvm"
	"github.com/tezos-dsn/dsn/internal/tezos"
)

// Version is what /version reports.
const Version = "dsn-rollup-node 0.1"

// Node is a running rollup node.
type Node struct {
	cfg    Config
	log    *slog.Logger
	l1     *l1
	rollup [20]byte
	m      *metrics

	// mu guards the PVM and its durable storage: the follower holds it
	// while a level runs and commits, RPC reads of durable state share it.
	mu      sync.RWMutex
	pvm     *pvm.PVM
	durable *pvm.Durable
	head    uint32 // last processed level (durable storage's level)

	batcher *batcher

	// l1 state, for /health and the follower.
	l1mu      sync.Mutex
	l1Head    header
	l1Seen    bool
	l1Conn    string
	l1Changed chan struct{} // closed and replaced on each new L1 head

	// levels processed and the seconds they took, since Open.
	levels     atomic.Uint64
	levelNanos atomic.Int64

	// subscribers of /global/monitor_blocks.
	subMu sync.Mutex
	subs  map[chan []byte]struct{}
}

// record is what the node keeps about each processed level (a record in
// the durable storage's database, committed with the level's state).
type record struct {
	Level       uint32   `json:"level"`
	Hash        string   `json:"hash"` // the L1 block's
	Predecessor string   `json:"predecessor"`
	Timestamp   int64    `json:"timestamp"`
	Messages    []string `json:"messages"` // the serialized inbox messages, hex, SOL … EOL
	Operations  []string `json:"operations"`
	StateHash   string   `json:"state_hash"`
	Outbox      []string `json:"outbox"` // hex
	Runs        int      `json:"runs"`
	Read        int      `json:"read"`
	Dropped     int      `json:"dropped"`
	Stuck       string   `json:"stuck,omitempty"`
	Debug       string   `json:"debug,omitempty"`
}

func levelKey(level uint32) string {
	return "level/" + hex.EncodeToString(binary.BigEndian.AppendUint32(nil, level))
}
func hashKey(hash string) string { return "hash/" + hash }

const originKey = "origin"

// encodeStateHash writes a PVM state hash as octez does ("srs1…").
func encodeStateHash(h [32]byte) string {
	return tezos.Base58CheckEncode([]byte{0x11, 0xa5, 0xeb, 0xf0}, h[:])
}

// Open opens (or originates) the rollup in cfg.DataDir.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rollup, _ := tezos.ParseRollup(cfg.Rollup)
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, err
	}
	durable, level, err := pvm.OpenDurable(filepath.Join(cfg.DataDir, "durable"))
	if err != nil {
		return nil, err
	}
	pc := pvm.DefaultConfig()
	pc.Rollup, pc.OriginationLevel, pc.TickLimit = rollup, cfg.OriginationLevel, cfg.KernelTickLimit
	p, err := pvm.New(ctx, pc, durable)
	if err != nil {
		durable.Close()
		return nil, err
	}
	n := &Node{cfg: cfg, log: log, l1: newL1(cfg.L1), rollup: rollup, m: newMetrics(),
		pvm: p, durable: durable, head: level, l1Conn: "disconnected", l1Changed: make(chan struct{}),
		subs: map[chan []byte]struct{}{}}
	origin, ok, err := durable.ReadRecord(originKey)
	if err != nil {
		n.Close()
		return nil, err
	}
	if !ok {
		if err := n.originate(); err != nil {
			n.Close()
			return nil, err
		}
	} else if string(origin) != cfg.Rollup {
		n.Close()
		return nil, fmt.Errorf("data dir %s holds rollup %s, not %s", cfg.DataDir, origin, cfg.Rollup)
	}
	n.batcher, err = newBatcher(cfg, n.l1, log, n.m)
	if err != nil {
		n.Close()
		return nil, err
	}
	n.m.level.Set(float64(n.head))
	if err := p.Prepare(ctx); err != nil {
		log.Warn("the installed kernel does not compile; its levels will run the fallback kernel", "err", err)
	}
	log.Info("rollup node opened", "rollup", cfg.Rollup, "level", n.head, "data_dir", cfg.DataDir)
	return n, nil
}

// originate installs the kernel and the setup values and commits them as
// the origination level's state.
func (n *Node) originate() error {
	kernel, err := os.ReadFile(n.cfg.BootSectorFile)
	if err != nil {
		return fmt.Errorf("boot sector: %w", err)
	}
	if err := pvm.Validate(kernel); err != nil {
		return fmt.Errorf("boot sector %s: %w", n.cfg.BootSectorFile, err)
	}
	if err := n.pvm.InstallKernel(kernel); err != nil {
		return err
	}
	if n.cfg.SetupFile != "" {
		raw, err := os.ReadFile(n.cfg.SetupFile)
		if err != nil {
			return fmt.Errorf("setup: %w", err)
		}
		s, err := pvm.ParseSetup(raw)
		if err != nil {
			return fmt.Errorf("setup %s: %w", n.cfg.SetupFile, err)
		}
		if err := s.Apply(n.durable); err != nil {
			return err
		}
	}
	n.head = n.cfg.OriginationLevel
	n.log.Info("rollup originated", "rollup", n.cfg.Rollup, "level", n.head, "kernel_bytes", len(kernel))
	return n.durable.CommitWith(n.head, map[string][]byte{originKey: []byte(n.cfg.Rollup)})
}

// Close releases the storage.
func (n *Node) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.pvm.Close(context.Background())
	return n.durable.Close()
}

// Head returns the last processed level.
func (n *Node) Head() uint32 {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.head
}

// Run follows the L1 until ctx is done: each new L1 level is processed in
// order, then the batcher injects what is queued.
func (n *Node) Run(ctx context.Context) error {
	// Monitor streams end with Run, so that the RPC server's shutdown does
	// not wait on them.
	defer n.endSubscriptions()
	go n.followHeads(ctx)
	for {
		n.l1mu.Lock()
		target, seen, changed := n.l1Head, n.l1Seen, n.l1Changed
		n.l1mu.Unlock()
		for seen && n.Head() < target.Level && ctx.Err() == nil {
			if err := n.processNext(ctx); err != nil {
				if errors.Is(err, ErrStorage) {
					return err
				}
				if ctx.Err() != nil {
					break
				}
				n.log.Warn("level not processed; retrying", "level", n.Head()+1, "err", err)
				sleep(ctx, 500*time.Millisecond)
				break
			}
		}
		// The batcher injects only when the node has caught up with the
		// freshest head: its branch is then recent, and a level counted
		// against an operation's re-injection delay has been searched for it.
		n.l1mu.Lock()
		fresh := n.l1Head
		n.l1mu.Unlock()
		if seen && n.Head() == fresh.Level {
			n.batcher.tick(ctx, fresh)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-n.batcher.wake: // messages queued: inject now, not at the next head
		case <-time.After(2 * time.Second):
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// followHeads keeps l1Head current from the heads monitor, reconnecting
// after failures; a failed stream also falls back to one polled head.
func (n *Node) followHeads(ctx context.Context) {
	for ctx.Err() == nil {
		if h, err := n.l1.head(ctx); err == nil {
			n.setL1Head(h, "connected")
		}
		err := n.l1.monitorHeads(ctx, func(h header) { n.setL1Head(h, "connected") })
		if ctx.Err() != nil {
			return
		}
		n.l1mu.Lock()
		if n.l1Conn == "connected" {
			n.log.Warn("l1 connection lost; reconnecting", "err", err)
		}
		n.l1Conn = "reconnecting"
		n.l1mu.Unlock()
		n.m.l1Reconnects.Inc()
		sleep(ctx, 500*time.Millisecond)
	}
}

func (n *Node) setL1Head(h header, conn string) {
	n.l1mu.Lock()
	defer n.l1mu.Unlock()
	n.l1Conn = conn
	if n.l1Seen && h.Level <= n.l1Head.Level && h.Hash == n.l1Head.Hash {
		return
	}
	n.l1Head, n.l1Seen = h, true
	n.m.l1Level.Set(float64(h.Level))
	close(n.l1Changed)
	n.l1Changed = make(chan struct{})
}

// processNext runs the next L1 level through the kernel and commits its
// state and record atomically.
func (n *Node) processNext(ctx context.Context) error {
	level := n.Head() + 1
	in, err := n.l1.inbox(ctx, level)
	if err != nil {
		return err
	}
	pred, err := tezos.ParseBlockHash(in.Predecessor)
	if err != nil {
		return fmt.Errorf("level %d: predecessor: %w", level, err)
	}
	var msgs [][]byte
	rec := &record{Level: level, Hash: in.Hash, Predecessor: in.Predecessor, Timestamp: in.Timestamp}
	for _, op := range in.Operations {
		rec.Operations = append(rec.Operations, op.Hash)
		for _, h := range op.Messages {
			m, err := hex.DecodeString(h)
			if err != nil {
				return fmt.Errorf("level %d: operation %s: message is not hex", level, op.Hash)
			}
			msgs = append(msgs, pvm.External(m))
		}
	}
	start := time.Now()
	n.mu.Lock()
	// A level is never cut short by shutdown: a cancelled run would be
	// recorded as stuck. It is bounded by kernel_tick_limit instead.
	res := n.pvm.Execute(context.WithoutCancel(ctx), level, in.PredecessorTimestamp, pred, msgs)
	for _, m := range pvm.Inbox(in.PredecessorTimestamp, pred, msgs) {
		rec.Messages = append(rec.Messages, hex.EncodeToString(m))
	}
	rec.StateHash = encodeStateHash(res.StateHash)
	for _, o := range res.Outbox {
		rec.Outbox = append(rec.Outbox, hex.EncodeToString(o))
	}
	rec.Runs, rec.Read, rec.Dropped, rec.Stuck = res.Runs, res.Read, res.Dropped, res.Stuck
	if len(res.Debug) > 0 {
		rec.Debug = truncate(res.Debug, 4096)
	}
	raw, _ := json.Marshal(rec)
	err = n.durable.CommitWith(level, map[string][]byte{levelKey(level): raw, hashKey(in.Hash): binary.BigEndian.AppendUint32(nil, level)})
	if err == nil {
		n.head = level
	}
	n.mu.Unlock()
	if err != nil {
		// The disk failed under a half-applied level: the in-memory state
		// can no longer be trusted, and only a restart from disk is safe.
		return fmt.Errorf("%w: level %d: %v", ErrStorage, level, err)
	}
	took := time.Since(start)
	n.levels.Add(1)
	n.levelNanos.Add(int64(took))
	n.m.level.Set(float64(level))
	n.m.levelSeconds.Observe(took.Seconds())
	n.m.messages.Add(float64(len(msgs)))
	if res.Elapsed > n.cfg.KernelSlowLevel.Duration {
		n.m.slow.Inc()
		n.log.Warn("slow level: the kernel ran longer than kernel_slow_level (its outcome stands: only ticks decide)",
			"level", level, "took_ms", res.Elapsed.Milliseconds(), "ticks", res.Ticks, "runs", res.Runs)
	}
	if res.Stuck != "" {
		n.m.stuck.Inc()
		n.log.Error("kernel stuck at level; following on", "level", level, "reason", res.Stuck)
	}
	if res.Debug != "" {
		n.log.Debug("kernel debug", "level", level, "output", truncate(res.Debug, 2048))
	}
	n.log.Info("level processed", "level", level, "messages", len(msgs), "runs", res.Runs, "ticks", res.Ticks, "took_ms", took.Milliseconds(), "state_hash", rec.StateHash)
	n.batcher.included(in)
	n.publish(rec)
	return nil
}

// LevelStats returns how many levels this node processed since it was
// opened and the seconds they took (running the kernel and committing).
func (n *Node) LevelStats() (levels uint64, seconds float64) {
	return n.levels.Load(), time.Duration(n.levelNanos.Load()).Seconds()
}

// ErrStorage reports that the node's storage failed; the node must stop.
var ErrStorage = errors.New("rollupnode: storage failed")

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// readRecord returns the record of a level.
func (n *Node) readRecord(level uint32) (*record, bool, error) {
	raw, ok, err := n.durable.ReadRecord(levelKey(level))
	if err != nil || !ok {
		return nil, ok, err
	}
	var r record
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, false, fmt.Errorf("level %d record: %w", level, err)
	}
	return &r, true, nil
}

func (n *Node) levelOfHash(hash string) (uint32, bool) {
	raw, ok, err := n.durable.ReadRecord(hashKey(hash))
	if err != nil || !ok || len(raw) != 4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(raw), true
}

// publish hands a processed level to the monitor_blocks subscribers;
// a subscriber that does not keep up is dropped.
func (n *Node) publish(r *record) {
	b, _ := json.Marshal(l2Block(r))
	n.subMu.Lock()
	defer n.subMu.Unlock()
	for ch := range n.subs {
		select {
		case ch <- b:
		default:
			delete(n.subs, ch)
			close(ch)
		}
	}
}

func (n *Node) subscribe() chan []byte {
	ch := make(chan []byte, 64)
	n.subMu.Lock()
	defer n.subMu.Unlock()
	if n.subs == nil { // Run has ended
		close(ch)
		return ch
	}
	n.subs[ch] = struct{}{}
	return ch
}

// endSubscriptions ends every monitor stream, and those to come.
func (n *Node) endSubscriptions() {
	n.subMu.Lock()
	defer n.subMu.Unlock()
	for ch := range n.subs {
		close(ch)
	}
	n.subs = nil
}

func (n *Node) unsubscribe(ch chan []byte) {
	n.subMu.Lock()
	defer n.subMu.Unlock()
	if _, ok := n.subs[ch]; ok {
		delete(n.subs, ch)
		close(ch)
	}
}
