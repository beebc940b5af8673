package wasmlink

import (
	"bytes"
	"math/big"

	"github.com/tezos-dsn/dsn/internal/wasmbin"
)

// Field multiplication for the linker's intrinsics (intrinsics.go).
//
// Go compiles the 64×64→128-bit product that a Montgomery multiplication
// is made of into five i64.mul and their carries on wasm, which has no
// wide multiply, and spills most of the unrolled product to the stack:
// two thirds of a BLS verification's ticks in the PVM are gnark's
// fp.(*Element).Mul. montMulBody writes the same function by hand in the
// form that suits wasm: 16 limbs of 24 bits, products of 48 bits summed
// column by column in an i64 without carries (at most 32 products of
// < 2^48 and a carry-in stay below 2^54), one carry per column — the
// "finely integrated product scanning" Montgomery multiplication (Koç,
// Acar, Kaliski 1996). 16 × 24 = 384 = 64 × 6, so its radix is gnark's
// R = 2^384 and the result is gnark's Element, bit for bit.

const (
	limbBits  = 24
	limbMask  = 1<<limbBits - 1
	fieldLimb = 16 // limbs of 24 bits in a 6-word element
)

// montMulBody returns a wasm function body, in Go's wasm calling
// convention, for
//
//	func (z *Element) Mul(x, y *Element) *Element  (square false)
//	func (z *Element) Square(x *Element) *Element  (square true)
//
// over the 6-word prime q (little-endian words, q < 2^383): z = x·y·2^-384
// mod q for x, y < q, fully reduced, as gnark computes it. Go's convention:
// the function's one i32 parameter is the resume point (unused: a leaf
// never unwinds) and the i32 result is 0; the stack pointer is global 0;
// the arguments are i64 words at SP+8, SP+16 (and SP+24), the result
// follows them; the callee pops the return address (SP += 8). A nil
// pointer traps, where Go would panic.
func montMulBody(q [6]uint64, square bool) []byte {
	p := toLimbs(q)
	pinv := negInv24(p[0])

	var a asm
	// Locals: 0 the parameter; i32 1 sp, 2 zp, 3 xp, 4 yp; i64 from 5.
	const sp, zp, xp, yp = 1, 2, 3, 4
	next := uint32(5)
	alloc := func(n int) []uint32 {
		out := make([]uint32, n)
		for i := range out {
			out[i] = next
			next++
		}
		return out
	}
	x := alloc(fieldLimb)
	y := x
	if !square {
		y = alloc(fieldLimb)
	}
	m := alloc(fieldLimb)
	t := alloc(fieldLimb + 1)
	w := alloc(6) // words as loaded
	acc := alloc(1)[0]
	nI64 := next - 5

	nArgs := uint32(3)
	if square {
		nArgs = 2
	}
	a.op(0x23, 0).set(sp) // global.get 0
	ptrs := []uint32{zp, xp, yp}[:nArgs]
	for i, l := range ptrs { // pointer = i32.wrap(i64.load sp+8(i+1)); nil traps
		a.get(sp).mem(0x29, 8*uint32(i+1)).op(0xa7).tee(l).op(0x45).op(0x04, 0x40).op(0x00).op(0x0b)
	}
	unpack := func(ptr uint32, limbs []uint32) {
		for k := range 6 {
			a.get(ptr).mem(0x29, 8*uint32(k)).set(w[k])
		}
		for j := range fieldLimb {
			bit := limbBits * j
			k, off := bit/64, bit%64
			a.get(w[k])
			if off > 0 {
				a.i64(int64(off)).op(0x88) // shr_u
			}
			if off+limbBits > 64 {
				a.get(w[k+1]).i64(int64(64 - off)).op(0x86).op(0x84) // shl, or
			}
			a.i64(limbMask).op(0x83).set(limbs[j]) // and
		}
	}
	unpack(xp, x)
	if !square {
		unpack(yp, y)
	}

	// Product scanning: column c sums x[i]·y[c−i] and m[i]·p[c−i].
	a.i64(0).set(acc)
	for c := range 2*fieldLimb - 1 {
		lo, hi := max(0, c-fieldLimb+1), min(c, fieldLimb-1)
		a.get(acc)
		if square { // off-diagonal products once, doubled, and the square
			pairs := 0
			for i := lo; i < c-i; i++ {
				a.get(x[i]).get(x[c-i]).op(0x7e)
				if pairs > 0 {
					a.op(0x7c)
				}
				pairs++
			}
			if pairs > 0 {
				a.i64(1).op(0x86).op(0x7c) // << 1, add to acc
			}
			if c%2 == 0 {
				a.get(x[c/2]).get(x[c/2]).op(0x7e).op(0x7c)
			}
		} else {
			for i := lo; i <= hi; i++ {
				a.get(x[i]).get(y[c-i]).op(0x7e).op(0x7c)
			}
		}
		for i := lo; i <= hi; i++ {
			if i == c { // m[c] is not known yet: it is chosen below
				continue
			}
			a.get(m[i]).i64(int64(p[c-i])).op(0x7e).op(0x7c)
		}
		if c < fieldLimb { // choose m[c] so that the column's low 24 bits vanish
			a.tee(acc).i64(int64(pinv)).op(0x7e).i64(limbMask).op(0x83).tee(m[c])
			a.i64(int64(p[0])).op(0x7e).get(acc).op(0x7c)
		} else {
			a.tee(acc).i64(limbMask).op(0x83).set(t[c-fieldLimb])
			a.get(acc)
		}
		a.i64(limbBits).op(0x88).set(acc) // carry into the next column
	}
	a.get(acc).set(t[fieldLimb-1])
	// t[fieldLimb-1] holds the last column's whole value; split it.
	a.get(t[fieldLimb-1]).i64(limbBits).op(0x88).set(t[fieldLimb])
	a.get(t[fieldLimb-1]).i64(limbMask).op(0x83).set(t[fieldLimb-1])

	// t < 2q: subtract q once if t ≥ q (borrows with arithmetic shifts).
	a.i64(0).set(acc)
	for j := range fieldLimb {
		a.get(acc).get(t[j]).op(0x7c).i64(int64(p[j])).op(0x7d).tee(acc)
		a.i64(limbMask).op(0x83).set(m[j]) // m is free now
		a.get(acc).i64(limbBits).op(0x87).set(acc)
	}
	a.get(acc).get(t[fieldLimb]).op(0x7c).i64(0).op(0x59) // i64.ge_s: t ≥ q
	a.op(0x04, 0x40)
	for j := range fieldLimb {
		a.get(m[j]).set(t[j])
	}
	a.op(0x0b)

	// Pack 16 limbs into 6 words and store them.
	for k := range 6 {
		a.get(zp)
		first := true
		for j := range fieldLimb {
			bit := limbBits * j
			if bit+limbBits <= 64*k || bit >= 64*(k+1) {
				continue
			}
			a.get(t[j])
			if bit >= 64*k {
				if s := bit - 64*k; s > 0 {
					a.i64(int64(s)).op(0x86)
				}
			} else {
				a.i64(int64(64*k - bit)).op(0x88)
			}
			if !first {
				a.op(0x84)
			}
			first = false
		}
		a.mem(0x37, 8*uint32(k))
	}
	// The result (z) after the arguments; pop the return address.
	a.get(sp).get(sp).mem(0x29, 8).mem(0x37, 8*(nArgs+1))
	a.get(sp).op(0x41, 8).op(0x6a).op(0x24, 0) // global.set 0
	a.op(0x41, 0).op(0x0b)

	locals := []byte{2, 4, tI32}
	locals = append(uleb(locals, uint64(nI64)), tI64)
	return append(locals, a.b...)
}

// toLimbs splits a 6-word value into 24-bit limbs.
func toLimbs(q [6]uint64) [fieldLimb]uint64 {
	var out [fieldLimb]uint64
	for j := range out {
		bit := limbBits * j
		k, off := bit/64, bit%64
		v := q[k] >> off
		if off+limbBits > 64 {
			v |= q[k+1] << (64 - off)
		}
		out[j] = v & limbMask
	}
	return out
}

// negInv24 is −v⁻¹ mod 2^24 for odd v.
func negInv24(v uint64) uint64 {
	m := new(big.Int).Lsh(big.NewInt(1), limbBits)
	inv := new(big.Int).ModInverse(new(big.Int).SetUint64(v), m)
	return new(big.Int).Sub(m, inv).Uint64() & limbMask
}

// hasConsts reports whether a function body holds every value as an
// i64.const: a guard that a Go function is the one an intrinsic replaces
// (gnark's Mul names its modulus's words).
func hasConsts(body []byte, values []uint64) bool {
	for _, v := range values {
		if !bytes.Contains(body, wasmbin.AppendSLEB([]byte{0x42}, int64(v))) {
			return false
		}
	}
	return true
}

// asm appends wasm instructions.
type asm struct{ b []byte }

func (a *asm) op(b ...byte) *asm { a.b = append(a.b, b...); return a }
func (a *asm) get(l uint32) *asm { a.b = uleb(append(a.b, 0x20), uint64(l)); return a }
func (a *asm) set(l uint32) *asm { a.b = uleb(append(a.b, 0x21), uint64(l)); return a }
func (a *asm) tee(l uint32) *asm { a.b = uleb(append(a.b, 0x22), uint64(l)); return a }
func (a *asm) i64(v int64) *asm  { a.b = wasmbin.AppendSLEB(append(a.b, 0x42), v); return a }

// mem appends a 64-bit load (0x29) or store (0x37) at an offset.
func (a *asm) mem(op byte, offset uint32) *asm {
	a.b = uleb(append(a.b, op, 3), uint64(offset))
	return a
}
