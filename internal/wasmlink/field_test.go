package wasmlink

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/big"
	mrand "math/rand"
	"testing"

	"github.com/consensys/gnark-crypto/ecc/bls12-381/fp"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tezos-dsn/dsn/internal/wasmbin"
)

// fieldOps are the field intrinsics with gnark's own functions, natively,
// as the reference. anyInput: equal for any words, not only for inputs
// below q (gnark's contract).
var fieldOps = []struct {
	name     string
	unary    bool
	gnark    func(z, x, y *fp.Element)
	anyInput bool
}{
	{"Mul", false, func(z, x, y *fp.Element) { z.Mul(x, y) }, false},
	{"Square", true, func(z, x, _ *fp.Element) { z.Square(x) }, false},
	{"Add", false, func(z, x, y *fp.Element) { z.Add(x, y) }, true},
	{"Sub", false, func(z, x, y *fp.Element) { z.Sub(x, y) }, true},
	{"Double", true, func(z, x, _ *fp.Element) { z.Double(x) }, true},
}

// fieldModule holds one intrinsic as function "f" in Go's wasm calling
// convention (global 0 the stack pointer, memory 0 the Go heap), and a
// function "loop"(n) that calls it n times, for benchmarks.
type fieldModule struct {
	mod   api.Module
	f     api.Function
	unary bool
}

const (
	stackPtr = 4096
	xAt      = 1024
	yAt      = 1072
	zAt      = 1120
)

func newFieldModule(t testing.TB, name string, unary bool) *fieldModule {
	t.Helper()
	ctx := context.Background()
	in, ok := intrinsics["github.com_consensys_gnark_crypto_ecc_bls12_381_fp.__Element_."+name]
	if !ok {
		t.Fatalf("no intrinsic %s", name)
	}
	body := in.body()
	loopBody := cat([]byte{0}, loop(cat(lget(0), i32Eqz),
		cat([]byte{0x41}, uleb(nil, stackPtr), []byte{0x24, 0}, i32c(0), call(0), []byte{0x1a},
			lget(0), i32c(1), i32Sub, lset(0))), end)
	m := []byte("\x00asm\x01\x00\x00\x00")
	m = append(m, sectionBytes(1, []byte{2, 0x60, 1, tI32, 1, tI32, 0x60, 1, tI32, 0})...)
	m = append(m, sectionBytes(3, []byte{2, 0, 1})...)
	m = append(m, sectionBytes(5, []byte{1, 0, 1})...)
	m = append(m, sectionBytes(6, append([]byte{1, tI32, 1, 0x41}, append(uleb(nil, stackPtr), 0x0b)...))...)
	ex := vec(nil, 4)
	ex = append(str(ex, "f"), 0, 0)
	ex = append(str(ex, "loop"), 0, 1)
	ex = append(str(ex, "memory"), 2, 0)
	ex = append(str(ex, "sp"), 3, 0)
	m = append(m, sectionBytes(7, ex)...)
	code := append(uleb([]byte{2}, uint64(len(body))), body...)
	code = append(uleb(code, uint64(len(loopBody))), loopBody...)
	m = append(m, sectionBytes(10, code)...)
	rt := wazero.NewRuntime(ctx)
	t.Cleanup(func() { rt.Close(ctx) })
	mod, err := rt.Instantiate(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	return &fieldModule{mod: mod, f: mod.ExportedFunction("f"), unary: unary}
}

func (fm *fieldModule) put(at uint32, e *fp.Element) {
	for i, w := range e {
		fm.mod.Memory().WriteUint64Le(at+8*uint32(i), w)
	}
}

// setArgs puts the stack pointer and the pointer arguments in place.
func (fm *fieldModule) setArgs(z, x, y uint32) int {
	fm.mod.ExportedGlobal("sp").(api.MutableGlobal).Set(stackPtr)
	args := []uint32{z, x, y}
	if fm.unary {
		args = args[:2]
	}
	for i, p := range args {
		fm.mod.Memory().WriteUint64Le(stackPtr+8*uint32(i+1), uint64(p))
	}
	return len(args)
}

// call runs the intrinsic with the pointers given, checks Go's calling
// convention was kept, and returns z's words.
func (fm *fieldModule) call(t testing.TB, z, x, y uint32) fp.Element {
	t.Helper()
	mem := fm.mod.Memory()
	n := fm.setArgs(z, x, y)
	res, err := fm.f.Call(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if res[0] != 0 {
		t.Fatalf("returned %d, want 0", res[0])
	}
	if sp := fm.mod.ExportedGlobal("sp").Get(); sp != stackPtr+8 {
		t.Fatalf("sp %d after the call, want %d (the callee pops the return address)", sp, stackPtr+8)
	}
	if r, _ := mem.ReadUint64Le(stackPtr + 8*uint32(n+1)); r != uint64(z) {
		t.Fatalf("result slot %d, want z = %d", r, z)
	}
	var out fp.Element
	for i := range out {
		out[i], _ = mem.ReadUint64Le(z + 8*uint32(i))
	}
	return out
}

// fieldCases are edge values and random ones below q.
func fieldCases(n int) []fp.Element {
	var out []fp.Element
	qm1 := new(big.Int).Sub(fp.Modulus(), big.NewInt(1))
	for _, v := range []*big.Int{big.NewInt(0), big.NewInt(1), big.NewInt(2), qm1, new(big.Int).Rsh(fp.Modulus(), 1)} {
		var e fp.Element
		e.SetBigInt(v) // Montgomery form
		out = append(out, e, fp.Element{v.Uint64()}, fromBig(v))
	}
	r := mrand.New(mrand.NewSource(7))
	for range n {
		out = append(out, fromBig(new(big.Int).Rand(r, fp.Modulus())))
	}
	return out
}

func fromBig(v *big.Int) fp.Element {
	var out fp.Element
	for i, w := range v.Bits() {
		out[i] = uint64(w)
	}
	return out
}

func TestFieldIntrinsicsAreGnarks(t *testing.T) {
	cases := fieldCases(200)
	r := mrand.New(mrand.NewSource(8))
	for _, op := range fieldOps {
		t.Run(op.name, func(t *testing.T) {
			fm := newFieldModule(t, op.name, op.unary)
			check := func(x, y fp.Element) {
				var want fp.Element
				op.gnark(&want, &x, &y)
				fm.put(xAt, &x)
				fm.put(yAt, &y)
				if got := fm.call(t, zAt, xAt, yAt); got != want {
					t.Fatalf("%s(%v, %v) = %v, want %v", op.name, x, y, got, want)
				}
			}
			for i := range cases {
				for j := range cases {
					if j <= i+3 || j%13 == 0 {
						check(cases[i], cases[j])
					}
				}
			}
			// The products also against big.Int arithmetic, not only gnark's
			// assembly: x·y·2^-384 mod q.
			if op.name == "Mul" || op.name == "Square" {
				rInv := new(big.Int).ModInverse(new(big.Int).Lsh(big.NewInt(1), 384), fp.Modulus())
				for i := 1; i < len(cases); i++ {
					x, y := cases[i], cases[i-1]
					if op.unary {
						y = x
					}
					want := new(big.Int).Mul(toBig(x), toBig(y))
					want.Mul(want, rInv).Mod(want, fp.Modulus())
					fm.put(xAt, &x)
					fm.put(yAt, &y)
					if got := fm.call(t, zAt, xAt, yAt); toBig(got).Cmp(want) != 0 {
						t.Fatalf("%s(%v, %v) = %v, want %v", op.name, x, y, got, fromBig(want))
					}
				}
			}
			if op.anyInput {
				for range 2000 {
					var x, y fp.Element
					for k := range 6 {
						x[k], y[k] = r.Uint64(), r.Uint64()
					}
					check(x, y)
				}
			}
		})
	}
}

func TestFieldIntrinsicsAlias(t *testing.T) {
	cases := fieldCases(20)
	for _, op := range fieldOps {
		fm := newFieldModule(t, op.name, op.unary)
		for i := 1; i < len(cases); i++ {
			x, y := cases[i-1], cases[i]
			for _, tc := range []struct{ z, x, y uint32 }{{xAt, xAt, yAt}, {yAt, xAt, yAt}, {xAt, xAt, xAt}} {
				var want fp.Element
				wx, wy := x, y
				if tc.y == xAt {
					wy = x
				}
				op.gnark(&want, &wx, &wy)
				fm.put(xAt, &x)
				fm.put(yAt, &y)
				if got := fm.call(t, tc.z, tc.x, tc.y); got != want {
					t.Fatalf("%s z=%d x=%d y=%d: %v, want %v", op.name, tc.z, tc.x, tc.y, got, want)
				}
			}
		}
	}
}

func TestFieldIntrinsicsNilTraps(t *testing.T) {
	for _, op := range fieldOps {
		fm := newFieldModule(t, op.name, op.unary)
		for _, args := range [][3]uint32{{0, xAt, yAt}, {zAt, 0, yAt}, {zAt, xAt, 0}} {
			if op.unary && args[2] == 0 {
				continue
			}
			fm.setArgs(args[0], args[1], args[2])
			if _, err := fm.f.Call(context.Background(), 0); err == nil {
				t.Fatalf("%s with pointers %v: no trap", op.name, args)
			}
		}
	}
}

func FuzzFieldIntrinsics(f *testing.F) {
	f.Add(make([]byte, 96))
	cs := fieldCases(0)
	f.Add(bytesOf(cs[9:11]))
	fms := make([]*fieldModule, len(fieldOps))
	for i, op := range fieldOps {
		fms[i] = newFieldModule(f, op.name, op.unary)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 96 {
			return
		}
		var x, y fp.Element
		for i := range 6 {
			x[i] = binary.LittleEndian.Uint64(in[8*i:])
			y[i] = binary.LittleEndian.Uint64(in[48+8*i:])
		}
		for i, op := range fieldOps {
			x, y := x, y
			if !op.anyInput {
				x, y = belowQ(x), belowQ(y)
			}
			var want fp.Element
			op.gnark(&want, &x, &y)
			fms[i].put(xAt, &x)
			fms[i].put(yAt, &y)
			if got := fms[i].call(t, zAt, xAt, yAt); got != want {
				t.Fatalf("%s(%v, %v) = %v, want %v", op.name, x, y, got, want)
			}
		}
	})
}

func toBig(e fp.Element) *big.Int {
	v := new(big.Int)
	for i := 5; i >= 0; i-- {
		v.Lsh(v, 64).Or(v, new(big.Int).SetUint64(e[i]))
	}
	return v
}

// belowQ reduces words modulo q (any value < q is a valid element).
func belowQ(e fp.Element) fp.Element {
	v := toBig(e)
	return fromBig(v.Mod(v, fp.Modulus()))
}

func bytesOf(es []fp.Element) []byte {
	var out []byte
	for _, e := range es {
		for _, w := range e {
			out = binary.LittleEndian.AppendUint64(out, w)
		}
	}
	return out
}

// BenchmarkFieldOps reports ns per BLS12-381 base-field operation as each
// intrinsic runs in wazero (a wasm loop calling it, no host call per
// operation), beside gnark natively (amd64 assembly here). Go's own wasm
// bodies cannot be timed alone (they call into the Go runtime); the
// KernelRun benchmark's go-bodies cases compare them in a kernel.
func BenchmarkFieldOps(b *testing.B) {
	const per = 10000
	cs := fieldCases(2)
	x, y := cs[len(cs)-1], cs[len(cs)-2]
	for _, op := range fieldOps {
		b.Run(op.name+"-intrinsic-wasm", func(b *testing.B) {
			fm := newFieldModule(b, op.name, op.unary)
			fm.put(xAt, &x)
			fm.put(yAt, &y)
			fm.setArgs(zAt, xAt, yAt)
			for b.Loop() {
				if _, err := fm.mod.ExportedFunction("loop").Call(context.Background(), per); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/per, "ns/op-field")
		})
		b.Run(op.name+"-gnark-native", func(b *testing.B) {
			z := x
			for b.Loop() {
				for range per {
					op.gnark(&z, &z, &y)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/per, "ns/op-field")
		})
	}
}

func TestIntrinsicGuards(t *testing.T) {
	const mul = "github.com_consensys_gnark_crypto_ecc_bls12_381_fp.__Element_.Mul"
	in := intrinsics[mul]
	body := func(words []uint64) []byte { // i64.const w; drop — some negated, as Go's do
		var b []byte
		for i, w := range words {
			if i%2 == 1 {
				w = -w
			}
			b = append(wasmbin.AppendSLEB(append(b, 0x42), int64(w)), 0x1a)
		}
		return b
	}
	goBody := body(in.guard)
	goType := funcType{params: []byte{tI32}, results: []byte{tI32}}
	gnark := map[string]string{in.module: in.version}
	for _, tc := range []struct {
		name    string
		fn      string
		body    []byte
		ft      funcType
		modules map[string]string
		want    string // "intrinsic", "go" or "error"
	}{
		{"all hold", mul, goBody, goType, gnark, "intrinsic"},
		{"another function", "main.Mul", goBody, goType, gnark, "go"},
		{"another gnark-crypto", mul, goBody, goType, map[string]string{in.module: "v0.21.0"}, "go"},
		{"gnark-crypto replaced", mul, goBody, goType, map[string]string{in.module: "replaced"}, "go"},
		{"no build information", mul, goBody, goType, map[string]string{}, "go"},
		{"another modulus", mul, body(in.guard[:5]), goType, gnark, "go"},
		{"not Go's convention", mul, goBody, funcType{params: []byte{tI32, tI32}, results: []byte{tI32}}, gnark, "error"},
	} {
		body, err := intrinsicFor(tc.fn, tc.body, tc.ft, tc.modules)
		got := map[bool]string{true: "intrinsic", false: "go"}[body != nil]
		if err != nil {
			got = "error"
		}
		if got != tc.want {
			t.Errorf("%s: %s (%v), want %s", tc.name, got, err, tc.want)
		}
	}
}

func TestGoModules(t *testing.T) {
	start, _ := hex.DecodeString("3077af0c9274080241e1c107e6d618e6")
	end, _ := hex.DecodeString("f932433186182072008242104116d8f2")
	info := "path\tex/k\nmod\tex\t(devel)\t\ndep\tgithub.com/consensys/gnark-crypto\tv0.22.0\th1:x=\n" +
		"dep\tgolang.org/x/sys\tv0.1.0\th1:y=\n=>\t../sys\t(devel)\t\ndep\tz.org/z\tv1.0.0\t\n"
	wasm := append(append(append([]byte("data before"), start...), info...), end...)
	got := goModules(wasm)
	want := map[string]string{"github.com/consensys/gnark-crypto": "v0.22.0", "golang.org/x/sys": "replaced", "z.org/z": "v1.0.0"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%v, want %v", got, want)
	}
	if goModules(wasm[:len(wasm)-1]) != nil || goModules([]byte("none")) != nil {
		t.Fatal("modules read without both sentinels")
	}
}
