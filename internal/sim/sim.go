// Package sim is the deterministic simulator: a whole committee of real
// protocol cores (internal/replica: worker, primary, Bullshark) in one
// goroutine, with a simulated clock and network, faults drawn from a seed —
// delays, drops, duplicates, reordering, partitions that heal, crashes and
// restarts, Byzantine peers — and checkers run at the end of every run:
// agreement, no duplicates, no loss of acknowledged transactions, causal
// completeness, one certificate per author and round, and liveness after
// the faults heal. Any failure replays exactly from its seed.
//
// Only the signatures are shared: all nodes check them through one
// crypto.CachedKeySet, so each distinct signature is verified once per run.
package sim

import (
	"container/heap"
	"crypto/ed25519"
	"fmt"
	"math/rand"
	"strings"

	"github.com/tezos-dsn/dsn/internal/crypto"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/primary"
	"github.com/tezos-dsn/dsn/internal/replica"
	"github.com/tezos-dsn/dsn/internal/store"
)

// Behaviour is what a simulated node does.
type Behaviour int

// Behaviours. Byzantine nodes run an honest replica whose outputs and
// inputs the simulator rewrites, signing with the node's own key.
const (
	Honest     Behaviour = iota
	Equivocate           // sends a second, different header for its round to half the peers
	VoteAll              // votes for every header it sees, without any check
	Withhold             // never sends its certificates, and answers no batch or certificate request
	Garbage              // also sends undecodable bytes and badly signed votes and certificates
)

func (b Behaviour) String() string {
	return [...]string{"honest", "equivocate", "vote-all", "withhold", "garbage"}[b]
}

// Options describe one run. Times are simulated milliseconds.
type Options struct {
	Seed   int64
	Mix    int // the fault mix OptionsForMix expanded (for replay)
	Nodes  int
	Faults uint64 // length of the fault phase; transactions are submitted during it
	Heal   uint64 // time after the faults heal, before the checks
	Txs    int    // client transactions, spread over the fault phase
	// Each link (from, to) draws its own delay range inside [MinDelay,
	// MaxDelay] from the seed; every message on it is delayed uniformly
	// within that range (so links differ, and messages reorder).
	MinDelay  uint64
	MaxDelay  uint64
	Drop      float64 // probability a message is lost
	Duplicate float64 // probability a message is delivered twice
	// Partition splits the nodes in two groups for part of the fault phase.
	Partition bool
	// Crashes is how many crash-and-restart events happen in the fault phase.
	Crashes int
	// Rollback: a crash also loses the node's last write batches (1 to
	// 16, from the seed), as a store whose WAL tail is lost does; only the
	// signing record kept outside the store (primary.Signed) survives.
	Rollback bool
	// Outage lists nodes that are down from a tenth to four fifths of the
	// fault phase (many GC depths), then restart and catch up.
	Outage []int
	// Byzantine behaviour per node (nil: all honest).
	Byzantine []Behaviour
}

// String prints the options so that a failure can be understood and replayed.
func (o Options) String() string {
	var byz []string
	for i, b := range o.Byzantine {
		if b != Honest {
			byz = append(byz, fmt.Sprintf("%d:%s", i, b))
		}
	}
	return fmt.Sprintf("seed=%d nodes=%d faults=%dms heal=%dms txs=%d delay=%d..%dms drop=%.2f dup=%.2f partition=%v crashes=%d rollback=%v outage=%v byzantine=[%s]",
		o.Seed, o.Nodes, o.Faults, o.Heal, o.Txs, o.MinDelay, o.MaxDelay, o.Drop, o.Duplicate, o.Partition, o.Crashes, o.Rollback, o.Outage, strings.Join(byz, " "))
}

// tickMs is the replicas' tick.
const tickMs = 5

// event kinds, in the order they run at equal times.
const (
	evTick = iota
	evDeliver
	evSubmit
	evCrash
	evRestart
	evPartition
	evHeal
	evGarbage
	evCheckpoint
)

type event struct {
	at   uint64
	seq  uint64
	kind int
	node int
	from int
	raw  []byte
}

type queue []*event

func (q queue) Len() int { return len(q) }
func (q queue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q queue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)   { *q = append(*q, x.(*event)) }
func (q *queue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// maxUndo bounds the write batches a Rollback crash may lose.
const maxUndo = 16

type undoWrite struct {
	key, old []byte
	existed  bool
}

type simNode struct {
	rep    *replica.Replica
	st     *store.Memory
	signed primary.Signed // kept outside the store, as a node keeps it
	// undo holds, for the most recent write batches, what each key held
	// before: a crash loses a suffix of the last unsynced ones (as the node's
	// store does), and one with Rollback loses more, synced or not (as a
	// store whose WAL tail is lost does).
	undo     [][]undoWrite
	unsynced int // the last undo entries not synced yet
	// vouched holds the batches this node voted for: no crash may lose them.
	vouched map[narwhal.Digest]bool
	up      bool
	group   int               // partition group
	tickets map[uint64][]byte // submitted, not yet acknowledged
	// fetchedBelowGC sums the worker counter over this node's earlier runs.
	fetchedBelowGC uint64
	subdags        []*replica.CommittedSubDAG
	// commits since the start, across restarts, by index (restarts resume
	// from the store, so an index may be reported again only if identical).
	byIndex map[uint64]*replica.CommittedSubDAG
	// commitAt is when each index was first committed here (simulated ms).
	commitAt map[uint64]uint64
}

// unsyncedWrite reports whether an unsynced write batch wrote key.
func (n *simNode) unsyncedWrite(key []byte) bool {
	for _, u := range n.undo[len(n.undo)-n.unsynced:] {
		for _, w := range u {
			if string(w.key) == string(key) {
				return true
			}
		}
	}
	return false
}

// undoLast takes back the last k write batches, newest first, and returns
// a batch among them that the node had vouched for, if any.
func (n *simNode) undoLast(k int) (lost narwhal.Digest, ok bool) {
	for ; k > 0; k-- {
		u := n.undo[len(n.undo)-1]
		n.undo = n.undo[:len(n.undo)-1]
		var ws []store.Write
		for j := len(u) - 1; j >= 0; j-- {
			if d, batch := store.BatchOf(u[j].key); batch && !u[j].existed && n.vouched[d] {
				lost, ok = d, true
			}
			if u[j].existed {
				ws = append(ws, store.Put(u[j].key, u[j].old))
			} else {
				ws = append(ws, store.Del(u[j].key))
			}
		}
		n.st.Apply(ws)
	}
	return lost, ok
}

// Sim is one run in progress.
type Sim struct {
	opts      Options
	rng       *rand.Rand
	committee *narwhal.Committee
	keys      []*crypto.SecretKey
	verifier  *narwhal.Verifier
	cfg       replica.Config
	nodes     []*simNode
	q         queue
	seq       uint64
	now       uint64
	trace     strings.Builder
	traceOn   bool
	partition bool

	// votes records each honest vote signed: (voter, author, round) →
	// header digest; doubleVote is the first honest vote that contradicts
	// one (a node signing twice for one round).
	votes      map[[3]uint64]narwhal.Digest
	doubleVote string
	// lostVouched is the first batch an honest node vouched for (voted)
	// that a crash then lost from its store.
	lostVouched string

	links       [][][2]uint64   // per-link delay range [lo, hi]
	acked       map[string]bool // acknowledged transactions
	submitted   int
	nextTx      uint64
	lastFault   uint64 // when the last fault healed
	indexAtHeal uint64 // most advanced honest index once the faults healed
	stats       Stats
}

// Stats are a run's figures.
type Stats struct {
	SimulatedMs      uint64
	Committed        uint64 // sub-DAGs committed by the most advanced honest node
	Delivered        int
	Dropped          int
	Rejected         int // messages a replica refused (bad input)
	Acked            int
	Ordered          int
	CommitsAfterHeal uint64
	// FetchedBelowGC counts committed batches that honest nodes stored after
	// their GC horizon had passed the certificate (catch-up fetches).
	FetchedBelowGC uint64
}

// New prepares a run; keys come from the seed.
func New(opts Options) (*Sim, error) {
	if opts.Nodes < 1 {
		return nil, fmt.Errorf("nodes: %d", opts.Nodes)
	}
	if opts.Byzantine == nil {
		opts.Byzantine = make([]Behaviour, opts.Nodes)
	}
	s := &Sim{opts: opts, rng: rand.New(rand.NewSource(opts.Seed)), acked: map[string]bool{}, votes: map[[3]uint64]narwhal.Digest{}}
	keyRng := rand.New(rand.NewSource(opts.Seed ^ 0x5eed))
	s.committee = &narwhal.Committee{}
	for i := 0; i < opts.Nodes; i++ {
		sk, err := crypto.GenerateKey(keyRng)
		if err != nil {
			return nil, err
		}
		pub, _, err := ed25519.GenerateKey(keyRng)
		if err != nil {
			return nil, err
		}
		a := narwhal.Authority{Name: fmt.Sprintf("n%d", i), Stake: 1, ConsensusKey: sk.PublicKey(), Address: "sim:1"}
		copy(a.NetworkKey[:], pub)
		s.committee.Authorities = append(s.committee.Authorities, a)
		s.keys = append(s.keys, sk)
	}
	ks, err := crypto.NewKeySet(s.committee.ConsensusKeys())
	if err != nil {
		return nil, err
	}
	s.verifier = narwhal.NewVerifierWith(s.committee, crypto.NewCachedKeySet(ks, 1<<20))
	linkRng := rand.New(rand.NewSource(opts.Seed ^ 0x11b5))
	s.links = make([][][2]uint64, opts.Nodes)
	for i := range s.links {
		s.links[i] = make([][2]uint64, opts.Nodes)
		for j := range s.links[i] {
			span := opts.MaxDelay - min(opts.MinDelay, opts.MaxDelay)
			lo := opts.MinDelay + uint64(linkRng.Int63n(int64(span/2+1)))
			hi := lo + uint64(linkRng.Int63n(int64(opts.MaxDelay-min(lo, opts.MaxDelay)+1)))
			s.links[i][j] = [2]uint64{lo, max(lo, hi)}
		}
	}
	s.cfg = replica.TestConfig()
	s.cfg.GCDepth = 10 // small, so that runs cross the GC horizon
	for i := 0; i < opts.Nodes; i++ {
		n := &simNode{st: store.NewMemory(), tickets: map[uint64][]byte{}, vouched: map[narwhal.Digest]bool{}, byIndex: map[uint64]*replica.CommittedSubDAG{},
			commitAt: map[uint64]uint64{}}
		s.nodes = append(s.nodes, n)
		if err := s.start(i); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *Sim) tracef(format string, args ...any) {
	if s.traceOn {
		fmt.Fprintf(&s.trace, "%6d ", s.now)
		fmt.Fprintf(&s.trace, format, args...)
		s.trace.WriteByte('\n')
	}
}

func (s *Sim) push(e *event) {
	s.seq++
	e.seq = s.seq
	heap.Push(&s.q, e)
}

func (s *Sim) start(i int) error {
	n := s.nodes[i]
	rep, err := replica.New(s.cfg, s.committee, s.verifier, narwhal.AuthorityID(i), s.keys[i], n.st)
	if err != nil {
		return fmt.Errorf("start node %d: %w", i, err)
	}
	rep.SetSigned(n.signed)
	n.rep, n.up = rep, true
	s.apply(i, rep.Start())
	return nil
}

// apply carries out a replica output: writes, then messages, acks, commits.
func (s *Sim) apply(i int, out replica.Output) {
	n := s.nodes[i]
	if len(out.Writes) > 0 {
		u := make([]undoWrite, len(out.Writes))
		for k, w := range out.Writes {
			old, ok := n.st.Get(w.Key)
			u[k] = undoWrite{key: w.Key, old: old, existed: ok} // stored values are never modified in place
		}
		n.undo = append(n.undo, u)
		n.unsynced++
		if len(n.undo) > max(maxUndo, n.unsynced) {
			n.undo = n.undo[1:]
		}
	}
	n.st.Apply(out.Writes)
	// As the node does (replica's contract): what promises nothing leaves
	// at once; a vote once the batches it vouches for are durable; an own
	// header, acknowledgements and commits once every write so far is.
	var late []replica.Envelope
	sync := len(out.Acked) > 0 || len(out.Committed) > 0
	for _, e := range out.Messages {
		switch _, vote := e.Msg.(*narwhal.VoteMsg); {
		case replica.Early(e.Msg):
			s.send(i, int(e.To), e.Msg)
			continue
		case vote:
			for _, d := range e.Vouches {
				sync = sync || n.unsyncedWrite(store.BatchKey(d))
				n.vouched[d] = true
			}
		default:
			sync = true
		}
		late = append(late, e)
	}
	if sync {
		n.unsynced = 0
	}
	if out.SignedChanged {
		n.signed = n.rep.Signed()
	}
	for _, e := range late {
		s.send(i, int(e.To), e.Msg)
	}
	for _, t := range out.Acked {
		if tx, ok := n.tickets[t]; ok {
			// Only an honest node's acknowledgement promises anything.
			if s.honest(i) {
				s.acked[string(tx)] = true
			}
			delete(n.tickets, t)
		}
	}
	for _, sd := range out.Committed {
		if prev, ok := n.byIndex[sd.Index]; ok {
			if prev.Leader.Digest() != sd.Leader.Digest() {
				panic(fmt.Sprintf("sim: node %d re-committed index %d with another leader", i, sd.Index))
			}
			continue
		}
		n.byIndex[sd.Index] = sd
		n.commitAt[sd.Index] = s.now
		n.subdags = append(n.subdags, sd)
		s.tracef("commit n%d #%d leader %d/%d certs %d", i, sd.Index, sd.Leader.Author(), sd.Leader.Round(), len(sd.Certificates))
	}
}

// send puts a message on the simulated network, through the sender's
// Byzantine filter.
func (s *Sim) send(from, to int, m narwhal.Message) {
	if s.honest(from) && s.doubleVote == "" {
		// A vote, or an own header (which carries the node's own vote).
		var author, round uint64
		var d narwhal.Digest
		switch m := m.(type) {
		case *narwhal.VoteMsg:
			author, round, d = uint64(m.Vote.Origin), m.Vote.Round, m.Vote.Header
		case *narwhal.HeaderMsg:
			author, round, d = uint64(m.Header.Author), m.Header.Round, m.Header.Digest()
		}
		if round > 0 {
			k := [3]uint64{uint64(from), author, round}
			if prev, seen := s.votes[k]; seen && prev != d {
				s.doubleVote = fmt.Sprintf("honest node %d signed for two headers of author %d in round %d (%s, %s)",
					from, author, round, prev.Short(), d.Short())
			}
			s.votes[k] = d
		}
	}
	switch s.opts.Byzantine[from] {
	case Withhold:
		switch m.(type) {
		case *narwhal.CertificateMsg, *narwhal.CertificateResponseMsg, *narwhal.BatchResponseMsg:
			return
		}
	case Equivocate:
		if h, ok := m.(*narwhal.HeaderMsg); ok && to%2 == 1 {
			twin := h.Header
			twin.CreatedAt++
			m = &narwhal.HeaderMsg{Header: twin}
		}
	}
	s.transmit(from, to, narwhal.EncodeMessage(m))
}

// transmit schedules raw bytes on the link from→to.
func (s *Sim) transmit(from, to int, raw []byte) {
	if s.partition && s.nodes[from].group != s.nodes[to].group {
		s.stats.Dropped++
		return
	}
	if s.rng.Float64() < s.opts.Drop && s.now < s.opts.Faults {
		s.stats.Dropped++
		return
	}
	copies := 1
	if s.rng.Float64() < s.opts.Duplicate && s.now < s.opts.Faults {
		copies = 2
	}
	for c := 0; c < copies; c++ {
		l := s.links[from][to]
		d := l[0] + uint64(s.rng.Int63n(int64(l[1]-l[0]+1)))
		s.push(&event{at: s.now + d, kind: evDeliver, node: to, from: from, raw: raw})
	}
}
