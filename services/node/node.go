// Package node is the consensus node runtime: it owns the goroutines,
// sockets, disk and clock around one internal/replica state machine. One
// event loop feeds the replica peer messages, client transactions and ticks,
// and carries out its outputs in the required order: writes synced to pebble
// first (several events grouped into one sync), then messages, transaction
// acknowledgements and committed sub-DAGs. It serves the node-to-node Peer
// service (mutual TLS on the committee's ed25519 keys), the client-facing
// Transactions and Export gRPC services, and Prometheus metrics.
package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
	"github.com/tezos-dsn/dsn/internal/config"
	"github.com/tezos-dsn/dsn/internal/crypto"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/primary"
	"github.com/tezos-dsn/dsn/internal/replica"
	"github.com/tezos-dsn/dsn/internal/store"
)

// ErrStopped is returned to submitters when the node stops.
var ErrStopped = errors.New("node: stopped")

// Node is one running consensus node.
type Node struct {
	cfg       *config.Node
	log       *slog.Logger
	committee *narwhal.Committee
	verifier  *narwhal.Verifier
	self      narwhal.AuthorityID
	store     *pebbleStore
	signed    *signedLog // the signing record, outside the store (signed.go)
	replica   *replica.Replica
	transport *transport
	metrics   *metrics

	submits chan submission

	headMu   sync.Mutex
	head     uint64        // last committed sub-DAG index
	headCh   chan struct{} // closed and replaced on every commit
	stopped  chan struct{} // closed when the loop ends
	listenMu sync.Mutex
	addrs    map[string]string // actual listen addresses, by config field
	statusMu sync.Mutex
	status   replica.Status
	tracer   Tracer // nil: no latency anatomy
	feed     dagFeed
	opts     options
	free     atomic.Uint64 // free bytes in the data directory's filesystem, last sampled
}

// DefaultMinFreeBytes is the free-space watermark below which the
// Transactions API refuses new transactions (RESOURCE_EXHAUSTED).
const DefaultMinFreeBytes = 256 << 20

// freeSpaceEvery is how often the node samples the free space.
const freeSpaceEvery = time.Second

// Option adjusts a node beyond its config file.
type Option func(*options)

type options struct {
	fs           vfs.FS
	freeBytes    func(dir string) (uint64, error)
	minFreeBytes uint64
	tracer       Tracer
}

// WithFS makes the store work through fs instead of the OS's filesystem
// (tests inject faults with pebble's vfs/errorfs).
func WithFS(fs vfs.FS) Option { return func(o *options) { o.fs = fs } }

// WithTracer installs a tracer (latency anatomy, for benchmarks).
func WithTracer(t Tracer) Option { return func(o *options) { o.tracer = t } }

// WithMinFreeBytes sets the free-space watermark (bytes; 0 disables it).
func WithMinFreeBytes(n uint64) Option { return func(o *options) { o.minFreeBytes = n } }

// WithFreeSpace replaces the free-space probe (statfs of the data
// directory), for tests.
func WithFreeSpace(f func(dir string) (uint64, error)) Option {
	return func(o *options) { o.freeBytes = f }
}

// statfsFree returns the bytes an unprivileged process may still write in
// dir's filesystem.
func statfsFree(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// Tracer observes where a node's transactions spend their time (latency
// anatomy, for benchmarks). Its methods are called from the node's
// goroutines: they must be quick and safe for concurrent use.
type Tracer interface {
	// Received: a client transaction reached the event loop.
	Received(tx []byte, at time.Time)
	// Stage: own batches reached a stage; at is when the node carried it
	// out: sealed and certified once written, with the batch or
	// certificate sent; proposed with the header sent (after the signing
	// record's sync); committed once synced and published.
	Stage(stage replica.Stage, batches []narwhal.Digest, at time.Time)
}

type submission struct {
	tx   []byte
	done chan error // buffered 1
}

// New opens the node's store, loads its keys and committee, and recovers the
// replica. Paths in cfg resolve against its file's directory. A data
// directory that holds a store which fails the start-up checks is refused
// with one error naming the directory, what failed and the remedy
// (ErrStoreDamaged; see openStore and docs/storage.md).
func New(cfg *config.Node, log *slog.Logger, opts ...Option) (*Node, error) {
	o := options{freeBytes: statfsFree, minFreeBytes: DefaultMinFreeBytes}
	for _, opt := range opts {
		opt(&o)
	}
	committee, err := config.LoadCommittee(cfg.Path(cfg.Committee))
	if err != nil {
		return nil, err
	}
	self := -1
	for i := range committee.Authorities {
		if committee.Authorities[i].Name == cfg.Name {
			self = i
		}
	}
	if self < 0 {
		return nil, fmt.Errorf("name: %q is not in the committee", cfg.Name)
	}
	consensusKey, err := config.LoadConsensusKey(cfg.Path(cfg.ConsensusKeyFile))
	if err != nil {
		return nil, err
	}
	netKey, err := config.LoadNetworkKey(cfg.Path(cfg.NetworkKeyFile))
	if err != nil {
		return nil, err
	}
	keys, err := crypto.NewKeySet(committee.ConsensusKeys())
	if err != nil {
		return nil, fmt.Errorf("committee keys: %w", err)
	}
	// The cache lets the loop verify a burst of certificates in one batch
	// before the replica checks them one by one (see preVerify).
	verifier := narwhal.NewVerifierWith(committee, crypto.NewCachedKeySet(keys, 50_000))
	// The signing record (signed.go) is read first: an existing store must
	// not be behind it (openStore refuses one that is).
	if err := os.MkdirAll(cfg.Path(cfg.DataDir), 0o755); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	signed, rec, err := openSigned(cfg.Path(cfg.DataDir))
	if err != nil {
		return nil, err
	}
	st, err := openStore(cfg.Path(cfg.DataDir), storeOptions{fs: o.fs, signed: rec})
	if err != nil {
		signed.close()
		return nil, err
	}
	log = log.With("node", cfg.Name)
	if tail := st.checked.walTail; tail != "" {
		log.Warn("store: "+tail, "data_dir", st.dir)
	}
	if sc := st.checked; sc.took > 0 {
		log.Info("store checked", "data_dir", st.dir, "tables", sc.tables, "table_bytes", sc.tableBytes,
			"subdags", sc.subDAGs, "certificates", sc.certs, "took", sc.took.Round(time.Millisecond).String())
	}
	rep, err := replica.New(cfg.Replica(), committee, verifier, narwhal.AuthorityID(self), consensusKey, st)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("recover replica: %w", err)
	}
	// What this node signed, kept outside the store: whatever the store
	// forgot, the node signs nothing new at or below it. A new store (the
	// old one moved aside, the record kept) starts from the record.
	completeSigned(&rec, st, rep.Status().DAGRound, committee.Size(), log)
	rep.SetSigned(rec.Signed)
	// Recorded at once: what the replica recovered beyond the record (a
	// header re-signed from the store) and what was derived or migrated.
	if err := signed.write(rep.Signed(), st.group.Load()); err != nil {
		signed.close()
		st.Close()
		return nil, fmt.Errorf("signing record: %w", err)
	}
	m := newMetrics()
	tr, err := newTransport(narwhal.AuthorityID(self), committee, netKey, cfg.Network, log, m)
	if err != nil {
		signed.close()
		st.Close()
		return nil, err
	}
	n := &Node{
		cfg: cfg, log: log, committee: committee, verifier: verifier, self: narwhal.AuthorityID(self),
		store: st, signed: signed, replica: rep, transport: tr, metrics: m,
		submits: make(chan submission, 4096),
		headCh:  make(chan struct{}), stopped: make(chan struct{}),
		head: rep.Status().Committed, addrs: map[string]string{}, opts: o, tracer: o.tracer,
	}
	n.sampleFreeSpace()
	return n, nil
}

// Addr returns the address a listener actually bound ("p2p",
// "transactions", "export", "metrics"), once Run has started it.
func (n *Node) Addr(which string) string {
	n.listenMu.Lock()
	defer n.listenMu.Unlock()
	return n.addrs[which]
}

func (n *Node) listen(which, addr string) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s listen %s: %w", which, addr, err)
	}
	n.listenMu.Lock()
	n.addrs[which] = lis.Addr().String()
	n.listenMu.Unlock()
	return lis, nil
}

// Run serves until ctx ends or a fatal error (a store failure) occurs. It
// closes the store before returning.
func (n *Node) Run(ctx context.Context) error {
	defer n.store.Close()
	defer n.signed.close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	p2p, err := n.listen("p2p", n.cfg.P2PAddress)
	if err != nil {
		return err
	}
	txLis, err := n.listen("transactions", n.cfg.TransactionsAddress)
	if err != nil {
		p2p.Close()
		return err
	}
	exLis, err := n.listen("export", n.cfg.ExportAddress)
	if err != nil {
		p2p.Close()
		txLis.Close()
		return err
	}
	var wg sync.WaitGroup
	// An oversize transaction is refused by gRPC before it is buffered:
	// the receive limit follows the configured size (plus framing).
	api := grpc.NewServer(grpc.MaxRecvMsgSize(n.cfg.MaxTransactionSize + 1024))
	dsnv1.RegisterTransactionsServer(api, &txServer{n: n})
	exp := grpc.NewServer()
	dsnv1.RegisterExportServer(exp, newExportServer(n))
	for _, s := range []struct {
		srv *grpc.Server
		lis net.Listener
	}{{api, txLis}, {exp, exLis}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.srv.Serve(s.lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				n.log.Error("grpc server stopped", "err", err)
			}
		}()
	}
	var metricsSrv *http.Server
	if n.cfg.MetricsAddress != "" {
		mLis, err := n.listen("metrics", n.cfg.MetricsAddress)
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(n.metrics.reg, promhttp.HandlerOpts{}))
		if n.cfg.Profiling {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := metricsSrv.Serve(mLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				n.log.Error("metrics server stopped", "err", err)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		n.watchFreeSpace(ctx)
	}()
	n.transport.serve(ctx, p2p)
	n.log.Info("node started", "authority", n.self, "p2p", n.Addr("p2p"), "transactions", n.Addr("transactions"),
		"export", n.Addr("export"), "committed", n.head)

	// NB: after a fatal store error the goroutine that hit it is parked
	// inside the store (see pebbleStore), and it may be the loop (a failed
	// read): the node stops without waiting for the loop.
	loopDone := make(chan error, 1)
	go func() { loopDone <- n.loop(ctx) }()
	fatal, _ := n.store.Fatal()
	select {
	case err = <-loopDone:
	case <-fatal:
	}
	if _, ferr := n.store.Fatal(); ferr != nil {
		err = fmt.Errorf("stopped on a fatal store error: %w; fix the cause (disk full: free space) and restart, the start-up checks verify the store (see docs/storage.md)", ferr)
	}
	cancel()
	close(n.stopped)
	api.Stop()
	exp.Stop()
	if metricsSrv != nil {
		metricsSrv.Close()
	}
	n.transport.wait()
	wg.Wait()
	if cerr := n.store.Close(); cerr != nil {
		n.log.Warn("store close", "data_dir", n.store.dir, "err", cerr.Error())
	}
	n.log.Info("node stopped", "err", err)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// maxBatchesInFlight bounds own batches waiting for a quorum of
// acknowledgements before the node stops taking transactions (the PoC's
// MAX_PARALLEL_BATCH).
const maxBatchesInFlight = 100

// commitJob is what one group of events produced, for the committer.
type commitJob struct {
	writes   []store.Write
	signed   *primary.Signed // to make durable, outside the store, before the votes and headers leave
	messages []narwhal.Envelope
	acks     []chan error
	head     uint64 // new last committed index, or 0
	trace    []replica.TraceEvent
	accepted []*narwhal.Certificate
	group    uint64 // the store's write group that holds its writes (set by commit)
	err      error  // commit could not write it
}

// loop is the event loop: the only goroutine touching the replica. It
// groups ready events, runs them through the replica, and hands each
// group's output to the committer (commit), which writes it, sends what
// promises nothing at once, and the rest once what it promises is durable.
// The loop goes on with the next group meanwhile (pipelining); the
// committer keeps the groups in order.
func (n *Node) loop(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan commitJob, 8)
	committed := make(chan struct{})
	go func() {
		defer close(committed)
		n.commit(jobs, cancel)
	}()
	defer func() {
		close(jobs)
		<-committed
	}()

	ticker := time.NewTicker(n.cfg.Tick.Duration)
	defer ticker.Stop()
	pending := map[uint64]chan error{}
	var nextTicket uint64
	defer func() {
		for _, done := range pending {
			done <- ErrStopped
		}
	}()
	var out replica.Output
	var stall stallWatch
	fatal, _ := n.store.Fatal()
	handle := func(ev any) {
		switch ev := ev.(type) {
		case inbound:
			o, err := n.replica.Receive(ev.from, ev.msg)
			if err != nil {
				n.metrics.rejected.Inc()
				n.log.Debug("rejected message", "from", n.committee.Authorities[ev.from].Name, "type", fmt.Sprintf("%T", ev.msg), "err", err)
			}
			out.Append(o)
		case submission:
			if n.tracer != nil {
				n.tracer.Received(ev.tx, time.Now())
			}
			nextTicket++
			pending[nextTicket] = ev.done
			n.metrics.transactions.Inc()
			out.Append(n.replica.Submit(nextTicket, ev.tx))
		case time.Time:
			out.Append(n.replica.Tick(uint64(ev.UnixMilli())))
			stall.tick(n, ev)
		}
	}
	hand := func() error {
		job := commitJob{writes: out.Writes, messages: out.Messages, accepted: out.Accepted}
		if out.SignedChanged {
			rec := n.replica.Signed()
			job.signed = &rec
		}
		if n.tracer != nil {
			job.trace = out.Trace
		}
		for _, t := range out.Acked {
			if done, ok := pending[t]; ok {
				job.acks = append(job.acks, done)
				delete(pending, t)
			}
		}
		if len(out.Committed) > 0 {
			last := out.Committed[len(out.Committed)-1]
			job.head = last.Index
			n.log.Debug("committed", "index", last.Index, "leader_round", last.Leader.Round())
		}
		out = replica.Output{}
		n.updateStatus()
		select {
		case jobs <- job:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	out = n.replica.Start()
	if err := hand(); err != nil {
		return err
	}
	const maxGroup = 512
	group := make([]any, 0, maxGroup)
	for {
		group = group[:0]
		// Admission control: while too many own batches wait for their
		// quorum, take no new transactions (clients wait; nothing is lost).
		submits := n.submits
		if n.replica.Status().BatchesInFlight >= maxBatchesInFlight {
			submits = nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-fatal:
			_, err := n.store.Fatal()
			return err
		case in := <-n.transport.in:
			group = append(group, in)
		case s := <-submits:
			group = append(group, s)
		case now := <-ticker.C:
			group = append(group, now)
		}
	drain:
		for len(group) < maxGroup {
			select {
			case in := <-n.transport.in:
				group = append(group, in)
			case s := <-submits:
				group = append(group, s)
			default:
				break drain
			}
		}
		n.preVerify(group)
		runtime.Gosched()
		for _, ev := range group {
			handle(ev)
			if _, peer := ev.(inbound); peer {
				// Let the committer and the links run between a group's
				// peer messages: on few cores the loop otherwise holds its
				// thread for the whole group, and a vote or certificate of
				// the last group waits behind it (Latency bench at 100
				// tx/s, three runs each side by side: p50 119/136/129 →
				// 99/113/117 ms; the throughput at saturation did not drop).
				runtime.Gosched()
			}
		}
		out.Append(n.replica.Flush()) // nothing else is ready: seal now if no batch is in flight
		n.metrics.loopBatch.Observe(float64(len(group)))
		if err := hand(); err != nil {
			return err
		}
	}
}

// stallAfter is how long without a commit before the node logs a stall,
// and then how often it repeats the line.
const stallAfter = 10 * time.Second

// stallWatch logs when commits stop for stallAfter, and when they resume,
// with what the operator needs to tell a partition from a stuck fetch.
type stallWatch struct {
	committed uint64
	since     time.Time
	logged    time.Time
}

func (w *stallWatch) tick(n *Node, now time.Time) {
	s := n.replica.Status()
	if w.since.IsZero() || s.Committed != w.committed {
		if !w.logged.IsZero() {
			n.log.Info("commits resumed", "committed", s.Committed, "stalled", now.Sub(w.since).Round(time.Millisecond).String())
		}
		*w = stallWatch{committed: s.Committed, since: now}
		return
	}
	if now.Sub(w.since) >= stallAfter && now.Sub(w.logged) >= stallAfter {
		w.logged = now
		n.log.Warn("no commit", "for", now.Sub(w.since).Round(time.Second).String(), "committed", s.Committed,
			"round", s.Round, "dag_round", s.DAGRound, "gc_round", s.GCRound, "suspended", s.Suspended,
			"batches_fetching", s.BatchesFetching, "committed_batches_missing", s.BatchesMissing)
	}
}

// commit carries out the groups in order, in three stages, so that a
// message waits for a sync only for what it promises (replica.Early):
//
//   - this goroutine writes each group to the store without syncing it
//     (Write), sends its early messages at once — certificates, batches,
//     requests, responses — and hands the rest on;
//   - sign sends the votes and own headers once what they promise is
//     durable: the batches a vote vouches for, the whole group of an own
//     header (its store entry, its batches' pending entries, the previous
//     own certificate) — it syncs the store only when that is not so yet —
//     and then the signing record;
//   - publish syncs the store for the groups that acknowledge transactions
//     or commit sub-DAGs, then acknowledges and publishes them.
//
// Accepted certificates go to the DAG feed once written: they authenticate
// themselves.
//
// Each of the last two keeps the groups in order and merges those that
// queued while it synced (group commit); a group that needs neither becomes
// durable with the next sync. A crash loses at most a suffix of the
// unsynced groups, and what left before their sync promised nothing about
// them. A store failure stops the node (through cancel); the transactions
// of the groups it could not persist are not acknowledged.
func (n *Node) commit(jobs <-chan commitJob, cancel context.CancelCauseFunc) {
	signing := make(chan signJob, cap(jobs)*8)
	publishing := make(chan commitJob, cap(jobs)*8)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		n.sign(signing, cancel)
	}()
	go func() {
		defer wg.Done()
		n.publish(publishing, cancel)
	}()
	defer func() {
		close(signing)
		close(publishing)
		wg.Wait()
	}()
	var failed error
	var proposed uint64 // the signing record's proposed round so far
	// The groups of batches written and perhaps not synced yet, for the
	// votes that vouch for them.
	unsynced := map[narwhal.Digest]uint64{}
	var pruned uint64 // the synced count unsynced was last pruned at
	for job := range jobs {
		if failed == nil {
			g, err := n.store.Write(job.writes)
			if err != nil {
				failed = fmt.Errorf("fatal: %w", err)
				cancel(failed)
			}
			job.group = g
		}
		job.err = failed
		synced := n.store.Synced()
		if synced > pruned {
			pruned = synced
			for d, g := range unsynced {
				if g <= synced {
					delete(unsynced, d)
				}
			}
		}
		for _, w := range job.writes {
			if d, ok := store.BatchOf(w.Key); ok && !w.Delete && job.group > synced {
				unsynced[d] = job.group
			}
		}
		sj := signJob{signed: job.signed, err: failed}
		if job.signed != nil && job.signed.Proposed > proposed {
			// A new own header: the store holds it before the record says so.
			proposed = job.signed.Proposed
			sj.after = job.group
		}
		late := job.messages[:0]
		for _, e := range job.messages {
			switch {
			case replica.Early(e.Msg):
				if failed == nil {
					n.transport.send(e.To, e.Msg)
				}
				continue
			case isVote(e.Msg):
				for _, d := range e.Vouches {
					sj.after = max(sj.after, unsynced[d])
				}
			default:
				sj.after = job.group
			}
			late = append(late, e)
		}
		sj.messages = late
		job.messages = nil
		if n.tracer != nil {
			now := time.Now()
			rest := job.trace[:0]
			for _, ev := range job.trace {
				switch ev.Stage {
				case replica.StageProposed:
					sj.trace = append(sj.trace, ev)
				case replica.StageCommitted:
					rest = append(rest, ev)
				default: // sealed, certified: their messages left above
					if failed == nil {
						n.tracer.Stage(ev.Stage, ev.Batches, now)
					}
				}
			}
			job.trace = rest
		}
		if failed == nil {
			// Certificates authenticate themselves: a crash that loses one
			// from the store takes nothing from what a DAG reader got.
			n.feed.publish(job.accepted)
		}
		job.accepted = nil
		if len(sj.messages) > 0 || sj.signed != nil {
			signing <- sj
		}
		if len(job.acks) > 0 || job.head > 0 || len(job.trace) > 0 {
			publishing <- job
		}
	}
}

func isVote(m narwhal.Message) bool {
	_, ok := m.(*narwhal.VoteMsg)
	return ok
}

// signJob is what a group leaves to sign: the messages that carry a
// signature, and the store write group that must be durable before them.
type signJob struct {
	messages []narwhal.Envelope
	signed   *primary.Signed
	after    uint64
	trace    []replica.TraceEvent
	err      error
}

// sign is commit's second stage (see commit).
func (n *Node) sign(jobs <-chan signJob, cancel context.CancelCauseFunc) {
	var failed error
	var merged []signJob
	for job := range jobs {
		merged = withQueued(merged, job, jobs)
		var signed *primary.Signed
		var after uint64
		for _, j := range merged {
			if j.signed != nil {
				signed = j.signed
			}
			after = max(after, j.after)
		}
		if failed == nil && n.store.Synced() < after {
			failed = n.syncStore(len(merged), cancel)
		}
		// The signing record claims only synced write groups (an intact
		// store is never behind it: checkStore), and is synced before any
		// message that carries a new signature leaves.
		if failed == nil && signed != nil {
			if err := n.signed.write(*signed, n.store.Synced()); err != nil {
				failed = fmt.Errorf("fatal: %w", err)
				cancel(failed)
			}
		}
		now := time.Now()
		for i, j := range merged {
			if cmp.Or(j.err, failed) == nil {
				for _, e := range j.messages {
					n.transport.send(e.To, e.Msg)
				}
				for _, ev := range j.trace {
					n.tracer.Stage(ev.Stage, ev.Batches, now)
				}
			}
			merged[i] = signJob{}
		}
	}
}

// publish is commit's third stage (see commit).
func (n *Node) publish(jobs <-chan commitJob, cancel context.CancelCauseFunc) {
	var failed error
	var merged []commitJob
	for job := range jobs {
		merged = withQueued(merged, job, jobs)
		var top uint64
		for _, j := range merged {
			top = max(top, j.group)
		}
		if failed == nil && n.store.Synced() < top {
			failed = n.syncStore(len(merged), cancel)
		}
		for i := range merged {
			n.carryOut(&merged[i], cmp.Or(merged[i].err, failed))
			merged[i] = commitJob{}
		}
	}
}

// withQueued returns first and the jobs queued behind it in ch, in buf.
func withQueued[T any](buf []T, first T, ch <-chan T) []T {
	buf = append(buf[:0], first)
	for {
		select {
		case j, ok := <-ch:
			if !ok {
				return buf
			}
			buf = append(buf, j)
		default:
			return buf
		}
	}
}

// syncStore syncs the store; a failure is fatal.
func (n *Node) syncStore(groups int, cancel context.CancelCauseFunc) error {
	n.metrics.commitGroup.Observe(float64(groups))
	start := time.Now()
	if err := n.store.Sync(); err != nil {
		err = fmt.Errorf("fatal: %w", err)
		cancel(err)
		return err
	}
	n.metrics.syncSeconds.Observe(time.Since(start).Seconds())
	return nil
}

// carryOut acknowledges and publishes a durable job; a job that could not
// be made durable only fails its acknowledgements.
func (n *Node) carryOut(job *commitJob, failed error) {
	if failed != nil {
		for _, done := range job.acks {
			done <- ErrStopped
		}
		return
	}
	for _, done := range job.acks {
		done <- nil
		n.metrics.acked.Inc()
	}
	if n.tracer != nil {
		now := time.Now()
		for _, ev := range job.trace {
			n.tracer.Stage(ev.Stage, ev.Batches, now)
		}
	}
	if job.head > 0 {
		n.headMu.Lock()
		n.head = job.head
		close(n.headCh)
		n.headCh = make(chan struct{})
		n.headMu.Unlock()
	}
}

// updateStatus publishes the replica's status to tests and metrics.
func (n *Node) updateStatus() {
	s := n.replica.Status()
	n.statusMu.Lock()
	n.status = s
	n.statusMu.Unlock()
	n.metrics.round.Set(float64(s.Round))
	n.metrics.dagRound.Set(float64(s.DAGRound))
	n.metrics.gcRound.Set(float64(s.GCRound))
	n.metrics.committed.Set(float64(s.Committed))
	n.metrics.dagSize.Set(float64(s.DAGSize))
	n.metrics.suspended.Set(float64(s.Suspended))
	n.metrics.queue.Set(float64(s.QueueLen))
	n.metrics.inflight.Set(float64(s.InFlight))
	n.metrics.batchesSealed.Set(float64(s.BatchesSealed))
	n.metrics.batchesFromPeers.Set(float64(s.BatchesFromPeers))
	n.metrics.batchesFetching.Set(float64(s.BatchesFetching))
	n.metrics.batchesMissing.Set(float64(s.BatchesMissing))
}

// Head returns the last committed index and a channel closed at the next commit.
func (n *Node) Head() (uint64, <-chan struct{}) {
	n.headMu.Lock()
	defer n.headMu.Unlock()
	return n.head, n.headCh
}

// Submit hands a transaction to the event loop and waits until it is
// acknowledged (its batch committed: from then on it is ordered, whatever
// becomes of this node), ctx ends, or the node stops.
func (n *Node) Submit(ctx context.Context, tx []byte) error {
	s := submission{tx: tx, done: make(chan error, 1)}
	select {
	case n.submits <- s:
	case <-ctx.Done():
		return ctx.Err()
	case <-n.stopped:
		return ErrStopped
	}
	select {
	case err := <-s.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-n.stopped:
		return ErrStopped
	}
}

// sampleFreeSpace probes the data directory's free space and publishes it.
// A failed probe counts as plenty (it is logged): the watermark guards
// against a filling disk, not against a broken probe.
func (n *Node) sampleFreeSpace() {
	free, err := n.opts.freeBytes(n.store.dir)
	if err != nil {
		n.log.Warn("free space probe", "data_dir", n.store.dir, "err", err)
		free = ^uint64(0)
	}
	n.free.Store(free)
	n.metrics.freeBytes.Set(float64(free))
}

// watchFreeSpace samples the free space every freeSpaceEvery until ctx ends.
func (n *Node) watchFreeSpace(ctx context.Context) {
	t := time.NewTicker(freeSpaceEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n.sampleFreeSpace()
		}
	}
}

// lowOnSpace returns a refusal if the data directory's free space is below
// the watermark.
func (n *Node) lowOnSpace() error {
	free := n.free.Load()
	if n.opts.minFreeBytes == 0 || free >= n.opts.minFreeBytes {
		return nil
	}
	return fmt.Errorf("data_dir %s has %d bytes free, below min_free_bytes %d; retry on another node", n.store.dir, free, n.opts.minFreeBytes)
}

// Name returns the node's authority name.
func (n *Node) Name() string { return n.cfg.Name }

// ScanCertificates calls fn with every stored certificate and, for each, the
// canonical batches its header names that are stored here (nil for one
// missing). For tests and tools; safe while the node runs.
func (n *Node) ScanCertificates(fn func(c *narwhal.Certificate, batches [][]byte)) error {
	var err error
	n.store.Scan([]byte{store.PrefixCertificate}, store.PrefixEnd([]byte{store.PrefixCertificate}), func(_, v []byte) bool {
		var c *narwhal.Certificate
		if c, err = narwhal.DecodeCertificate(v); err != nil {
			return false
		}
		batches := make([][]byte, len(c.Header.Payload))
		for i, d := range c.Header.Payload {
			batches[i], _ = n.store.Get(store.BatchKey(d))
		}
		fn(c, batches)
		return true
	})
	return err
}

// Status returns the replica's status as of the last event. For tests.
func (n *Node) Status() replica.Status {
	n.statusMu.Lock()
	defer n.statusMu.Unlock()
	return n.status
}

// preVerify checks the signatures of all certificates in a group of events
// in one batch; the verifier's cache then answers the replica's
// one-by-one checks. A failure is ignored here: the replica finds and
// rejects the bad certificate itself.
func (n *Node) preVerify(group []any) {
	var certs []*narwhal.Certificate
	for _, ev := range group {
		in, ok := ev.(inbound)
		if !ok {
			continue
		}
		switch m := in.msg.(type) {
		case *narwhal.CertificateMsg:
			certs = append(certs, &m.Certificate)
		case *narwhal.CertificateResponseMsg:
			for i := range m.Certificates {
				certs = append(certs, &m.Certificates[i])
			}
		}
	}
	if len(certs) > 1 {
		_ = n.verifier.CheckCertificates(certs)
	}
}
