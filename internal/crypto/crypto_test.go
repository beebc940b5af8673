package crypto

import (
	"bytes"
	"errors"
	"math/rand"
	"os"
	"os/exec"
	"testing"

	"filippo.io/edwards25519/field"
	"github.com/hdevalence/ed25519consensus"
)

func keys(t testing.TB, n int) ([]*SecretKey, []PublicKey) {
	t.Helper()
	rng := rand.New(rand.NewSource(1))
	var sks []*SecretKey
	var pks []PublicKey
	for range n {
		sk, err := GenerateKey(rng)
		if err != nil {
			t.Fatal(err)
		}
		sks, pks = append(sks, sk), append(pks, sk.PublicKey())
	}
	return sks, pks
}

// RFC 8032 test vector 1 (empty message): our signing is plain ed25519.
func TestRFC8032Vector(t *testing.T) {
	seed := mustHex(t, "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
	sk, err := SecretKeyFromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	pub := sk.PublicKey()
	if !bytes.Equal(pub[:], mustHex(t, "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")) {
		t.Fatalf("public key %x", pub)
	}
	sig := sk.Sign(nil)
	want := mustHex(t, "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
	if !bytes.Equal(sig[:], want) {
		t.Fatalf("signature %x", sig)
	}
	if err := Verify(pub, nil, sig); err != nil {
		t.Fatal(err)
	}
}

func mustHex(t *testing.T, s string) []byte {
	b, err := DecodeKey(s, len(s)/2)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVerifyManyFindsTheBadOne(t *testing.T) {
	sks, pks := keys(t, 7)
	ks, err := NewKeySet(pks)
	if err != nil {
		t.Fatal(err)
	}
	var items []SignedItem
	for i, sk := range sks {
		msg := []byte{byte(i), 'v'}
		items = append(items, SignedItem{Signer: i, Message: msg, Signature: sk.Sign(msg)})
	}
	if err := ks.VerifyMany(items); err != nil {
		t.Fatal(err)
	}
	items[4].Message = []byte("other")
	if err := ks.VerifyMany(items); !errors.Is(err, ErrInvalidSignature) {
		t.Fatalf("a bad signature in the batch: %v", err)
	}
	if bad := ks.FindInvalid(items); len(bad) != 1 || bad[0] != 4 {
		t.Fatalf("FindInvalid = %v", bad)
	}
	items[4].Signer = 9
	if err := ks.VerifyMany(items); !errors.Is(err, ErrUnknownSigner) {
		t.Fatalf("unknown signer: %v", err)
	}
	// The cache answers a second check, and never caches a failure.
	c := NewCachedKeySet(ks, 100)
	items[4] = SignedItem{Signer: 4, Message: []byte("x"), Signature: sks[4].Sign([]byte("x"))}
	if err := c.VerifyMany(items); err != nil {
		t.Fatal(err)
	}
	if err := c.Verify(4, []byte("y"), items[4].Signature); err == nil {
		t.Fatal("the cache accepted a signature over another message")
	}
}

func TestSmallOrderKeysAreRejected(t *testing.T) {
	var identity PublicKey
	identity[0] = 1 // the identity point (0, 1)
	if err := ValidatePublicKey(identity); !errors.Is(err, ErrInvalidPublicKey) {
		t.Fatalf("identity key: %v", err)
	}
	if _, err := NewKeySet([]PublicKey{identity}); err == nil {
		t.Fatal("a committee with a small-order key")
	}
	var bad PublicKey
	for i := range bad {
		bad[i] = 0xff
	}
	if err := ValidatePublicKey(bad); err == nil {
		t.Fatal("a non-canonical encoding was accepted")
	}
}

func TestBuildsForWasm(t *testing.T) {
	cmd := exec.Command("go", "build", "-o", os.DevNull, ".")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("GOOS=wasip1 build: %v\n%s", err, out)
	}
}

func BenchmarkSign(b *testing.B) {
	sks, _ := keys(b, 1)
	msg := make([]byte, 48)
	for b.Loop() {
		sks[0].Sign(msg)
	}
}

func BenchmarkVerify(b *testing.B) {
	sks, pks := keys(b, 1)
	msg := make([]byte, 48)
	sig := sks[0].Sign(msg)
	for b.Loop() {
		Verify(pks[0], msg, sig)
	}
}

// BenchmarkVerifyCertificate: a 5-of-7 certificate's signatures in one batch.
func BenchmarkVerifyCertificate(b *testing.B) {
	sks, pks := keys(b, 7)
	ks, _ := NewKeySet(pks)
	msg := make([]byte, 48)
	var items []SignedItem
	for i := range 5 {
		items = append(items, SignedItem{Signer: i, Message: msg, Signature: sks[i].Sign(msg)})
	}
	for b.Loop() {
		if err := ks.VerifyMany(items); err != nil {
			b.Fatal(err)
		}
	}
}

// The batch verifier agrees with ed25519consensus one by one: batches of
// valid signatures (signers repeated) pass, and any single corruption — of
// R, of s (including a non-canonical s), of the message or of the signer —
// fails, while the one-by-one check names exactly that item. Both sources
// of coefficients: the node's (crypto/rand) and the kernel's (the batch's
// transcript).
func TestBatchAgreesWithSingleVerification(t *testing.T) {
	defer func(c func(*KeySet, []SignedItem) func(int, []byte) bool) { batchCoefficients = c }(batchCoefficients)
	for name, c := range map[string]func(*KeySet, []SignedItem) func(int, []byte) bool{
		"random": randomCoefficients, "transcript": transcriptCoefficients} {
		batchCoefficients = c
		t.Run(name, batchAgreesWithSingleVerification)
	}
}

func batchAgreesWithSingleVerification(t *testing.T) {
	sks, pks := keys(t, 7)
	ks, err := NewKeySet(pks)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(3))
	for trial := range 200 {
		n := 1 + rng.Intn(40)
		items := make([]SignedItem, n)
		for i := range items {
			signer := rng.Intn(7)
			msg := make([]byte, rng.Intn(80))
			rng.Read(msg)
			items[i] = SignedItem{Signer: signer, Message: msg, Signature: sks[signer].Sign(msg)}
		}
		if !ks.batchVerify(items) {
			t.Fatalf("trial %d: a batch of %d valid signatures failed", trial, n)
		}
		bad := rng.Intn(n)
		it := &items[bad]
		switch trial % 5 {
		case 0:
			it.Signature[rng.Intn(32)] ^= 1 << rng.Intn(8) // R
		case 1:
			it.Signature[32+rng.Intn(31)] ^= 1 << rng.Intn(8) // s
		case 2:
			it.Message = append(it.Message, 0) // another message
		case 3:
			it.Signer = (it.Signer + 1) % 7 // another signer's key
		case 4:
			it.Signature[63] |= 0xf0 // s ≥ L: non-canonical
		}
		if ks.batchVerify(items) {
			t.Fatalf("trial %d: a batch with a corrupted item %d (case %d) passed", trial, bad, trial%5)
		}
		if got := ks.FindInvalid(items); len(got) != 1 || got[0] != bad {
			t.Fatalf("trial %d: one by one finds %v, want [%d]", trial, got, bad)
		}
	}
}

func BenchmarkVerifyRound(b *testing.B) {
	sks, pks := keys(b, 7)
	ks, _ := NewKeySet(pks)
	var items []SignedItem
	for c := range 6 { // a round: 6 certificates of 5 signers
		msg := []byte{byte(c), 'h'}
		for s := range 5 {
			signer := (c + s) % 7
			items = append(items, SignedItem{Signer: signer, Message: msg, Signature: sks[signer].Sign(msg)})
		}
	}
	b.Run("ed25519consensus", func(b *testing.B) {
		for b.Loop() {
			bv := ed25519consensus.NewPreallocatedBatchVerifier(len(items))
			for _, it := range items {
				bv.Add(ks.keys[it.Signer][:], it.Message, it.Signature[:])
			}
			if !bv.Verify() {
				b.Fatal("invalid")
			}
		}
	})
	b.Run("keyset", func(b *testing.B) {
		for b.Loop() {
			if !ks.batchVerify(items) {
				b.Fatal("invalid")
			}
		}
	})
}

// A key set rebuilt from its points verifies as the original does, and
// points that are not the keys' are refused.
func TestKeySetFromPoints(t *testing.T) {
	sks, pks := keys(t, 7)
	ks, err := NewKeySet(pks)
	if err != nil {
		t.Fatal(err)
	}
	pts := ks.Points()
	again, err := NewKeySetFromPoints(pks, pts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ks.points {
		if ks.points[i].Equal(again.points[i]) != 1 {
			t.Fatalf("point %d differs", i)
		}
	}
	var items []SignedItem
	for i, sk := range sks {
		msg := []byte{byte(i)}
		items = append(items, SignedItem{Signer: i, Message: msg, Signature: sk.Sign(msg)})
	}
	if err := again.VerifyMany(items); err != nil {
		t.Fatal(err)
	}
	items[2].Message = []byte("other")
	if err := again.VerifyMany(items); err == nil {
		t.Fatal("a bad signature passed a key set built from points")
	}
	mutate := map[string]func([]byte){
		"another key's point": func(p []byte) { copy(p, pts[PointSize:2*PointSize]) },
		"x negated": func(p []byte) {
			x, _ := new(field.Element).SetBytes(p[:32])
			copy(p, new(field.Element).Negate(x).Bytes())
		},
		"off the curve":   func(p []byte) { p[0] ^= 1 },
		"y not canonical": func(p []byte) { copy(p[32:], bytes.Repeat([]byte{0xff}, 32)); p[63] = 0x7f },
		"truncated":       nil,
	}
	for name, f := range mutate {
		bad := append([]byte(nil), pts...)
		if f == nil {
			bad = bad[:len(bad)-1]
		} else {
			f(bad[:PointSize])
		}
		if _, err := NewKeySetFromPoints(pks, bad); !errors.Is(err, ErrInvalidPublicKey) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
