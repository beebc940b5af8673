package wasmlink

import (
	"math/big"

	"github.com/tezos-dsn/dsn/internal/wasmbin"
)

// Field arithmetic for the linker's intrinsics (intrinsics.go).
//
// Go compiles the 64×64→128-bit product that a Montgomery multiplication
// is made of into five i64.mul and their carries on wasm, which has no
// wide multiply, and spills most of the unrolled product to the stack:
// two thirds of a BLS verification's ticks in the PVM were gnark's
// fp.(*Element).Mul. montMulBody writes the same function by hand in the
// form that suits wasm: 16 limbs of 24 bits, products of 48 bits summed
// column by column in an i64 without carries (at most 32 products of
// < 2^48 and a carry-in stay below 2^54), one carry per column — the
// "finely integrated product scanning" Montgomery multiplication (Koç,
// Acar, Kaliski 1996). 16 × 24 = 384 = 64 × 6, so its radix is gnark's
// R = 2^384 and, for inputs below q as gnark requires, the result is
// gnark's, word for word (for larger inputs the two differ: neither is
// then a field element).

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
// over the 6-word prime q (little-endian words, q < 2^384): z = x·y·2^-384
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
	x := a.alloc(fieldLimb)
	y := x
	if !square {
		y = a.alloc(fieldLimb)
	}
	m := a.alloc(fieldLimb)
	t := a.alloc(fieldLimb + 1)
	w := a.alloc(6) // words as loaded
	acc := a.alloc(1)[0]

	nArgs := uint32(3)
	if square {
		nArgs = 2
	}
	a.goArgs(nArgs)
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
	// t[fieldLimb-1] holds the last column's whole value; split it (for
	// BLS12-381, t < 2q < 2^382 leaves t[fieldLimb] zero, but the code does
	// not rely on it).
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
	return a.goReturn(nArgs)
}

// Locals of the Go-convention bodies: 0 the resume point (a leaf never
// unwinds, so it is unused); i32 1 the stack pointer, 2… the pointer
// arguments z, x, y; i64 locals from 5.
const (
	sp, zp, xp, yp = 1, 2, 3, 4
	firstI64       = 5
)

// goArgs reads the stack pointer (global 0) and the n pointer arguments,
// which Go passes as i64 words at SP+8, SP+16, …; a nil pointer traps,
// where Go would panic.
func (a *asm) goArgs(n uint32) {
	a.op(0x23, 0).set(sp)
	for i := range n {
		a.get(sp).mem(0x29, 8*(i+1)).op(0xa7).tee(zp+i).op(0x45).op(0x04, 0x40).op(0x00).op(0x0b)
	}
}

// goReturn stores the result (z, as passed) after the n arguments, pops
// the return address (SP += 8, the callee's part of Go's convention),
// returns 0, and prefixes the body with its locals.
func (a *asm) goReturn(n uint32) []byte {
	a.get(sp).get(sp).mem(0x29, 8).mem(0x37, 8*(n+1))
	a.get(sp).op(0x41, 8).op(0x6a).op(0x24, 0)
	a.op(0x41, 0).op(0x0b)
	locals := []byte{2, 4, tI32}
	locals = append(uleb(locals, uint64(a.next-firstI64)), tI64)
	return append(locals, a.b...)
}

// fieldOp is an addition, subtraction or doubling of 6-word elements.
type fieldOp int

const (
	fieldAdd fieldOp = iota
	fieldSub
	fieldDouble
)

// addSubBody returns a body in Go's wasm calling convention for gnark's
//
//	func (z *Element) Add(x, y *Element) *Element  z = x + y; if z ≥ q { z −= q }
//	func (z *Element) Sub(x, y *Element) *Element  z = x − y; if it borrowed { z += q }
//	func (z *Element) Double(x *Element) *Element  Add(x, x)
//
// with gnark's words and carries exactly (mod 2^384), whatever the inputs.
// Go's compiled bodies reload every pointer from the stack for each word.
func addSubBody(q [6]uint64, op fieldOp) []byte {
	var a asm
	nArgs := uint32(3)
	if op == fieldDouble {
		nArgs = 2
	}
	a.goArgs(nArgs)
	// i64 locals: x, y (x itself for Double: no locals of its own, which
	// octez's tick model would charge at every call), r (6 words each), c
	// (the carry or borrow), s (scratch).
	x := a.alloc(6)
	y := x
	if op != fieldDouble {
		y = a.alloc(6)
	}
	r := a.alloc(6)
	c, s := a.alloc(1)[0], a.alloc(1)[0]
	for k := range 6 {
		a.get(xp).mem(0x29, 8*uint32(k)).set(x[k])
	}
	if op != fieldDouble {
		for k := range 6 {
			a.get(yp).mem(0x29, 8*uint32(k)).set(y[k])
		}
	}
	// words: into = u + v or u − v, word by word, the carry or borrow
	// chained through c; v is locals, or the constants vq.
	words := func(sub bool, u, v []uint32, vq []uint64, into []uint32) {
		a.i64(0).set(c)
		for k := range 6 {
			a.get(u[k])
			if vq != nil {
				a.i64(int64(vq[k]))
			} else {
				a.get(v[k])
			}
			if sub {
				a.op(0x7d).tee(s)                     // s = u − v
				a.get(u[k]).op(0x56)                  // borrow1 = s >u u (i64.gt_u)
				a.get(s).get(c).op(0x7d).set(into[k]) // into = s − c
				a.get(s).get(c).op(0x54)              // borrow2 = s <u c
			} else {
				a.op(0x7c).tee(s)                     // s = u + v
				a.get(u[k]).op(0x54)                  // carry1 = s <u u (i64.lt_u)
				a.get(s).get(c).op(0x7c).tee(into[k]) // into = s + c
				a.get(s).op(0x54)                     // carry2 = into <u s
			}
			a.op(0x72).op(0xad).set(c) // c = i64.extend_i32_u(either)
		}
	}
	switch op {
	case fieldAdd, fieldDouble:
		words(false, x, y, nil, r) // the carry out of 2^384 is dropped, as gnark does
		// d = r − q into x (free now); keep r if that borrowed (r < q).
		words(true, r, nil, q[:], x)
		for k := range 6 {
			a.get(zp).get(x[k]).get(r[k]).get(c).op(0x50).op(0x1b).mem(0x37, 8*uint32(k)) // no borrow ? d : r
		}
	case fieldSub:
		words(true, x, y, nil, r)
		// add q back if that borrowed: r + (q & −borrow)
		a.i64(0).get(c).op(0x7d).set(s)
		for k := range 6 {
			a.get(s).i64(int64(q[k])).op(0x83).set(y[k])
		}
		words(false, r, y, nil, r)
		for k := range 6 {
			a.get(zp).get(r[k]).mem(0x37, 8*uint32(k))
		}
	}
	return a.goReturn(nArgs)
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

// asm appends wasm instructions.
type asm struct {
	b    []byte
	next uint32 // the next i64 local alloc gives, after firstI64
}

// alloc returns n new i64 locals.
func (a *asm) alloc(n int) []uint32 {
	a.next = max(a.next, firstI64)
	out := make([]uint32, n)
	for i := range out {
		out[i] = a.next
		a.next++
	}
	return out
}

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
