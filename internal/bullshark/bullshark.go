// Package bullshark is the Bullshark commit rule over the Narwhal DAG: it
// turns causally complete certificates into a total order of committed
// sub-DAGs ("pre-blocks"), each ending with its leader.
//
// It is a pure, deterministic step function shared by the consensus node
// (through internal/replica), the simulator and the rollup kernel, which
// re-runs it on the certificates it reads from the inbox; it compiles for
// GOOS=wasip1. It never verifies signatures: callers do that first.
//
// The algorithm is Bullshark's partially synchronous commit rule as the Sui
// Narwhal implementation has it (see reference/narwhal-bullshark.md §4),
// pipelined as Shoal does it (Spiegelman et al., 2023), with DSN's
// round-robin anchor candidates (narwhal.Committee.Leader, one per round) and
// no reputation-based swaps. Bullshark alone has an anchor ("leader") every
// second round; Shoal runs one Bullshark instance after another, each starting
// in the round after the anchor the previous one ordered, so that in the good
// case every round has an anchor and a certificate is ordered one round
// earlier:
//
//   - an instance starting at round s has anchors at rounds s, s+2, s+4, …;
//     s is one above the last ordered anchor's round (1 at the start);
//   - an anchor of round R is directly committed once certificates of round
//     R+1 holding f+1 stake reference it;
//   - the instance then orders one anchor: the oldest of the chain that
//     Bullshark would commit with the directly committed one (going down by
//     two rounds to s, each anchor linked by a path of parents from the most
//     recently linked one). Every honest node finds the same one: an anchor
//     with f+1 support is linked from every certificate two or more rounds
//     above it, so every node's chain passes through it. The next instance
//     starts in the round after it, and may find its own anchor directly
//     committed at once;
//   - each ordered anchor's sub-DAG is its causal history above the GC
//     horizon minus what the per-authority committed-round watermark
//     excludes, linearized by a depth-first walk (parents in ascending digest
//     order) and a stable sort by round, so the anchor is last.
package bullshark

import (
	"errors"
	"fmt"
	"slices"

	"github.com/tezos-dsn/dsn/internal/narwhal"
)

// Errors for bad input. The state is unchanged when one is returned.
var (
	ErrEquivocation  = errors.New("bullshark: equivocation")
	ErrMissingParent = errors.New("bullshark: missing parent")
	ErrWrongEpoch    = errors.New("bullshark: wrong epoch")
	ErrUnknownAuthor = errors.New("bullshark: unknown author")
	ErrBadState      = errors.New("bullshark: bad state")
)

// CommittedSubDAG is one committed sub-DAG: a pre-block.
type CommittedSubDAG struct {
	// Index numbers sub-DAGs gaplessly from 1.
	Index uint64
	// Leader is the ordered anchor; also the last element of Certificates.
	Leader *narwhal.Certificate
	// Certificates is the linearized sub-DAG: rounds ascending, leader last.
	Certificates []*narwhal.Certificate
	// Support holds, for an anchor ordered because it was directly
	// committed, the round+1 certificates that referenced it when it was
	// (f+1 stake or more), sorted by author. Empty for anchors ordered
	// through a later one. Nodes may hold different supports for the same
	// sub-DAG, as they may hold different signer sets.
	Support []*narwhal.Certificate
	// CommitTimestamp is max(previous, leader.CreatedAt): non-decreasing.
	CommitTimestamp uint64

	// digests of Certificates and Support, in order (Record).
	digests, supportDigests []narwhal.Digest
}

// Bullshark is the commit rule's state. Not safe for concurrent use.
type Bullshark struct {
	committee *narwhal.Committee
	gcDepth   uint64

	dag      map[uint64]map[narwhal.AuthorityID]*narwhal.Certificate // rounds > gcRound
	byDigest map[narwhal.Digest]*narwhal.Certificate
	// digests of the certificates held, computed once: a digest is a
	// BLAKE2b over the header's encoding, and the commit rule asks for
	// it many times (a certificate must not change once handed over).
	digests map[*narwhal.Certificate]narwhal.Digest

	lastCommitted  []uint64 // per authority: highest committed round
	committedRound uint64   // round of the last ordered anchor: the instance starts above it
	top            uint64   // highest round held
	lastIndex      uint64
	lastTimestamp  uint64
}

// New returns an empty state for a committee. gcDepth is how many rounds
// below the last committed leader stay in the DAG.
func New(committee *narwhal.Committee, gcDepth uint64) *Bullshark {
	return &Bullshark{
		committee:     committee,
		gcDepth:       gcDepth,
		dag:           make(map[uint64]map[narwhal.AuthorityID]*narwhal.Certificate),
		byDigest:      make(map[narwhal.Digest]*narwhal.Certificate),
		digests:       make(map[*narwhal.Certificate]narwhal.Digest),
		lastCommitted: make([]uint64, committee.Size()),
	}
}

// GCRound returns the garbage-collection horizon: committedRound − gcDepth
// (saturating). Certificates at or below it are ignored.
func (b *Bullshark) GCRound() uint64 {
	if b.committedRound < b.gcDepth {
		return 0
	}
	return b.committedRound - b.gcDepth
}

// CommittedRound returns the round of the last committed leader.
func (b *Bullshark) CommittedRound() uint64 { return b.committedRound }

// LastCommitted returns the highest committed round of an author (the
// watermark below which its certificates are never committed).
func (b *Bullshark) LastCommitted(author narwhal.AuthorityID) uint64 {
	if int(author) >= len(b.lastCommitted) {
		return 0
	}
	return b.lastCommitted[author]
}

// DigestOf returns c's digest: remembered if Bullshark holds c (every
// certificate of a CommittedSubDAG it returned, while above the GC
// horizon), computed otherwise.
func (b *Bullshark) DigestOf(c *narwhal.Certificate) narwhal.Digest {
	if d, ok := b.digests[c]; ok {
		return d
	}
	return c.Digest()
}

// check validates a certificate of digest d against the DAG without
// changing anything. It reports whether the certificate is new (false for
// an exact duplicate or one at or below the GC horizon).
func (b *Bullshark) check(c *narwhal.Certificate, d narwhal.Digest) (bool, error) {
	if int(c.Author()) >= b.committee.Size() {
		return false, fmt.Errorf("author %d: %w", c.Author(), ErrUnknownAuthor)
	}
	if c.Header.Epoch != b.committee.Epoch {
		return false, fmt.Errorf("epoch %d: %w", c.Header.Epoch, ErrWrongEpoch)
	}
	gc := b.GCRound()
	r := c.Round()
	if r <= gc {
		return false, nil
	}
	if old := b.dag[r][c.Author()]; old != nil {
		if od := b.digests[old]; od != d {
			return false, fmt.Errorf("author %d round %d: %s and %s: %w", c.Author(), r, od.Short(), d.Short(), ErrEquivocation)
		}
		return false, nil
	}
	if r > gc+1 {
		for _, p := range c.Header.Parents {
			pc := b.byDigest[p]
			if pc == nil || pc.Round() != r-1 {
				return false, fmt.Errorf("certificate %s: parent %s: %w", d.Short(), p.Short(), ErrMissingParent)
			}
		}
	}
	return true, nil
}

func (b *Bullshark) insert(c *narwhal.Certificate, d narwhal.Digest) {
	r := c.Round()
	if b.dag[r] == nil {
		b.dag[r] = make(map[narwhal.AuthorityID]*narwhal.Certificate)
	}
	b.dag[r][c.Author()] = c
	b.top = max(b.top, r)
	b.byDigest[d] = c
	b.digests[c] = d
}

// Insert adds a certificate without trying to commit: recovery re-inserts
// the stored certificates above the GC horizon in (round, author) order
// after Restore.
func (b *Bullshark) Insert(c *narwhal.Certificate) error {
	return b.InsertKnown(c, c.Digest())
}

// InsertKnown is Insert for a certificate whose digest d the caller
// computed before it stored the certificate in its own storage (the
// kernel's durable DAG): recovery then hashes nothing. d must be
// c.Digest(); a certificate from anywhere else goes through Insert.
func (b *Bullshark) InsertKnown(c *narwhal.Certificate, d narwhal.Digest) error {
	fresh, err := b.check(c, d)
	if err != nil || !fresh {
		return err
	}
	b.insert(c, d)
	return nil
}

// InsertCommitted is recovery's InsertKnown for a certificate at or below
// its author's last committed round (after Restore), given by its author,
// round and digest d alone. Bullshark never orders such a certificate
// again nor walks its parents: every walk (the support of a leader above
// the committed round, the links between uncommitted leaders, a sub-DAG's
// depth-first walk, which stops at the watermarks) reads the parents of
// certificates above their authors' watermarks only. It keeps just its
// identity, for the parent checks of later certificates and to catch an
// equivocation, so the caller need not decode it (the kernel loads its DAG
// at every level; most of it is below the watermarks).
func (b *Bullshark) InsertCommitted(author narwhal.AuthorityID, round uint64, d narwhal.Digest) error {
	if int(author) >= b.committee.Size() {
		return fmt.Errorf("author %d: %w", author, ErrUnknownAuthor)
	}
	if round > b.lastCommitted[author] {
		return fmt.Errorf("%w: round %d of author %d is above its last committed round %d", ErrBadState, round, author, b.lastCommitted[author])
	}
	return b.InsertKnown(&narwhal.Certificate{Header: narwhal.Header{Author: author, Round: round, Epoch: b.committee.Epoch}}, d)
}

// ProcessCertificate inserts a causally complete certificate (every parent
// processed before, unless the certificate is at most one round above the GC
// horizon) and returns the sub-DAGs it commits, in order.
func (b *Bullshark) ProcessCertificate(c *narwhal.Certificate) ([]*CommittedSubDAG, error) {
	d := c.Digest()
	fresh, err := b.check(c, d)
	if err != nil || !fresh {
		return nil, err
	}
	b.insert(c, d)
	if c.Round() < 2 || !b.anchorRound(c.Round()-1) {
		return nil, nil // only a certificate of the round above an anchor can support it
	}
	s := b.commitAnchor(c.Round() - 1)
	if s == nil {
		return nil, nil
	}
	out := []*CommittedSubDAG{s}
	// Each ordered anchor starts a new instance above it, whose anchors may
	// hold their support already: the lowest that does orders the next.
	for a := b.committedRound + 1; a < b.top; a += 2 {
		if s := b.commitAnchor(a); s != nil {
			out = append(out, s)
			a = b.committedRound - 1 // the loop adds 2: the new instance's first round
		}
	}
	return out, nil
}

// anchorRound reports whether round r holds an anchor of the current
// instance: it starts right above the last ordered anchor.
func (b *Bullshark) anchorRound(r uint64) bool {
	return r > b.committedRound && (r-b.committedRound-1)%2 == 0
}

// commitAnchor orders the current instance's anchor if the anchor of round r
// (one of the instance's) is directly committed: the oldest anchor of the
// instance linked to it, which may be itself.
func (b *Bullshark) commitAnchor(r uint64) *CommittedSubDAG {
	anchor := b.dag[r][b.committee.Leader(r)]
	if anchor == nil {
		return nil
	}
	ad := b.digests[anchor]
	var support []*narwhal.Certificate
	var stake uint64
	for a := 0; a < b.committee.Size(); a++ {
		x := b.dag[r+1][narwhal.AuthorityID(a)]
		if x != nil && containsDigest(x.Header.Parents, ad) {
			support = append(support, x)
			stake += b.committee.Stake(x.Author())
		}
	}
	if stake < b.committee.ValidityThreshold() {
		return nil
	}
	first := b.firstAnchor(anchor)
	s := b.order(first)
	if first == anchor {
		s.Support = support
		for _, x := range support {
			s.supportDigests = append(s.supportDigests, b.digests[x])
		}
	}
	return s
}

// firstAnchor returns the anchor the current instance orders when l, one of
// its anchors, is directly committed: going down by two rounds to the
// instance's first, each anchor linked from the most recently linked one,
// the last found (or l).
func (b *Bullshark) firstAnchor(l *narwhal.Certificate) *narwhal.Certificate {
	first := l
	for r := l.Round(); r >= b.committedRound+3; {
		r -= 2
		if p := b.dag[r][b.committee.Leader(r)]; p != nil && b.linked(first, p) {
			first = p
		}
	}
	return first
}

// order commits an anchor's sub-DAG.
func (b *Bullshark) order(l *narwhal.Certificate) *CommittedSubDAG {
	seq := b.orderDAG(l)
	for _, x := range seq {
		if x.Round() > b.lastCommitted[x.Author()] {
			b.lastCommitted[x.Author()] = x.Round()
		}
		if x.Round() > b.committedRound {
			b.committedRound = x.Round()
		}
	}
	b.gc()
	b.lastIndex++
	if l.Header.CreatedAt > b.lastTimestamp {
		b.lastTimestamp = l.Header.CreatedAt
	}
	s := &CommittedSubDAG{Index: b.lastIndex, Leader: l, Certificates: seq, CommitTimestamp: b.lastTimestamp,
		digests: make([]narwhal.Digest, len(seq))}
	for j, x := range seq {
		s.digests[j] = b.digests[x]
	}
	return s
}

// linked reports whether there is a path of parent links from a down to b.
func (b *Bullshark) linked(a, target *narwhal.Certificate) bool {
	frontier := map[narwhal.Digest]bool{b.digests[a]: true}
	for r := a.Round(); r > target.Round(); r-- {
		next := map[narwhal.Digest]bool{}
		for d := range frontier {
			for _, p := range b.byDigest[d].Header.Parents {
				if pc := b.byDigest[p]; pc != nil && pc.Round() == r-1 {
					next[p] = true
				}
			}
		}
		if len(next) == 0 {
			return false
		}
		frontier = next
	}
	return frontier[b.digests[target]]
}

// orderDAG linearizes the sub-DAG of a leader: a depth-first walk from the
// leader (parents in ascending digest order, skipping the seen and those at
// or below their author's watermark, not below the leader's GC horizon),
// then a stable sort by round.
func (b *Bullshark) orderDAG(leader *narwhal.Certificate) []*narwhal.Certificate {
	var gc uint64
	if leader.Round() > b.gcDepth {
		gc = leader.Round() - b.gcDepth
	}
	var ordered []*narwhal.Certificate
	seen := map[narwhal.Digest]bool{}
	stack := []*narwhal.Certificate{leader}
	for len(stack) > 0 {
		x := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		ordered = append(ordered, x)
		if x.Round() == gc+1 {
			continue
		}
		for _, p := range x.Header.Parents { // ascending: the header keeps them sorted
			if seen[p] {
				continue
			}
			pc := b.byDigest[p]
			if pc == nil {
				// Causal completeness was checked on insert and GC keeps
				// everything above gc: a missing parent is a bug.
				panic(fmt.Sprintf("bullshark: parent %s of %s (round %d) missing in sub-DAG of leader round %d", p.Short(), b.digests[x].Short(), x.Round(), leader.Round()))
			}
			if pc.Round() <= b.lastCommitted[pc.Author()] {
				continue
			}
			stack = append(stack, pc)
			seen[p] = true
		}
	}
	slices.SortStableFunc(ordered, func(a, c *narwhal.Certificate) int {
		switch {
		case a.Round() < c.Round():
			return -1
		case a.Round() > c.Round():
			return 1
		}
		return 0
	})
	return ordered
}

// gc drops rounds at or below the GC horizon.
func (b *Bullshark) gc() {
	gc := b.GCRound()
	for r, byAuthor := range b.dag {
		if r <= gc {
			for _, c := range byAuthor {
				delete(b.byDigest, b.digests[c])
				delete(b.digests, c)
			}
			delete(b.dag, r)
		}
	}
}

func containsDigest(ds []narwhal.Digest, d narwhal.Digest) bool {
	for i := range ds {
		if ds[i] == d {
			return true
		}
	}
	return false
}
