package bls

import (
	"fmt"
	"testing"

	bls "github.com/consensys/gnark-crypto/ecc/bls12-381"
)

func BenchmarkSign(b *testing.B) {
	sk := keys(b, 1, 1)[0]
	msg := make([]byte, 44)
	for b.Loop() {
		sk.Sign(msg)
	}
}

func BenchmarkVerify(b *testing.B) {
	ks := keys(b, 1, 1)
	set, _ := NewKeySet(pubs(ks))
	msg := make([]byte, 44)
	sig := ks[0].Sign(msg)
	for b.Loop() {
		if err := set.Verify(0, msg, sig); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyAggregate5of7(b *testing.B) {
	ks := keys(b, 7, 1)
	set, _ := NewKeySet(pubs(ks))
	msg := make([]byte, 44)
	var sigs []BLSSignature
	for _, k := range ks[:5] {
		sigs = append(sigs, k.Sign(msg))
	}
	agg, _ := AggregateSignatures(sigs)
	for b.Loop() {
		if err := set.VerifyAggregate([]int{0, 1, 2, 3, 4}, msg, agg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBatchVerify(b *testing.B) {
	ks := keys(b, 7, 1)
	set, _ := NewKeySet(pubs(ks))
	for _, n := range []int{10, 50, 100} {
		items := make([]AggregateItem, n)
		for i := range items {
			msg := []byte(fmt.Sprintf("cert %d", i))
			var sigs []BLSSignature
			for _, k := range ks[:5] {
				sigs = append(sigs, k.Sign(msg))
			}
			agg, _ := AggregateSignatures(sigs)
			items[i] = AggregateItem{Signers: []int{0, 1, 2, 3, 4}, Message: msg, Signature: agg}
		}
		b.Run(fmt.Sprintf("certs=%d", n), func(b *testing.B) {
			for b.Loop() {
				if err := set.BatchVerify(items); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/cert")
		})
	}
}

func BenchmarkHashToG1(b *testing.B) {
	msg := make([]byte, 44)
	for b.Loop() {
		if _, err := bls.HashToG1(msg, []byte(SignatureDST)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecompressPublicKey(b *testing.B) {
	pk := keys(b, 1, 1)[0].PublicKey()
	for b.Loop() {
		if err := ValidatePublicKey(pk); err != nil {
			b.Fatal(err)
		}
	}
}
