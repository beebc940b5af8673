// Package worker is the Narwhal worker core: it seals client transactions
// into batches (on size or delay), hands them to the primary to propose at
// once and broadcasts them to the other workers (re-sending until a quorum
// acknowledged storing them), stores other workers' batches, and fetches the
// batches a header names but this worker lacks.
//
// A batch is proposed without waiting for its quorum of acknowledgements:
// a header is only certified by a quorum of voters that each stored its
// batches (primary.tryVote), so a certificate proves the same availability
// the acknowledgements would, one round trip and one remote sync earlier.
//
// It is a pure step function (see internal/replica for the driver): inputs
// are Submit, Receive and Tick; every call returns an Output whose Writes the
// runtime applies before it sends the Messages, and makes durable before it
// acknowledges the transactions or sends a vote for their batches
// (internal/replica's contract). Timeouts are counted in ticks.
package worker

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/store"
)

// Config holds the worker's parameters.
type Config struct {
	// BatchSize seals the current batch once its transactions reach this many bytes.
	BatchSize int
	// MaxBatchDelay seals a non-empty batch this many ticks after its first transaction.
	MaxBatchDelay int
	// RetryTicks is how long to wait before re-sending a batch to workers that
	// have not acknowledged it, or re-requesting a missing batch from another peer.
	RetryTicks int
	// MaxResponseBytes bounds the batch bytes in one BatchResponse.
	MaxResponseBytes int
}

// OwnBatch is one of this worker's sealed batches, for the primary to
// propose. Seq is the key of its durable pending entry (store.PendingKey).
type OwnBatch struct {
	Digest narwhal.Digest
	Seq    uint64
	// Tickets of the transactions it carries, for the runtime to
	// acknowledge once the batch is committed (replica.Output.Acked).
	Tickets []uint64
}

// Output is the result of one step.
type Output struct {
	Writes   []store.Write
	Messages []narwhal.Envelope
	// Available lists own batches sealed, for the primary to propose.
	Available []OwnBatch
	// Stored lists batches of other workers now stored locally.
	Stored []narwhal.Digest
	// Sealed lists the batches this worker sealed (latency anatomy).
	Sealed []narwhal.Digest
}

type inflight struct {
	msg   *narwhal.BatchMsg
	acked []bool
	stake uint64
	since int
}

// fetch is a batch this worker asks peers for. A fetch for a header that
// is not committed ends at the GC horizon (nobody will need the batch); a
// fetch for a batch of a committed certificate never does: Export must serve
// every committed transaction, so the worker asks every peer in turn until
// the batch is stored. Its durable mark (store.MissingKey) makes a restarted
// worker resume it.
type fetch struct {
	round     uint64 // round of the header that needs it, for garbage collection
	target    narwhal.AuthorityID
	since     int
	committed bool
	deferred  bool // not asked yet: the author's broadcast is probably on its way
}

// headerFetchDelay is how many ticks a batch a header names waits for the
// author's broadcast before it is asked for: a header overtakes its batch
// on the wire (control messages go before data), and asking at once would
// make the author send every such batch twice.
const headerFetchDelay = 2

// Worker is the worker core of one authority. Not safe for concurrent use.
type Worker struct {
	cfg       Config
	committee *narwhal.Committee
	self      narwhal.AuthorityID
	st        store.Reader

	cur      [][]byte
	tickets  []uint64
	curBytes int
	curAge   int

	inflight      map[narwhal.Digest]*inflight
	inflightOrder []narwhal.Digest

	fetching      map[narwhal.Digest]*fetch
	fetchingOrder []narwhal.Digest
	missing       int              // fetches with committed set
	stale         []narwhal.Digest // missing marks of stored batches, found at start

	// stored and storedOld remember recently stored batches (two
	// generations, rotated every rotateTicks); older ones are in the store.
	stored     map[narwhal.Digest]bool
	storedOld  map[narwhal.Digest]bool
	ticks      int
	nextSeq    uint64
	sealed     uint64
	fromOthers uint64

	gcRound        uint64
	fetchedBelowGC uint64
}

// New returns a worker that resumes from st: pending sequence numbers
// continue after the highest stored one, and the batches of committed
// certificates marked missing are fetched again (Start sends the requests).
func New(cfg Config, committee *narwhal.Committee, self narwhal.AuthorityID, st store.Reader) *Worker {
	w := &Worker{
		cfg: cfg, committee: committee, self: self, st: st,
		inflight: make(map[narwhal.Digest]*inflight),
		fetching: make(map[narwhal.Digest]*fetch),
		stored:   make(map[narwhal.Digest]bool),
	}
	st.Scan([]byte{store.PrefixPending}, store.PrefixEnd([]byte{store.PrefixPending}), func(k, _ []byte) bool {
		if len(k) == 9 {
			w.nextSeq = be64(k[1:]) + 1
		}
		return true
	})
	st.Scan([]byte{store.PrefixMissing}, store.PrefixEnd([]byte{store.PrefixMissing}), func(k, v []byte) bool {
		if len(k) != 1+len(narwhal.Digest{}) || len(v) != 10 {
			panic(fmt.Sprintf("worker: malformed missing-batch mark %x = %x", k, v))
		}
		d := narwhal.Digest(k[1:])
		if w.Has(d) {
			w.stale = append(w.stale, d) // stored by a write that outran the mark's deletion
			return true
		}
		target := narwhal.AuthorityID(int(v[0])<<8 | int(v[1]))
		if int(target) >= committee.Size() || target == self {
			target = committee.NextPeer(self, self)
		}
		w.fetching[d] = &fetch{round: be64(v[2:]), target: target, committed: true}
		w.fetchingOrder = append(w.fetchingOrder, d)
		w.missing++
		return true
	})
	return w
}

// Start returns the requests for every fetch resumed from the store.
func (w *Worker) Start() Output {
	var out Output
	for _, d := range w.stale {
		out.Writes = append(out.Writes, store.Del(store.MissingKey(d)))
	}
	w.stale = nil
	w.request(&out, w.fetchingOrder)
	return out
}

// request asks each fetch's current target for the given digests, one
// message per target, in first-seen target order.
func (w *Worker) request(out *Output, ds []narwhal.Digest) {
	byTarget := map[narwhal.AuthorityID][]narwhal.Digest{}
	var targets []narwhal.AuthorityID
	for _, d := range ds {
		t := w.fetching[d].target
		if _, ok := byTarget[t]; !ok {
			targets = append(targets, t)
		}
		byTarget[t] = append(byTarget[t], d)
	}
	for _, t := range targets {
		out.Messages = append(out.Messages, narwhal.Envelope{To: t, Msg: &narwhal.BatchRequestMsg{Digests: byTarget[t]}})
	}
}

func be64(b []byte) uint64 {
	var v uint64
	for _, x := range b[:8] {
		v = v<<8 | uint64(x)
	}
	return v
}

// rotateTicks is how often the in-memory set of stored batches ages.
const rotateTicks = 10_000

// Has reports whether the batch is stored locally.
func (w *Worker) Has(d narwhal.Digest) bool {
	if w.stored[d] || w.storedOld[d] {
		return true
	}
	_, ok := w.st.Get(store.BatchKey(d))
	return ok
}

// Stats are the worker's counters, for metrics and tests.
type Stats struct {
	BatchesSealed    uint64 // batches this worker sealed
	BatchesFromPeers uint64 // other workers' batches stored here
	BatchesInFlight  int    // own batches not yet acknowledged by a quorum of workers
	BatchesFetching  int    // batches requested from peers
	// BatchesMissing counts the fetches for committed certificates (Export
	// waits for them); part of BatchesFetching.
	BatchesMissing int
	// FetchedBelowGC counts committed batches stored after the GC horizon
	// had passed their certificate's round (a catch-up the GC would once
	// have abandoned).
	FetchedBelowGC uint64
}

// Stats returns the worker's counters.
func (w *Worker) Stats() Stats {
	return Stats{BatchesSealed: w.sealed, BatchesFromPeers: w.fromOthers, BatchesInFlight: len(w.inflight),
		BatchesFetching: len(w.fetching), BatchesMissing: w.missing, FetchedBelowGC: w.fetchedBelowGC}
}

// Submit adds a client transaction to the current batch. The ticket comes
// back with the sealed batch (Output.Available), for the replica to
// acknowledge once the batch is committed. The caller validates size.
func (w *Worker) Submit(ticket uint64, tx []byte) Output {
	var out Output
	w.cur = append(w.cur, tx)
	w.tickets = append(w.tickets, ticket)
	w.curBytes += len(tx)
	if w.curBytes >= w.cfg.BatchSize {
		w.seal(&out)
	}
	return out
}

// Flush seals the current batch at once if no own batch is waiting for its
// quorum (Nagle's rule): at low load a transaction leaves without waiting
// for MaxBatchDelay, while under load transactions gather behind the batch
// in flight, so batches grow with the load instead of multiplying. A
// runtime calls it when it has handled every event that was ready.
func (w *Worker) Flush() Output {
	var out Output
	if len(w.cur) > 0 && len(w.inflight) == 0 {
		w.seal(&out)
	}
	return out
}

// Tick advances time by one tick: seals a batch that waited long enough and
// retries unacknowledged broadcasts and missing-batch requests.
func (w *Worker) Tick() Output {
	var out Output
	if w.ticks++; w.ticks%rotateTicks == 0 {
		w.storedOld, w.stored = w.stored, make(map[narwhal.Digest]bool)
	}
	if len(w.cur) > 0 {
		w.curAge++
		if w.curAge >= w.cfg.MaxBatchDelay {
			w.seal(&out)
		}
	}
	for _, d := range w.inflightOrder {
		f := w.inflight[d]
		if f.since++; f.since < w.cfg.RetryTicks {
			continue
		}
		f.since = 0
		for i, ok := range f.acked {
			if !ok {
				out.Messages = append(out.Messages, narwhal.Envelope{To: narwhal.AuthorityID(i), Msg: f.msg})
			}
		}
	}
	var retry []narwhal.Digest
	for _, d := range w.fetchingOrder {
		f := w.fetching[d]
		f.since++
		if f.deferred {
			if f.since >= headerFetchDelay {
				f.deferred, f.since = false, 0
				retry = append(retry, d) // first ask, to the author
			}
			continue
		}
		if f.since < w.cfg.RetryTicks {
			continue
		}
		f.since = 0
		f.target = w.committee.NextPeer(f.target, w.self)
		retry = append(retry, d)
	}
	w.request(&out, retry)
	return out
}

func (w *Worker) seal(out *Output) {
	b := narwhal.Batch{Transactions: w.cur}
	d := b.Digest()
	tickets := w.tickets
	w.cur, w.tickets, w.curBytes, w.curAge = nil, nil, 0, 0
	w.sealed++
	// NB: a batch equal to one sealed earlier (even another worker's, or
	// one still in flight: a client retried) is proposed again: the client
	// submitted those bytes again, and no layer deduplicates transactions.
	f := w.inflight[d]
	if f == nil {
		out.Writes = append(out.Writes, store.Put(store.BatchKey(d), b.Encode()))
		out.Sealed = append(out.Sealed, d)
		w.stored[d] = true
		f = &inflight{msg: &narwhal.BatchMsg{Batch: b}, acked: make([]bool, w.committee.Size())}
		f.acked[w.self] = true
		f.stake = w.committee.Stake(w.self)
		w.inflight[d] = f
		w.inflightOrder = append(w.inflightOrder, d)
		for i := 0; i < w.committee.Size(); i++ {
			if narwhal.AuthorityID(i) != w.self {
				out.Messages = append(out.Messages, narwhal.Envelope{To: narwhal.AuthorityID(i), Msg: f.msg})
			}
		}
	}
	seq := w.nextSeq
	w.nextSeq++
	out.Writes = append(out.Writes, store.Put(store.PendingKey(seq), d[:]))
	out.Available = append(out.Available, OwnBatch{Digest: d, Seq: seq, Tickets: tickets})
	w.checkQuorum(d, f)
}

// checkQuorum ends the broadcast of a batch a quorum stored.
func (w *Worker) checkQuorum(d narwhal.Digest, f *inflight) {
	if f.stake < w.committee.QuorumThreshold() {
		return
	}
	delete(w.inflight, d)
	w.inflightOrder = slices.DeleteFunc(w.inflightOrder, func(x narwhal.Digest) bool { return x == d })
}

// Fetch asks for the batches a header of `round` by `author` names that are
// not stored locally — after headerFetchDelay ticks (the author's broadcast
// usually arrives first), from the author, then from the other peers in
// turn. Stored batches come back in Output.Stored of a later step.
func (w *Worker) Fetch(digests []narwhal.Digest, author narwhal.AuthorityID, round uint64) Output {
	var out Output
	for _, d := range digests {
		if w.Has(d) || w.fetching[d] != nil {
			continue
		}
		target := author
		if target == w.self {
			target = w.committee.NextPeer(target, w.self)
		}
		w.fetching[d] = &fetch{round: round, target: target, deferred: true}
		w.fetchingOrder = append(w.fetchingOrder, d)
	}
	return out
}

// FetchCommitted makes sure the batches of a committed certificate by
// author get stored: each one not stored is marked missing durably and
// fetched (first from the author) until it arrives, whatever the GC
// horizon. A fetch already running for it is kept and made permanent.
func (w *Worker) FetchCommitted(digests []narwhal.Digest, author narwhal.AuthorityID, round uint64) Output {
	var out Output
	var ask []narwhal.Digest
	for _, d := range digests {
		if w.Has(d) {
			continue
		}
		f := w.fetching[d]
		if f != nil && f.committed {
			continue
		}
		target := author
		if target == w.self {
			// NB: an own batch is written when sealed, so this happens only
			// if the store lost it; any peer that acknowledged it has it.
			target = w.committee.NextPeer(author, w.self)
		}
		mark := binary.BigEndian.AppendUint64([]byte{byte(target >> 8), byte(target)}, round)
		out.Writes = append(out.Writes, store.Put(store.MissingKey(d), mark))
		w.missing++
		if f != nil {
			f.committed = true
			if f.deferred { // committed: no more waiting for the broadcast
				f.deferred, f.since = false, 0
				ask = append(ask, d)
			}
			continue // else already asked; the retry timer goes on
		}
		w.fetching[d] = &fetch{round: round, target: target, committed: true}
		w.fetchingOrder = append(w.fetchingOrder, d)
		ask = append(ask, d)
	}
	w.request(&out, ask)
	return out
}

// GC drops fetches for uncommitted headers at or below round.
func (w *Worker) GC(round uint64) {
	w.gcRound = max(w.gcRound, round)
	kept := w.fetchingOrder[:0]
	for _, d := range w.fetchingOrder {
		if f := w.fetching[d]; !f.committed && f.round <= round {
			delete(w.fetching, d)
			continue
		}
		kept = append(kept, d)
	}
	w.fetchingOrder = kept
}

// Receive handles a worker message from an authenticated peer. The error
// describes bad input (for logs); the output is valid either way.
func (w *Worker) Receive(from narwhal.AuthorityID, m narwhal.Message) (Output, error) {
	var out Output
	switch m := m.(type) {
	case *narwhal.BatchMsg:
		d := m.Batch.Digest()
		if !w.Has(d) {
			out.Writes = append(out.Writes, store.Put(store.BatchKey(d), m.Batch.Encode()))
			w.stored[d] = true
			w.fromOthers++
			out.Stored = append(out.Stored, d)
			w.fetchDone(&out, d)
		}
		out.Messages = append(out.Messages, narwhal.Envelope{To: from, Msg: &narwhal.BatchAckMsg{Digest: d}})
	case *narwhal.BatchAckMsg:
		f := w.inflight[m.Digest]
		if f == nil || f.acked[from] {
			return out, nil // late or duplicate
		}
		f.acked[from] = true
		f.stake += w.committee.Stake(from)
		w.checkQuorum(m.Digest, f)
	case *narwhal.BatchRequestMsg:
		resp := &narwhal.BatchResponseMsg{}
		size := 0
		for _, d := range m.Digests {
			raw, ok := w.st.Get(store.BatchKey(d))
			if !ok {
				continue
			}
			b, err := narwhal.DecodeBatch(raw)
			if err != nil {
				panic(fmt.Sprintf("worker: stored batch %s does not decode: %v", d.Short(), err))
			}
			if size += len(raw); size > w.cfg.MaxResponseBytes && len(resp.Batches) > 0 {
				break
			}
			resp.Batches = append(resp.Batches, *b)
		}
		if len(resp.Batches) > 0 {
			out.Messages = append(out.Messages, narwhal.Envelope{To: from, Msg: resp})
		}
	case *narwhal.BatchResponseMsg:
		unasked, stored := 0, 0
		for i := range m.Batches {
			d := m.Batches[i].Digest()
			if w.fetching[d] == nil {
				if !w.Has(d) { // a late answer for a batch that came another way is fine
					unasked++
				}
				continue
			}
			out.Writes = append(out.Writes, store.Put(store.BatchKey(d), m.Batches[i].Encode()))
			w.stored[d] = true
			w.fromOthers++
			out.Stored = append(out.Stored, d)
			w.fetchDone(&out, d)
			stored++
		}
		if stored > 0 {
			w.askAgain(&out, from)
		}
		if unasked > 0 {
			return out, fmt.Errorf("worker: %d unrequested batches from %d", unasked, from)
		}
	default:
		return out, fmt.Errorf("worker: unexpected %T", m)
	}
	return out, nil
}

// askAgain pipelines a catch-up: a peer that just answered is asked at once
// for the other batches still expected from it (a response is bounded by
// MaxResponseBytes, so a long list takes several), instead of waiting for
// the retry timer. It stops when the peer answers with nothing, because a
// peer that has none of them sends no response.
func (w *Worker) askAgain(out *Output, from narwhal.AuthorityID) {
	var ask []narwhal.Digest
	for _, d := range w.fetchingOrder {
		if f := w.fetching[d]; f.target == from {
			f.since = 0
			ask = append(ask, d)
			if len(ask) == maxRequestDigests {
				break
			}
		}
	}
	if len(ask) > 0 {
		out.Messages = append(out.Messages, narwhal.Envelope{To: from, Msg: &narwhal.BatchRequestMsg{Digests: ask}})
	}
}

// maxRequestDigests bounds the digests of one pipelined request.
const maxRequestDigests = 1000

// fetchDone ends the fetch of a batch now stored, and its missing mark.
func (w *Worker) fetchDone(out *Output, d narwhal.Digest) {
	if f := w.fetching[d]; f != nil {
		if f.committed {
			out.Writes = append(out.Writes, store.Del(store.MissingKey(d)))
			w.missing--
			if f.round <= w.gcRound {
				w.fetchedBelowGC++
			}
		}
		delete(w.fetching, d)
		w.fetchingOrder = slices.DeleteFunc(w.fetchingOrder, func(x narwhal.Digest) bool { return x == d })
	}
}
