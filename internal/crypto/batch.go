package crypto

import (
	"crypto/rand"
	"crypto/sha512"
	"encoding/binary"

	"filippo.io/edwards25519"
)

// batchVerify checks many signatures of committee members at once, under
// the same ZIP-215 rules as Verify (non-canonical point encodings accepted
// if they decode, s canonical, the cofactored equation), with one
// multi-scalar multiplication of the random linear combination
//
//	[8]( [−Σ zᵢsᵢ]B + Σ [zᵢ]Rᵢ + Σⱼ [Σ_{i signed by j} zᵢkᵢ]Aⱼ ) = 0
//
// where kᵢ = SHA-512(Rᵢ ‖ Aⱼ ‖ mᵢ) and the zᵢ are 128-bit scalars nobody
// who chose the signatures can predict (batchCoefficients).
// Two things make it cheaper than a generic batch verifier: the committee's
// keys are decompressed once (KeySet.points), and the key terms are summed
// per signer, so a batch of a round's certificates (about 30 signatures by
// 7 signers) multiplies 38 points instead of 61. Valid signatures always
// pass; a batch with an invalid one fails except with probability 2⁻¹²⁸
// per try.
func (ks *KeySet) batchVerify(items []SignedItem) bool {
	n := len(items)
	signerCoeff := make(map[int]*edwards25519.Scalar, len(ks.keys))
	var signers []int // in first-seen order, for a deterministic term order
	scalars := make([]*edwards25519.Scalar, 0, 1+n+len(ks.keys))
	points := make([]*edwards25519.Point, 0, 1+n+len(ks.keys))
	bCoeff := edwards25519.NewScalar()
	scalars = append(scalars, bCoeff)
	points = append(points, edwards25519.NewGeneratorPoint())
	var zbuf [32]byte
	var digest [64]byte
	coeff := batchCoefficients(ks, items)
	for i, it := range items {
		r, err := new(edwards25519.Point).SetBytes(it.Signature[:32])
		if err != nil {
			return false
		}
		s, err := edwards25519.NewScalar().SetCanonicalBytes(it.Signature[32:])
		if err != nil {
			return false
		}
		h := sha512.New()
		h.Write(it.Signature[:32])
		h.Write(ks.keys[it.Signer][:])
		h.Write(it.Message)
		h.Sum(digest[:0])
		k, err := edwards25519.NewScalar().SetUniformBytes(digest[:])
		if err != nil {
			return false
		}
		if !coeff(i, zbuf[:16]) {
			return false
		}
		z, err := edwards25519.NewScalar().SetCanonicalBytes(zbuf[:])
		if err != nil {
			return false
		}
		bCoeff.MultiplyAdd(z, s, bCoeff)
		scalars = append(scalars, z)
		points = append(points, r)
		c := signerCoeff[it.Signer]
		if c == nil {
			c = edwards25519.NewScalar()
			signerCoeff[it.Signer] = c
			signers = append(signers, it.Signer)
		}
		c.MultiplyAdd(z, k, c)
	}
	bCoeff.Negate(bCoeff)
	for _, j := range signers {
		scalars = append(scalars, signerCoeff[j])
		points = append(points, ks.points[j])
	}
	check := new(edwards25519.Point).VarTimeMultiScalarMult(scalars, points)
	return check.MultByCofactor(check).Equal(edwards25519.NewIdentityPoint()) == 1
}

// randomCoefficients draws each zᵢ from crypto/rand: the node's choice,
// unpredictable even to someone who can try many batches.
func randomCoefficients(*KeySet, []SignedItem) func(int, []byte) bool {
	return func(_ int, z []byte) bool {
		_, err := rand.Read(z)
		return err == nil
	}
}

// transcriptCoefficients derives each zᵢ from a SHA-512 transcript of the
// whole batch (every signer's key, message and signature): zᵢ =
// SHA-512("dsn/batch-verify" ‖ transcript digest ‖ i)[:16]. The kernel
// needs this: randomness in the PVM is deterministic. Whoever forges a
// signature fixes the batch before its coefficients exist, so passing
// the check with an invalid signature is a 2⁻¹²⁸ guess per batch tried
// (the Fiat–Shamir argument; ed25519-dalek's batch_deterministic does the
// same).
func transcriptCoefficients(ks *KeySet, items []SignedItem) func(int, []byte) bool {
	t := sha512.New()
	var n [8]byte
	for _, it := range items {
		t.Write(ks.keys[it.Signer][:])
		t.Write(it.Signature[:])
		binary.BigEndian.PutUint64(n[:], uint64(len(it.Message)))
		t.Write(n[:])
		t.Write(it.Message)
	}
	var seed [64]byte
	t.Sum(seed[:0])
	return func(i int, z []byte) bool {
		h := sha512.New()
		h.Write([]byte("dsn/batch-verify"))
		h.Write(seed[:])
		binary.BigEndian.PutUint64(n[:], uint64(i))
		h.Write(n[:])
		var out [64]byte
		copy(z, h.Sum(out[:0]))
		return true
	}
}
