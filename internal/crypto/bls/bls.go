// Package bls is BLS12-381 in the min-sig variant (signatures in G1, 48
// bytes; public keys in G2, 96 bytes) with proofs of possession, aggregate
// and batch verification, on gnark-crypto. Hot paths verify through a
// KeySet of decompressed keys.
//
// Consensus does not use it: certificates carry ed25519 signatures
// (internal/crypto; the measurements behind that choice are in
// docs/consensus.md). It stays as the library the example BLS kernel
// (kernel/examples/blsverify) and its benchmarks exercise, and compiles for
// GOOS=wasip1.
package bls

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"sync"

	bls "github.com/consensys/gnark-crypto/ecc/bls12-381"
	"github.com/consensys/gnark-crypto/ecc/bls12-381/fr"
	"golang.org/x/crypto/blake2b"
)

// Sizes of encoded keys and signatures.
const (
	BLSPublicKeySize = 96 // compressed G2 point
	BLSSignatureSize = 48 // compressed G1 point
	BLSSecretKeySize = 32 // big-endian scalar
)

// Domain separation tags (RFC 9380 hash-to-curve). SignatureDST signs every
// protocol message (the message itself carries a DSN domain tag);
// PossessionDST is reserved for proofs of possession, so that a proof can
// never be replayed as a signature and vice versa.
const (
	SignatureDST  = "BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_"
	PossessionDST = "BLS_POP_BLS12381G1_XMD:SHA-256_SSWU_RO_POP_"
)

// BLSPublicKey is a compressed G2 point.
type BLSPublicKey [BLSPublicKeySize]byte

// BLSSignature is a compressed G1 point.
type BLSSignature [BLSSignatureSize]byte

// Errors.
var (
	ErrInvalidSignature  = errors.New("crypto: invalid signature")
	ErrInvalidPublicKey  = errors.New("crypto: invalid public key")
	ErrInvalidSecretKey  = errors.New("crypto: invalid secret key")
	ErrInvalidPossession = errors.New("crypto: invalid proof of possession")
	ErrDuplicateSigner   = errors.New("crypto: duplicate signer")
	ErrUnknownSigner     = errors.New("crypto: unknown signer")
	ErrEmptySignerSet    = errors.New("crypto: empty signer set")
)

// BLSSecretKey is a BLS secret scalar in [1, r).
type BLSSecretKey struct {
	s  big.Int
	pk BLSPublicKey
}

// GenerateBLSKey draws a secret key from rand (crypto/rand.Reader in
// production; a seeded source in tests).
func GenerateBLSKey(rand io.Reader) (*BLSSecretKey, error) {
	var buf [64]byte
	for {
		if _, err := io.ReadFull(rand, buf[:]); err != nil {
			return nil, fmt.Errorf("generate bls key: %w", err)
		}
		var e fr.Element
		e.SetBytes(buf[:]) // reduces mod r; 64 bytes make the bias negligible
		if e.IsZero() {
			continue
		}
		var s big.Int
		e.BigInt(&s)
		return newSecretKey(&s), nil
	}
}

// BLSSecretKeyFromBytes decodes a 32-byte big-endian scalar; 0 and values
// >= r are rejected.
func BLSSecretKeyFromBytes(b []byte) (*BLSSecretKey, error) {
	if len(b) != BLSSecretKeySize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrInvalidSecretKey, len(b), BLSSecretKeySize)
	}
	var e fr.Element
	if err := e.SetBytesCanonical(b); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidSecretKey, err)
	}
	if e.IsZero() {
		return nil, fmt.Errorf("%w: zero", ErrInvalidSecretKey)
	}
	var s big.Int
	e.BigInt(&s)
	return newSecretKey(&s), nil
}

func newSecretKey(s *big.Int) *BLSSecretKey {
	sk := &BLSSecretKey{}
	sk.s.Set(s)
	_, _, _, g2 := bls.Generators()
	var pk bls.G2Affine
	pk.ScalarMultiplication(&g2, s)
	sk.pk = pk.Bytes()
	return sk
}

// Bytes returns the 32-byte big-endian scalar.
func (sk *BLSSecretKey) Bytes() []byte {
	out := make([]byte, BLSSecretKeySize)
	sk.s.FillBytes(out)
	return out
}

// PublicKey returns the compressed public key.
func (sk *BLSSecretKey) PublicKey() BLSPublicKey { return sk.pk }

func (sk *BLSSecretKey) signWith(msg []byte, dst string) BLSSignature {
	h, err := bls.HashToG1(msg, []byte(dst))
	if err != nil {
		panic(fmt.Sprintf("crypto: hash to G1: %v", err)) // only fails for an over-long DST
	}
	var sig bls.G1Affine
	sig.ScalarMultiplication(&h, &sk.s)
	return sig.Bytes()
}

// Sign signs msg with SignatureDST.
func (sk *BLSSecretKey) Sign(msg []byte) BLSSignature { return sk.signWith(msg, SignatureDST) }

// ProvePossession signs the public key's bytes with PossessionDST.
func (sk *BLSSecretKey) ProvePossession() BLSSignature {
	return sk.signWith(sk.pk[:], PossessionDST)
}

// decodePublicKey decompresses a key, checking it is on the curve, in the
// subgroup and not the identity.
func decodePublicKey(pk BLSPublicKey) (bls.G2Affine, error) {
	var p bls.G2Affine
	if _, err := p.SetBytes(pk[:]); err != nil {
		return p, fmt.Errorf("%w: %w", ErrInvalidPublicKey, err)
	}
	if p.IsInfinity() {
		return p, fmt.Errorf("%w: identity", ErrInvalidPublicKey)
	}
	return p, nil
}

// decodeSignature decompresses a signature, checking it is on the curve, in
// the subgroup and not the identity.
func decodeSignature(sig BLSSignature) (bls.G1Affine, error) {
	var p bls.G1Affine
	if _, err := p.SetBytes(sig[:]); err != nil {
		return p, fmt.Errorf("%w: %w", ErrInvalidSignature, err)
	}
	if p.IsInfinity() {
		return p, fmt.Errorf("%w: identity", ErrInvalidSignature)
	}
	return p, nil
}

// ValidatePublicKey reports whether pk decodes to a usable key.
func ValidatePublicKey(pk BLSPublicKey) error {
	_, err := decodePublicKey(pk)
	return err
}

// ValidateSignature reports whether sig decodes to a usable signature.
func ValidateSignature(sig BLSSignature) error {
	_, err := decodeSignature(sig)
	return err
}

// verifyPoint checks e(sig, g2) == e(H(msg), pk) as one pairing product.
func verifyPoint(pk *bls.G2Affine, msg []byte, dst string, sig BLSSignature) error {
	s, err := decodeSignature(sig)
	if err != nil {
		return err
	}
	h, err := bls.HashToG1(msg, []byte(dst))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidSignature, err)
	}
	_, _, _, g2 := bls.Generators()
	var negS bls.G1Affine
	negS.Neg(&s)
	ok, err := bls.PairingCheck([]bls.G1Affine{negS, h}, []bls.G2Affine{g2, *pk})
	if err != nil || !ok {
		return ErrInvalidSignature
	}
	return nil
}

// VerifyPossession checks a proof of possession of pk.
func VerifyPossession(pk BLSPublicKey, pop BLSSignature) error {
	p, err := decodePublicKey(pk)
	if err != nil {
		return err
	}
	if err := verifyPoint(&p, pk[:], PossessionDST, pop); err != nil {
		return ErrInvalidPossession
	}
	return nil
}

// Verify checks one signature; it decompresses pk on every call (use a
// KeySet on hot paths).
func Verify(pk BLSPublicKey, msg []byte, sig BLSSignature) error {
	p, err := decodePublicKey(pk)
	if err != nil {
		return err
	}
	return verifyPoint(&p, msg, SignatureDST, sig)
}

// AggregateSignatures adds signatures in G1. Every input must be a point
// on the curve; as in the IETF scheme, subgroup membership is checked when
// the aggregate is verified, not here.
func AggregateSignatures(sigs []BLSSignature) (BLSSignature, error) {
	if len(sigs) == 0 {
		return BLSSignature{}, ErrEmptySignerSet
	}
	var acc bls.G1Jac
	for i := range sigs {
		var s bls.G1Affine
		err := bls.NewDecoder(bytes.NewReader(sigs[i][:]), bls.NoSubgroupChecks()).Decode(&s)
		if err == nil && s.IsInfinity() {
			err = errors.New("identity")
		}
		if err != nil {
			return BLSSignature{}, fmt.Errorf("signature %d: %w", i, err)
		}
		acc.AddMixed(&s)
	}
	var out bls.G1Affine
	out.FromJacobian(&acc)
	return out.Bytes(), nil
}

// lines are the precomputed Miller-loop lines of a fixed G2 point: with
// them a pairing skips every G2 doubling and addition.
type lines = [2][len(bls.LoopCounter) - 1]bls.LineEvaluationAff

// maxCachedLines bounds the per-signer-set line cache (≈24 KB an entry). A
// 7-authority committee has 29 quorum signer sets, plus 7 single signers.
const maxCachedLines = 256

// KeySet holds decompressed, subgroup-checked public keys indexed 0..n-1 (a
// committee). Build it once per committee. Safe for concurrent use.
//
// NB: it caches the Miller-loop lines of g₂ and of each aggregate key it has
// seen (by signer set), since a committee signs with few distinct signer
// sets; verification then costs one fixed-argument multi-pairing.
type KeySet struct {
	keys    []bls.G2Affine
	g2Lines *lines

	mu    sync.Mutex
	cache map[string]*lines // signer set -> lines of the aggregate key
}

// NewKeySet decompresses and checks every key.
func NewKeySet(pks []BLSPublicKey) (*KeySet, error) {
	_, _, _, g2 := bls.Generators()
	g2l := bls.PrecomputeLines(g2)
	ks := &KeySet{keys: make([]bls.G2Affine, len(pks)), g2Lines: &g2l, cache: make(map[string]*lines)}
	for i := range pks {
		p, err := decodePublicKey(pks[i])
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		ks.keys[i] = p
	}
	return ks, nil
}

// Len returns the number of keys.
func (ks *KeySet) Len() int { return len(ks.keys) }

// Verify checks one signer's signature.
func (ks *KeySet) Verify(signer int, msg []byte, sig BLSSignature) error {
	if signer < 0 || signer >= len(ks.keys) {
		return fmt.Errorf("%w: %d", ErrUnknownSigner, signer)
	}
	return ks.VerifyAggregate([]int{signer}, msg, sig)
}

// linesFor returns the lines of the signers' aggregate key, from the cache
// when possible. It rejects empty, unknown and duplicated signers.
func (ks *KeySet) linesFor(signers []int) (*lines, error) {
	key := make([]byte, (len(ks.keys)+7)/8)
	if len(signers) == 0 {
		return nil, ErrEmptySignerSet
	}
	for _, s := range signers {
		if s < 0 || s >= len(ks.keys) {
			return nil, fmt.Errorf("%w: %d", ErrUnknownSigner, s)
		}
		if key[s/8]&(1<<(s%8)) != 0 {
			return nil, fmt.Errorf("%w: %d", ErrDuplicateSigner, s)
		}
		key[s/8] |= 1 << (s % 8)
	}
	ks.mu.Lock()
	l := ks.cache[string(key)]
	ks.mu.Unlock()
	if l != nil {
		return l, nil
	}
	pk, err := ks.aggregateKey(signers)
	if err != nil {
		return nil, err
	}
	computed := bls.PrecomputeLines(pk)
	ks.mu.Lock()
	if len(ks.cache) < maxCachedLines {
		ks.cache[string(key)] = &computed
	}
	ks.mu.Unlock()
	return &computed, nil
}

// aggregateKey adds the signers' keys, rejecting empty, unknown and
// duplicated signers.
func (ks *KeySet) aggregateKey(signers []int) (bls.G2Affine, error) {
	var out bls.G2Affine
	if len(signers) == 0 {
		return out, ErrEmptySignerSet
	}
	seen := make([]bool, len(ks.keys))
	var acc bls.G2Jac
	for _, s := range signers {
		if s < 0 || s >= len(ks.keys) {
			return out, fmt.Errorf("%w: %d", ErrUnknownSigner, s)
		}
		if seen[s] {
			return out, fmt.Errorf("%w: %d", ErrDuplicateSigner, s)
		}
		seen[s] = true
		acc.AddMixed(&ks.keys[s])
	}
	out.FromJacobian(&acc)
	return out, nil
}

// VerifyAggregate is fast aggregate verify: the aggregate signature of
// distinct signers on one message.
func (ks *KeySet) VerifyAggregate(signers []int, msg []byte, sig BLSSignature) error {
	l, err := ks.linesFor(signers)
	if err != nil {
		return err
	}
	s, err := decodeSignature(sig)
	if err != nil {
		return err
	}
	h, err := bls.HashToG1(msg, []byte(SignatureDST))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidSignature, err)
	}
	var negS bls.G1Affine
	negS.Neg(&s)
	ok, err := bls.PairingCheckFixedQ([]bls.G1Affine{negS, h}, []lines{*ks.g2Lines, *l})
	if err != nil || !ok {
		return ErrInvalidSignature
	}
	return nil
}

// AggregateItem is one aggregate signature in a batch.
type AggregateItem struct {
	Signers   []int
	Message   []byte
	Signature BLSSignature
}

// BatchVerify checks many aggregate signatures with one multi-pairing over a
// random linear combination: e(Σ rᵢSᵢ, g₂) = Π e(rᵢH(mᵢ), PKᵢ). The 128-bit
// coefficients rᵢ are derived by hashing the whole batch (Fiat–Shamir), so
// the check is deterministic — the kernel needs no randomness — and a forger
// cannot choose signatures after seeing the coefficients.
func (ks *KeySet) BatchVerify(items []AggregateItem) error {
	if len(items) == 0 {
		return nil
	}
	if len(items) == 1 {
		return ks.VerifyAggregate(items[0].Signers, items[0].Message, items[0].Signature)
	}
	coeffs := batchCoefficients(items)
	P := make([]bls.G1Affine, 0, len(items)+1)
	Q := make([]lines, 0, len(items)+1)
	var sum bls.G1Jac
	for i := range items {
		l, err := ks.linesFor(items[i].Signers)
		if err != nil {
			return fmt.Errorf("item %d: %w", i, err)
		}
		s, err := decodeSignature(items[i].Signature)
		if err != nil {
			return fmt.Errorf("item %d: %w", i, err)
		}
		h, err := bls.HashToG1(items[i].Message, []byte(SignatureDST))
		if err != nil {
			return fmt.Errorf("item %d: %w: %w", i, ErrInvalidSignature, err)
		}
		var rs bls.G1Jac
		rs.FromAffine(&s)
		rs.ScalarMultiplication(&rs, &coeffs[i])
		sum.AddAssign(&rs)
		var rh bls.G1Affine
		rh.ScalarMultiplication(&h, &coeffs[i])
		P = append(P, rh)
		Q = append(Q, *l)
	}
	var negSum bls.G1Affine
	negSum.FromJacobian(&sum)
	negSum.Neg(&negSum)
	P = append(P, negSum)
	Q = append(Q, *ks.g2Lines)
	ok, err := bls.PairingCheckFixedQ(P, Q)
	if err != nil || !ok {
		return ErrInvalidSignature
	}
	return nil
}

// batchCoefficients derives one non-zero 128-bit coefficient per item from
// a BLAKE2b transcript of the whole batch.
func batchCoefficients(items []AggregateItem) []big.Int {
	h, _ := blake2b.New256(nil)
	h.Write([]byte("dsn/bls-batch/v1"))
	var n [8]byte
	for i := range items {
		binary.LittleEndian.PutUint64(n[:], uint64(len(items[i].Signers)))
		h.Write(n[:])
		for _, s := range items[i].Signers {
			binary.LittleEndian.PutUint64(n[:], uint64(s))
			h.Write(n[:])
		}
		binary.LittleEndian.PutUint64(n[:], uint64(len(items[i].Message)))
		h.Write(n[:])
		h.Write(items[i].Message)
		h.Write(items[i].Signature[:])
	}
	seed := h.Sum(nil)
	out := make([]big.Int, len(items))
	for i := range out {
		for ctr := uint64(0); ; ctr++ {
			x, _ := blake2b.New256(nil)
			x.Write(seed)
			binary.LittleEndian.PutUint64(n[:], uint64(i))
			x.Write(n[:])
			binary.LittleEndian.PutUint64(n[:], ctr)
			x.Write(n[:])
			out[i].SetBytes(x.Sum(nil)[:16])
			if out[i].Sign() != 0 {
				break
			}
		}
	}
	return out
}

// FindInvalid returns the indices of the items that fail on their own (after
// BatchVerify failed).
func (ks *KeySet) FindInvalid(items []AggregateItem) []int {
	var bad []int
	for i := range items {
		if ks.VerifyAggregate(items[i].Signers, items[i].Message, items[i].Signature) != nil {
			bad = append(bad, i)
		}
	}
	return bad
}
