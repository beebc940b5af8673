package receipt

import (
	"fmt"

	"github.com/tezos-dsn/dsn/internal/narwhal"
)

// Known is a certificate with the canonical bytes it arrived as (kept so
// that a receipt carries exactly the bytes the node exported).
type Known struct {
	Cert *narwhal.Certificate
	Raw  []byte
}

// Paths holds the shortest parent paths from one leader down to every
// certificate of a set that its causal history reaches through the set:
// a breadth-first search over Header.Parents. Build it once per leader and
// read many receipts' paths from it.
type Paths struct {
	leader narwhal.Digest
	known  map[narwhal.Digest]Known
	// next maps a reached certificate to the one above it on its shortest
	// path (the leader maps to itself).
	next map[narwhal.Digest]narwhal.Digest
}

// ShortestPaths searches from the leader through the certificates of
// known (which should hold the leader). A pre-block's certificates are
// its leader's newly committed causal history, found by Bullshark's walk
// through parents, so every one of them is reached.
//
// NB: deterministic: parents are visited in header order (ascending
// digests) and the queue is first in, first out; no map iteration decides
// which of two equally short paths is kept.
func ShortestPaths(leader narwhal.Digest, known map[narwhal.Digest]Known) *Paths {
	p := &Paths{leader: leader, known: known, next: map[narwhal.Digest]narwhal.Digest{leader: leader}}
	queue := []narwhal.Digest{leader}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		k, ok := known[d]
		if !ok {
			continue
		}
		for _, parent := range k.Cert.Header.Parents {
			if _, seen := p.next[parent]; seen {
				continue
			}
			if _, ok := known[parent]; !ok {
				continue // committed earlier, or not in the set: no receipt goes through it
			}
			p.next[parent] = d
			queue = append(queue, parent)
		}
	}
	return p
}

// To returns the certificates strictly between the leader and target,
// from the leader down, or false when target is not reached.
func (p *Paths) To(target narwhal.Digest) ([]Known, bool) {
	if _, ok := p.next[target]; !ok {
		return nil, false
	}
	var up []Known // from just above target to just below the leader
	for d := p.next[target]; d != p.leader; d = p.next[d] {
		up = append(up, p.known[d])
	}
	for i, j := 0, len(up)-1; i < j; i, j = i+1, j-1 {
		up[i], up[j] = up[j], up[i]
	}
	return up, true
}

// Ordered says where a transaction was found: the sequencer's claims and
// the batch and certificate that hold it.
type Ordered struct {
	ID          narwhal.Digest // the transaction's
	Index       uint64         // pre-block
	Position    int            // among the pre-block's transactions
	Batch       []byte         // canonical batch
	BatchDigest narwhal.Digest // Batch's digest (computed once per batch by the caller)
	InBatch     int            // the transaction's place in the batch
	Cert        narwhal.Digest // the certificate whose payload names the batch
}

// Build makes the receipt of o with the leader of paths' search and its
// support (may be empty). It fails when the certificate is not reached. It
// trusts o (the caller decoded the batch) and does not Verify: the
// builder has no committee.
func Build(o Ordered, paths *Paths, support []Known) (*Receipt, error) {
	cert, ok := paths.known[o.Cert]
	leader, lok := paths.known[paths.leader]
	if !ok || !lok {
		return nil, fmt.Errorf("receipt: certificate %s or leader %s unknown", o.Cert.Short(), paths.leader.Short())
	}
	between, ok := paths.To(o.Cert)
	if !ok {
		return nil, fmt.Errorf("receipt: no path from leader %s to certificate %s", paths.leader.Short(), o.Cert.Short())
	}
	r := &Receipt{
		Version: Version, ID: Hex(o.ID[:]), Index: o.Index, Position: o.Position,
		InBatch: o.InBatch, BatchDigest: Hex(o.BatchDigest[:]), Batch: o.Batch,
		Certificate: NewCert(cert.Cert, cert.Raw), Leader: NewCert(leader.Cert, leader.Raw),
		Path: make([]Cert, 0, len(between)),
	}
	for _, k := range between {
		r.Path = append(r.Path, NewCert(k.Cert, k.Raw))
	}
	for _, k := range support {
		r.Support = append(r.Support, NewCert(k.Cert, k.Raw))
	}
	return r, nil
}
