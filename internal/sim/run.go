package sim

import (
	"container/heap"
	"fmt"

	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/replica"
	"github.com/tezos-dsn/dsn/internal/store"
)

// Run executes the run and its checkers. The returned trace is the run's
// event log (when trace is true); the error names the first checker that
// failed.
func Run(opts Options, trace bool) (Stats, string, error) {
	s, st, err := execute(opts, trace)
	if s == nil {
		return st, "", err
	}
	return st, s.trace.String(), err
}

// Outcome is what one node holds at the end of a run, for other components
// to replay (the rollup kernel's tests feed its DAG to the kernel and
// compare with its committed sequence).
type Outcome struct {
	Committee *narwhal.Committee
	GCDepth   uint64
	// DAG is the node's stored certificates in (round, author) order, each
	// with the batches its header names (nil for a batch it lacks).
	DAG []DAGEntry
	// Committed is the sequence the node committed, index 1 first.
	Committed []*replica.CommittedSubDAG
}

// DAGEntry is a certificate with its batches.
type DAGEntry struct {
	Certificate *narwhal.Certificate
	Batches     []*narwhal.Batch
}

// RunOutcome executes the run and its checkers and returns node i's
// outcome.
func RunOutcome(opts Options, i int) (Outcome, Stats, error) {
	s, st, err := execute(opts, false)
	if err != nil {
		return Outcome{}, st, err
	}
	if i < 0 || i >= len(s.nodes) {
		return Outcome{}, st, fmt.Errorf("node %d of %d", i, len(s.nodes))
	}
	n := s.nodes[i]
	out := Outcome{Committee: s.committee, GCDepth: s.cfg.GCDepth, Committed: n.subdags}
	var derr error
	n.st.Scan([]byte{store.PrefixCertificate}, store.PrefixEnd([]byte{store.PrefixCertificate}), func(_, v []byte) bool {
		c, err := narwhal.DecodeCertificate(v)
		if err != nil {
			derr = err
			return false
		}
		e := DAGEntry{Certificate: c}
		for _, d := range c.Header.Payload {
			var b *narwhal.Batch
			if raw, ok := n.st.Get(store.BatchKey(d)); ok {
				if b, err = narwhal.DecodeBatch(raw); err != nil {
					derr = err
					return false
				}
			}
			e.Batches = append(e.Batches, b)
		}
		out.DAG = append(out.DAG, e)
		return true
	})
	return out, st, derr
}

func execute(opts Options, trace bool) (*Sim, Stats, error) {
	s, err := New(opts)
	if err != nil {
		return nil, Stats{}, err
	}
	s.traceOn = trace
	s.tracef("options %s", opts)
	s.schedule()
	end := opts.Faults + opts.Heal
	for s.q.Len() > 0 {
		e := heap.Pop(&s.q).(*event)
		if e.at > end {
			break
		}
		s.now = e.at
		s.handle(e)
	}
	s.now = end
	s.stats.SimulatedMs = end
	s.stats.CommitsAfterHeal = s.maxHonestIndex() - s.indexAtHeal
	for i, n := range s.nodes {
		if s.honest(i) {
			s.stats.FetchedBelowGC += n.fetchedBelowGC
			if n.up {
				s.stats.FetchedBelowGC += n.rep.Status().FetchedBelowGC
			}
		}
	}
	err = s.check()
	if err != nil {
		err = fmt.Errorf("%w\n  options: %s\n  replay: make sim SEED=%d MIX=%d", err, opts, opts.Seed, opts.Mix)
	}
	return s, s.stats, err
}

// schedule lays out ticks, client transactions and faults.
func (s *Sim) schedule() {
	o := s.opts
	end := o.Faults + o.Heal
	for t := uint64(tickMs); t <= end; t += tickMs {
		s.push(&event{at: t, kind: evTick})
	}
	for k := 0; k < o.Txs; k++ {
		at := 1 + uint64(s.rng.Int63n(int64(max(o.Faults, 1))))
		s.push(&event{at: at, kind: evSubmit, node: s.rng.Intn(o.Nodes)})
	}
	if o.Partition {
		start := uint64(s.rng.Int63n(int64(o.Faults/2 + 1)))
		s.push(&event{at: start, kind: evPartition})
		s.push(&event{at: start + o.Faults/4 + uint64(s.rng.Int63n(int64(o.Faults/4+1))), kind: evHeal})
	}
	for c := 0; c < o.Crashes; c++ {
		i := s.rng.Intn(o.Nodes)
		at := uint64(s.rng.Int63n(int64(o.Faults*3/4 + 1)))
		s.push(&event{at: at, kind: evCrash, node: i})
		s.push(&event{at: at + 50 + uint64(s.rng.Int63n(int64(o.Faults/4+1))), kind: evRestart, node: i})
	}
	for _, i := range o.Outage {
		s.push(&event{at: o.Faults / 10, kind: evCrash, node: i})
		s.push(&event{at: o.Faults * 4 / 5, kind: evRestart, node: i})
	}
	// Liveness is measured from when every fault has healed.
	s.push(&event{at: o.Faults + o.Faults/4 + 100, kind: evCheckpoint})
	for i, b := range o.Byzantine {
		if b == Garbage {
			for t := uint64(7); t < o.Faults; t += 37 {
				s.push(&event{at: t, kind: evGarbage, node: i})
			}
		}
	}
}

func (s *Sim) honest(i int) bool { return s.opts.Byzantine[i] == Honest }

func (s *Sim) handle(e *event) {
	switch e.kind {
	case evTick:
		for i, n := range s.nodes {
			if n.up {
				s.apply(i, n.rep.Tick(1_700_000_000_000+s.now))
			}
		}
	case evDeliver:
		n := s.nodes[e.node]
		if !n.up {
			return
		}
		m, err := narwhal.DecodeMessage(e.raw)
		if err != nil {
			s.stats.Rejected++
			s.tracef("deliver %d->%d undecodable", e.from, e.node)
			return
		}
		s.stats.Delivered++
		s.tracef("deliver %d->%d %T", e.from, e.node, m)
		if s.opts.Byzantine[e.node] == VoteAll {
			s.voteBlindly(e.node, e.from, m)
		}
		out, err := n.rep.Receive(narwhal.AuthorityID(e.from), m)
		if err != nil {
			s.stats.Rejected++
			s.tracef("reject n%d: %v", e.node, err)
		}
		s.apply(e.node, out)
		s.apply(e.node, n.rep.Flush())
	case evSubmit:
		n := s.nodes[e.node]
		if !n.up {
			return
		}
		s.nextTx++
		tx := []byte(fmt.Sprintf("tx-%d-%06d", s.opts.Seed, s.nextTx))
		n.tickets[s.nextTx] = tx
		s.submitted++
		s.apply(e.node, n.rep.Submit(s.nextTx, tx))
		s.apply(e.node, n.rep.Flush()) // as the node does once no other event is ready
	case evCrash:
		n := s.nodes[e.node]
		if !n.up {
			return
		}
		s.tracef("crash n%d", e.node)
		n.up, n.rep, n.tickets = false, nil, map[uint64][]byte{}
		if n.unsynced > 0 {
			lose := s.rng.Intn(n.unsynced + 1)
			s.tracef("n%d loses %d of its %d unsynced write batches", e.node, lose, n.unsynced)
			if d, lost := n.undoLast(lose); lost && s.honest(e.node) && s.lostVouched == "" {
				s.lostVouched = fmt.Sprintf("node %d voted for batch %s, and a crash lost it", e.node, d.Short())
			}
		}
		n.unsynced = 0
		if s.opts.Rollback && len(n.undo) > 0 {
			lose := 1 + s.rng.Intn(len(n.undo))
			s.tracef("n%d loses its last %d write batches", e.node, lose)
			n.undoLast(lose)
		}
	case evRestart:
		if s.nodes[e.node].up {
			return
		}
		s.tracef("restart n%d", e.node)
		if err := s.start(e.node); err != nil {
			panic(err)
		}
		s.lastFault = max(s.lastFault, s.now)
	case evPartition:
		s.partition = true
		perm := s.rng.Perm(len(s.nodes))
		cut := 1 + s.rng.Intn(len(s.nodes)-1)
		for k, i := range perm {
			if k < cut {
				s.nodes[i].group = 1
			} else {
				s.nodes[i].group = 0
			}
		}
		s.tracef("partition %d|%d", cut, len(s.nodes)-cut)
	case evHeal:
		s.partition = false
		s.tracef("heal")
		s.lastFault = max(s.lastFault, s.now)
	case evGarbage:
		s.garbage(e.node)
	case evCheckpoint:
		s.indexAtHeal = s.maxHonestIndex()
		s.tracef("checkpoint index %d", s.indexAtHeal)
	}
}

// voteBlindly makes a VoteAll node sign whatever header it receives.
func (s *Sim) voteBlindly(i, from int, m narwhal.Message) {
	h, ok := m.(*narwhal.HeaderMsg)
	if !ok {
		return
	}
	d := h.Header.Digest()
	v := narwhal.Vote{Header: d, Round: h.Header.Round, Epoch: h.Header.Epoch, Origin: h.Header.Author,
		Voter: narwhal.AuthorityID(i), Signature: s.keys[i].Sign(narwhal.VoteMessage(d))}
	s.transmit(i, from, narwhal.EncodeMessage(&narwhal.VoteMsg{Vote: v}))
}

// garbage sends undecodable bytes, a badly signed vote and a certificate
// with a forged signature to a random peer.
func (s *Sim) garbage(i int) {
	to := s.rng.Intn(len(s.nodes))
	if to == i {
		return
	}
	junk := make([]byte, 1+s.rng.Intn(64))
	s.rng.Read(junk)
	s.transmit(i, to, junk)
	var d narwhal.Digest
	s.rng.Read(d[:])
	bad := narwhal.Vote{Header: d, Round: 1, Origin: narwhal.AuthorityID(to), Voter: narwhal.AuthorityID(i), Signature: s.keys[i].Sign([]byte("not the vote message"))}
	s.transmit(i, to, narwhal.EncodeMessage(&narwhal.VoteMsg{Vote: bad}))
	for r := uint64(1); r < 200; r++ {
		if c := s.someCertificate(r); c != nil {
			forged := *c
			forged.Header.CreatedAt++
			s.transmit(i, to, narwhal.EncodeMessage(&narwhal.CertificateMsg{Certificate: forged}))
			break
		}
	}
}

// someCertificate returns a certificate of round r from node 0's store.
func (s *Sim) someCertificate(r uint64) *narwhal.Certificate {
	for a := 0; a < len(s.nodes); a++ {
		if raw, ok := s.nodes[0].st.Get(storeCertKey(r, a)); ok {
			c, err := narwhal.DecodeCertificate(raw)
			if err == nil {
				return c
			}
		}
	}
	return nil
}

func (s *Sim) maxHonestIndex() uint64 {
	var m uint64
	for i, n := range s.nodes {
		if s.honest(i) {
			m = max(m, uint64(len(n.subdags)))
		}
	}
	return m
}
