// Package crypto holds DSN's consensus signatures: ed25519 (RFC 8032)
// signing, verified under the ZIP-215 rules (github.com/hdevalence/
// ed25519consensus), which make single and batch verification agree on
// every input, so that every node and the rollup kernel reach the same
// verdict on the same bytes. Votes are signed with it and a certificate
// carries its signers' signatures (see docs/consensus.md for why ed25519
// and not BLS aggregates).
//
// It is deterministic and compiles for GOOS=wasip1: the kernel verifies
// certificates with this very code. A batch's coefficients come from
// crypto/rand in the node and from the batch's transcript on wasip1, where
// randomness is not secret (batch.go).
// Network identities (mutual TLS) live in the subpackage mtls; BLS12-381 in
// the subpackage bls.
package crypto

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
	"github.com/hdevalence/ed25519consensus"
)

// Sizes of keys and signatures.
const (
	PublicKeySize = ed25519.PublicKeySize // 32
	SignatureSize = ed25519.SignatureSize // 64
	SeedSize      = ed25519.SeedSize      // 32: the secret key file holds the seed
)

// PublicKey is an ed25519 public key.
type PublicKey [PublicKeySize]byte

// Signature is an ed25519 signature.
type Signature [SignatureSize]byte

// Errors.
var (
	ErrInvalidSignature = errors.New("crypto: invalid signature")
	ErrInvalidPublicKey = errors.New("crypto: invalid public key")
	ErrInvalidSecretKey = errors.New("crypto: invalid secret key")
	ErrUnknownSigner    = errors.New("crypto: unknown signer")
)

// SecretKey signs consensus messages.
type SecretKey struct {
	priv ed25519.PrivateKey
	pub  PublicKey
}

// GenerateKey draws a key from rand (crypto/rand.Reader in production; a
// seeded source in tests).
func GenerateKey(rand io.Reader) (*SecretKey, error) {
	seed := make([]byte, SeedSize)
	if _, err := io.ReadFull(rand, seed); err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return SecretKeyFromSeed(seed)
}

// SecretKeyFromSeed returns the key of a 32-byte seed.
func SecretKeyFromSeed(seed []byte) (*SecretKey, error) {
	if len(seed) != SeedSize {
		return nil, fmt.Errorf("%w: seed of %d bytes, want %d", ErrInvalidSecretKey, len(seed), SeedSize)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	sk := &SecretKey{priv: priv}
	copy(sk.pub[:], priv.Public().(ed25519.PublicKey))
	return sk, nil
}

// Seed returns the 32-byte seed (what a key file stores).
func (sk *SecretKey) Seed() []byte { return sk.priv.Seed() }

// PublicKey returns the public key.
func (sk *SecretKey) PublicKey() PublicKey { return sk.pub }

// Sign signs msg (deterministic, RFC 8032).
func (sk *SecretKey) Sign(msg []byte) Signature {
	var s Signature
	copy(s[:], ed25519.Sign(sk.priv, msg))
	return s
}

// ValidatePublicKey checks that pk is a canonical encoding of a curve point
// of large order: a small-order key would let signatures verify for
// messages nobody signed, so a committee must not contain one.
func ValidatePublicKey(pk PublicKey) error {
	_, err := decodePublicKey(pk)
	return err
}

// decodePublicKey validates pk (as ValidatePublicKey) and returns its point.
func decodePublicKey(pk PublicKey) (*edwards25519.Point, error) {
	p, err := new(edwards25519.Point).SetBytes(pk[:])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidPublicKey, err)
	}
	if !bytes.Equal(p.Bytes(), pk[:]) {
		return nil, fmt.Errorf("%w: non-canonical encoding", ErrInvalidPublicKey)
	}
	if smallOrder(p) {
		return nil, fmt.Errorf("%w: small order", ErrInvalidPublicKey)
	}
	return p, nil
}

// smallOrder reports whether [8]p is the identity.
func smallOrder(p *edwards25519.Point) bool {
	return new(edwards25519.Point).MultByCofactor(p).Equal(edwards25519.NewIdentityPoint()) == 1
}

// Verify checks one signature under the ZIP-215 rules.
func Verify(pk PublicKey, msg []byte, sig Signature) error {
	if !ed25519consensus.Verify(pk[:], msg, sig[:]) {
		return ErrInvalidSignature
	}
	return nil
}

// KeySet holds a committee's public keys, indexed 0..n-1. Safe for
// concurrent use.
type KeySet struct {
	keys   []PublicKey
	points []*edwards25519.Point // decompressed keys, for batch verification
}

// NewKeySet checks and decompresses every key.
func NewKeySet(pks []PublicKey) (*KeySet, error) {
	ks := &KeySet{keys: append([]PublicKey(nil), pks...)}
	for i, pk := range pks {
		p, err := decodePublicKey(pk)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		ks.points = append(ks.points, p)
	}
	return ks, nil
}

// PointSize is the size of one decompressed key in Points: its affine
// coordinates x ‖ y, each a canonical little-endian field element.
const PointSize = 64

// Points returns the decompressed keys, for NewKeySetFromPoints: a
// verifier that starts afresh often (the kernel, at every level) keeps
// them and skips the square root and the inversion each key costs.
func (ks *KeySet) Points() []byte {
	out := make([]byte, 0, PointSize*len(ks.points))
	for _, p := range ks.points {
		X, Y, Z, _ := p.ExtendedCoordinates()
		zInv := new(field.Element).Invert(Z)
		out = append(out, new(field.Element).Multiply(X, zInv).Bytes()...)
		out = append(out, new(field.Element).Multiply(Y, zInv).Bytes()...)
	}
	return out
}

// NewKeySetFromPoints is NewKeySet for keys whose decompressed points
// Points returned. Each point is checked to be on the curve, to compress
// to its key (its y, and the sign of its x) and not to have a small order:
// a few field multiplications instead of a square root and an inversion.
// The keys must have passed NewKeySet once (a non-canonical key never
// matches its point here).
func NewKeySetFromPoints(pks []PublicKey, points []byte) (*KeySet, error) {
	if len(points) != PointSize*len(pks) {
		return nil, fmt.Errorf("%w: %d bytes of points for %d keys", ErrInvalidPublicKey, len(points), len(pks))
	}
	ks := &KeySet{keys: append([]PublicKey(nil), pks...)}
	for i, pk := range pks {
		raw := points[PointSize*i : PointSize*(i+1)]
		x, err := new(field.Element).SetBytes(raw[:32])
		if err != nil || !bytes.Equal(x.Bytes(), raw[:32]) {
			return nil, fmt.Errorf("key %d: %w: point x", i, ErrInvalidPublicKey)
		}
		y, err := new(field.Element).SetBytes(raw[32:])
		if err != nil || !bytes.Equal(y.Bytes(), raw[32:]) {
			return nil, fmt.Errorf("key %d: %w: point y", i, ErrInvalidPublicKey)
		}
		compressed := y.Bytes()
		compressed[31] |= byte(x.IsNegative() << 7)
		if !bytes.Equal(compressed, pk[:]) {
			return nil, fmt.Errorf("key %d: %w: point is not the key's", i, ErrInvalidPublicKey)
		}
		p, err := new(edwards25519.Point).SetExtendedCoordinates(x, y, new(field.Element).One(), new(field.Element).Multiply(x, y))
		if err != nil {
			return nil, fmt.Errorf("key %d: %w: %v", i, ErrInvalidPublicKey, err)
		}
		if smallOrder(p) {
			return nil, fmt.Errorf("key %d: %w: small order", i, ErrInvalidPublicKey)
		}
		ks.points = append(ks.points, p)
	}
	return ks, nil
}

// Len returns the number of keys.
func (ks *KeySet) Len() int { return len(ks.keys) }

// Verify checks one signer's signature.
func (ks *KeySet) Verify(signer int, msg []byte, sig Signature) error {
	if signer < 0 || signer >= len(ks.keys) {
		return fmt.Errorf("%w: %d", ErrUnknownSigner, signer)
	}
	return Verify(ks.keys[signer], msg, sig)
}

// SignedItem is one signature to check in a batch.
type SignedItem struct {
	Signer    int
	Message   []byte
	Signature Signature
}

// VerifyMany checks every item with one batch verification (a linear
// combination with unpredictable coefficients, about half the cost per
// signature at 30). An error means at least one is invalid; FindInvalid
// says which.
func (ks *KeySet) VerifyMany(items []SignedItem) error {
	for _, it := range items {
		if it.Signer < 0 || it.Signer >= len(ks.keys) {
			return fmt.Errorf("%w: %d", ErrUnknownSigner, it.Signer)
		}
	}
	if len(items) == 1 {
		for _, it := range items {
			if err := Verify(ks.keys[it.Signer], it.Message, it.Signature); err != nil {
				return err
			}
		}
		return nil
	}
	if !ks.batchVerify(items) {
		return ErrInvalidSignature
	}
	return nil
}

// FindInvalid returns the indices of the invalid items, checking one by one.
func (ks *KeySet) FindInvalid(items []SignedItem) []int {
	var bad []int
	for i, it := range items {
		if ks.Verify(it.Signer, it.Message, it.Signature) != nil {
			bad = append(bad, i)
		}
	}
	return bad
}
