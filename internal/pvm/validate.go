package pvm

import (
	"errors"
	"fmt"

	"github.com/tezos-dsn/dsn/internal/wasmbin"
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

func valtype(r *wasmbin.Reader, what string) byte {
	t := r.Byte()
	switch t {
	case tI32, tI64:
	case tF32, tF64:
		r.Fail("%s: floating-point type", what)
	default:
		r.Fail("%s: value type 0x%02x beyond MVP", what, t)
	}
	return t
}

type funcType struct{ params, results []byte }

// Validate checks a module against what the Tezos WASM PVM accepts: MVP plus
// sign extension, no floating point anywhere, imports only from
// smart_rollup_core with the exact signatures, one memory exported, and a
// kernel_run export of type [] -> []. It is a pure function of the bytes.
func Validate(wasm []byte) error {
	secs, err := wasmbin.Sections(wasm, ErrInvalidModule)
	if err != nil {
		return err
	}
	var types []funcType
	var funcs []uint32 // type index per function (imports first)
	imported := 0
	memories := 0
	var exportsRun, exportsMem bool
	lastID := byte(0)
	for _, sec := range secs {
		id := sec.ID
		if id != 0 {
			if id <= lastID {
				return fmt.Errorf("%w: section %d out of order", ErrInvalidModule, id)
			}
			lastID = id
		}
		s := wasmbin.NewReader(sec.Body, ErrInvalidModule)
		switch id {
		case 0: // custom: ignored by the PVM
		case 1: // types
			for n := s.U32(); n > 0 && s.Err == nil; n-- {
				if f := s.Byte(); f != 0x60 {
					s.Fail("type form 0x%02x", f)
				}
				var ft funcType
				for k := s.U32(); k > 0 && s.Err == nil; k-- {
					ft.params = append(ft.params, valtype(s, "parameter"))
				}
				nr := s.U32()
				if nr > 1 {
					s.Fail("multi-value result")
				}
				for k := nr; k > 0 && s.Err == nil; k-- {
					ft.results = append(ft.results, valtype(s, "result"))
				}
				types = append(types, ft)
			}
		case 2: // imports
			for n := s.U32(); n > 0 && s.Err == nil; n-- {
				mod, name := s.Name(), s.Name()
				kind := s.Byte()
				if kind != 0 {
					s.Fail("import %s.%s: only functions may be imported", mod, name)
					break
				}
				ti := s.U32()
				if mod != HostModule {
					s.Fail("import %s.%s: only %s may be imported", mod, name, HostModule)
					break
				}
				sig, ok := HostFunctions[name]
				if !ok {
					s.Fail("import %s.%s: unknown host function", mod, name)
					break
				}
				if int(ti) >= len(types) || !sameSig(types[ti], sig) {
					s.Fail("import %s.%s: wrong signature", mod, name)
					break
				}
				funcs = append(funcs, ti)
				imported++
			}
		case 3: // functions
			for n := s.U32(); n > 0 && s.Err == nil; n-- {
				ti := s.U32()
				if int(ti) >= len(types) {
					s.Fail("function type %d out of range", ti)
				}
				funcs = append(funcs, ti)
			}
		case 4: // tables
			for n := s.U32(); n > 0 && s.Err == nil; n-- {
				if t := s.Byte(); t != 0x70 {
					s.Fail("table of type 0x%02x (reference types)", t)
				}
				limits(s)
			}
		case 5: // memories
			for n := s.U32(); n > 0 && s.Err == nil; n-- {
				memories++
				limits(s)
			}
		case 6: // globals
			for n := s.U32(); n > 0 && s.Err == nil; n-- {
				valtype(s, "global")
				if m := s.Byte(); m > 1 {
					s.Fail("global mutability %d", m)
				}
				constExpr(s)
			}
		case 7: // exports
			for n := s.U32(); n > 0 && s.Err == nil; n-- {
				name := s.Name()
				kind := s.Byte()
				idx := s.U32()
				switch {
				case kind == 0 && name == EntryPoint:
					if int(idx) >= len(funcs) {
						s.Fail("%s: function %d out of range", EntryPoint, idx)
						break
					}
					if ft := types[funcs[idx]]; len(ft.params) != 0 || len(ft.results) != 0 {
						s.Fail("%s must have type [] -> []", EntryPoint)
					}
					exportsRun = true
				case kind == 2 && idx == 0:
					exportsMem = true
				}
			}
		case 8: // start
			s.U32()
		case 9: // elements
			for n := s.U32(); n > 0 && s.Err == nil; n-- {
				if flags := s.U32(); flags != 0 {
					s.Fail("element segment flags %d (bulk memory / reference types)", flags)
					break
				}
				constExpr(s)
				for k := s.U32(); k > 0 && s.Err == nil; k-- {
					s.U32()
				}
			}
		case 10: // code
			n := s.U32()
			if int(n) != len(funcs)-imported {
				s.Fail("%d bodies for %d functions", n, len(funcs)-imported)
			}
			for ; n > 0 && s.Err == nil; n-- {
				fb := s.Sub(s.Bytes(uint64(s.U32())))
				for k := fb.U32(); k > 0 && fb.Err == nil; k-- {
					fb.U32()
					valtype(fb, "local")
				}
				code(fb, types)
				if fb.Err != nil {
					s.Err = fb.Err
				}
			}
		case 11: // data
			for n := s.U32(); n > 0 && s.Err == nil; n-- {
				if flags := s.U32(); flags != 0 {
					s.Fail("data segment flags %d (bulk memory)", flags)
					break
				}
				constExpr(s)
				s.Bytes(uint64(s.U32()))
			}
		case 12:
			s.Fail("data count section (bulk memory)")
		default:
			s.Fail("unknown section %d", id)
		}
		if s.Err == nil && s.More() && id != 0 {
			s.Fail("section %d: trailing bytes", id)
		}
		if s.Err != nil {
			return fmt.Errorf("section %d: %w", id, s.Err)
		}
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

func limits(s *wasmbin.Reader) {
	switch flag := s.Byte(); flag {
	case 0:
		s.U32()
	case 1:
		s.U32()
		s.U32()
	default:
		s.Fail("limits flag %d (shared memory / memory64)", flag)
	}
}

// constExpr reads an MVP constant expression ending in 0x0b.
func constExpr(s *wasmbin.Reader) {
	switch op := s.Byte(); op {
	case 0x41:
		s.SLEB(32)
	case 0x42:
		s.SLEB(64)
	case 0x23:
		s.U32()
	case 0x43, 0x44:
		s.Fail("floating-point constant")
		return
	default:
		s.Fail("constant expression opcode 0x%02x", op)
		return
	}
	if end := s.Byte(); end != 0x0b {
		s.Fail("constant expression not ended")
	}
}

// code walks one function body's instructions and refuses anything beyond
// MVP + sign extension and anything with floating point.
func code(r *wasmbin.Reader, types []funcType) {
	depth := 1
	for depth > 0 && r.Err == nil {
		in := r.Instr()
		if r.Err != nil {
			break
		}
		switch op := in.Op; {
		case op == 0x02 || op == 0x03 || op == 0x04: // block, loop, if
			switch bt := in.BlockType; {
			case bt == -64 || bt == -1 || bt == -2: // empty, i32, i64
			case bt == -3 || bt == -4:
				r.Fail("floating-point block type")
			case bt >= 0:
				r.Fail("block type %d (multi-value)", bt)
			default:
				r.Fail("block type %d beyond MVP", bt)
			}
			depth++
		case op == 0x0b:
			depth--
		case op == 0x11:
			if int(in.Index) >= len(types) {
				r.Fail("call_indirect type %d out of range", in.Index)
			}
			if in.Table != 0 {
				r.Fail("call_indirect table %d (reference types)", in.Table)
			}
		case op == 0x3f || op == 0x40:
			if in.Index != 0 {
				r.Fail("memory index %d (multi-memory)", in.Index)
			}
		case op == 0x2a || op == 0x2b || op == 0x38 || op == 0x39:
			r.Fail("floating-point load/store 0x%02x", op)
		case op == 0x43 || op == 0x44:
			r.Fail("floating-point constant")
		case op >= 0x5b && op <= 0x66:
			r.Fail("floating-point comparison 0x%02x", op)
		case op >= 0x8b && op <= 0xa6:
			r.Fail("floating-point arithmetic 0x%02x", op)
		case op >= 0xa8 && op <= 0xab, op >= 0xae && op <= 0xbf:
			r.Fail("floating-point conversion 0x%02x", op)
		case op == 0xfc:
			r.Fail("0xFC prefix (bulk memory / saturating conversions)")
		case op <= 0x01 || op == 0x05 || op >= 0x0c && op <= 0x10 || op == 0x1a || op == 0x1b,
			op >= 0x20 && op <= 0x24, op >= 0x28 && op <= 0x3e, op == 0x41 || op == 0x42,
			op >= 0x45 && op <= 0x5a, op >= 0x67 && op <= 0x8a, op == 0xa7 || op == 0xac || op == 0xad,
			op >= 0xc0 && op <= 0xc4:
			// MVP integer instructions and sign extension
		default:
			r.Fail("opcode 0x%02x beyond MVP + sign extension", op)
		}
	}
	if r.Err == nil && r.More() {
		r.Fail("bytes after the function's end")
	}
}
