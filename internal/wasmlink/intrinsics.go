package wasmlink

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/consensys/gnark-crypto/ecc/bls12-381/fp"
	"github.com/tezos-dsn/dsn/internal/wasmbin"
)

// An intrinsic is a hand-written body the linker puts in place of the one
// Go compiled for a function, where Go's wasm is slow and the function is
// hot in kernels: gnark's BLS12-381 base-field arithmetic, which made 80 %
// of the ticks of a BLS verification (field.go). For the inputs the Go
// function's contract allows, the replacement returns the same words
// (tests run both on the same inputs).
//
// It goes in only where it was checked: the module that defines the
// function must be in the kernel's Go build information at exactly the
// version below, not replaced, and Go's body must still name the constants
// the hand-written one assumes (the modulus). Another gnark-crypto keeps
// Go's bodies, and TestBLSVerificationInsideThePVM then fails until the
// intrinsics are checked against it and the version moved.
type intrinsic struct {
	module, version string // the Go module that defines the function
	body            func() []byte
	guard           []uint64 // i64 constants (or their negations) Go's body must hold
}

var intrinsics = func() map[string]intrinsic {
	q := fp.Modulus()
	var words [6]uint64
	for i := range words {
		words[i] = q.Uint64()
		q.Rsh(q, 64)
	}
	const gnark, version = "github.com/consensys/gnark-crypto", "v0.22.0"
	field := func(body func() []byte) intrinsic { return intrinsic{gnark, version, body, words[:]} }
	// Go's wasm names: "/", "-", "(", ")" and "*" become "_".
	const elem = "github.com_consensys_gnark_crypto_ecc_bls12_381_fp.__Element_."
	return map[string]intrinsic{
		elem + "Mul":    field(func() []byte { return montMulBody(words, false) }),
		elem + "Square": field(func() []byte { return montMulBody(words, true) }),
		elem + "Add":    field(func() []byte { return addSubBody(words, fieldAdd) }),
		elem + "Sub":    field(func() []byte { return addSubBody(words, fieldSub) }),
		elem + "Double": field(func() []byte { return addSubBody(words, fieldDouble) }),
	}
}()

// intrinsicFor returns the body that replaces function name (Go's body
// goBody, of type ft), or nil to keep Go's; modules are the kernel's Go
// modules and their versions (goModules).
func intrinsicFor(name string, goBody []byte, ft funcType, modules map[string]string) ([]byte, error) {
	in, ok := intrinsics[name]
	if !ok || modules[in.module] != in.version || !hasConsts(goBody, in.guard) {
		return nil, nil
	}
	if string(ft.params) != string([]byte{tI32}) || string(ft.results) != string([]byte{tI32}) {
		return nil, fmt.Errorf("%w: %s is not in Go's wasm calling convention", ErrUnsupported, name)
	}
	return in.body(), nil
}

// hasConsts reports whether a function body holds every value, or its
// negation, as an i64.const (Go compiles some subtractions of a constant
// into additions of its negation).
func hasConsts(body []byte, values []uint64) bool {
	for _, v := range values {
		if !bytes.Contains(body, wasmbin.AppendSLEB([]byte{0x42}, int64(v))) &&
			!bytes.Contains(body, wasmbin.AppendSLEB([]byte{0x42}, -int64(v))) {
			return false
		}
	}
	return true
}

// goModules reads the module information the go command puts in every
// binary (what `go version -m` shows; debug/buildinfo does not read wasm),
// between its two 16-byte sentinels (cmd/go/internal/modload): each
// dependency's module path and version, or "replaced" for a module that a
// replace directive points elsewhere. Nil if there is none.
func goModules(wasm []byte) map[string]string {
	start, _ := hex.DecodeString("3077af0c9274080241e1c107e6d618e6")
	end, _ := hex.DecodeString("f932433186182072008242104116d8f2")
	i := bytes.Index(wasm, start)
	if i < 0 {
		return nil
	}
	info := wasm[i+len(start):]
	j := bytes.Index(info, end)
	if j < 0 {
		return nil
	}
	mods := map[string]string{}
	last := ""
	for _, line := range strings.Split(string(info[:j]), "\n") {
		f := strings.Split(line, "\t")
		switch {
		case len(f) >= 3 && f[0] == "dep":
			mods[f[1]], last = f[2], f[1]
		case f[0] == "=>" && last != "":
			mods[last] = "replaced"
		}
	}
	return mods
}
