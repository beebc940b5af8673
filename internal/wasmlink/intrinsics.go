package wasmlink

import (
	"github.com/consensys/gnark-crypto/ecc/bls12-381/fp"
)

// An intrinsic is a hand-written body the linker puts in place of the one
// Go compiled for a function, where Go's wasm is slow and the function is
// hot in kernels: gnark's BLS12-381 base-field arithmetic, which made 80 %
// of the ticks of a BLS verification (field.go). The replacement is
// bit-for-bit the same function (tests run both on the same inputs); it
// goes in only when the Go body still names the constants the hand-written
// one assumes (the modulus), so another gnark cannot receive a wrong one.
type intrinsic struct {
	body  func() []byte
	guard []uint64 // i64 constants Go's body must hold
}

var intrinsics = func() map[string]intrinsic {
	q := fp.Modulus()
	var words [6]uint64
	for i := range words {
		words[i] = q.Uint64()
		q.Rsh(q, 64)
	}
	// Go's wasm names: "/", "-", "(", ")" and "*" become "_".
	const elem = "github.com_consensys_gnark_crypto_ecc_bls12_381_fp.__Element_."
	return map[string]intrinsic{
		elem + "Mul":    {func() []byte { return montMulBody(words, false) }, words[:]},
		elem + "Square": {func() []byte { return montMulBody(words, true) }, words[:]},
		elem + "Add":    {func() []byte { return addSubBody(words, fieldAdd) }, words[:]},
		elem + "Sub":    {func() []byte { return addSubBody(words, fieldSub) }, words[:]},
		elem + "Double": {func() []byte { return addSubBody(words, fieldDouble) }, words[:]},
	}
}()
