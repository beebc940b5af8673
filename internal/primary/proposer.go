package primary

import (
	"fmt"

	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/store"
)

// quorumRound returns the highest round whose accepted certificates hold a
// quorum of stake, and whether there is one at or above `from`.
func (p *Primary) quorumRound(from uint64) (uint64, bool) {
	for r := p.maxRound; r >= from; r-- {
		var stake uint64
		for a := range p.dag[r] {
			stake += p.committee.Stake(a)
		}
		if stake >= p.committee.QuorumThreshold() {
			return r, true
		}
		if r == 0 {
			break
		}
	}
	return 0, false
}

// leaderReady implements Bullshark's waits, at every round since every
// round has an anchor candidate (Shoal's pipelining, internal/bullshark):
// wait for the parent round's candidate, which the new header then
// references (votes for); and wait until f+1 stake of parents supports the
// previous round's candidate, or a quorum does not (it will not be directly
// committed). A candidate with no certificate in the two rounds before is
// not waited for: it is down or far behind, and would cost LeaderTimeout
// every n rounds for nothing. Its certificates bring the wait back.
func (p *Primary) leaderReady(pr uint64) bool {
	if pr < 1 {
		return true
	}
	if l := p.committee.Leader(pr); p.dag[pr][l] == nil && !p.silent(l, pr) {
		return false
	}
	leader := p.dag[pr-1][p.committee.Leader(pr-1)]
	if pr < 2 || leader == nil {
		return true
	}
	ld := leader.Digest()
	var support, against uint64
	for a, c := range p.dag[pr] {
		s := p.committee.Stake(a)
		if containsDigest(c.Header.Parents, ld) {
			support += s
		} else {
			against += s
		}
	}
	return support >= p.committee.ValidityThreshold() || against >= p.committee.QuorumThreshold()
}

// silent reports whether a has no accepted certificate in the two rounds
// before r (from round 3 on).
func (p *Primary) silent(a narwhal.AuthorityID, r uint64) bool {
	return r >= 3 && p.dag[r-1][a] == nil && p.dag[r-2][a] == nil
}

func containsDigest(ds []narwhal.Digest, d narwhal.Digest) bool {
	for i := range ds {
		if ds[i] == d {
			return true
		}
	}
	return false
}

// tryPropose proposes a header for the round after the highest round with a
// quorum of certificates, as soon as there is something to order (own
// batches, or recent payload of others still to be committed) and the
// leader rule is satisfied or LeaderTimeout ticks passed since the quorum
// — or when MaxHeaderDelay ticks passed anyway.
func (p *Primary) tryPropose(out *Output) {
	pr, ok := p.quorumRound(p.round)
	if !ok || pr+1 <= p.round || pr+1 <= p.proposeFloor {
		return // nothing new, or a round with a header the store forgot (SetSigned)
	}
	if pr != p.waitRound {
		p.waitRound, p.waitFrom = pr, p.sinceProposal
	}
	timedOut := p.sinceProposal >= p.cfg.MaxHeaderDelay
	gaveUp := p.sinceProposal-p.waitFrom >= p.cfg.LeaderTimeout
	work := len(p.queue) > 0 || len(p.certified) > 0 || (p.cur != nil && !p.cur.certified && len(p.cur.payload) > 0) ||
		p.lastPayloadRound+4 > pr
	if !timedOut && (!work || (!gaveUp && !p.leaderReady(pr))) {
		return
	}
	// Cancel an uncertified own header: its batches move to the new one, and
	// late votes for it are ignored, so it can never become a certificate.
	if p.cur != nil && !p.cur.certified {
		p.queue = append(p.cur.payload, p.queue...)
	}
	n := len(p.queue)
	if n > p.cfg.MaxHeaderPayload {
		n = p.cfg.MaxHeaderPayload
	}
	payload := append([]PendingDigest(nil), p.queue[:n]...)
	p.queue = p.queue[n:]
	h := &narwhal.Header{
		Author:    p.self,
		Round:     pr + 1,
		Epoch:     p.committee.Epoch,
		CreatedAt: p.nowMs,
	}
	for _, pd := range payload {
		h.Payload = append(h.Payload, pd.Digest)
	}
	out.Proposed = append(out.Proposed, h.Payload...)
	for a := 0; a < p.committee.Size(); a++ {
		if c := p.dag[pr][narwhal.AuthorityID(a)]; c != nil {
			h.Parents = append(h.Parents, c.Digest())
			if c.Header.CreatedAt > h.CreatedAt {
				h.CreatedAt = c.Header.CreatedAt
			}
		}
	}
	h.Parents = narwhal.SortDigests(h.Parents)
	p.round = h.Round
	out.SignedChanged = true // this node's own vote on it, in newProposal
	p.sinceProposal = 0
	p.cur = p.newProposal(h)
	p.cur.payload = payload
	out.Writes = append(out.Writes, store.Put(store.LastProposedKey(), h.Encode()))
	p.broadcast(out, &narwhal.HeaderMsg{Header: *h})
	if err := p.maybeCertify(out); err != nil {
		panic(fmt.Sprintf("primary: own vote alone failed: %v", err))
	}
}
