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

// SignatureChecker verifies signatures of committee members named by
// index. *crypto.KeySet implements it; the simulator wraps one in a cache
// shared by all simulated nodes, so each signature is checked once.
type SignatureChecker interface {
	Verify(signer int, msg []byte, sig crypto.Signature) error
	// VerifyMany checks all items at once (a batch where the platform
	// allows); FindInvalid names the bad ones after it failed.
	VerifyMany(items []crypto.SignedItem) error
	FindInvalid(items []crypto.SignedItem) []int
}

// Verifier checks headers, votes and certificates against one committee,
// for the nodes and the rollup kernel alike: what makes a certificate valid
// is decided here and only here. Build it once per epoch.
type Verifier struct {
	committee *Committee
	keys      SignatureChecker
	genesis   map[Digest]bool
}

// NewVerifier prepares a verifier for a validated committee.
func NewVerifier(c *Committee) (*Verifier, error) {
	keys, err := crypto.NewKeySet(c.ConsensusKeys())
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
	if len(c.Signatures) != len(c.Signers) {
		return false, fmt.Errorf("%d signatures for %d signers: %w", len(c.Signatures), len(c.Signers), ErrMalformedSigners)
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
	return v.CheckCertificates([]*Certificate{c})
}

// CheckCertificates verifies many certificates, all their signatures in one
// batch. On failure it names the first bad certificate.
func (v *Verifier) CheckCertificates(cs []*Certificate) error {
	var items []crypto.SignedItem
	var owner []int // owner[k]: index in cs of items[k]
	for i, c := range cs {
		genesis, err := v.checkCertificateShape(c)
		if err != nil {
			return fmt.Errorf("certificate %d: %w", i, err)
		}
		if genesis {
			continue
		}
		msg := VoteMessage(c.Digest())
		for k, s := range c.Signers {
			items = append(items, crypto.SignedItem{Signer: int(s), Message: msg, Signature: c.Signatures[k]})
			owner = append(owner, i)
		}
	}
	if len(items) == 0 {
		return nil
	}
	if err := v.keys.VerifyMany(items); err != nil {
		if bad := v.keys.FindInvalid(items); len(bad) > 0 {
			c := cs[owner[bad[0]]]
			return fmt.Errorf("certificate %s: signature of %d: %w", c.Digest().Short(), items[bad[0]].Signer, err)
		}
		return err
	}
	return nil
}

// ownSigner is a SignatureChecker that can be told about signatures this
// node made itself (crypto.CachedKeySet).
type ownSigner interface {
	Remember(crypto.SignedItem)
}

// Signed records a signature this node just made, so that checking it
// again inside another authority's certificate costs nothing (a node
// signs about 5 of the 30 signatures it checks per round). Checkers
// without a memory ignore it.
func (v *Verifier) Signed(signer AuthorityID, msg []byte, sig crypto.Signature) {
	if o, ok := v.keys.(ownSigner); ok {
		o.Remember(crypto.SignedItem{Signer: int(signer), Message: msg, Signature: sig})
	}
}

// CheckCertificateShape checks everything about a certificate except its
// aggregate signature: used for certificates authenticated by a digest link
// from a verified descendant.
func (v *Verifier) CheckCertificateShape(c *Certificate) error {
	_, err := v.checkCertificateShape(c)
	return err
}
