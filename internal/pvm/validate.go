package pvm

import (
	"errors"
	"fmt"
)

// ErrInvalidModule is the root of every validation error.
var ErrInvalidModule = errors.New("pvm: module rejected")

// Value types.
const (
	tI32 = 0x7f
	tI64 = 0x7e
	tF32 = 0x7d
	tF64 = 0x7c
)

// HostSignature is a host function's wasm type: params -> results.
type HostSignature struct {
	Params, Results []byte
}

var (
	i32 = byte(tI32)
	i64 = byte(tI64)
)

// HostFunctions lists every smart_rollup_core function with its exact wasm
// signature (reference tezos-smart-rollups.md §1.2).
var HostFunctions = map[string]HostSignature{
	"read_input":                {[]byte{i32, i32, i32}, []byte{i32}},
	"write_output":              {[]byte{i32, i32}, []byte{i32}},
	"write_debug":               {[]byte{i32, i32}, nil},
	"store_has":                 {[]byte{i32, i32}, []byte{i32}},
	"store_exists":              {[]byte{i32, i32}, []byte{i32}},
	"store_delete":              {[]byte{i32, i32}, []byte{i32}},
	"store_delete_value":        {[]byte{i32, i32}, []byte{i32}},
	"store_create":              {[]byte{i32, i32, i32}, []byte{i32}},
	"store_copy":                {[]byte{i32, i32, i32, i32}, []byte{i32}},
	"store_move":                {[]byte{i32, i32, i32, i32}, []byte{i32}},
	"store_read":                {[]byte{i32, i32, i32, i32, i32}, []byte{i32}},
	"store_write":               {[]byte{i32, i32, i32, i32, i32}, []byte{i32}},
	"store_value_size":          {[]byte{i32, i32}, []byte{i32}},
	"store_list_size":           {[]byte{i32, i32}, []byte{i64}},
	"store_get_nth_key":         {[]byte{i32, i32, i64, i32, i32}, []byte{i32}},
	"__internal_store_get_hash": {[]byte{i32, i32, i32, i32}, []byte{i32}},
	"reveal_preimage":           {[]byte{i32, i32, i32, i32}, []byte{i32}},
	"reveal_metadata":           {[]byte{i32, i32}, []byte{i32}},
	"reveal":                    {[]byte{i32, i32, i32, i32}, []byte{i32}},
}

// HostModule is the only module a kernel may import from.
const HostModule = "smart_rollup_core"

// EntryPoint is the function the PVM calls.
const EntryPoint = "kernel_run"

type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: at byte %d: %s", ErrInvalidModule, r.off, fmt.Sprintf(format, args...))
	}
}

func (r *reader) byte() byte {
	if r.err != nil || r.off >= len(r.b) {
		r.fail("unexpected end")
		return 0
	}
	v := r.b[r.off]
	r.off++
	return v
}

func (r *reader) bytes(n uint64) []byte {
	if r.err != nil || n > uint64(len(r.b)-r.off) {
		r.fail("unexpected end")
		return nil
	}
	v := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return v
}

// uleb reads an unsigned LEB128 of at most bits bits.
func (r *reader) uleb(bits uint) uint64 {
	var v uint64
	var shift uint
	for {
		b := r.byte()
		if r.err != nil {
			return 0
		}
		v |= uint64(b&0x7f) << shift
		shift += 7
		if b&0x80 == 0 {
			break
		}
		if shift >= bits+7 {
			r.fail("LEB128 too long")
			return 0
		}
	}
	return v
}

// sleb skips a signed LEB128 of at most bits bits and returns it.
func (r *reader) sleb(bits uint) int64 {
	var v int64
	var shift uint
	var b byte
	for {
		b = r.byte()
		if r.err != nil {
			return 0
		}
		v |= int64(b&0x7f) << shift
		shift += 7
		if b&0x80 == 0 {
			break
		}
		if shift >= bits+7 {
			r.fail("LEB128 too long")
			return 0
		}
	}
	if shift < 64 && b&0x40 != 0 {
		v |= -1 << shift
	}
	return v
}

func (r *reader) name() string { return string(r.bytes(r.uleb(32))) }

func (r *reader) valtype(what string) byte {
	t := r.byte()
	switch t {
	case tI32, tI64:
	case tF32, tF64:
		r.fail("%s: floating-point type", what)
	default:
		r.fail("%s: value type 0x%02x beyond MVP", what, t)
	}
	return t
}

type funcType struct{ params, results []byte }

// Validate checks a module against what the Tezos WASM PVM accepts: MVP plus
// sign extension, no floating point anywhere, imports only from
// smart_rollup_core with the exact signatures, one memory exported, and a
// kernel_run export of type [] -> []. It is a pure function of the bytes.
func Validate(wasm []byte) error {
	r := &reader{b: wasm}
	if string(r.bytes(4)) != "\x00asm" || r.err != nil {
		return fmt.Errorf("%w: not a wasm module", ErrInvalidModule)
	}
	if v := r.bytes(4); r.err == nil && string(v) != "\x01\x00\x00\x00" {
		return fmt.Errorf("%w: version %x", ErrInvalidModule, v)
	}
	var types []funcType
	var funcs []uint32 // type index per function (imports first)
	imported := 0
	memories := 0
	var exportsRun, exportsMem bool
	lastID := byte(0)
	for r.err == nil && r.off < len(r.b) {
		id := r.byte()
		size := r.uleb(32)
		body := r.bytes(size)
		if r.err != nil {
			break
		}
		if id != 0 {
			if id <= lastID {
				return fmt.Errorf("%w: section %d out of order", ErrInvalidModule, id)
			}
			lastID = id
		}
		s := &reader{b: body}
		switch id {
		case 0: // custom: ignored by the PVM
		case 1: // types
			for n := s.uleb(32); n > 0 && s.err == nil; n-- {
				if f := s.byte(); f != 0x60 {
					s.fail("type form 0x%02x", f)
				}
				var ft funcType
				for k := s.uleb(32); k > 0 && s.err == nil; k-- {
					ft.params = append(ft.params, s.valtype("parameter"))
				}
				nr := s.uleb(32)
				if nr > 1 {
					s.fail("multi-value result")
				}
				for k := nr; k > 0 && s.err == nil; k-- {
					ft.results = append(ft.results, s.valtype("result"))
				}
				types = append(types, ft)
			}
		case 2: // imports
			for n := s.uleb(32); n > 0 && s.err == nil; n-- {
				mod, name := s.name(), s.name()
				kind := s.byte()
				if kind != 0 {
					s.fail("import %s.%s: only functions may be imported", mod, name)
					break
				}
				ti := s.uleb(32)
				if mod != HostModule {
					s.fail("import %s.%s: only %s may be imported", mod, name, HostModule)
					break
				}
				sig, ok := HostFunctions[name]
				if !ok {
					s.fail("import %s.%s: unknown host function", mod, name)
					break
				}
				if ti >= uint64(len(types)) || !sameSig(types[ti], sig) {
					s.fail("import %s.%s: wrong signature", mod, name)
					break
				}
				funcs = append(funcs, uint32(ti))
				imported++
			}
		case 3: // functions
			for n := s.uleb(32); n > 0 && s.err == nil; n-- {
				ti := s.uleb(32)
				if ti >= uint64(len(types)) {
					s.fail("function type %d out of range", ti)
				}
				funcs = append(funcs, uint32(ti))
			}
		case 4: // tables
			for n := s.uleb(32); n > 0 && s.err == nil; n-- {
				if t := s.byte(); t != 0x70 {
					s.fail("table of type 0x%02x (reference types)", t)
				}
				limits(s)
			}
		case 5: // memories
			for n := s.uleb(32); n > 0 && s.err == nil; n-- {
				memories++
				limits(s)
			}
		case 6: // globals
			for n := s.uleb(32); n > 0 && s.err == nil; n-- {
				s.valtype("global")
				if m := s.byte(); m > 1 {
					s.fail("global mutability %d", m)
				}
				constExpr(s)
			}
		case 7: // exports
			for n := s.uleb(32); n > 0 && s.err == nil; n-- {
				name := s.name()
				kind := s.byte()
				idx := s.uleb(32)
				switch {
				case kind == 0 && name == EntryPoint:
					if idx >= uint64(len(funcs)) {
						s.fail("%s: function %d out of range", EntryPoint, idx)
						break
					}
					if ft := types[funcs[idx]]; len(ft.params) != 0 || len(ft.results) != 0 {
						s.fail("%s must have type [] -> []", EntryPoint)
					}
					exportsRun = true
				case kind == 2 && idx == 0:
					exportsMem = true
				}
			}
		case 8: // start
			s.uleb(32)
		case 9: // elements
			for n := s.uleb(32); n > 0 && s.err == nil; n-- {
				if flags := s.uleb(32); flags != 0 {
					s.fail("element segment flags %d (bulk memory / reference types)", flags)
					break
				}
				constExpr(s)
				for k := s.uleb(32); k > 0 && s.err == nil; k-- {
					s.uleb(32)
				}
			}
		case 10: // code
			n := s.uleb(32)
			if int(n) != len(funcs)-imported {
				s.fail("%d bodies for %d functions", n, len(funcs)-imported)
			}
			for ; n > 0 && s.err == nil; n-- {
				fb := &reader{b: s.bytes(s.uleb(32))}
				for k := fb.uleb(32); k > 0 && fb.err == nil; k-- {
					fb.uleb(32)
					fb.valtype("local")
				}
				code(fb, types)
				if fb.err != nil {
					s.err = fb.err
				}
			}
		case 11: // data
			for n := s.uleb(32); n > 0 && s.err == nil; n-- {
				if flags := s.uleb(32); flags != 0 {
					s.fail("data segment flags %d (bulk memory)", flags)
					break
				}
				constExpr(s)
				s.bytes(s.uleb(32))
			}
		case 12:
			s.fail("data count section (bulk memory)")
		default:
			s.fail("unknown section %d", id)
		}
		if s.err == nil && s.off != len(s.b) && id != 0 {
			s.fail("section %d: trailing bytes", id)
		}
		if s.err != nil {
			return fmt.Errorf("section %d: %w", id, s.err)
		}
	}
	if r.err != nil {
		return r.err
	}
	switch {
	case memories != 1:
		return fmt.Errorf("%w: %d memories, want exactly 1", ErrInvalidModule, memories)
	case !exportsMem:
		return fmt.Errorf("%w: memory 0 is not exported", ErrInvalidModule)
	case !exportsRun:
		return fmt.Errorf("%w: no %s export", ErrInvalidModule, EntryPoint)
	}
	return nil
}

func sameSig(ft funcType, sig HostSignature) bool {
	return string(ft.params) == string(sig.Params) && string(ft.results) == string(sig.Results)
}

func limits(s *reader) {
	switch flag := s.byte(); flag {
	case 0:
		s.uleb(32)
	case 1:
		s.uleb(32)
		s.uleb(32)
	default:
		s.fail("limits flag %d (shared memory / memory64)", flag)
	}
}

// constExpr reads an MVP constant expression ending in 0x0b.
func constExpr(s *reader) {
	switch op := s.byte(); op {
	case 0x41:
		s.sleb(32)
	case 0x42:
		s.sleb(64)
	case 0x23:
		s.uleb(32)
	case 0x43, 0x44:
		s.fail("floating-point constant")
		return
	default:
		s.fail("constant expression opcode 0x%02x", op)
		return
	}
	if end := s.byte(); end != 0x0b {
		s.fail("constant expression not ended")
	}
}

// code walks one function body's instructions.
func code(r *reader, types []funcType) {
	depth := 1
	for depth > 0 && r.err == nil {
		op := r.byte()
		switch {
		case op == 0x02 || op == 0x03 || op == 0x04: // block, loop, if
			bt := r.byte()
			switch bt {
			case 0x40, tI32, tI64:
			case tF32, tF64:
				r.fail("floating-point block type")
			default:
				r.fail("block type 0x%02x (multi-value)", bt)
			}
			depth++
		case op == 0x05: // else
		case op == 0x0b: // end
			depth--
		case op == 0x00 || op == 0x01 || op == 0x0f || op == 0x1a || op == 0x1b: // unreachable nop return drop select
		case op == 0x0c || op == 0x0d: // br br_if
			r.uleb(32)
		case op == 0x0e: // br_table
			for n := r.uleb(32); n > 0 && r.err == nil; n-- {
				r.uleb(32)
			}
			r.uleb(32)
		case op == 0x10: // call
			r.uleb(32)
		case op == 0x11: // call_indirect
			if ti := r.uleb(32); ti >= uint64(len(types)) {
				r.fail("call_indirect type %d out of range", ti)
			}
			if t := r.byte(); t != 0 {
				r.fail("call_indirect table %d (reference types)", t)
			}
		case op >= 0x20 && op <= 0x24: // local.get/set/tee, global.get/set
			r.uleb(32)
		case op == 0x28 || op == 0x29 || (op >= 0x2c && op <= 0x35): // integer loads
			r.uleb(32)
			r.uleb(32)
		case op == 0x36 || op == 0x37 || (op >= 0x3a && op <= 0x3e): // integer stores
			r.uleb(32)
			r.uleb(32)
		case op == 0x2a || op == 0x2b || op == 0x38 || op == 0x39:
			r.fail("floating-point load/store 0x%02x", op)
		case op == 0x3f || op == 0x40: // memory.size/grow
			if b := r.byte(); b != 0 {
				r.fail("memory index %d (multi-memory)", b)
			}
		case op == 0x41:
			r.sleb(32)
		case op == 0x42:
			r.sleb(64)
		case op == 0x43 || op == 0x44:
			r.fail("floating-point constant")
		case op >= 0x45 && op <= 0x5a: // integer comparisons
		case op >= 0x5b && op <= 0x66:
			r.fail("floating-point comparison 0x%02x", op)
		case op >= 0x67 && op <= 0x8a: // integer arithmetic
		case op >= 0x8b && op <= 0xa6:
			r.fail("floating-point arithmetic 0x%02x", op)
		case op == 0xa7: // i32.wrap_i64
		case op >= 0xa8 && op <= 0xab, op >= 0xae && op <= 0xbf:
			r.fail("floating-point conversion 0x%02x", op)
		case op == 0xac || op == 0xad: // i64.extend_i32_s/u
		case op >= 0xc0 && op <= 0xc4: // sign extension
		case op == 0xfc:
			r.fail("0xFC prefix (bulk memory / saturating conversions)")
		case op == 0xfd:
			r.fail("SIMD")
		default:
			r.fail("opcode 0x%02x beyond MVP + sign extension", op)
		}
	}
	if r.err == nil && r.off != len(r.b) {
		r.fail("bytes after the function's end")
	}
}
