// Package wasmbin decodes the WebAssembly binary format: LEB128 integers,
// names, sections and instructions with their immediates. The PVM's
// validator (internal/pvm) and the kernel linker (internal/wasmlink) both
// read modules through it, so they agree on what every byte means.
package wasmbin

import "fmt"

// Reader reads a WebAssembly binary encoding. The first error sticks:
// later reads return zero values.
type Reader struct {
	B   []byte
	Off int
	Err error

	sentinel error
}

// NewReader returns a reader whose errors wrap sentinel.
func NewReader(b []byte, sentinel error) *Reader { return &Reader{B: b, sentinel: sentinel} }

// Sub returns a reader over b that reports errors like r.
func (r *Reader) Sub(b []byte) *Reader { return &Reader{B: b, sentinel: r.sentinel} }

// Fail records an error at the current offset (the first one wins).
func (r *Reader) Fail(format string, args ...any) {
	if r.Err == nil {
		r.Err = fmt.Errorf("%w: at byte %d: %s", r.sentinel, r.Off, fmt.Sprintf(format, args...))
	}
}

// More reports whether unread bytes remain and no error occurred.
func (r *Reader) More() bool { return r.Err == nil && r.Off < len(r.B) }

// Byte reads one byte.
func (r *Reader) Byte() byte {
	if r.Err != nil || r.Off >= len(r.B) {
		r.Fail("unexpected end")
		return 0
	}
	r.Off++
	return r.B[r.Off-1]
}

// Bytes reads n bytes (a view into the input).
func (r *Reader) Bytes(n uint64) []byte {
	if r.Err != nil || n > uint64(len(r.B)-r.Off) {
		r.Fail("unexpected end")
		return nil
	}
	r.Off += int(n)
	return r.B[r.Off-int(n) : r.Off]
}

// ULEB reads an unsigned LEB128 of at most bits bits. As the spec (and
// wazero) require, its last possible byte carries no bits beyond them.
func (r *Reader) ULEB(bits uint) uint64 {
	var v uint64
	for shift := uint(0); ; shift += 7 {
		b := r.Byte()
		if r.Err != nil {
			return 0
		}
		if shift+7 > bits && (b&0x7f)>>(bits-shift) != 0 {
			r.Fail("LEB128 out of range for %d bits", bits)
			return 0
		}
		v |= uint64(b&0x7f) << shift
		if b&0x80 == 0 {
			return v
		}
		if shift+7 >= bits {
			r.Fail("LEB128 too long")
			return 0
		}
	}
}

// U32 reads an unsigned LEB128 u32.
func (r *Reader) U32() uint32 { return uint32(r.ULEB(32)) }

// SLEB reads a signed LEB128 of at most bits bits.
func (r *Reader) SLEB(bits uint) int64 {
	var v int64
	var shift uint
	var b byte
	for {
		b = r.Byte()
		if r.Err != nil {
			return 0
		}
		if shift+7 > bits {
			// The last possible byte: the bits beyond the value's must
			// repeat its sign bit, as the spec (and wazero) require.
			m := byte(0x7f) &^ (1<<(bits-shift-1) - 1)
			if b&m != 0 && b&m != m {
				r.Fail("LEB128 out of range for %d bits", bits)
				return 0
			}
		}
		v |= int64(b&0x7f) << shift
		shift += 7
		if b&0x80 == 0 {
			break
		}
		if shift >= bits {
			r.Fail("LEB128 too long")
			return 0
		}
	}
	if shift < 64 && b&0x40 != 0 {
		v |= -1 << shift
	}
	return v
}

// AppendULEB appends v as an unsigned LEB128, in as few bytes as it takes.
func AppendULEB(out []byte, v uint64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(out, c)
		}
		out = append(out, c|0x80)
	}
}

// AppendSLEB appends v as a signed LEB128, in as few bytes as it takes
// (i32.const and i64.const take the two's complement bit pattern, so an
// unsigned value passes through int64 unchanged).
func AppendSLEB(out []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 && c&0x40 == 0 || v == -1 && c&0x40 != 0 {
			return append(out, c)
		}
		out = append(out, c|0x80)
	}
}

// Name reads a length-prefixed UTF-8 name.
func (r *Reader) Name() string { return string(r.Bytes(r.ULEB(32))) }

// Section is one section of a module.
type Section struct {
	ID   byte
	Body []byte
}

// Sections splits a module into its sections after checking the header.
func Sections(wasm []byte, sentinel error) ([]Section, error) {
	r := NewReader(wasm, sentinel)
	if string(r.Bytes(4)) != "\x00asm" || r.Err != nil {
		return nil, fmt.Errorf("%w: not a wasm module", sentinel)
	}
	if v := r.Bytes(4); r.Err == nil && string(v) != "\x01\x00\x00\x00" {
		return nil, fmt.Errorf("%w: version %x", sentinel, v)
	}
	var out []Section
	for r.More() {
		id := r.Byte()
		out = append(out, Section{ID: id, Body: r.Bytes(r.ULEB(32))})
	}
	return out, r.Err
}

// Instr is one decoded instruction.
type Instr struct {
	Op        byte
	Sub       uint32 // for the 0xFC prefix: the sub-opcode
	Index     uint32 // call, ref.func: function; call_indirect: type; memory.size/grow, 0xFC 10/11: memory; br/br_if: label; locals and globals
	Table     uint32 // call_indirect: table
	BlockType int64  // block, loop, if: -64 empty, -1..-17 a value type, >= 0 a type index
	Raw       []byte // the whole encoding, opcode and immediates
}

// Instr decodes the next instruction: the WebAssembly 2.0 opcodes except
// SIMD (0xFD), which is reported as an error.
func (r *Reader) Instr() Instr {
	start := r.Off
	in := Instr{Op: r.Byte()}
	switch op := in.Op; {
	case op == 0x02 || op == 0x03 || op == 0x04:
		in.BlockType = r.SLEB(33)
	case op == 0x0c || op == 0x0d || op == 0x10 || op == 0xd2 || op >= 0x20 && op <= 0x26 || op == 0x3f || op == 0x40:
		in.Index = r.U32()
	case op == 0x0e:
		for n := r.U32(); n > 0 && r.Err == nil; n-- {
			r.U32()
		}
		r.U32()
	case op == 0x11 || op == 0x13:
		in.Index = r.U32()
		in.Table = r.U32()
	case op == 0x12:
		in.Index = r.U32()
	case op == 0x1c:
		for n := r.U32(); n > 0 && r.Err == nil; n-- {
			r.Byte()
		}
	case op >= 0x28 && op <= 0x3e:
		r.U32() // align
		r.U32() // offset
	case op == 0x41:
		r.SLEB(32)
	case op == 0x42:
		r.SLEB(64)
	case op == 0x43:
		r.Bytes(4)
	case op == 0x44:
		r.Bytes(8)
	case op == 0xd0:
		r.Byte()
	case op == 0xfc:
		in.Sub = r.U32()
		switch in.Sub {
		case 0, 1, 2, 3, 4, 5, 6, 7:
		case 8: // memory.init data mem
			in.Index = r.U32()
			r.Byte()
		case 9, 13, 15, 16, 17: // data.drop, elem.drop, table.grow/size/fill
			in.Index = r.U32()
		case 10: // memory.copy mem mem
			in.Index = r.U32()
			r.U32()
		case 11: // memory.fill mem
			in.Index = r.U32()
		case 12, 14: // table.init, table.copy
			r.U32()
			r.U32()
		default:
			r.Fail("unknown 0xFC sub-opcode %d", in.Sub)
		}
	case op == 0xfd:
		r.Fail("SIMD instructions")
	case op <= 0x01 || op >= 0x05 && op <= 0x0b || op == 0x0f || op == 0x1a || op == 0x1b || op >= 0x45 && op <= 0xc4 || op == 0xd1:
		// no immediates
	default:
		r.Fail("unknown opcode 0x%02x", op)
	}
	in.Raw = r.B[start:r.Off]
	return in
}
