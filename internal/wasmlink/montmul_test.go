package wasmlink

import (
	"context"
	"encoding/binary"
	"math/big"
	mrand "math/rand"
	"testing"

	"github.com/consensys/gnark-crypto/ecc/bls12-381/fp"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// fieldModule holds one intrinsic as function "f" in Go's wasm calling
// convention: global 0 is the stack pointer, memory 0 the Go heap.
type fieldModule struct {
	mod    api.Module
	f      api.Function
	square bool
}

const (
	stackPtr = 4096
	xAt      = 1024
	yAt      = 1072
	zAt      = 1120
)

func newFieldModule(t testing.TB, square bool) *fieldModule {
	t.Helper()
	ctx := context.Background()
	body := intrinsics["github.com_consensys_gnark_crypto_ecc_bls12_381_fp.__Element_.Mul"].body()
	if square {
		body = intrinsics["github.com_consensys_gnark_crypto_ecc_bls12_381_fp.__Element_.Square"].body()
	}
	m := []byte("\x00asm\x01\x00\x00\x00")
	m = append(m, sectionBytes(1, []byte{1, 0x60, 1, tI32, 1, tI32})...)
	m = append(m, sectionBytes(3, []byte{1, 0})...)
	m = append(m, sectionBytes(5, []byte{1, 0, 1})...)
	m = append(m, sectionBytes(6, append([]byte{1, tI32, 1, 0x41}, append(uleb(nil, stackPtr), 0x0b)...))...)
	m = append(m, sectionBytes(7, append(append(str([]byte{3}, "f"), 0, 0), append(append(str(nil, "memory"), 2, 0), append(str(nil, "sp"), 3, 0)...)...))...)
	m = append(m, sectionBytes(10, append(uleb([]byte{1}, uint64(len(body))), body...))...)
	rt := wazero.NewRuntime(ctx)
	t.Cleanup(func() { rt.Close(ctx) })
	mod, err := rt.Instantiate(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	return &fieldModule{mod: mod, f: mod.ExportedFunction("f"), square: square}
}

func (fm *fieldModule) put(at uint32, e *fp.Element) {
	for i, w := range e {
		fm.mod.Memory().WriteUint64Le(at+8*uint32(i), w)
	}
}

// call runs z = x·y (or x² ) with the pointers given and returns z's words.
func (fm *fieldModule) call(t testing.TB, z, x, y uint32) fp.Element {
	t.Helper()
	mem := fm.mod.Memory()
	fm.mod.ExportedGlobal("sp").(api.MutableGlobal).Set(stackPtr)
	args := []uint32{z, x, y}
	if fm.square {
		args = args[:2]
	}
	for i, p := range args {
		mem.WriteUint64Le(stackPtr+8*uint32(i+1), uint64(p))
	}
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
	if r, _ := mem.ReadUint64Le(stackPtr + 8*uint32(len(args)+1)); r != uint64(z) {
		t.Fatalf("result slot %d, want z = %d", r, z)
	}
	var out fp.Element
	for i := range out {
		out[i], _ = mem.ReadUint64Le(z + 8*uint32(i))
	}
	return out
}

// fieldCases are edge values and random ones, in gnark's Montgomery form.
func fieldCases(n int) []fp.Element {
	var out []fp.Element
	qm1 := new(big.Int).Sub(fp.Modulus(), big.NewInt(1))
	for _, v := range []*big.Int{big.NewInt(0), big.NewInt(1), big.NewInt(2), qm1, new(big.Int).Rsh(fp.Modulus(), 1)} {
		var e fp.Element
		e.SetBigInt(v)
		out = append(out, e)
		out = append(out, fp.Element{uint64(v.Uint64())}) // the raw words too (any value < q is valid)
	}
	raw := fp.Element{}
	for i, w := range qm1.Bits() {
		raw[i] = uint64(w)
	}
	out = append(out, raw) // q − 1 as raw words: the largest valid input
	r := mrand.New(mrand.NewSource(7))
	for range n {
		var e fp.Element
		e.SetBigInt(new(big.Int).Rand(r, fp.Modulus()))
		out = append(out, e)
	}
	return out
}

func TestMontMulIsGnarksMul(t *testing.T) {
	mul, sq := newFieldModule(t, false), newFieldModule(t, true)
	cases := fieldCases(300)
	for i := range cases {
		for j := range cases {
			if j > i+3 && j%17 != 0 {
				continue
			}
			x, y := cases[i], cases[j]
			var want fp.Element
			want.Mul(&x, &y)
			mul.put(xAt, &x)
			mul.put(yAt, &y)
			if got := mul.call(t, zAt, xAt, yAt); got != want {
				t.Fatalf("Mul(%v, %v) = %v, want %v", x, y, got, want)
			}
		}
		x := cases[i]
		var want fp.Element
		want.Square(&x)
		sq.put(xAt, &x)
		if got := sq.call(t, zAt, xAt, 0); got != want {
			t.Fatalf("Square(%v) = %v, want %v", x, got, want)
		}
	}
}

func TestMontMulAliases(t *testing.T) {
	mul, sq := newFieldModule(t, false), newFieldModule(t, true)
	cases := fieldCases(20)
	for i := 1; i < len(cases); i++ {
		x, y := cases[i-1], cases[i]
		var want fp.Element
		want.Mul(&x, &y)
		for _, tc := range []struct{ z, x, y uint32 }{{xAt, xAt, yAt}, {yAt, xAt, yAt}} {
			mul.put(xAt, &x)
			mul.put(yAt, &y)
			if got := mul.call(t, tc.z, tc.x, tc.y); got != want {
				t.Fatalf("z=%d x=%d y=%d: %v, want %v", tc.z, tc.x, tc.y, got, want)
			}
		}
		want.Mul(&x, &x)
		mul.put(xAt, &x)
		if got := mul.call(t, xAt, xAt, xAt); got != want {
			t.Fatalf("x·x in place: %v, want %v", got, want)
		}
		sq.put(xAt, &x)
		if got := sq.call(t, xAt, xAt, 0); got != want {
			t.Fatalf("x² in place: %v, want %v", got, want)
		}
	}
}

func TestMontMulNilTraps(t *testing.T) {
	mul := newFieldModule(t, false)
	for _, args := range [][3]uint32{{0, xAt, yAt}, {zAt, 0, yAt}, {zAt, xAt, 0}} {
		mul.mod.ExportedGlobal("sp").(api.MutableGlobal).Set(stackPtr)
		for i, p := range args {
			mul.mod.Memory().WriteUint64Le(stackPtr+8*uint32(i+1), uint64(p))
		}
		if _, err := mul.f.Call(context.Background(), 0); err == nil {
			t.Fatalf("pointers %v: no trap", args)
		}
	}
}

func FuzzMontMul(f *testing.F) {
	f.Add(make([]byte, 96))
	f.Add(bytesOf(fieldCases(2)[10:12]))
	mul, sq := newFieldModule(f, false), newFieldModule(f, true)
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 96 {
			return
		}
		var x, y fp.Element
		for i := range 6 { // any words, reduced below q as gnark requires of inputs
			x[i] = binary.LittleEndian.Uint64(in[8*i:])
			y[i] = binary.LittleEndian.Uint64(in[48+8*i:])
		}
		x, y = belowQ(x), belowQ(y)
		var want fp.Element
		want.Mul(&x, &y)
		mul.put(xAt, &x)
		mul.put(yAt, &y)
		if got := mul.call(t, zAt, xAt, yAt); got != want {
			t.Fatalf("Mul(%v, %v) = %v, want %v", x, y, got, want)
		}
		want.Square(&x)
		sq.put(xAt, &x)
		if got := sq.call(t, zAt, xAt, 0); got != want {
			t.Fatalf("Square(%v) = %v, want %v", x, got, want)
		}
	})
}

// belowQ reduces raw words modulo q (keeping them raw: any value < q is a
// valid Montgomery-form element).
func belowQ(e fp.Element) fp.Element {
	v := new(big.Int)
	for i := 5; i >= 0; i-- {
		v.Lsh(v, 64).Or(v, new(big.Int).SetUint64(e[i]))
	}
	v.Mod(v, fp.Modulus())
	var out fp.Element
	for i, w := range v.Bits() {
		out[i] = uint64(w)
	}
	return out
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

// BenchmarkFieldMul reports ns per BLS12-381 base-field multiplication and
// squaring as the intrinsic runs in wazero (a wasm loop calling it, so no
// host call per operation), beside gnark's Go on this machine (natively;
// its wasm build cannot be called alone: it calls into the Go runtime).
func BenchmarkFieldMul(b *testing.B) {
	for _, square := range []bool{false, true} {
		name := "mul"
		if square {
			name = "square"
		}
		b.Run(name+"-intrinsic-wasm", func(b *testing.B) {
			ctx := context.Background()
			body := intrinsics["github.com_consensys_gnark_crypto_ecc_bls12_381_fp.__Element_.Mul"].body()
			if square {
				body = intrinsics["github.com_consensys_gnark_crypto_ecc_bls12_381_fp.__Element_.Square"].body()
			}
			// f, and loop(n): n times { sp = stackPtr; f(0) } on the same operands.
			loopBody := cat([]byte{0}, loop(cat(lget(0), i32Eqz),
				cat([]byte{0x41}, uleb(nil, stackPtr), []byte{0x24, 0}, i32c(0), call(0), []byte{0x1a},
					lget(0), i32c(1), i32Sub, lset(0))), end)
			m := []byte("\x00asm\x01\x00\x00\x00")
			m = append(m, sectionBytes(1, []byte{2, 0x60, 1, tI32, 1, tI32, 0x60, 1, tI32, 0})...)
			m = append(m, sectionBytes(3, []byte{2, 0, 1})...)
			m = append(m, sectionBytes(5, []byte{1, 0, 1})...)
			m = append(m, sectionBytes(6, append([]byte{1, tI32, 1, 0x41}, append(uleb(nil, stackPtr), 0x0b)...))...)
			m = append(m, sectionBytes(7, append(append(str([]byte{2}, "loop"), 0, 1), append(str(nil, "memory"), 2, 0)...))...)
			code := append(uleb([]byte{2}, uint64(len(body))), body...)
			code = append(uleb(code, uint64(len(loopBody))), loopBody...)
			m = append(m, sectionBytes(10, code)...)
			rt := wazero.NewRuntime(ctx)
			defer rt.Close(ctx)
			mod, err := rt.Instantiate(ctx, m)
			if err != nil {
				b.Fatal(err)
			}
			cs := fieldCases(2)
			mem := mod.Memory()
			for i, p := range []uint32{zAt, xAt, yAt} {
				mem.WriteUint64Le(stackPtr+8*uint32(i+1), uint64(p))
			}
			for i := range 6 {
				mem.WriteUint64Le(xAt+8*uint32(i), cs[len(cs)-1][i])
				mem.WriteUint64Le(yAt+8*uint32(i), cs[len(cs)-2][i])
			}
			const per = 10000
			b.ResetTimer()
			for b.Loop() {
				if _, err := mod.ExportedFunction("loop").Call(ctx, per); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/per, "ns/op-field")
		})
		b.Run(name+"-gnark-native", func(b *testing.B) {
			cs := fieldCases(2)
			x, y := cs[len(cs)-1], cs[len(cs)-2]
			for b.Loop() {
				for range 10000 {
					if square {
						x.Square(&x)
					} else {
						x.Mul(&x, &y)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/10000, "ns/op-field")
		})
	}
}
