package bls

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"strings"
	"testing"

	bls "github.com/consensys/gnark-crypto/ecc/bls12-381"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

func keys(t testing.TB, n int, seed int64) []*BLSSecretKey {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	out := make([]*BLSSecretKey, n)
	for i := range out {
		sk, err := GenerateBLSKey(rng)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = sk
	}
	return out
}

func pubs(sks []*BLSSecretKey) []BLSPublicKey {
	out := make([]BLSPublicKey, len(sks))
	for i, sk := range sks {
		out[i] = sk.PublicKey()
	}
	return out
}

func TestGoldenVectors(t *testing.T) {
	sk := keys(t, 1, 42)[0]
	got := []string{
		"secret " + hex.EncodeToString(sk.Bytes()),
		"public " + hex.EncodeToString(func() []byte { p := sk.PublicKey(); return p[:] }()),
		"sign_abc " + hex.EncodeToString(func() []byte { s := sk.Sign([]byte("abc")); return s[:] }()),
		"possession " + hex.EncodeToString(func() []byte { s := sk.ProvePossession(); return s[:] }()),
	}
	const path = "testdata/golden.txt"
	if *update {
		if err := os.WriteFile(path, []byte(strings.Join(got, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		want = append(want, sc.Text())
	}
	if strings.Join(want, "\n") != strings.Join(got, "\n") {
		t.Fatalf("golden mismatch:\n got %q\nwant %q", got, want)
	}
	// The golden secret key round-trips and reproduces the public key.
	b, _ := hex.DecodeString(strings.TrimPrefix(want[0], "secret "))
	sk2, err := BLSSecretKeyFromBytes(b)
	if err != nil || sk2.PublicKey() != sk.PublicKey() {
		t.Fatalf("secret key round trip: %v", err)
	}
}

func TestSignVerify(t *testing.T) {
	ks := keys(t, 2, 1)
	msg := []byte("dsn/vote/v1 header")
	sig := ks[0].Sign(msg)
	if err := Verify(ks[0].PublicKey(), msg, sig); err != nil {
		t.Fatal(err)
	}
	if err := Verify(ks[0].PublicKey(), []byte("other"), sig); !errors.Is(err, ErrInvalidSignature) {
		t.Fatalf("wrong message: %v", err)
	}
	if err := Verify(ks[1].PublicKey(), msg, sig); !errors.Is(err, ErrInvalidSignature) {
		t.Fatalf("wrong key: %v", err)
	}
}

func TestProofOfPossession(t *testing.T) {
	ks := keys(t, 2, 2)
	pk := ks[0].PublicKey()
	if err := VerifyPossession(pk, ks[0].ProvePossession()); err != nil {
		t.Fatal(err)
	}
	forged := map[string]BLSSignature{
		"another key's proof":         ks[1].ProvePossession(),
		"signature under the sig DST": ks[0].Sign(pk[:]),
		"proof of another key by it":  ks[0].signWith(func() []byte { p := ks[1].PublicKey(); return p[:] }(), PossessionDST),
	}
	for name, pop := range forged {
		if err := VerifyPossession(pk, pop); !errors.Is(err, ErrInvalidPossession) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// A rogue key pk' = x·g2 − pk_victim lets the attacker alone forge an
// "aggregate" of {victim, attacker}; it has no proof of possession.
func TestRogueKeyHasNoPossession(t *testing.T) {
	ks := keys(t, 2, 3)
	victim, _ := decodePublicKey(ks[0].PublicKey())
	var xg2, rogue bls.G2Affine
	_, _, _, g2 := bls.Generators()
	xg2.ScalarMultiplication(&g2, &ks[1].s)
	rogue.Sub(&xg2, &victim)
	rogueKey := BLSPublicKey(rogue.Bytes())
	set, err := NewKeySet([]BLSPublicKey{ks[0].PublicKey(), rogueKey})
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("steal")
	if err := set.VerifyAggregate([]int{0, 1}, msg, ks[1].Sign(msg)); err != nil {
		t.Fatalf("the attack itself should work without PoP: %v", err)
	}
	// ...which is why committees demand a proof of possession per key: the
	// attacker cannot make one for the rogue key (it knows no scalar for it).
	if err := VerifyPossession(rogueKey, ks[1].signWith(rogueKey[:], PossessionDST)); !errors.Is(err, ErrInvalidPossession) {
		t.Fatalf("rogue key passed possession: %v", err)
	}
}

func TestAggregateRejectsDuplicateAndUnknownSigners(t *testing.T) {
	ks := keys(t, 4, 4)
	set, err := NewKeySet(pubs(ks))
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("m")
	var sigs []BLSSignature
	for _, k := range ks[:3] {
		sigs = append(sigs, k.Sign(msg))
	}
	agg, err := AggregateSignatures(sigs)
	if err != nil {
		t.Fatal(err)
	}
	if err := set.VerifyAggregate([]int{0, 1, 2}, msg, agg); err != nil {
		t.Fatal(err)
	}
	// One key repeated: sig·3 "signed by" [0,0,0] — the PoC accepted this.
	triple, _ := AggregateSignatures([]BLSSignature{sigs[0], sigs[0], sigs[0]})
	if err := set.VerifyAggregate([]int{0, 0, 0}, msg, triple); !errors.Is(err, ErrDuplicateSigner) {
		t.Fatalf("duplicate signer: %v", err)
	}
	if err := set.BatchVerify([]AggregateItem{{Signers: []int{0, 0, 0}, Message: msg, Signature: triple}, {Signers: []int{0, 1, 2}, Message: msg, Signature: agg}}); !errors.Is(err, ErrDuplicateSigner) {
		t.Fatalf("duplicate signer in batch: %v", err)
	}
	if err := set.VerifyAggregate([]int{0, 9}, msg, agg); !errors.Is(err, ErrUnknownSigner) {
		t.Fatalf("unknown signer: %v", err)
	}
	if err := set.VerifyAggregate(nil, msg, agg); !errors.Is(err, ErrEmptySignerSet) {
		t.Fatalf("empty: %v", err)
	}
	if err := set.VerifyAggregate([]int{0, 1}, msg, agg); !errors.Is(err, ErrInvalidSignature) {
		t.Fatalf("missing signer: %v", err)
	}
}

func TestBatchVerifyFindsTheBadOne(t *testing.T) {
	ks := keys(t, 7, 5)
	set, _ := NewKeySet(pubs(ks))
	var items []AggregateItem
	for i := 0; i < 50; i++ {
		msg := []byte(fmt.Sprintf("certificate %d", i))
		signers := []int{i % 7, (i + 1) % 7, (i + 2) % 7, (i + 3) % 7, (i + 4) % 7}
		var sigs []BLSSignature
		for _, s := range signers {
			sigs = append(sigs, ks[s].Sign(msg))
		}
		agg, _ := AggregateSignatures(sigs)
		items = append(items, AggregateItem{Signers: signers, Message: msg, Signature: agg})
	}
	if err := set.BatchVerify(items); err != nil {
		t.Fatal(err)
	}
	items[17].Signature = items[18].Signature
	if err := set.BatchVerify(items); !errors.Is(err, ErrInvalidSignature) {
		t.Fatalf("batch with a bad item: %v", err)
	}
	if bad := set.FindInvalid(items); len(bad) != 1 || bad[0] != 17 {
		t.Fatalf("FindInvalid = %v, want [17]", bad)
	}
}

func TestInvalidEncodings(t *testing.T) {
	rng := rand.New(rand.NewSource(6))
	for i := 0; i < 50; i++ {
		var pk BLSPublicKey
		var sig BLSSignature
		rng.Read(pk[:])
		rng.Read(sig[:])
		if ValidatePublicKey(pk) == nil {
			t.Fatalf("random bytes accepted as a public key: %x", pk)
		}
		if ValidateSignature(sig) == nil {
			t.Fatalf("random bytes accepted as a signature: %x", sig)
		}
	}
	var inf1 bls.G1Affine
	var inf2 bls.G2Affine
	inf1.SetInfinity()
	inf2.SetInfinity()
	if err := ValidateSignature(BLSSignature(inf1.Bytes())); !errors.Is(err, ErrInvalidSignature) {
		t.Fatalf("identity signature: %v", err)
	}
	if err := ValidatePublicKey(BLSPublicKey(inf2.Bytes())); !errors.Is(err, ErrInvalidPublicKey) {
		t.Fatalf("identity key: %v", err)
	}
	if _, err := BLSSecretKeyFromBytes(make([]byte, 32)); !errors.Is(err, ErrInvalidSecretKey) {
		t.Fatalf("zero secret: %v", err)
	}
	if _, err := BLSSecretKeyFromBytes(bytes.Repeat([]byte{0xff}, 32)); !errors.Is(err, ErrInvalidSecretKey) {
		t.Fatalf("secret >= r: %v", err)
	}
}

func TestBuildsForWasm(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go not on PATH")
	}
	cmd := exec.Command("go", "build", "-o", os.DevNull, ".")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("GOOS=wasip1 build: %v\n%s", err, out)
	}
}

func FuzzDecodePublicKey(f *testing.F) {
	pk := keys(f, 1, 7)[0].PublicKey()
	f.Add(pk[:])
	f.Add(make([]byte, BLSPublicKeySize))
	f.Fuzz(func(t *testing.T, b []byte) {
		var pk BLSPublicKey
		copy(pk[:], b)
		if ValidatePublicKey(pk) == nil {
			if _, err := NewKeySet([]BLSPublicKey{pk}); err != nil {
				t.Fatalf("valid key rejected by NewKeySet: %v", err)
			}
		}
	})
}

func FuzzDecodeSignature(f *testing.F) {
	s := keys(f, 1, 8)[0].Sign([]byte("x"))
	f.Add(s[:])
	f.Add(make([]byte, BLSSignatureSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		var sig BLSSignature
		copy(sig[:], b)
		_ = Verify(keys(t, 1, 8)[0].PublicKey(), []byte("x"), sig) // must not panic
	})
}
