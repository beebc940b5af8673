package primary

import (
	"fmt"

	"github.com/tezos-dsn/dsn/internal/crypto"
	"github.com/tezos-dsn/dsn/internal/narwhal"
)

// onHeader handles a vote request. The voter signs at most one header per
// author and round (the last vote is persisted before the vote is sent), and
// only once the header's parents are accepted certificates of the previous
// round with a quorum of distinct authors and its batches are stored here.
func (p *Primary) onHeader(out *Output, from narwhal.AuthorityID, h *narwhal.Header) error {
	if h.Author != from {
		return fmt.Errorf("header by %d from %d: %w", h.Author, from, ErrNotAuthor)
	}
	if err := p.verifier.CheckHeader(h); err != nil {
		return err
	}
	if h.Round <= p.gcRound {
		return nil
	}
	lv := p.lastVote[h.Author]
	if h.Round < lv.round {
		return nil // old
	}
	if h.Round == lv.round && lv.round > 0 {
		if d := h.Digest(); d != lv.digest {
			return fmt.Errorf("author %d round %d: header %s after voting for %s: %w", h.Author, h.Round, d.Short(), lv.digest.Short(), ErrEquivocation)
		}
		p.sendVote(out, h, lv.digest) // a retry: the same vote again
		return nil
	}
	if pv := p.pendingVotes[h.Author]; pv != nil && pv.header.Round > h.Round {
		return nil
	} else if pv != nil && pv.header.Round == h.Round {
		if pv.header.Digest() != h.Digest() {
			return fmt.Errorf("author %d round %d: two headers: %w", h.Author, h.Round, ErrEquivocation)
		}
		pv.parentsAsked, pv.batchesAsked = false, false // a retry: ask again
	} else {
		p.pendingVotes[h.Author] = &pendingVote{header: h}
	}
	return p.tryVote(out, h.Author)
}

// retryVotes re-evaluates every pending vote, in author order.
func (p *Primary) retryVotes(out *Output) {
	for a := 0; a < p.committee.Size(); a++ {
		if p.pendingVotes[narwhal.AuthorityID(a)] != nil {
			_ = p.tryVote(out, narwhal.AuthorityID(a)) // errors were reported when the header arrived
		}
	}
}

func (p *Primary) tryVote(out *Output, author narwhal.AuthorityID) error {
	pv := p.pendingVotes[author]
	h := pv.header
	// Parents: accepted certificates (or below the GC horizon).
	var missing []narwhal.Digest
	for _, pd := range h.Parents {
		if !p.parentSatisfied(h.Round, pd) {
			missing = append(missing, pd)
		}
	}
	if len(missing) > 0 {
		if !pv.parentsAsked {
			pv.parentsAsked = true
			var ask []narwhal.Digest
			for _, pd := range missing {
				if !p.known(pd) && p.missing[pd] == nil {
					p.missing[pd] = &request{round: h.Round - 1, target: author}
					p.missingOrder = append(p.missingOrder, pd)
					ask = append(ask, pd)
				}
			}
			if len(ask) > 0 {
				out.Messages = append(out.Messages, narwhal.Envelope{To: author, Msg: &narwhal.CertificateRequestMsg{Digests: ask}})
			}
		}
		return nil
	}
	if h.Round-1 > p.gcRound || h.Round == 1 {
		authors := make([]bool, p.committee.Size())
		var stake uint64
		for _, pd := range h.Parents {
			c := p.byDigest[pd]
			if c.Round() != h.Round-1 {
				delete(p.pendingVotes, author)
				return fmt.Errorf("header %d/%d: parent %s of round %d: %w", author, h.Round, pd.Short(), c.Round(), ErrBadParents)
			}
			if authors[c.Author()] {
				delete(p.pendingVotes, author)
				return fmt.Errorf("header %d/%d: two parents by %d: %w", author, h.Round, c.Author(), ErrBadParents)
			}
			authors[c.Author()] = true
			stake += p.committee.Stake(c.Author())
			if c.Header.CreatedAt > h.CreatedAt {
				delete(p.pendingVotes, author)
				return fmt.Errorf("header %d/%d: created before its parent %s: %w", author, h.Round, pd.Short(), ErrBadParents)
			}
		}
		if stake < p.committee.QuorumThreshold() {
			delete(p.pendingVotes, author)
			return fmt.Errorf("header %d/%d: parent stake %d below quorum: %w", author, h.Round, stake, ErrBadParents)
		}
	}
	// Batches: all stored locally (so the data survives if the author dies).
	var absent []narwhal.Digest
	for _, d := range h.Payload {
		if !p.hasBatch(d) {
			absent = append(absent, d)
		}
	}
	if len(absent) > 0 {
		if !pv.batchesAsked {
			pv.batchesAsked = true
			out.NeedBatches = append(out.NeedBatches, BatchNeed{Digests: absent, Author: author, Round: h.Round})
		}
		return nil
	}
	delete(p.pendingVotes, author)
	if lv := p.lastVote[author]; lv.round >= h.Round {
		return nil // voted meanwhile (cannot happen for a different digest: checked on arrival)
	}
	if h.Round <= p.voteFloor[author] {
		return nil // voted at this round before a store loss (SetSigned): perhaps for another header
	}
	// The vote lives in the signing record (Signed), which the runtime
	// syncs before the vote leaves; the store keeps no votes.
	out.SignedChanged = true
	d := h.Digest()
	p.lastVote[author] = voteRecord{round: h.Round, digest: d}
	p.sendVote(out, h, d)
	return nil
}

// sign votes for header digest d with this node's key, and tells the
// verifier, which then need not check that signature in the certificate.
func (p *Primary) sign(d narwhal.Digest) crypto.Signature {
	msg := narwhal.VoteMessage(d)
	sig := p.key.Sign(msg)
	p.verifier.Signed(p.self, msg, sig)
	return sig
}

func (p *Primary) sendVote(out *Output, h *narwhal.Header, d narwhal.Digest) {
	out.Messages = append(out.Messages, narwhal.Envelope{To: h.Author, Msg: &narwhal.VoteMsg{Vote: narwhal.Vote{
		Header: d, Round: h.Round, Epoch: h.Epoch, Origin: h.Author, Voter: p.self,
		Signature: p.sign(d),
	}}, Vouches: h.Payload})
}

// onVote collects a vote for the current header. Each vote's signature is
// checked as it arrives (one ed25519 verification, about 40 µs), so a
// certificate is made of valid votes only: a quorum makes it, and it is
// accepted locally and broadcast at once.
func (p *Primary) onVote(out *Output, from narwhal.AuthorityID, v *narwhal.Vote) error {
	c := p.cur
	if c == nil || c.certified || v.Header != c.digest {
		return nil // late or for a cancelled header
	}
	if v.Voter != from || v.Origin != p.self || v.Round != c.header.Round || v.Epoch != c.header.Epoch {
		return fmt.Errorf("vote from %d: fields do not match: %w", from, ErrBadVote)
	}
	if c.voted[from] {
		return nil
	}
	if err := p.verifier.CheckVote(v); err != nil {
		return fmt.Errorf("%w: %w", ErrBadVote, err)
	}
	c.voted[from] = true
	c.sigs[from] = v.Signature
	c.stake += p.committee.Stake(from)
	return p.maybeCertify(out)
}

// maybeCertify makes the certificate once the (verified) votes reach a
// quorum.
func (p *Primary) maybeCertify(out *Output) error {
	c := p.cur
	if c.certified || c.stake < p.committee.QuorumThreshold() {
		return nil
	}
	cert := &narwhal.Certificate{Header: *c.header}
	for i, ok := range c.voted {
		if ok {
			cert.Signers = append(cert.Signers, narwhal.AuthorityID(i))
			cert.Signatures = append(cert.Signatures, c.sigs[i])
		}
	}
	c.certified = true
	out.Certified = append(out.Certified, c.header.Payload...)
	if len(c.payload) > 0 {
		p.certified[c.header.Round] = c.payload
	}
	p.accept(out, cert)
	p.broadcast(out, &narwhal.CertificateMsg{Certificate: *cert})
	return nil
}
