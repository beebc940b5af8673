package primary

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/store"
)

// insert adds a certificate to the in-memory DAG (no write, no checks).
func (p *Primary) insert(c *narwhal.Certificate) {
	r := c.Round()
	if p.dag[r] == nil {
		p.dag[r] = make(map[narwhal.AuthorityID]*narwhal.Certificate)
	}
	p.dag[r][c.Author()] = c
	p.byDigest[c.Digest()] = c
	if r > p.maxRound {
		p.maxRound = r
	}
	if len(c.Header.Payload) > 0 && r > p.lastPayloadRound {
		p.lastPayloadRound = r
	}
}

// known reports whether a certificate is accepted or suspended.
func (p *Primary) known(d narwhal.Digest) bool {
	return p.byDigest[d] != nil || p.suspended[d] != nil
}

// parentSatisfied reports whether a parent of a certificate at round is
// accepted, or lies at or below the GC horizon (then it counts as present,
// exactly as Bullshark and the kernel treat it).
func (p *Primary) parentSatisfied(round uint64, d narwhal.Digest) bool {
	return p.byDigest[d] != nil || round-1 <= p.gcRound && round > 0
}

// onCertificates verifies and processes certificates from a peer. A batch of
// fetched certificates is authenticated by its tips: the certificates no
// other certificate of the batch references are signature-checked (one
// batch); every other one is named by the digest link from a checked
// descendant, which is as good as its own signatures.
func (p *Primary) onCertificates(out *Output, from narwhal.AuthorityID, cs []narwhal.Certificate) error {
	var fresh []*narwhal.Certificate
	seen := map[narwhal.Digest]bool{}
	for i := range cs {
		c := &cs[i]
		d := c.Digest()
		if seen[d] || p.known(d) || c.Round() <= p.gcRound {
			continue
		}
		seen[d] = true
		fresh = append(fresh, c)
	}
	if len(fresh) == 0 {
		return nil
	}
	referenced := map[narwhal.Digest]bool{}
	for _, c := range fresh {
		for _, pd := range c.Header.Parents {
			if seen[pd] {
				referenced[pd] = true
			}
		}
	}
	var tips []*narwhal.Certificate
	for _, c := range fresh {
		if !referenced[c.Digest()] {
			tips = append(tips, c)
		}
	}
	if err := p.verifier.CheckCertificates(tips); err != nil {
		return fmt.Errorf("certificates from %d: %w", from, err)
	}
	for _, c := range fresh {
		if referenced[c.Digest()] {
			if err := p.verifier.CheckCertificateShape(c); err != nil {
				return fmt.Errorf("linked certificate from %d: %w", from, err)
			}
		}
	}
	// Process in round order so that parents come first.
	slices.SortStableFunc(fresh, func(a, b *narwhal.Certificate) int {
		if a.Round() != b.Round() {
			if a.Round() < b.Round() {
				return -1
			}
			return 1
		}
		return int(a.Author()) - int(b.Author())
	})
	var firstErr error
	for _, c := range fresh {
		if err := p.process(out, from, c); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	p.retryVotes(out)
	return firstErr
}

// process accepts a verified certificate if it is causally complete, else
// suspends it and asks `from` for the missing parents.
func (p *Primary) process(out *Output, from narwhal.AuthorityID, c *narwhal.Certificate) error {
	d := c.Digest()
	if p.known(d) {
		return nil
	}
	if old := p.dag[c.Round()][c.Author()]; old != nil {
		return fmt.Errorf("certificates %s and %s for author %d round %d: %w", old.Digest().Short(), d.Short(), c.Author(), c.Round(), ErrEquivocation)
	}
	var missing []narwhal.Digest
	for _, pd := range c.Header.Parents {
		if !p.parentSatisfied(c.Round(), pd) {
			missing = append(missing, pd)
		}
	}
	if len(missing) == 0 {
		p.accept(out, c)
		return nil
	}
	p.suspended[d] = c
	var ask []narwhal.Digest
	for _, pd := range missing {
		p.waiting[pd] = append(p.waiting[pd], d)
		if p.suspended[pd] == nil && p.missing[pd] == nil {
			p.missing[pd] = &request{round: c.Round() - 1, target: from}
			p.missingOrder = append(p.missingOrder, pd)
			ask = append(ask, pd)
		}
	}
	if len(ask) > 0 && from != p.self {
		out.Messages = append(out.Messages, narwhal.Envelope{To: from, Msg: &narwhal.CertificateRequestMsg{Digests: ask}})
	}
	return nil
}

// accept stores a causally complete certificate, hands it to consensus and
// wakes the suspended certificates that waited for it, in causal order.
func (p *Primary) accept(out *Output, c *narwhal.Certificate) {
	queue := []*narwhal.Certificate{c}
	for len(queue) > 0 {
		c := queue[0]
		queue = queue[1:]
		d := c.Digest()
		if p.byDigest[d] != nil {
			continue
		}
		if old := p.dag[c.Round()][c.Author()]; old != nil {
			continue // an equivocating twin; the first one stays
		}
		delete(p.suspended, d)
		if p.missing[d] != nil {
			delete(p.missing, d)
			p.missingOrder = slices.DeleteFunc(p.missingOrder, func(x narwhal.Digest) bool { return x == d })
		}
		p.insert(c)
		p.sinceAccept = 0
		if cur := p.cur; cur != nil && !cur.certified && c.Author() == p.self && d == cur.digest {
			// Our header's certificate, from a peer: we made it before a
			// crash lost it (a certificate leaves before the store syncs
			// it), and sent the header again. It is certified: its batches
			// must not be proposed again.
			cur.certified = true
			out.Certified = append(out.Certified, cur.header.Payload...)
			if len(cur.payload) > 0 {
				p.certified[c.Round()] = cur.payload
			}
		}
		idx := binary.BigEndian.AppendUint64(nil, c.Round())
		idx = binary.BigEndian.AppendUint16(idx, uint16(c.Author()))
		out.Writes = append(out.Writes,
			store.Put(store.CertificateKey(c.Round(), uint16(c.Author())), c.Encode()),
			store.Put(store.CertDigestKey(d), idx))
		out.Accepted = append(out.Accepted, c)
		// Every node keeps the batches of the certified DAG (consensus output
		// needs them): fetch what the voters had and this node lacks.
		if c.Author() != p.self {
			var absent []narwhal.Digest
			for _, bd := range c.Header.Payload {
				if !p.hasBatch(bd) {
					absent = append(absent, bd)
				}
			}
			if len(absent) > 0 {
				out.NeedBatches = append(out.NeedBatches, BatchNeed{Digests: absent, Author: c.Author(), Round: c.Round()})
			}
		}
		children := p.waiting[d]
		delete(p.waiting, d)
		for _, cd := range children {
			child := p.suspended[cd]
			if child == nil {
				continue
			}
			complete := true
			for _, pd := range child.Header.Parents {
				if !p.parentSatisfied(child.Round(), pd) {
					complete = false
					break
				}
			}
			if complete {
				queue = append(queue, child)
			}
		}
	}
}

// onCertificateRequest serves certificates by digest, from memory or store.
func (p *Primary) onCertificateRequest(out *Output, from narwhal.AuthorityID, ds []narwhal.Digest) {
	resp := &narwhal.CertificateResponseMsg{}
	for _, d := range ds {
		if len(resp.Certificates) >= p.cfg.MaxResponseCertificates {
			break
		}
		if c := p.byDigest[d]; c != nil {
			if c.Round() > 0 {
				resp.Certificates = append(resp.Certificates, *c)
			}
			continue
		}
		raw, ok := store.CertificateByDigest(p.st, d)
		if !ok {
			continue
		}
		c, err := narwhal.DecodeCertificate(raw)
		if err != nil {
			panic(fmt.Sprintf("primary: stored certificate %s does not decode: %v", d.Short(), err))
		}
		resp.Certificates = append(resp.Certificates, *c)
	}
	if len(resp.Certificates) > 0 {
		out.Messages = append(out.Messages, narwhal.Envelope{To: from, Msg: resp})
	}
}

// SetGCRound moves the garbage-collection horizon: certificates at or below
// it leave memory (they stay on disk), suspended certificates whose missing
// parents fell below it are accepted, and stale requests are dropped.
func (p *Primary) SetGCRound(gc uint64) Output {
	var out Output
	if gc <= p.gcRound {
		return out
	}
	p.gcRound = gc
	for r, byAuthor := range p.dag {
		if r <= gc {
			for _, c := range byAuthor {
				delete(p.byDigest, c.Digest())
			}
			delete(p.dag, r)
		}
	}
	// An own certificate that fell below the horizon uncommitted will never
	// be committed: order its batches again.
	p.requeueCertified(gc)
	kept := p.missingOrder[:0]
	for _, d := range p.missingOrder {
		if p.missing[d].round <= gc {
			delete(p.missing, d)
			continue
		}
		kept = append(kept, d)
	}
	p.missingOrder = kept
	for a, pv := range p.pendingVotes {
		if pv.header.Round <= gc {
			delete(p.pendingVotes, a)
		}
	}
	// Suspended certificates: drop those at or below the horizon; accept
	// those whose parents are now satisfied (deterministic order).
	var ready []*narwhal.Certificate
	for d, c := range p.suspended {
		if c.Round() <= gc {
			delete(p.suspended, d)
			continue
		}
		complete := true
		for _, pd := range c.Header.Parents {
			if !p.parentSatisfied(c.Round(), pd) {
				complete = false
				break
			}
		}
		if complete {
			ready = append(ready, c)
		}
	}
	for pd := range p.waiting {
		if p.suspended[pd] == nil && p.missing[pd] == nil && p.byDigest[pd] == nil {
			// nobody fetches it any more; children re-request if still needed
			still := false
			for _, cd := range p.waiting[pd] {
				if p.suspended[cd] != nil {
					still = true
				}
			}
			if !still {
				delete(p.waiting, pd)
			}
		}
	}
	slices.SortFunc(ready, func(a, b *narwhal.Certificate) int {
		if a.Round() != b.Round() {
			if a.Round() < b.Round() {
				return -1
			}
			return 1
		}
		return int(a.Author()) - int(b.Author())
	})
	for _, c := range ready {
		p.accept(&out, c)
	}
	return out
}

// Committed tells the primary which own certificates consensus committed
// (their pending entries are deleted) and the own committed-round watermark:
// own certified rounds at or below it that were not committed were skipped
// and their batches are proposed again, so an acknowledged transaction is
// ordered exactly once.
func (p *Primary) Committed(ownRounds []uint64, watermark uint64) Output {
	var out Output
	for _, r := range ownRounds {
		for _, pd := range p.certified[r] {
			out.Writes = append(out.Writes, store.Del(store.PendingKey(pd.Seq)))
		}
		delete(p.certified, r)
	}
	if p.requeueCertified(watermark) {
		p.tryPropose(&out)
	}
	return out
}

// requeueCertified puts the batches of own certified headers of rounds up
// to r back at the head of the proposal queue, oldest first (by round, not
// map order: the simulator replays a seed exactly), and reports whether
// there were any.
func (p *Primary) requeueCertified(r uint64) bool {
	var rounds []uint64
	for x := range p.certified {
		if x <= r {
			rounds = append(rounds, x)
		}
	}
	slices.Sort(rounds)
	var requeue []PendingDigest
	for _, x := range rounds {
		requeue = append(requeue, p.certified[x]...)
		delete(p.certified, x)
	}
	if len(requeue) == 0 {
		return false
	}
	p.queue = append(requeue, p.queue...)
	return true
}
