package replica

import (
	"encoding/binary"
	"fmt"

	"github.com/tezos-dsn/dsn/internal/bullshark"
	"github.com/tezos-dsn/dsn/internal/crypto"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/primary"
	"github.com/tezos-dsn/dsn/internal/store"
	"github.com/tezos-dsn/dsn/internal/worker"
)

// Config holds the parameters of all cores. Durations are in ticks; the
// runtime chooses the tick interval (services/node: 5 ms by default).
type Config struct {
	Worker  worker.Config
	Primary primary.Config
	// GCDepth is how many rounds below the last committed leader stay in memory.
	GCDepth uint64
}

// DefaultConfig returns production parameters for a 5 ms tick.
func DefaultConfig() Config {
	return Config{
		Worker: worker.Config{
			BatchSize:        500_000,
			MaxBatchDelay:    2,   // 10 ms
			RetryTicks:       200, // 1 s
			MaxResponseBytes: 8 << 20,
		},
		Primary: primary.Config{
			MaxHeaderDelay:          100, // 500 ms without anything to order
			LeaderTimeout:           20,  // 100 ms for an absent anchor candidate
			RetryTicks:              200,
			MaxHeaderPayload:        narwhal.MaxHeaderPayload,
			MaxResponseCertificates: 1000,
		},
		GCDepth: 50,
	}
}

// TestConfig returns parameters for fast tests: quicker retries and an idle
// round every 20 ticks.
func TestConfig() Config {
	c := DefaultConfig()
	c.Worker.RetryTicks = 40
	c.Primary.MaxHeaderDelay = 20
	c.Primary.RetryTicks = 40
	return c
}

// Validate checks the parameters.
func (c Config) Validate() error {
	switch {
	case c.Worker.BatchSize <= 0:
		return fmt.Errorf("worker.batch_size: must be > 0")
	case c.Worker.MaxBatchDelay <= 0:
		return fmt.Errorf("worker.max_batch_delay: must be > 0 ticks")
	case c.Worker.RetryTicks <= 0:
		return fmt.Errorf("worker.retry_ticks: must be > 0")
	case c.Worker.MaxResponseBytes <= 0:
		return fmt.Errorf("worker.max_response_bytes: must be > 0")
	case c.Primary.MaxHeaderDelay <= 0:
		return fmt.Errorf("primary.max_header_delay: must be > 0 ticks")
	case c.Primary.LeaderTimeout <= 0:
		return fmt.Errorf("primary.leader_timeout: must be > 0 ticks")
	case c.Primary.RetryTicks <= 0:
		return fmt.Errorf("primary.retry_ticks: must be > 0")
	case c.Primary.MaxHeaderPayload <= 0 || c.Primary.MaxHeaderPayload > narwhal.MaxHeaderPayload:
		return fmt.Errorf("primary.max_header_payload: must be in 1..%d", narwhal.MaxHeaderPayload)
	case c.Primary.MaxResponseCertificates <= 0:
		return fmt.Errorf("primary.max_response_certificates: must be > 0")
	case c.GCDepth < 2:
		return fmt.Errorf("gc_depth: must be >= 2 rounds")
	}
	return nil
}

// Replica is one authority's protocol state machine.
type Replica struct {
	cfg       Config
	committee *narwhal.Committee
	self      narwhal.AuthorityID
	w         *worker.Worker
	p         *primary.Primary
	b         *bullshark.Bullshark
	st        store.Reader
	committed uint64
	// unordered holds the tickets of own batches not committed yet: their
	// acknowledgement waits for the commit (Output.Acked).
	unordered map[narwhal.Digest][]uint64
}

// New builds a replica and recovers its state from st: Bullshark's state,
// the certificates above the GC horizon, the last proposed header, the votes
// given, and the pending (sealed, uncommitted) batch digests.
func New(cfg Config, committee *narwhal.Committee, v *narwhal.Verifier, self narwhal.AuthorityID,
	key *crypto.SecretKey, st store.Reader) (*Replica, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if int(self) >= committee.Size() {
		return nil, fmt.Errorf("self %d: %w", self, narwhal.ErrUnknownAuthority)
	}
	if key.PublicKey() != committee.Authorities[self].ConsensusKey {
		return nil, fmt.Errorf("consensus key does not match committee entry %d (%s)", self, committee.Authorities[self].Name)
	}
	r := &Replica{cfg: cfg, committee: committee, self: self, st: st, unordered: map[narwhal.Digest][]uint64{}}
	r.b = bullshark.New(committee, cfg.GCDepth)
	if raw, ok := st.Get(store.ConsensusKey()); ok {
		s, err := bullshark.DecodeState(raw)
		if err != nil {
			return nil, fmt.Errorf("consensus state: %w", err)
		}
		if err := r.b.Restore(s); err != nil {
			return nil, fmt.Errorf("restore consensus state: %w", err)
		}
	}
	r.committed = r.b.State().LastIndex
	r.w = worker.New(cfg.Worker, committee, self, st)
	p, err := primary.New(cfg.Primary, v, self, key, st, r.w.Has, r.b.GCRound())
	if err != nil {
		return nil, err
	}
	r.p = p
	for _, c := range p.AcceptedAbove(r.b.GCRound()) {
		if c.Round() == 0 {
			continue
		}
		if err := r.b.Insert(c); err != nil {
			return nil, fmt.Errorf("re-insert certificate %s: %w", c.Digest().Short(), err)
		}
	}
	return r, nil
}

// Start returns what must be re-sent after a (re)start: the primary's
// latest header and certificate, and requests for the batches of committed
// certificates still missing. It first audits the committed sub-DAGs that
// no earlier run checked (a store from before missing-batch marks existed)
// and marks their missing batches.
func (r *Replica) Start() Output {
	var out Output
	r.fromWorker(&out, r.w.Start())
	r.audit(&out)
	r.fromPrimary(&out, r.p.Start())
	return out
}

// audit marks the missing batches of committed sub-DAGs above the audited
// index, up to the last committed one.
func (r *Replica) audit(out *Output) {
	var from uint64
	if raw, ok := r.st.Get(store.AuditedKey()); ok && len(raw) == 8 {
		from = binary.BigEndian.Uint64(raw)
	}
	if from >= r.committed {
		return
	}
	for idx := from + 1; idx <= r.committed; idx++ {
		raw, ok := r.st.Get(store.SubDAGKey(idx))
		if !ok {
			panic(fmt.Sprintf("replica: committed sub-DAG %d of %d is not stored", idx, r.committed))
		}
		rec, err := bullshark.DecodeRecord(raw)
		if err != nil {
			panic(fmt.Sprintf("replica: stored sub-DAG %d does not decode: %v", idx, err))
		}
		for _, d := range rec.Certificates {
			raw, ok := store.CertificateByDigest(r.st, d)
			if !ok {
				panic(fmt.Sprintf("replica: certificate %s of committed sub-DAG %d is not stored", d.Short(), idx))
			}
			c, err := narwhal.DecodeCertificate(raw)
			if err != nil {
				panic(fmt.Sprintf("replica: stored certificate %s does not decode: %v", d.Short(), err))
			}
			r.fromWorker(out, r.w.FetchCommitted(c.Header.Payload, c.Author(), c.Round()))
		}
	}
	out.Writes = append(out.Writes, store.Put(store.AuditedKey(), binary.BigEndian.AppendUint64(nil, r.committed)))
}

// Submit adds a client transaction. Its ticket comes back in Output.Acked.
func (r *Replica) Submit(ticket uint64, tx []byte) Output {
	var out Output
	r.fromWorker(&out, r.w.Submit(ticket, tx))
	return out
}

// Flush seals the worker's current batch if nothing of its own is waiting
// for a quorum (see worker.Flush); a runtime calls it whenever it has
// handled every ready event.
func (r *Replica) Flush() Output {
	var out Output
	r.fromWorker(&out, r.w.Flush())
	return out
}

// Tick advances time by one tick; nowMs (unix milliseconds) stamps headers.
func (r *Replica) Tick(nowMs uint64) Output {
	var out Output
	r.fromWorker(&out, r.w.Tick())
	r.fromPrimary(&out, r.p.Tick(nowMs))
	return out
}

// Receive handles a message from an authenticated peer. The error describes
// bad input (to log and count); the Output is valid either way.
func (r *Replica) Receive(from narwhal.AuthorityID, m narwhal.Message) (Output, error) {
	var out Output
	if int(from) >= r.committee.Size() || from == r.self {
		return out, fmt.Errorf("message from %d: %w", from, narwhal.ErrUnknownAuthority)
	}
	switch m.(type) {
	case *narwhal.BatchMsg, *narwhal.BatchAckMsg, *narwhal.BatchRequestMsg, *narwhal.BatchResponseMsg:
		wo, err := r.w.Receive(from, m)
		r.fromWorker(&out, wo)
		return out, err
	default:
		po, err := r.p.Receive(from, m)
		r.fromPrimary(&out, po)
		return out, err
	}
}

func (r *Replica) fromWorker(out *Output, wo worker.Output) {
	out.Writes = append(out.Writes, wo.Writes...)
	out.Messages = append(out.Messages, wo.Messages...)
	out.trace(StageSealed, wo.Sealed)
	if len(wo.Available) > 0 {
		ds := make([]primary.PendingDigest, len(wo.Available))
		for i, b := range wo.Available {
			ds[i] = primary.PendingDigest{Digest: b.Digest, Seq: b.Seq}
			// Acknowledged once committed (Output.Acked says why).
			if len(b.Tickets) > 0 {
				r.unordered[b.Digest] = append(r.unordered[b.Digest], b.Tickets...)
			}
		}
		r.fromPrimary(out, r.p.AddBatches(ds))
	}
	if len(wo.Stored) > 0 {
		r.fromPrimary(out, r.p.BatchesStored(wo.Stored))
	}
}

func (r *Replica) fromPrimary(out *Output, po primary.Output) {
	out.Writes = append(out.Writes, po.Writes...)
	out.SignedChanged = out.SignedChanged || po.SignedChanged
	out.Messages = append(out.Messages, po.Messages...)
	out.trace(StageProposed, po.Proposed)
	out.trace(StageCertified, po.Certified)
	for _, need := range po.NeedBatches {
		r.fromWorker(out, r.w.Fetch(need.Digests, need.Author, need.Round))
	}
	if len(po.Accepted) == 0 {
		return
	}
	out.Accepted = append(out.Accepted, po.Accepted...)
	var subdags []*bullshark.CommittedSubDAG
	for _, c := range po.Accepted {
		if c.Round() == 0 {
			continue
		}
		s, err := r.b.ProcessCertificate(c)
		if err != nil {
			// The primary only accepts verified, causally complete,
			// non-equivocating certificates: Bullshark refusing one is a bug.
			panic(fmt.Sprintf("replica: consensus rejected accepted certificate %s: %v", c.Digest().Short(), err))
		}
		subdags = append(subdags, s...)
	}
	if len(subdags) == 0 {
		return
	}
	var own []uint64
	for _, s := range subdags {
		out.Writes = append(out.Writes, store.Put(store.SubDAGKey(s.Index), s.Record().Encode()))
		for _, c := range s.Certificates {
			if c.Author() == r.self {
				own = append(own, c.Round())
				out.trace(StageCommitted, c.Header.Payload)
				for _, d := range c.Header.Payload {
					if ts, ok := r.unordered[d]; ok {
						out.Acked = append(out.Acked, ts...)
						delete(r.unordered, d)
					}
				}
			}
			// Export serves every committed batch: those not stored yet are
			// marked missing in this same write and fetched until stored,
			// even once the GC horizon passes their round (a node catching
			// up commits many rounds at once and overtakes its fetches).
			r.fromWorker(out, r.w.FetchCommitted(c.Header.Payload, c.Author(), c.Round()))
		}
	}
	r.committed = subdags[len(subdags)-1].Index
	out.Writes = append(out.Writes,
		store.Put(store.ConsensusKey(), r.b.State().Encode()),
		store.Put(store.AuditedKey(), binary.BigEndian.AppendUint64(nil, r.committed)))
	out.Committed = append(out.Committed, subdags...)
	r.fromPrimary(out, r.p.Committed(own, r.b.LastCommitted(r.self)))
	gc := r.b.GCRound()
	r.w.GC(gc)
	r.fromPrimary(out, r.p.SetGCRound(gc))
}

// SetSigned hands the signing record kept outside the store back to the
// primary after a restart (call it before Start): nothing new is signed
// at or below what it says.
func (r *Replica) SetSigned(rec primary.Signed) { r.p.SetSigned(rec) }

// Signed returns the signing record to keep outside the store (after an
// Output with SignedChanged, before its Messages leave).
func (r *Replica) Signed() primary.Signed { return r.p.Signed() }

// Status is a snapshot for metrics and tests.
type Status struct {
	primary.Status
	Committed uint64 // index of the last committed sub-DAG
	worker.Stats
}

// Status returns a snapshot for metrics and tests.
func (r *Replica) Status() Status {
	s := Status{Status: r.p.Status(), Committed: r.committed}
	s.Stats = r.w.Stats()
	return s
}
