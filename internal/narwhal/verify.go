package narwhal

import (
	"errors"
	"fmt"

	"github.com/tezos-dsn/dsn/internal/crypto"
)

// Verification errors.
var (
	ErrWrongEpoch       = errors.New("narwhal: wrong epoch")
	ErrBadGenesis       = errors.New("narwhal: round-0 certificate is not genesis")
	ErrNoQuorum         = errors.New("narwhal: signers below quorum stake")
	ErrMalformedHeader  = errors.New("narwhal: malformed header")
	ErrMalformedSigners = errors.New("narwhal: malformed signer set")
)

// SignatureChecker verifies BLS signatures of committee members named by
// index. *crypto.KeySet implements it; the simulator wraps one in a cache
// shared by all simulated nodes, so each signature is checked once.
type SignatureChecker interface {
	Verify(signer int, msg []byte, sig crypto.BLSSignature) error
	VerifyAggregate(signers []int, msg []byte, sig crypto.BLSSignature) error
	BatchVerify(items []crypto.AggregateItem) error
	FindInvalid(items []crypto.AggregateItem) []int
}

// Verifier checks headers, votes and certificates against one committee. It
// holds the committee's decompressed keys; build it once per epoch.
type Verifier struct {
	committee *Committee
	keys      SignatureChecker
	genesis   map[Digest]bool
}

// NewVerifier prepares a verifier for a validated committee.
func NewVerifier(c *Committee) (*Verifier, error) {
	keys, err := crypto.NewKeySet(c.BLSKeys())
	if err != nil {
		return nil, fmt.Errorf("committee keys: %w", err)
	}
	return NewVerifierWith(c, keys), nil
}

// NewVerifierWith prepares a verifier that checks signatures with sc, which
// must hold the keys of c's authorities in id order.
func NewVerifierWith(c *Committee, sc SignatureChecker) *Verifier {
	v := &Verifier{committee: c, keys: sc, genesis: make(map[Digest]bool)}
	for _, g := range Genesis(c) {
		v.genesis[g.Digest()] = true
	}
	return v
}

// Committee returns the committee the verifier checks against.
func (v *Verifier) Committee() *Committee { return v.committee }

// CheckHeader checks what a header says about itself: known author, epoch,
// round ≥ 1, bounded payload, sorted distinct parents (at least one). What
// needs the DAG — parents from the previous round with quorum stake — the
// primary checks.
func (v *Verifier) CheckHeader(h *Header) error {
	if int(h.Author) >= v.committee.Size() {
		return fmt.Errorf("header author %d: %w", h.Author, ErrUnknownAuthority)
	}
	if h.Epoch != v.committee.Epoch {
		return fmt.Errorf("header epoch %d, committee epoch %d: %w", h.Epoch, v.committee.Epoch, ErrWrongEpoch)
	}
	if h.Round == 0 {
		return fmt.Errorf("header round 0: %w", ErrMalformedHeader)
	}
	if len(h.Payload) > MaxHeaderPayload {
		return fmt.Errorf("header payload of %d batches: %w", len(h.Payload), ErrMalformedHeader)
	}
	if len(h.Parents) == 0 || len(h.Parents) > v.committee.Size() {
		return fmt.Errorf("header with %d parents: %w", len(h.Parents), ErrMalformedHeader)
	}
	for i := 1; i < len(h.Parents); i++ {
		if h.Parents[i-1].Compare(h.Parents[i]) >= 0 {
			return fmt.Errorf("header parents not strictly ascending: %w", ErrMalformedHeader)
		}
	}
	return nil
}

// CheckVote checks a vote's fields and its signature.
func (v *Verifier) CheckVote(vote *Vote) error {
	if int(vote.Voter) >= v.committee.Size() {
		return fmt.Errorf("voter %d: %w", vote.Voter, ErrUnknownAuthority)
	}
	if vote.Epoch != v.committee.Epoch {
		return fmt.Errorf("vote epoch %d: %w", vote.Epoch, ErrWrongEpoch)
	}
	if err := v.keys.Verify(int(vote.Voter), VoteMessage(vote.Header), vote.Signature); err != nil {
		return fmt.Errorf("vote of %d for %s: %w", vote.Voter, vote.Header.Short(), err)
	}
	return nil
}

// checkCertificateShape checks everything but the signature and reports
// whether the certificate is a genesis certificate.
func (v *Verifier) checkCertificateShape(c *Certificate) (genesis bool, err error) {
	if c.Header.Round == 0 {
		if !v.genesis[c.Digest()] || len(c.Signers) != 0 {
			return false, ErrBadGenesis
		}
		return true, nil
	}
	if err := v.CheckHeader(&c.Header); err != nil {
		return false, err
	}
	for i, s := range c.Signers {
		if int(s) >= v.committee.Size() {
			return false, fmt.Errorf("signer %d: %w", s, ErrUnknownAuthority)
		}
		if i > 0 && s <= c.Signers[i-1] {
			return false, fmt.Errorf("signers not strictly ascending: %w", ErrMalformedSigners)
		}
	}
	if stake := v.committee.StakeOf(c.Signers); stake < v.committee.QuorumThreshold() {
		return false, fmt.Errorf("signer stake %d < %d: %w", stake, v.committee.QuorumThreshold(), ErrNoQuorum)
	}
	return false, nil
}

// CheckCertificate verifies one certificate: genesis, or a well-formed header
// signed by distinct known authorities holding a quorum of stake.
func (v *Verifier) CheckCertificate(c *Certificate) error {
	genesis, err := v.checkCertificateShape(c)
	if err != nil || genesis {
		return err
	}
	d := c.Digest()
	if err := v.keys.VerifyAggregate(signerInts(c.Signers), VoteMessage(d), c.Signature); err != nil {
		return fmt.Errorf("certificate %s: %w", d.Short(), err)
	}
	return nil
}

// CheckCertificates verifies many certificates with one multi-pairing. On
// failure it names the first bad certificate.
func (v *Verifier) CheckCertificates(cs []*Certificate) error {
	items := make([]crypto.AggregateItem, 0, len(cs))
	idx := make([]int, 0, len(cs))
	for i, c := range cs {
		genesis, err := v.checkCertificateShape(c)
		if err != nil {
			return fmt.Errorf("certificate %d: %w", i, err)
		}
		if genesis {
			continue
		}
		items = append(items, crypto.AggregateItem{
			Signers:   signerInts(c.Signers),
			Message:   VoteMessage(c.Digest()),
			Signature: c.Signature,
		})
		idx = append(idx, i)
	}
	if len(items) == 0 {
		return nil
	}
	if err := v.keys.BatchVerify(items); err != nil {
		bad := v.keys.FindInvalid(items)
		if len(bad) > 0 {
			return fmt.Errorf("certificate %d (%s): %w", idx[bad[0]], cs[idx[bad[0]]].Digest().Short(), err)
		}
		return err
	}
	return nil
}

func signerInts(s []AuthorityID) []int {
	out := make([]int, len(s))
	for i, id := range s {
		out[i] = int(id)
	}
	return out
}

// CheckCertificateShape checks everything about a certificate except its
// aggregate signature: used for certificates authenticated by a digest link
// from a verified descendant.
func (v *Verifier) CheckCertificateShape(c *Certificate) error {
	_, err := v.checkCertificateShape(c)
	return err
}
