package sequencer

import (
	"context"
	"encoding/binary"
	"strconv"
	"sync"
	"time"

	"github.com/tezos-dsn/dsn/internal/da"
	"github.com/tezos-dsn/dsn/internal/dsnclient"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/preblock"
	"github.com/tezos-dsn/dsn/internal/tezos"
	"github.com/tezos-dsn/dsn/kernel/state"
)

// Posting: the sequencer follows a node's certified DAG (ExportDAG),
// cuts it into submissions every PostInterval (or MaxSubmissionBytes),
// frames each with the DA framing into targeted external messages and
// injects them into the rollup node's batcher. The kernel authenticates
// every certificate and re-derives the ordering; the sequencer is trusted
// for nothing but availability. It starts from the rounds the rollup
// already holds (/dsn/dag_max), so a restart resumes without re-posting
// everything; when the rollup's DAG does not advance for RepostAfter while
// more was posted (a batcher that lost its queue, a dropped operation),
// it posts again from the rollup's DAG. Several sequencers may post the
// same data: the kernel ignores what it already has. Or they take turns
// (Config.PostTurns): each posts its windows of rounds, and another's only
// once that one is late by PostFailover.

// postRounds: how far below the rollup's dag_max a (re)start begins, so
// that a round the rollup holds only in part is completed. The kernel
// stores a certificate only with all its parents, so a certificate it
// lacks but needs stops its dag_max within a few rounds (every certificate
// of round r+2 or r+3 descends from most of round r+1): 8 rounds cover
// that with room to spare, for about 56 certificates posted again.
const postRounds = 8

// poster is the posting state.
type poster struct {
	s      *Sequencer
	rollup rollup
	addr   [20]byte

	flushMu  sync.Mutex // one flush at a time, in order
	mu       sync.Mutex
	pending  []state.Entry
	sizes    []int // each pending entry's bytes
	bytes    int
	posted   uint64 // highest round posted
	restart  chan struct{}
	progress time.Time // when the rollup's dag_max last advanced
	dagMax   uint64
	// others holds, with turns, the certificates of the other sequencers'
	// turns, until the rollup's DAG passes them or their poster is late.
	others []heldEntry
}

// heldEntry is a certificate of another sequencer's turn.
type heldEntry struct {
	entry state.Entry
	size  int
	read  time.Time
}

// ours reports whether the certificates of round r are this sequencer's
// to post.
func (p *poster) ours(r uint64) bool {
	k := p.s.cfg.PostTurns
	if k <= 1 {
		return true
	}
	return int(r/max(p.s.cfg.PostWindow, 1)%uint64(k)) == p.s.cfg.PostTurn
}

// Post follows the DSN's DAG and posts it to the rollup node until ctx
// ends. It needs Config.Rollup.
func (s *Sequencer) Post(ctx context.Context) {
	if s.rollup == nil {
		s.log.Error("Post: no rollup node configured")
		return
	}
	p := &poster{s: s, rollup: s.rollup, restart: make(chan struct{}, 1)}
	for ctx.Err() == nil {
		a, err := p.rollup.address(ctx)
		if err == nil {
			if p.addr, err = tezos.ParseRollup(a); err == nil {
				break
			}
		}
		s.log.Warn("rollup node not ready; retrying", "rollup", s.cfg.Rollup, "err", err)
		sleepCtx(ctx, time.Second)
	}
	go p.flushLoop(ctx)
	go p.watch(ctx)
	node := 0
	for ctx.Err() == nil {
		from := p.resumeRound(ctx)
		sctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-p.restart:
				cancel()
			case <-sctx.Done():
			}
		}()
		s.log.Info("posting the DAG", "from_round", from, "node", s.cfg.Nodes[node].Export)
		err := dsnclient.ReadDAG(sctx, s.ex[node], from, p.add)
		restarted := sctx.Err() != nil && ctx.Err() == nil
		cancel()
		if ctx.Err() != nil {
			return
		}
		if !restarted {
			s.log.Warn("DAG stream lost; following the next node", "node", s.cfg.Nodes[node].Export, "err", err)
			node = (node + 1) % len(s.ex)
			sleepCtx(ctx, 200*time.Millisecond)
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// resumeRound is where a DAG stream starts: a little below the rollup's
// highest stored round (the last one it reported, if it does not answer),
// after what was read so far is posted.
func (p *poster) resumeRound(ctx context.Context) uint64 {
	max, ok := p.rollupDAGMax(ctx)
	if !ok { // the rollup node does not answer: from what it last said
		p.mu.Lock()
		max = p.dagMax
		p.mu.Unlock()
	}
	p.flush(ctx) // what was read so far goes out before the stream restarts
	p.mu.Lock()
	p.others = nil // the stream reads them again
	p.mu.Unlock()
	if max > postRounds {
		return max - postRounds
	}
	return 0
}

// rollupDAGMax reads the kernel's highest stored round (0 if none yet);
// false if the rollup node did not answer.
func (p *poster) rollupDAGMax(ctx context.Context) (uint64, bool) {
	v, ok, err := p.rollup.value(ctx, "/dsn/dag_max")
	if err != nil {
		return 0, false
	}
	if !ok || len(v) != 8 {
		return 0, true
	}
	return binary.BigEndian.Uint64(v), true
}

// add takes one certificate of the DAG stream.
func (p *poster) add(e *preblock.DAGEntry) bool {
	c, err := narwhal.DecodeCertificate(e.Certificate)
	if err != nil {
		p.s.log.Error("DAG stream: bad certificate", "err", err)
		return false // fail over: this node sends garbage
	}
	entry := state.Entry{Certificate: c, Withheld: e.Withheld}
	size := len(e.Certificate)
	for _, raw := range e.Batches {
		b, err := narwhal.DecodeBatch(raw)
		if err != nil {
			p.s.log.Error("DAG stream: bad batch", "err", err)
			return false
		}
		entry.Batches = append(entry.Batches, b)
		size += len(raw)
	}
	p.mu.Lock()
	if !p.ours(c.Round()) {
		p.others = append(p.others, heldEntry{entry: entry, size: size, read: time.Now()})
		p.mu.Unlock()
		return true
	}
	p.pending = append(p.pending, entry)
	p.sizes = append(p.sizes, size)
	p.bytes += size
	full := p.bytes >= p.s.cfg.MaxSubmissionBytes
	p.mu.Unlock()
	if full {
		p.flush(context.Background())
	}
	return true
}

func (p *poster) flushLoop(ctx context.Context) {
	t := time.NewTicker(p.s.cfg.PostInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.flush(ctx)
		}
	}
}

// maxPendingSubmissions bounds what waits for a rollup node that does not
// take it, in submissions of MaxSubmissionBytes: past it, the waiting
// certificates are dropped and the stream restarts from the rollup's DAG
// once the rollup node is back (they are the DSN's to re-read, not ours to
// hoard).
const maxPendingSubmissions = 8

// flush posts the pending certificates as submissions of at most
// MaxSubmissionBytes each, in order. One flush runs at a time (flushMu);
// the DAG stream keeps appending meanwhile. A failed injection puts what
// was not posted back in front, or, past maxPendingSubmissions, drops it
// and restarts the stream from the rollup's DAG.
func (p *poster) flush(ctx context.Context) {
	p.flushMu.Lock()
	defer p.flushMu.Unlock()
	p.mu.Lock()
	entries, sizes := p.pending, p.sizes
	p.pending, p.sizes, p.bytes = nil, nil, 0
	p.mu.Unlock()
	for len(entries) > 0 {
		n, size := 0, 0
		for n < len(entries) && (n == 0 || size+sizes[n] <= p.s.cfg.MaxSubmissionBytes) {
			size += sizes[n]
			n++
		}
		if err := p.post(ctx, entries[:n]); err != nil {
			p.s.log.Warn("posting failed; will retry", "err", err, "certificates", len(entries))
			p.s.metrics.postErrors.Inc()
			p.mu.Lock()
			p.pending = append(entries, p.pending...)
			p.sizes = append(sizes, p.sizes...)
			p.bytes = 0
			for _, sz := range p.sizes {
				p.bytes += sz
			}
			if p.bytes > maxPendingSubmissions*p.s.cfg.MaxSubmissionBytes {
				p.s.log.Warn("the rollup node takes nothing: dropping what waits, to post again from the rollup's DAG", "certificates", len(p.pending))
				p.pending, p.sizes, p.bytes = nil, nil, 0
				select {
				case p.restart <- struct{}{}:
				default:
				}
			}
			p.mu.Unlock()
			return
		}
		entries, sizes = entries[n:], sizes[n:]
	}
}

// post injects one submission.
func (p *poster) post(ctx context.Context, entries []state.Entry) error {
	chunks, err := da.Split(state.EncodeSubmission(state.StripSignatures(entries)))
	if err != nil {
		p.s.log.Error("submission not framed; dropped", "err", err, "certificates", len(entries))
		return nil
	}
	msgs := make([][]byte, len(chunks))
	bytes := 0
	for i, c := range chunks {
		msgs[i] = da.Target(p.addr, c.Encode())
		bytes += len(msgs[i])
	}
	if err := p.rollup.inject(ctx, msgs); err != nil {
		return err
	}
	p.mu.Lock()
	p.posted = max(p.posted, entries[len(entries)-1].Certificate.Round())
	p.mu.Unlock()
	p.s.metrics.posted.Add(float64(len(entries)))
	p.s.metrics.postedMsgs.Add(float64(len(msgs)))
	p.s.metrics.postedBytes.Add(float64(bytes))
	p.s.postedBytes.Add(uint64(bytes))
	p.s.postedCerts.Add(uint64(len(entries)))
	return nil
}

// watch re-posts when the rollup's DAG stalls below what was posted, and
// marks transactions verified as the rollup's head advances.
func (p *poster) watch(ctx context.Context) {
	t := time.NewTicker(p.s.cfg.VerifyInterval)
	defer t.Stop()
	p.progress = time.Now()
	// Each level the rollup node processes (its monitor_blocks stream)
	// triggers a check at once; the ticker covers a broken stream.
	blocks := make(chan struct{}, 1)
	go func() {
		for ctx.Err() == nil {
			err := p.rollup.monitorBlocks(ctx, func() {
				select {
				case blocks <- struct{}{}:
				default:
				}
			})
			if ctx.Err() == nil {
				p.s.log.Debug("rollup block stream lost; reconnecting", "err", err)
				sleepCtx(ctx, time.Second)
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-blocks:
		}
		max, _ := p.rollupDAGMax(ctx)
		p.mu.Lock()
		if max > p.dagMax {
			p.dagMax, p.progress = max, time.Now()
		}
		stalled := p.posted > max && time.Since(p.progress) > p.s.cfg.RepostAfter
		if stalled {
			p.progress = time.Now()
		}
		late := p.takeLate(max)
		p.mu.Unlock()
		if late > 0 {
			p.s.log.Warn("another sequencer's turn is late: posting it", "certificates", late, "rollup_dag_max", max)
			p.s.metrics.turnsTaken.Add(float64(late))
			p.s.turnsTaken.Add(uint64(late))
		}
		if stalled {
			p.s.log.Warn("the rollup's DAG is not advancing; posting again from it", "rollup_dag_max", max)
			p.s.metrics.reposts.Inc()
			select {
			case p.restart <- struct{}{}:
			default:
			}
		}
		p.verify(ctx)
	}
}

// takeLate drops the other sequencers' certificates the rollup's DAG has
// passed by a whole window and moves those read PostFailover ago and still
// not passed into pending (their poster is down), in order; it returns how
// many it moved. Called with p.mu held.
//
// Passed by a window means posted or not needed: the kernel stores a
// certificate only once it holds all its parents, so a certificate it
// lacks and a later one names holds its dag_max within about 3 rounds of
// it (PostWindow is at least 4), and this one is posted at failover.
func (p *poster) takeLate(dagMax uint64) int {
	kept, moved := p.others[:0], 0
	for _, h := range p.others {
		switch {
		case dagMax >= h.entry.Certificate.Round()+max(p.s.cfg.PostWindow, 1):
		case time.Since(h.read) > p.s.cfg.PostFailover:
			p.pending = append(p.pending, h.entry)
			p.sizes = append(p.sizes, h.size)
			p.bytes += h.size
			moved++
		default:
			kept = append(kept, h)
		}
	}
	clear(p.others[len(kept):])
	p.others = kept
	return moved
}

// verify marks verified the ordered transactions whose blocks the kernel
// has written, after checking each one's digest at its position in the
// kernel's block: the rollup, not the sequencer, vouches for them.
func (p *poster) verify(ctx context.Context) {
	v, ok, err := p.rollup.value(ctx, "/dsn/head")
	if err != nil || !ok || len(v) != 8 {
		return
	}
	head := binary.BigEndian.Uint64(v)
	level, err := p.rollup.level(ctx)
	if err != nil {
		return
	}
	for _, n := range p.s.unverifiedUpTo(head) {
		raw, ok, err := p.rollup.value(ctx, "/dsn/blocks/"+strconv.FormatUint(n, 10))
		if err != nil || !ok {
			return
		}
		b, _, err := state.ReadBlock(blockStore{raw}, 0)
		if err != nil {
			p.s.log.Error("rollup block does not decode", "block", n, "err", err)
			return
		}
		p.s.markVerified(n, level, b.Transactions)
	}
}

// blockStore hands one raw block record to state.ReadBlock.
type blockStore struct{ raw []byte }

func (b blockStore) Get(string) ([]byte, bool) { return b.raw, true }
func (blockStore) Put(string, []byte)          {}
func (blockStore) Delete(string)               {}

// PostedBytes returns the bytes of inbox messages this sequencer posted.
func (s *Sequencer) PostedBytes() uint64 { return s.postedBytes.Load() }

// PostedCertificates returns how many certificates this sequencer posted.
func (s *Sequencer) PostedCertificates() uint64 { return s.postedCerts.Load() }

// TurnCertificatesTaken returns how many certificates of other
// sequencers' turns this one posted because they were late.
func (s *Sequencer) TurnCertificatesTaken() uint64 { return s.turnsTaken.Load() }

// unverifiedUpTo lists the blocks ≤ head holding ordered, unverified
// tracked transactions.
func (s *Sequencer) unverifiedUpTo(head uint64) []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []uint64
	for n := range s.byIndex {
		if n <= head {
			out = append(out, n)
		}
	}
	return out
}

// markVerified marks the ordered transactions of block n verified where
// the kernel's block has their digest at their position.
func (s *Sequencer) markVerified(n uint64, level uint32, digests []narwhal.Digest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range s.byIndex[n] {
		st, ok := s.status[id]
		if !ok || st.Status != "ordered" {
			continue
		}
		if *st.Position >= len(digests) || digests[*st.Position] != id {
			s.log.Error("the rollup's block differs from the DSN's pre-block", "block", n, "position", *st.Position, "id", st.ID)
			s.metrics.mismatches.Inc()
			continue
		}
		lv, blk := level, n
		st.Status, st.Level, st.Block, st.VerifiedAt = "verified", &lv, &blk, time.Now().UTC().Format(time.RFC3339Nano)
		s.metrics.verified.Inc()
		s.publishLocked(st)
	}
	delete(s.byIndex, n)
}
