// Package primary is the Narwhal primary core: the proposer (headers that
// reference a quorum of the previous round's certificates and this node's
// available batches), the certifier (collects votes into a certificate), the
// voter (the rules under which this node signs another's header, at most
// once per author and round), the synchronizer (accepts only causally
// complete certificates; suspends the others and fetches their missing
// ancestors) and garbage collection by round.
//
// It is a pure step function driven by internal/replica: inputs are
// messages, ticks and notifications (batches stored, sub-DAGs committed);
// each call returns an Output whose Writes the runtime applies, and makes
// durable before the messages that promise them leave (internal/replica's
// contract) — so a restarted node never signs two different headers for one
// round, nor two votes for one author and round.
package primary

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/tezos-dsn/dsn/internal/crypto"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/store"
)

// Config holds the primary's parameters. Durations are in ticks.
type Config struct {
	// MaxHeaderDelay: propose after this many ticks even without payload or
	// without the leader's certificate (the proposer is otherwise adaptive:
	// it proposes as soon as it has a quorum of parents, the leader's
	// certificate or support, and something to order).
	MaxHeaderDelay int
	// LeaderTimeout: how long a proposal with something to order waits,
	// once the parent round holds a quorum, for Bullshark's leader rule (the
	// round's anchor candidate, and support for the previous one). Every
	// round has a candidate, so a stopped node's turn comes every n rounds:
	// it costs this, not MaxHeaderDelay.
	LeaderTimeout int
	// RetryTicks: re-send a header to authorities that have not voted, and
	// re-request missing certificates from another peer, after this long.
	RetryTicks int
	// MaxHeaderPayload bounds the batch digests per header.
	MaxHeaderPayload int
	// MaxResponseCertificates bounds the certificates in one response.
	MaxResponseCertificates int
}

// Errors for bad peer input.
var (
	ErrNotAuthor    = errors.New("primary: header not sent by its author")
	ErrEquivocation = errors.New("primary: equivocation")
	ErrBadParents   = errors.New("primary: bad parents")
	ErrBadVote      = errors.New("primary: bad vote")
)

// BatchNeed asks the worker to fetch batches a header names.
type BatchNeed struct {
	Digests []narwhal.Digest
	Author  narwhal.AuthorityID
	Round   uint64
}

// PendingDigest is an own batch digest with its durable pending entry.
type PendingDigest struct {
	Digest narwhal.Digest
	Seq    uint64
}

// Output is the result of one step.
type Output struct {
	Writes []store.Write
	// SignedChanged: this step signed a new vote or header; Signed's new
	// value must be durable outside the store before Messages leave.
	SignedChanged bool
	Messages      []narwhal.Envelope
	NeedBatches   []BatchNeed
	// Accepted certificates, in causal order, for consensus.
	Accepted []*narwhal.Certificate
	// Proposed and Certified list the own batches that went into a new own
	// header, and into an own header that got certified (latency anatomy).
	Proposed, Certified []narwhal.Digest
}

type voteRecord struct {
	round  uint64
	digest narwhal.Digest
}

// proposal is this node's header of the current round and its votes.
type proposal struct {
	header    *narwhal.Header
	digest    narwhal.Digest
	payload   []PendingDigest
	voted     []bool
	sigs      []crypto.Signature
	stake     uint64
	certified bool
	since     int
}

type request struct {
	round  uint64 // round of the certificate that needs it
	target narwhal.AuthorityID
	since  int
}

type pendingVote struct {
	header       *narwhal.Header
	batchesAsked bool
	parentsAsked bool
}

// Primary is the primary core of one authority. Not safe for concurrent use.
type Primary struct {
	cfg       Config
	committee *narwhal.Committee
	verifier  *narwhal.Verifier
	self      narwhal.AuthorityID
	key       *crypto.SecretKey
	st        store.Reader
	hasBatch  func(narwhal.Digest) bool

	nowMs uint64

	// DAG of accepted (causally complete) certificates above gcRound.
	dag      map[uint64]map[narwhal.AuthorityID]*narwhal.Certificate
	byDigest map[narwhal.Digest]*narwhal.Certificate
	gcRound  uint64
	maxRound uint64

	suspended    map[narwhal.Digest]*narwhal.Certificate
	waiting      map[narwhal.Digest][]narwhal.Digest // missing parent -> suspended children
	missing      map[narwhal.Digest]*request
	missingOrder []narwhal.Digest

	pendingVotes map[narwhal.AuthorityID]*pendingVote
	lastVote     []voteRecord

	// Never sign twice: what the signing record said at start (SetSigned),
	// which the store may have forgotten.
	voteFloor    []uint64
	proposeFloor uint64

	// Proposer.
	round         uint64 // round of the last proposed header
	cur           *proposal
	queue         []PendingDigest
	certified     map[uint64][]PendingDigest // own certified rounds -> payload, until committed
	sinceProposal int
	// waitRound is the parent round of the next proposal, which reached a
	// quorum waitFrom (in sinceProposal ticks): LeaderTimeout runs from there.
	waitRound        uint64
	waitFrom         int
	sinceAccept      int // ticks since a certificate was last accepted
	lastPayloadRound uint64
}

// New returns a primary that resumes from st (last proposed header,
// certificates above gcRound, pending digests); its votes come back with
// SetSigned. hasBatch reports whether the
// local worker stores a batch.
func New(cfg Config, v *narwhal.Verifier, self narwhal.AuthorityID, key *crypto.SecretKey,
	st store.Reader, hasBatch func(narwhal.Digest) bool, gcRound uint64) (*Primary, error) {
	c := v.Committee()
	p := &Primary{
		cfg: cfg, committee: c, verifier: v, self: self, key: key, st: st, hasBatch: hasBatch,
		dag:          make(map[uint64]map[narwhal.AuthorityID]*narwhal.Certificate),
		byDigest:     make(map[narwhal.Digest]*narwhal.Certificate),
		suspended:    make(map[narwhal.Digest]*narwhal.Certificate),
		waiting:      make(map[narwhal.Digest][]narwhal.Digest),
		missing:      make(map[narwhal.Digest]*request),
		pendingVotes: make(map[narwhal.AuthorityID]*pendingVote),
		lastVote:     make([]voteRecord, c.Size()),
		voteFloor:    make([]uint64, c.Size()),
		certified:    make(map[uint64][]PendingDigest),
		gcRound:      gcRound,
	}
	if int(self) >= c.Size() {
		return nil, fmt.Errorf("self %d: %w", self, narwhal.ErrUnknownAuthority)
	}
	if gcRound == 0 {
		for _, g := range narwhal.Genesis(c) {
			p.insert(g)
		}
	}
	if err := p.recover(); err != nil {
		return nil, fmt.Errorf("recover primary state: %w", err)
	}
	return p, nil
}

func (p *Primary) recover() error {
	var err error
	p.st.Scan(store.CertificateKey(p.gcRound+1, 0), store.PrefixEnd([]byte{store.PrefixCertificate}), func(_, v []byte) bool {
		var c *narwhal.Certificate
		if c, err = narwhal.DecodeCertificate(v); err != nil {
			return false
		}
		p.insert(c)
		return true
	})
	if err != nil {
		return fmt.Errorf("stored certificate: %w", err)
	}
	// Pending digests: those in an own certificate still in the DAG are in
	// flight; the rest go back to the queue. A digest in two of them was
	// proposed again after the commit rule skipped the older one (Committed):
	// the newer is the one in flight.
	inCert := map[narwhal.Digest]uint64{}
	for r, byAuthor := range p.dag {
		if c := byAuthor[p.self]; c != nil && r > 0 {
			for _, d := range c.Header.Payload {
				inCert[d] = max(inCert[d], r)
			}
		}
	}
	var pending []PendingDigest
	p.st.Scan([]byte{store.PrefixPending}, store.PrefixEnd([]byte{store.PrefixPending}), func(k, v []byte) bool {
		if len(k) != 9 || len(v) != narwhal.DigestSize {
			err = fmt.Errorf("pending entry %x", k)
			return false
		}
		pd := PendingDigest{Seq: binary.BigEndian.Uint64(k[1:])}
		copy(pd.Digest[:], v)
		pending = append(pending, pd)
		return true
	})
	if err != nil {
		return err
	}
	var last *narwhal.Header
	if raw, ok := p.st.Get(store.LastProposedKey()); ok {
		if last, err = narwhal.DecodeHeader(raw); err != nil {
			return fmt.Errorf("last proposed header: %w", err)
		}
		p.round = last.Round
	}
	lastPayload := map[narwhal.Digest]bool{}
	uncertified := last != nil && p.dag[last.Round][p.self] == nil && last.Round > p.gcRound
	if uncertified {
		for _, d := range last.Payload {
			lastPayload[d] = true
		}
		p.cur = p.newProposal(last)
	}
	for _, pd := range pending {
		switch r, ok := inCert[pd.Digest]; {
		case ok:
			p.certified[r] = append(p.certified[r], pd)
		case lastPayload[pd.Digest]:
			p.cur.payload = append(p.cur.payload, pd)
		default:
			p.queue = append(p.queue, pd)
		}
	}
	return nil
}

// Signed is what a node has signed: its last vote for each author (round
// and header digest) and its last proposed header's round. The runtime
// keeps it outside the store, synced before the messages that carry a new
// signature leave, and hands it back with SetSigned after a restart. It is
// where votes live (the store keeps none): a voter's step then syncs one
// small file rather than the store too, and a store rolled back or lost —
// a truncated WAL, a restored copy — cannot make the node sign twice.
type Signed struct {
	Proposed    uint64
	Votes       []uint64         // by author: the round of the last vote
	VoteDigests []narwhal.Digest // by author: the header it voted for (zero: unknown)
}

// SetSigned makes the primary sign nothing new at or below what rec says
// it signed: no vote for an author at or below its round, no header at or
// below the proposed round. It abstains only where it has signed already,
// so the committee's progress does not depend on it.
//
// A vote whose digest the record holds is restored as the last vote: a
// header that asks for it again gets the same vote (without it, votes lost
// in flight when the node stopped could leave a round without a quorum).
func (p *Primary) SetSigned(rec Signed) {
	p.proposeFloor = rec.Proposed
	for a := range p.voteFloor {
		if a < len(rec.Votes) {
			p.voteFloor[a] = rec.Votes[a]
			if a < len(rec.VoteDigests) && rec.VoteDigests[a] != (narwhal.Digest{}) && rec.Votes[a] >= p.lastVote[a].round {
				p.lastVote[a] = voteRecord{round: rec.Votes[a], digest: rec.VoteDigests[a]}
			}
		}
	}
}

// Signed returns what this node has signed (see Signed).
func (p *Primary) Signed() Signed {
	rec := Signed{Proposed: max(p.round, p.proposeFloor), Votes: make([]uint64, len(p.lastVote)),
		VoteDigests: make([]narwhal.Digest, len(p.lastVote))}
	for a, lv := range p.lastVote {
		rec.Votes[a] = max(lv.round, p.voteFloor[a])
		if lv.round >= p.voteFloor[a] {
			rec.VoteDigests[a] = lv.digest
		}
	}
	return rec
}

func (p *Primary) newProposal(h *narwhal.Header) *proposal {
	pr := &proposal{
		header: h,
		digest: h.Digest(),
		voted:  make([]bool, p.committee.Size()),
		sigs:   make([]crypto.Signature, p.committee.Size()),
	}
	pr.voted[p.self] = true
	pr.sigs[p.self] = p.sign(pr.digest)
	pr.stake = p.committee.Stake(p.self)
	return pr
}

// Status is a snapshot for metrics.
type Status struct {
	Round     uint64 // last proposed round
	DAGRound  uint64 // highest accepted certificate round
	GCRound   uint64
	DAGSize   int // certificates in memory
	Suspended int
	QueueLen  int // own batch digests waiting for a header
	InFlight  int // own certified rounds not yet committed
}

// Status returns a snapshot for metrics.
func (p *Primary) Status() Status {
	return Status{
		Round: p.round, DAGRound: p.maxRound, GCRound: p.gcRound, DAGSize: len(p.byDigest),
		Suspended: len(p.suspended), QueueLen: len(p.queue), InFlight: len(p.certified),
	}
}

// Certificate returns an accepted certificate by digest, if in memory.
func (p *Primary) Certificate(d narwhal.Digest) *narwhal.Certificate { return p.byDigest[d] }

// AcceptedAbove returns the accepted certificates above round, in (round,
// author) order — a causal order — for consensus recovery.
func (p *Primary) AcceptedAbove(round uint64) []*narwhal.Certificate {
	var out []*narwhal.Certificate
	rounds := make([]uint64, 0, len(p.dag))
	for r := range p.dag {
		if r > round {
			rounds = append(rounds, r)
		}
	}
	slices.Sort(rounds)
	for _, r := range rounds {
		for a := 0; a < p.committee.Size(); a++ {
			if c := p.dag[r][narwhal.AuthorityID(a)]; c != nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// Start re-sends what a restart may have left unsent: the current header
// (peers that already voted re-send the same vote) and the latest own
// certificate.
func (p *Primary) Start() Output {
	var out Output
	if p.cur != nil && !p.cur.certified {
		p.broadcast(&out, &narwhal.HeaderMsg{Header: *p.cur.header})
	}
	for r := p.maxRound; r > p.gcRound; r-- {
		if c := p.dag[r][p.self]; c != nil {
			p.broadcast(&out, &narwhal.CertificateMsg{Certificate: *c})
			break
		}
	}
	return out
}

func (p *Primary) broadcast(out *Output, m narwhal.Message) {
	for i := 0; i < p.committee.Size(); i++ {
		if narwhal.AuthorityID(i) != p.self {
			out.Messages = append(out.Messages, narwhal.Envelope{To: narwhal.AuthorityID(i), Msg: m})
		}
	}
}

// AddBatches queues own batch digests (sealed, with their pending entries) for proposal.
func (p *Primary) AddBatches(ds []PendingDigest) Output {
	p.queue = append(p.queue, ds...)
	var out Output
	p.tryPropose(&out)
	return out
}

// BatchesStored tells the primary that the worker now stores these batches:
// votes waiting for them may proceed.
func (p *Primary) BatchesStored([]narwhal.Digest) Output {
	var out Output
	p.retryVotes(&out)
	return out
}

// Tick advances time: proposal timeouts and retries. nowMs is the wall
// clock (unix milliseconds) used only for header timestamps.
func (p *Primary) Tick(nowMs uint64) Output {
	var out Output
	p.nowMs = nowMs
	p.sinceProposal++
	// Stalled: nothing accepted for a while (say, our certificate broadcast
	// was lost to a partition and every node waits for the others'). Send
	// our latest certificate again; a peer that lacks its ancestors fetches
	// them.
	if p.sinceAccept++; p.sinceAccept >= p.cfg.RetryTicks {
		p.sinceAccept = 0
		for r := p.maxRound; r > p.gcRound; r-- {
			if c := p.dag[r][p.self]; c != nil {
				p.broadcast(&out, &narwhal.CertificateMsg{Certificate: *c})
				break
			}
		}
	}
	if c := p.cur; c != nil && !c.certified {
		if c.since++; c.since >= p.cfg.RetryTicks {
			c.since = 0
			for i, ok := range c.voted {
				if !ok {
					out.Messages = append(out.Messages, narwhal.Envelope{To: narwhal.AuthorityID(i), Msg: &narwhal.HeaderMsg{Header: *c.header}})
				}
			}
		}
	}
	retry := map[narwhal.AuthorityID][]narwhal.Digest{}
	var targets []narwhal.AuthorityID
	for _, d := range p.missingOrder {
		r := p.missing[d]
		if r.since++; r.since < p.cfg.RetryTicks {
			continue
		}
		r.since = 0
		r.target = p.committee.NextPeer(r.target, p.self)
		if _, ok := retry[r.target]; !ok {
			targets = append(targets, r.target)
		}
		retry[r.target] = append(retry[r.target], d)
	}
	for _, t := range targets {
		out.Messages = append(out.Messages, narwhal.Envelope{To: t, Msg: &narwhal.CertificateRequestMsg{Digests: retry[t]}})
	}
	p.tryPropose(&out)
	return out
}

// Receive handles a primary message from an authenticated peer. The error
// describes bad input; the output is valid either way.
func (p *Primary) Receive(from narwhal.AuthorityID, m narwhal.Message) (Output, error) {
	var out Output
	var err error
	switch m := m.(type) {
	case *narwhal.HeaderMsg:
		err = p.onHeader(&out, from, &m.Header)
	case *narwhal.VoteMsg:
		err = p.onVote(&out, from, &m.Vote)
	case *narwhal.CertificateMsg:
		err = p.onCertificates(&out, from, []narwhal.Certificate{m.Certificate})
	case *narwhal.CertificateResponseMsg:
		err = p.onCertificates(&out, from, m.Certificates)
	case *narwhal.CertificateRequestMsg:
		p.onCertificateRequest(&out, from, m.Digests)
	default:
		err = fmt.Errorf("primary: unexpected %T", m)
	}
	p.tryPropose(&out)
	return out, err
}
