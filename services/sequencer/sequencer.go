// Package sequencer is the users' door to the DSN: a public HTTP API that
// takes transactions, submits them to the consensus nodes (trying each node
// in turn until one acknowledges), follows the committed pre-blocks
// (Export, failing over between nodes without gaps or duplicates) and
// tells users where their transaction is: pending, then ordered (pre-block
// index and position, a soft confirmation, with a receipt the user checks
// offline against the committee: receipt.go, internal/receipt). Posting to the rollup and the
// verified status come with the rollup node (see the sequencer issue);
// docs/sequencer.md documents the API.
package sequencer

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/blake2b"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/preblock"
	"github.com/tezos-dsn/dsn/internal/receipt"
)

// Endpoint is one consensus node's public APIs.
type Endpoint struct {
	Transactions string // host:port of dsn.v1.Transactions
	Export       string // host:port of dsn.v1.Export
}

// Config is the sequencer's configuration.
type Config struct {
	Nodes []Endpoint
	// MaxTransactionSize bounds a transaction in bytes (the nodes' own limit).
	MaxTransactionSize int
	// SubmitTimeout bounds one node's acknowledgement before the next node is tried.
	SubmitTimeout time.Duration
	// Tracked is how many transactions' statuses are kept (oldest dropped first).
	Tracked int

	// Rollup is the rollup node's RPC base URL (octez-smart-rollup-node's
	// API); empty: nothing is posted and nothing becomes verified.
	Rollup string
	// MockRollup, for development without a rollup node: the sequencer
	// runs the kernel's state machine itself on what it would post, with
	// this committee as the rollup's setup (a level per post).
	MockRollup *narwhal.Committee
	// PostInterval is how often the DAG read so far is posted as one
	// submission (and MaxSubmissionBytes the size that posts at once).
	// Shorter gets data into the next L1 block more often, at about one
	// partly filled DA chunk and a few signed tips more per post.
	PostInterval       time.Duration
	MaxSubmissionBytes int
	// VerifyInterval is how often the rollup's head is read to mark
	// transactions verified when no new L2 block is announced (each block
	// of the rollup node's monitor_blocks stream triggers a read at once).
	VerifyInterval time.Duration
	// RepostAfter: when the rollup's DAG has not advanced for this long
	// while more was posted, the sequencer posts again from the rollup's DAG.
	RepostAfter time.Duration
	// Turns, for several sequencers posting one DSN's DAG: with PostTurns
	// k > 1, this sequencer posts the certificates of the rounds r with
	// (r / PostWindow) mod k = PostTurn, and those of the others' turns
	// only if the rollup's DAG has not passed them PostFailover after it
	// read them (their poster is down). With k ≤ 1 it posts everything.
	// PostFailover must exceed the L1's inclusion delay (a block time and
	// the rollup node's run), or every sequencer posts every window; and
	// while one is down, the kernel keeps the others' later windows waiting
	// for its rounds, about committee size × rounds/s × PostFailover / 2
	// certificates, bounded by kernel/state.MaxSuspended (4,096): turns fit
	// L1 blocks of a few seconds, not mainnet's.
	PostTurn, PostTurns int
	PostWindow          uint64
	PostFailover        time.Duration
	// RateLimit is the API requests a second each client address may make
	// (bursts of RateBurst); 0 disables the limit. /health, /metrics and
	// the event stream are not limited.
	RateLimit float64
	RateBurst int

	// Receipts is how many ordered transactions' receipts are kept (oldest
	// dropped first; 0: none are built), and ReceiptBytes bounds their
	// memory: each is charged its batch (once per batch of a pre-block)
	// and about 1 KiB.
	Receipts     int
	ReceiptBytes int
}

// DefaultConfig returns defaults for nodes.
func DefaultConfig(nodes []Endpoint) Config {
	return Config{Nodes: nodes, MaxTransactionSize: 256 << 10, SubmitTimeout: 5 * time.Second, Tracked: 1_000_000,
		RateLimit: 200, RateBurst: 400, Receipts: 100_000, ReceiptBytes: 256 << 20,
		PostInterval: 100 * time.Millisecond, MaxSubmissionBytes: 1 << 20, VerifyInterval: time.Second, RepostAfter: 15 * time.Second,
		PostWindow: 20, PostFailover: 10 * time.Second}
}

// Status is what the API says about a transaction.
type Status struct {
	ID     string `json:"id"`
	Status string `json:"status"` // pending | ordered | verified
	// Index and Position locate an ordered transaction: the pre-block and
	// its place among the pre-block's transactions (from 0).
	Index     *uint64 `json:"index,omitempty"`
	Position  *int    `json:"position,omitempty"`
	OrderedAt string  `json:"ordered_at,omitempty"` // RFC 3339, when this sequencer saw the pre-block
	// Block and Level say where a verified transaction is: the kernel's
	// block (equal to Index), and the L1 level at which the sequencer saw
	// the rollup holding it (at or after the level that wrote it).
	Block      *uint64 `json:"block,omitempty"`
	Level      *uint32 `json:"level,omitempty"`
	VerifiedAt string  `json:"verified_at,omitempty"` // RFC 3339, when this sequencer saw the block in the rollup
	// Receipt is the path of the transaction's receipt, once this
	// sequencer holds it (internal/receipt; docs/sequencer.md).
	Receipt string `json:"receipt,omitempty"`
}

// Sequencer serves the API. Create it with New, run Follow in a goroutine,
// and serve Handler.
type Sequencer struct {
	cfg   Config
	log   *slog.Logger
	conns []*grpc.ClientConn
	tx    []dsnv1.TransactionsClient
	ex    []dsnv1.ExportClient

	metrics *metrics

	mu     sync.Mutex
	status map[narwhal.Digest]*Status
	// byIndex lists the ordered, not yet verified transactions of each
	// pre-block (only when posting).
	byIndex map[uint64][]narwhal.Digest
	order   []narwhal.Digest // insertion order, for eviction
	next    int              // round-robin position (pick)
	probe   int              // the next node to probe (pick)
	picks   uint64           // submissions so far (pick's probes)
	ackTime []time.Duration  // recent time each node took to answer (pick)
	waiting []inFlight       // each node's submissions not answered yet (pick)
	head    uint64           // last pre-block followed
	up      []bool           // node answered its last call

	postedBytes atomic.Uint64 // bytes of inbox messages posted
	postedCerts atomic.Uint64 // certificates posted
	turnsTaken  atomic.Uint64 // certificates of others' turns posted

	limit  *limiter
	rollup rollup                  // nil without Config.Rollup or MockRollup
	subs   map[chan event]struct{} // event-stream subscribers (s.mu)

	receipts *receiptBook // s.mu
}

// New connects (lazily) to the nodes.
func New(cfg Config, log *slog.Logger) (*Sequencer, error) {
	if len(cfg.Nodes) == 0 {
		return nil, errors.New("sequencer: no consensus node endpoints")
	}
	if cfg.PostTurns > 1 && (cfg.PostTurn < 0 || cfg.PostTurn >= cfg.PostTurns) {
		return nil, fmt.Errorf("sequencer: post turn %d of %d: want 0 to %d", cfg.PostTurn, cfg.PostTurns, cfg.PostTurns-1)
	}
	if cfg.PostTurns > 1 && cfg.PostWindow < 4 {
		return nil, fmt.Errorf("sequencer: post window of %d rounds: want 4 or more (see poster.takeLate)", cfg.PostWindow)
	}
	s := &Sequencer{cfg: cfg, log: log, status: map[narwhal.Digest]*Status{}, byIndex: map[uint64][]narwhal.Digest{}, subs: map[chan event]struct{}{}, up: make([]bool, len(cfg.Nodes)),
		ackTime: make([]time.Duration, len(cfg.Nodes)), waiting: make([]inFlight, len(cfg.Nodes))}
	s.receipts = newReceiptBook(cfg.Receipts, cfg.ReceiptBytes)
	s.metrics = newMetrics(s)
	s.limit = newLimiter(cfg.RateLimit, cfg.RateBurst)
	switch {
	case cfg.MockRollup != nil:
		s.rollup = newMockRollup(cfg.MockRollup)
	case cfg.Rollup != "":
		s.rollup = newRollupClient(cfg.Rollup)
	}
	for _, e := range cfg.Nodes {
		for _, addr := range []string{e.Transactions, e.Export} {
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				s.Close()
				return nil, fmt.Errorf("node %s: %w", addr, err)
			}
			s.conns = append(s.conns, conn)
		}
		n := len(s.conns)
		s.tx = append(s.tx, dsnv1.NewTransactionsClient(s.conns[n-2]))
		s.ex = append(s.ex, dsnv1.NewExportClient(s.conns[n-1]))
	}
	return s, nil
}

// Close drops the node connections.
func (s *Sequencer) Close() {
	for _, c := range s.conns {
		c.Close()
	}
}

// ErrNoNode: no consensus node acknowledged the transaction.
var ErrNoNode = errors.New("sequencer: no consensus node acknowledged the transaction")

// Submit hands tx to the DSN and returns its status once a node has
// acknowledged it (its batch committed: from then on it is ordered). A
// transaction already known is not submitted again: the same bytes get
// the same id and status.
func (s *Sequencer) Submit(ctx context.Context, tx []byte) (Status, error) {
	id := blake2b.Sum256(tx)
	s.mu.Lock()
	if st, ok := s.status[id]; ok {
		out := *st
		s.mu.Unlock()
		return out, nil
	}
	// Tracked before it is submitted, so that a pre-block followed before
	// the acknowledgement comes back still marks it ordered.
	s.trackLocked(id)
	first := s.pickLocked()
	s.mu.Unlock()
	var lastErr error
	for k := range s.tx {
		i := (first + k) % len(s.tx)
		c, cancel := context.WithTimeout(ctx, s.cfg.SubmitTimeout)
		start, ticket := s.sent(i)
		_, err := s.tx[i].SubmitTransaction(c, &dsnv1.Transaction{Transaction: tx})
		cancel()
		s.answered(i, ticket, time.Since(start))
		s.setUp(i, err == nil || status.Code(err) == codes.InvalidArgument)
		if err == nil {
			s.metrics.accepted.Inc()
			st, _ := s.Lookup(id)
			return st, nil
		}
		if status.Code(err) == codes.InvalidArgument {
			s.untrack(id)
			return Status{}, err // the nodes refuse it: another node would too
		}
		if ctx.Err() != nil {
			s.untrack(id)
			return Status{}, ctx.Err()
		}
		lastErr = err
		s.log.Warn("submit failed; trying the next node", "node", s.cfg.Nodes[i].Transactions, "err", err)
	}
	// NB: a node may have stored the batch and failed before answering:
	// the transaction can still be ordered, and a retry may order it twice
	// (docs/sequencer.md says which layer deduplicates).
	s.untrack(id)
	s.metrics.unavailable.Inc()
	return Status{}, fmt.Errorf("%w: %v", ErrNoNode, lastErr)
}

// probeEvery: one submission in probeEvery goes to the next node in a
// rotation of its own, however slow it was, so that a node that was slow
// is tried again.
const probeEvery = 64

// pickLocked chooses the node to try first (s.mu held): the next in
// round-robin order, skipping a node that looks more than twice as slow as
// the committee's median — by the time it recently took to answer, or by
// how long its oldest submission has been waiting. A node acknowledges
// once the transaction's batch is committed, and a node whose messages
// reach its peers late sees its certificates left out of the DAG: its
// transactions wait seconds (BenchmarkLab -lab-slow 50ms: p90 3.2 s, p99
// 9.5 s at 100 tx/s, all of it on the slow node's share).
func (s *Sequencer) pickLocked() int {
	n := len(s.tx)
	s.picks++
	if s.picks%probeEvery == 0 {
		i := s.probe
		s.probe = (s.probe + 1) % n
		return i
	}
	now := time.Now()
	slow := make([]time.Duration, n) // how slow each node looks now
	for i := range slow {
		slow[i] = max(s.ackTime[i], s.waiting[i].age(now))
	}
	sorted := slices.Clone(slow)
	slices.Sort(sorted)
	limit := 2 * sorted[n/2]
	for {
		i := s.next
		s.next = (s.next + 1) % n
		if slow[i] <= limit { // at least half the nodes pass
			return i
		}
	}
}

// inFlight is one node's submissions not answered yet, oldest first;
// answered ones leave the front lazily.
type inFlight struct {
	next     uint64
	start    []time.Time
	ticket   []uint64
	answered map[uint64]bool
}

// age is how long the oldest unanswered submission has waited (0: none).
func (f *inFlight) age(now time.Time) time.Duration {
	for len(f.ticket) > 0 && f.answered[f.ticket[0]] {
		delete(f.answered, f.ticket[0])
		f.ticket, f.start = f.ticket[1:], f.start[1:]
	}
	if len(f.start) == 0 {
		return 0
	}
	return now.Sub(f.start[0])
}

// sent records a submission to node i leaving now.
func (s *Sequencer) sent(i int) (time.Time, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := &s.waiting[i]
	now := time.Now()
	f.next++
	f.start, f.ticket = append(f.start, now), append(f.ticket, f.next)
	return now, f.next
}

// answered records how long node i took to answer submission ticket, an
// acknowledgement or not (a timeout counts whole), as a moving average
// weighing the last a fifth.
func (s *Sequencer) answered(i int, ticket uint64, d time.Duration) {
	s.mu.Lock()
	f := &s.waiting[i]
	if f.answered == nil {
		f.answered = map[uint64]bool{}
	}
	f.answered[ticket] = true // leaves the front at the next pick (inFlight.age)
	s.ackTime[i] += (d - s.ackTime[i]) / 5
	s.mu.Unlock()
}

func (s *Sequencer) setUp(i int, up bool) {
	s.mu.Lock()
	s.up[i] = up
	s.mu.Unlock()
}

// trackLocked starts tracking a transaction as pending (s.mu held).
func (s *Sequencer) trackLocked(id narwhal.Digest) {
	s.status[id] = &Status{ID: hex.EncodeToString(id[:]), Status: "pending"}
	s.order = append(s.order, id)
	if len(s.order) > s.cfg.Tracked {
		delete(s.status, s.order[0])
		s.order = s.order[1:]
	}
}

// untrack forgets a transaction whose submission failed.
func (s *Sequencer) untrack(id narwhal.Digest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.status[id]; ok && st.Status == "pending" {
		delete(s.status, id) // its entry in order is skipped when evicted
	}
}

// Lookup returns a transaction's status.
func (s *Sequencer) Lookup(id narwhal.Digest) (Status, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.status[id]
	if !ok {
		return Status{}, false
	}
	return *st, true
}

// Follow reads the committed pre-blocks from the first one on, failing
// over to the next node when a stream breaks, resuming after the last
// complete pre-block: no gap, no duplicate. It returns when ctx ends.
func (s *Sequencer) Follow(ctx context.Context) {
	node := 0
	for ctx.Err() == nil {
		err := s.followNode(ctx, node)
		if ctx.Err() != nil {
			return
		}
		s.setUp(node, false)
		s.log.Warn("export stream lost; following the next node", "node", s.cfg.Nodes[node].Export, "err", err)
		node = (node + 1) % len(s.ex)
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (s *Sequencer) followNode(ctx context.Context, node int) error {
	s.mu.Lock()
	from := s.head
	s.mu.Unlock()
	st, err := s.ex[node].Export(ctx, &dsnv1.ExportRequest{From: from})
	if err != nil {
		return err
	}
	rd := preblock.NewReader(st)
	for {
		pb, _, err := rd.PreBlock()
		if err != nil {
			return err
		}
		s.setUp(node, true)
		if pb == nil {
			continue // heartbeat
		}
		if err := s.apply(pb); err != nil {
			return err
		}
	}
}

// apply marks the tracked transactions of the next pre-block ordered and
// builds their receipts (receipt.go); the ordered events go out after, so
// that they name the receipt when it is ready at once.
func (s *Sequencer) apply(pb *dsnv1.PreBlock) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if pb.Index != s.head+1 {
		return fmt.Errorf("pre-block %d after %d", pb.Index, s.head)
	}
	if len(pb.Batches) > len(pb.Certificates) {
		return fmt.Errorf("pre-block %d: batches for %d certificates, %d certificates", pb.Index, len(pb.Batches), len(pb.Certificates))
	}
	at := time.Now().UTC().Format(time.RFC3339Nano)
	pos := 0
	var marked []*Status
	var fs []found
	for i, cb := range pb.Batches {
		for _, raw := range cb.Batches {
			b, err := narwhal.DecodeBatch(raw)
			if err != nil {
				return fmt.Errorf("pre-block %d: %w", pb.Index, err)
			}
			var bd *narwhal.Digest // computed for the first tracked transaction of the batch
			for k, tx := range b.Transactions {
				id := blake2b.Sum256(tx)
				if st, ok := s.status[id]; ok && st.Status == "pending" {
					index, position := pb.Index, pos
					st.Status, st.Index, st.Position, st.OrderedAt = "ordered", &index, &position, at
					s.metrics.ordered.Inc()
					marked = append(marked, st)
					if s.rollup != nil {
						s.byIndex[pb.Index] = append(s.byIndex[pb.Index], id)
					}
					if s.receipts.enabled() {
						charge := receiptOverhead
						if bd == nil {
							d := b.Digest()
							bd, charge = &d, charge+len(raw)
						}
						fs = append(fs, found{certIndex: i, charge: charge, o: receipt.Ordered{
							ID: id, Index: pb.Index, Position: pos, Batch: raw, BatchDigest: *bd, InBatch: k}})
					}
				}
				pos++
			}
		}
	}
	if s.receipts.enabled() {
		s.receiptsFor(pb, fs)
	}
	for _, st := range marked {
		s.publishLocked(st)
	}
	s.head = pb.Index
	return nil
}

// Handler returns the HTTP API (docs/sequencer.md).
func (s *Sequencer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/transactions", s.limited(s.postTransaction))
	mux.HandleFunc("POST /broadcast", s.limited(s.postTransaction))
	mux.HandleFunc("GET /v1/transactions/{id}", s.limited(s.getTransaction))
	mux.HandleFunc("GET /v1/transactions/{id}/receipt", s.limited(s.getReceipt))
	mux.HandleFunc("GET /v1/head", s.limited(s.getHead))
	mux.HandleFunc("GET /v1/blocks/{n}", s.limited(s.getBlock))
	mux.HandleFunc("GET /v1/authorities", s.limited(s.getAuthorities))
	mux.HandleFunc("GET /v1/events", s.getEvents)
	mux.HandleFunc("GET /health", s.health)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	return mux
}

type apiError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// fail answers an error and counts it by status.
func (s *Sequencer) fail(w http.ResponseWriter, code int, format string, args ...any) {
	s.metrics.rejected.WithLabelValues(fmt.Sprint(code)).Inc()
	writeJSON(w, code, apiError{Error: fmt.Sprintf(format, args...)})
}

// postTransaction takes raw bytes (any content type but JSON) or
// {"data": "<hex>"} (application/json, and always on /broadcast).
func (s *Sequencer) postTransaction(w http.ResponseWriter, r *http.Request) {
	// Hex doubles the size; the JSON wrapper adds a little.
	limit := int64(2*s.cfg.MaxTransactionSize + 1024)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		s.fail(w, http.StatusRequestEntityTooLarge, "body over %d bytes: a transaction is at most %d bytes", limit, s.cfg.MaxTransactionSize)
		return
	}
	tx := body
	if r.URL.Path == "/broadcast" || strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		var req struct {
			Data *string `json:"data"`
		}
		if err := json.Unmarshal(body, &req); err != nil || req.Data == nil {
			s.fail(w, http.StatusBadRequest, `body must be {"data": "<hex>"}`)
			return
		}
		if tx, err = hex.DecodeString(strings.TrimPrefix(*req.Data, "0x")); err != nil {
			s.fail(w, http.StatusBadRequest, "data: not hex: %v", err)
			return
		}
	}
	switch {
	case len(tx) == 0:
		s.fail(w, http.StatusBadRequest, "empty transaction")
		return
	case len(tx) > s.cfg.MaxTransactionSize:
		s.fail(w, http.StatusRequestEntityTooLarge, "transaction of %d bytes exceeds the limit of %d bytes", len(tx), s.cfg.MaxTransactionSize)
		return
	}
	st, err := s.Submit(r.Context(), tx)
	switch {
	case err == nil:
		writeJSON(w, http.StatusAccepted, st)
	case status.Code(err) == codes.InvalidArgument:
		s.fail(w, http.StatusBadRequest, "%s", status.Convert(err).Message())
	case errors.Is(err, ErrNoNode):
		s.fail(w, http.StatusServiceUnavailable, "no consensus node acknowledged the transaction; retry")
	default:
		s.fail(w, http.StatusServiceUnavailable, "%v", err)
	}
}

// parseID reads the {id} of the path, answering 400 when it is malformed.
func (s *Sequencer) parseID(w http.ResponseWriter, r *http.Request) (narwhal.Digest, bool) {
	raw, err := hex.DecodeString(r.PathValue("id"))
	if err != nil || len(raw) != 32 {
		s.fail(w, http.StatusBadRequest, "id: want the 64 hex digits of the transaction's BLAKE2b-256 digest")
		return narwhal.Digest{}, false
	}
	return narwhal.Digest(raw), true
}

func (s *Sequencer) getTransaction(w http.ResponseWriter, r *http.Request) {
	id, ok := s.parseID(w, r)
	if !ok {
		return
	}
	st, ok := s.Lookup(id)
	if !ok {
		s.fail(w, http.StatusNotFound, "unknown transaction (not submitted here, or no longer tracked)")
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Sequencer) health(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	up := 0
	for _, u := range s.up {
		if u {
			up++
		}
	}
	head := s.head
	s.mu.Unlock()
	code := http.StatusOK
	if up == 0 {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]any{"nodes_up": up, "nodes": len(s.up), "head": head})
}
