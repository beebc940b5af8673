package receipt

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/tezos-dsn/dsn/internal/narwhal"
)

// Result is what a valid receipt establishes, for printing.
type Result struct {
	ID          narwhal.Digest
	Transaction []byte // the transaction's bytes, from the batch
	BatchDigest narwhal.Digest
	Certificate *narwhal.Certificate
	Leader      *narwhal.Certificate
	// Rounds is the leader's round minus the certificate's (the path's
	// length in links).
	Rounds uint64
	// Support is the verified support (nil: the receipt has none), and
	// SupportStake its stake, at least the committee's f+1 when present.
	Support      []*narwhal.Certificate
	SupportStake uint64
}

// Committed reports whether the receipt proves the leader committed: f+1
// certified support (see docs/sequencer.md).
func (r *Result) Committed() bool { return len(r.Support) > 0 }

// decoded is a receipt's certificates and batch, decoded from their bytes.
type decoded struct {
	batch         *narwhal.Batch
	cert, leader  *narwhal.Certificate
	path, support []*narwhal.Certificate
}

// Verify checks a receipt against a committee, trusting nothing else: the
// checks run in the order below and the first that fails is returned,
// wrapping one of the package's errors. Structure comes first, signatures
// last (they cost the most).
//
//  1. the canonical bytes decode, and the readable fields agree with them;
//  2. the transaction at InBatch has BLAKE2b-256 = ID;
//  3. the batch's digest is BatchDigest and the certificate's payload names it;
//  4. the leader's round is at least 1 and its author is the committee's
//     anchor candidate of that round (narwhal.Committee.Leader, Bullshark's
//     schedule);
//  5. the path links the leader to the certificate, one round a link;
//  6. the support, if any: round leader+1, distinct authors ascending, each
//     naming the leader, f+1 stake (Bullshark's direct-commit rule);
//  7. every certificate — the certificate, the leader, the path, the
//     support — is certified by the committee: epoch, shape, and ed25519
//     signatures of a quorum of stake (narwhal.Verifier.CheckCertificate).
func Verify(r *Receipt, c *narwhal.Committee) (*Result, error) {
	if r.Version != Version {
		return nil, fmt.Errorf("%w: version %d (this build reads %d)", ErrVersion, r.Version, Version)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("committee: %w", err)
	}
	v, err := narwhal.NewVerifier(c)
	if err != nil {
		return nil, fmt.Errorf("committee: %w", err)
	}
	d, err := decode(r)
	if err != nil {
		return nil, err
	}
	res := &Result{Certificate: d.cert, Leader: d.leader, Support: d.support}
	copy(res.ID[:], r.ID)
	copy(res.BatchDigest[:], r.BatchDigest)

	// 2. The transaction is in the batch: its bytes are there, at InBatch,
	// and hash to ID. A user holding the transaction compares it too.
	if r.InBatch >= len(d.batch.Transactions) {
		return nil, fmt.Errorf("%w: in_batch %d, the batch holds %d transactions", ErrTransaction, r.InBatch, len(d.batch.Transactions))
	}
	res.Transaction = d.batch.Transactions[r.InBatch]
	if got := narwhal.Hash(res.Transaction); got != res.ID {
		return nil, fmt.Errorf("%w: transaction %d of the batch has id %s, the receipt says %s", ErrTransaction, r.InBatch, got, res.ID)
	}

	// 3. The batch is the one the certificate made available: its digest
	// (over the whole canonical batch) is in the header's payload, so
	// voters stored exactly these bytes before signing.
	if got := d.batch.Digest(); got != res.BatchDigest {
		return nil, fmt.Errorf("%w: the batch's digest is %s, the receipt says %s", ErrNotInPayload, got, res.BatchDigest)
	}
	if !slices.Contains(d.cert.Header.Payload, res.BatchDigest) {
		return nil, fmt.Errorf("%w: batch %s not among the %d digests of certificate %s", ErrNotInPayload, res.BatchDigest.Short(), len(d.cert.Header.Payload), d.cert.Digest().Short())
	}

	// 4. The leader is the one Bullshark would pick for its round: every
	// round from 1 has an anchor candidate (round 0 is genesis). With f+1
	// support it is linked from every anchor two rounds above it or more,
	// so what it links to is ordered, as an anchor itself or not.
	lr := d.leader.Round()
	if lr < 1 {
		return nil, fmt.Errorf("%w: leader certificate %s of round %d (genesis)", ErrNotLeader, d.leader.Digest().Short(), lr)
	}
	if want := c.Leader(lr); d.leader.Author() != want {
		return nil, fmt.Errorf("%w: certificate %s of round %d is by authority %d, the round's leader is %d", ErrNotLeader, d.leader.Digest().Short(), lr, d.leader.Author(), want)
	}

	// 5. The path: a chain of parent links from the leader down to the
	// certificate. Headers are hashed with their parents, so a certified
	// leader fixes the whole chain; the rounds must drop by one a link, as
	// in every certified header.
	chain := append(append([]*narwhal.Certificate{d.leader}, d.path...), d.cert)
	if d.cert.Digest() == d.leader.Digest() {
		if len(d.path) > 0 {
			return nil, fmt.Errorf("%w: the certificate is the leader, yet the path has %d certificates", ErrBrokenPath, len(d.path))
		}
		chain = chain[:1]
	}
	for i := 0; i+1 < len(chain); i++ {
		up, down := chain[i], chain[i+1]
		if !slices.Contains(up.Header.Parents, down.Digest()) {
			return nil, fmt.Errorf("%w: %s (round %d) does not name %s (round %d) as a parent", ErrBrokenPath, describe(i, len(chain)), up.Round(), describe(i+1, len(chain)), down.Round())
		}
		if down.Round()+1 != up.Round() {
			return nil, fmt.Errorf("%w: %s of round %d under %s of round %d", ErrBrokenPath, describe(i+1, len(chain)), down.Round(), describe(i, len(chain)), up.Round())
		}
	}
	res.Rounds = lr - d.cert.Round()

	// 6. Support: Bullshark commits the leader of round r directly once
	// certificates of round r+1 with f+1 stake name it (ValidityThreshold,
	// internal/bullshark.commitLeader). f+1 stake holds an honest
	// authority, so it is also what every other honest node will find.
	if len(d.support) > 0 {
		ld := d.leader.Digest()
		for i, s := range d.support {
			switch {
			case s.Round() != lr+1:
				return nil, fmt.Errorf("%w: support[%d] of round %d, want %d (the leader's + 1)", ErrSupport, i, s.Round(), lr+1)
			case i > 0 && s.Author() <= d.support[i-1].Author():
				return nil, fmt.Errorf("%w: support authors not distinct and ascending at %d", ErrSupport, i)
			case !slices.Contains(s.Header.Parents, ld):
				return nil, fmt.Errorf("%w: support[%d] (authority %d) does not name the leader", ErrSupport, i, s.Author())
			}
			res.SupportStake += c.Stake(s.Author())
		}
		if res.SupportStake < c.ValidityThreshold() {
			return nil, fmt.Errorf("%w: support stake %d, f+1 is %d", ErrSupport, res.SupportStake, c.ValidityThreshold())
		}
	}

	// 7. Signatures, last: each certificate on its own, so that the error
	// names its role.
	check := func(role string, x *narwhal.Certificate) error {
		if err := v.CheckCertificate(x); err != nil {
			return fmt.Errorf("%w: %s %s (round %d, author %d): %w", ErrSignature, role, x.Digest().Short(), x.Round(), x.Author(), err)
		}
		return nil
	}
	if err := check("certificate", d.cert); err != nil {
		return nil, err
	}
	if err := check("leader", d.leader); err != nil {
		return nil, err
	}
	for i, x := range d.path {
		if err := check(fmt.Sprintf("path[%d]", i), x); err != nil {
			return nil, err
		}
	}
	for i, x := range d.support {
		if err := check(fmt.Sprintf("support[%d]", i), x); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// describe names chain[i] in errors: the leader, a path entry, the certificate.
func describe(i, n int) string {
	switch {
	case i == 0:
		return "the leader"
	case i == n-1:
		return "the certificate"
	}
	return fmt.Sprintf("path[%d]", i-1)
}

// decode decodes the canonical bytes and checks the readable fields
// against them (check 1).
func decode(r *Receipt) (*decoded, error) {
	if len(r.ID) != narwhal.DigestSize || len(r.BatchDigest) != narwhal.DigestSize {
		return nil, fmt.Errorf("%w: id and batch_digest must be 32 bytes", ErrMalformed)
	}
	if r.InBatch < 0 || len(r.Path) > MaxPath || len(r.Support) > narwhal.MaxCommitteeSize {
		return nil, fmt.Errorf("%w: in_batch, path or support out of bounds", ErrMalformed)
	}
	d := new(decoded)
	var err error
	if d.batch, err = narwhal.DecodeBatch(r.Batch); err != nil {
		return nil, fmt.Errorf("%w: batch: %w", ErrMalformed, err)
	}
	if d.cert, err = decodeCert("certificate", &r.Certificate); err != nil {
		return nil, err
	}
	if d.leader, err = decodeCert("leader", &r.Leader); err != nil {
		return nil, err
	}
	for i := range r.Path {
		x, err := decodeCert(fmt.Sprintf("path[%d]", i), &r.Path[i])
		if err != nil {
			return nil, err
		}
		d.path = append(d.path, x)
	}
	for i := range r.Support {
		x, err := decodeCert(fmt.Sprintf("support[%d]", i), &r.Support[i])
		if err != nil {
			return nil, err
		}
		d.support = append(d.support, x)
	}
	return d, nil
}

func decodeCert(role string, v *Cert) (*narwhal.Certificate, error) {
	c, err := narwhal.DecodeCertificate(v.Raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrMalformed, role, err)
	}
	want := NewCert(c, v.Raw)
	switch {
	case !bytes.Equal(v.Digest, want.Digest):
		return nil, fmt.Errorf("%w: %s: digest %x, the bytes hash to %x", ErrInconsistent, role, []byte(v.Digest), []byte(want.Digest))
	case v.Round != want.Round || v.Author != want.Author:
		return nil, fmt.Errorf("%w: %s: round %d author %d, the bytes say round %d author %d", ErrInconsistent, role, v.Round, v.Author, want.Round, want.Author)
	case !slices.Equal(v.Signers, want.Signers):
		return nil, fmt.Errorf("%w: %s: signers %v, the bytes hold %v", ErrInconsistent, role, v.Signers, want.Signers)
	}
	return c, nil
}
