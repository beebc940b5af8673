package wasmlink

import (
	"fmt"

	"github.com/tezos-dsn/dsn/internal/wasmbin"
)

// rewriteBody copies a function body, remapping call and ref.func indices
// and lowering memory.copy / memory.fill to calls of the helpers.
func rewriteBody(body []byte, mapFunc func(uint64) (uint32, error), memmove, memfill uint32) ([]byte, error) {
	r := wasmbin.NewReader(body, ErrUnsupported)
	for n := r.U32(); n > 0 && r.Err == nil; n-- { // locals
		r.U32()
		r.Byte()
	}
	out := append([]byte(nil), body[:r.Off]...)
	for r.More() {
		in := r.Instr()
		if r.Err != nil {
			break
		}
		switch {
		case in.Op == 0x10 || in.Op == 0xd2:
			ni, err := mapFunc(uint64(in.Index))
			if err != nil {
				return nil, err
			}
			out = uleb(append(out, in.Op), uint64(ni))
		case in.Op == 0x12 || in.Op == 0x13:
			return nil, fmt.Errorf("%w: tail calls", ErrUnsupported)
		case in.Op == 0xfc && in.Sub == 10: // memory.copy dst src n
			out = uleb(append(out, 0x10), uint64(memmove))
		case in.Op == 0xfc && in.Sub == 11: // memory.fill dst val n
			out = uleb(append(out, 0x10), uint64(memfill))
		case in.Op == 0xfc && in.Sub > 7:
			return nil, fmt.Errorf("%w: 0xFC %d", ErrUnsupported, in.Sub)
		default: // saturating truncations stay, for the validator to refuse
			out = append(out, in.Raw...)
		}
	}
	return out, r.Err
}

// Assembly helpers for the bodies the linker writes.
func lget(i byte) []byte   { return []byte{0x20, i} }
func lset(i byte) []byte   { return []byte{0x21, i} }
func i32c(v byte) []byte   { return []byte{0x41, v} } // v < 64
func call(f uint32) []byte { return uleb([]byte{0x10}, uint64(f)) }

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

var (
	i32Load   = []byte{0x28, 2, 0}
	i32Store  = []byte{0x36, 2, 0}
	i64Load   = []byte{0x29, 3, 0}
	i64Store  = []byte{0x37, 3, 0}
	i32Load8U = []byte{0x2d, 0, 0}
	i32Store8 = []byte{0x3a, 0, 0}
	i32Add    = []byte{0x6a}
	i32Sub    = []byte{0x6b}
	i32Mul    = []byte{0x6c}
	i32LeU    = []byte{0x4d}
	i32GeU    = []byte{0x4f}
	i32Eqz    = []byte{0x45}
	end       = []byte{0x0b}
)

// loop emits: block loop <cond-to-exit> br_if 1 <body> br 0 end end.
func loop(exitWhen, body []byte) []byte {
	return cat([]byte{0x02, 0x40, 0x03, 0x40}, exitWhen, []byte{0x0d, 1}, body, []byte{0x0c, 0, 0x0b, 0x0b})
}

// zeroResult returns the instructions that produce a zero of each result.
func zeroResult(results []byte) []byte {
	var out []byte
	for _, t := range results {
		if t == tI64 {
			out = append(out, 0x42, 0)
		} else {
			out = append(out, 0x41, 0)
		}
	}
	return out
}

// withLocals prefixes a body with n extra i32 locals.
func withLocals(n byte, code []byte) []byte {
	if n == 0 {
		return append([]byte{0}, code...)
	}
	return append([]byte{1, n, tI32}, code...)
}

// wasiBody is the replacement for one WASI import.
func wasiBody(name string, ft funcType, writeDebug, memfill, clock uint32) []byte {
	switch name {
	case "fd_write": // (fd, iovs, iovs_len, nwritten) -> errno; locals 4=i 5=total 6=p 7=len
		body := loop(cat(lget(4), lget(2), i32GeU), cat(
			lget(1), lget(4), i32c(8), i32Mul, i32Add, lset(6),
			lget(6), []byte{0x28, 2, 4}, lset(7),
			lget(6), i32Load, lget(7), call(writeDebug),
			lget(5), lget(7), i32Add, lset(5),
			lget(4), i32c(1), i32Add, lset(4)))
		return withLocals(4, cat(body, lget(3), lget(5), i32Store, i32c(0), end))
	case "random_get": // (buf, len): deterministic bytes
		return withLocals(0, cat(lget(0), i32c(42), lget(1), call(memfill), i32c(0), end))
	case "clock_time_get": // (id, precision i64, out): +1 ms per call, never zero
		return withLocals(0, cat([]byte{0x23}, uleb(nil, uint64(clock)), []byte{0x42, 0xc0, 0x84, 0x3d}, []byte{0x7c},
			[]byte{0x24}, uleb(nil, uint64(clock)), lget(2), []byte{0x23}, uleb(nil, uint64(clock)), i64Store, i32c(0), end))
	case "fd_prestat_get", "fd_prestat_dir_name":
		return withLocals(0, cat(i32c(8), end)) // EBADF: no preopened directories
	case "args_sizes_get", "environ_sizes_get":
		return withLocals(0, cat(lget(0), i32c(0), i32Store, lget(1), i32c(0), i32Store, i32c(0), end))
	case "fd_fdstat_get": // (fd, buf): a zeroed fdstat
		return withLocals(0, cat(lget(1), i32c(0), i32c(24), call(memfill), i32c(0), end))
	case "poll_oneoff": // (in, out, nsubs, nevents): every subscription fires at once; locals 4=i 5=ev 6=sub
		body := loop(cat(lget(4), lget(2), i32GeU), cat(
			lget(1), lget(4), i32c(32), i32Mul, i32Add, lset(5),
			lget(0), lget(4), i32c(48), i32Mul, i32Add, lset(6),
			lget(5), lget(6), i64Load, i64Store, // userdata
			lget(5), i32c(0), []byte{0x3b, 1, 8}, // error = 0
			lget(5), lget(6), []byte{0x2d, 0, 8}, []byte{0x3a, 0, 10}, // type = subscription tag
			lget(5), []byte{0x42, 0}, []byte{0x37, 3, 16}, // fd_readwrite.nbytes = 0
			lget(5), i32c(0), []byte{0x3b, 1, 24}, // flags = 0
			lget(4), i32c(1), i32Add, lset(4)))
		return withLocals(3, cat(body, lget(3), lget(2), i32Store, i32c(0), end))
	case "proc_exit":
		return withLocals(0, []byte{0x00, 0x0b})
	}
	return withLocals(0, cat(zeroResult(ft.results), end))
}

// memmoveBody copies n bytes from src to dst with memmove semantics, 32
// bytes at a time while it can, then eight, then one (words go in the
// direction of the copy, each read before it is written, so overlapping
// copies stay correct in both directions).
func memmoveBody() []byte {
	i64Load0, i64Store0 := []byte{0x29, 0, 0}, []byte{0x37, 0, 0}
	i32LtU := []byte{0x49}
	var fwdFour, bwdFour []byte // four words at offsets 0, 8, 16, 24 (backward: 24 … 0)
	for k := byte(0); k < 4; k++ {
		fwdFour = cat(fwdFour, lget(0), lget(1), []byte{0x29, 0, 8 * k}, []byte{0x37, 0, 8 * k})
		bwdFour = cat(bwdFour, lget(0), lget(2), i32Add, lget(1), lget(2), i32Add, []byte{0x29, 0, 24 - 8*k}, []byte{0x37, 0, 24 - 8*k})
	}
	fwdBlocks := loop(cat(lget(2), i32c(32), i32LtU), cat(fwdFour,
		lget(0), i32c(32), i32Add, lset(0),
		lget(1), i32c(32), i32Add, lset(1),
		lget(2), i32c(32), i32Sub, lset(2)))
	bwdBlocks := loop(cat(lget(2), i32c(32), i32LtU), cat(
		lget(2), i32c(32), i32Sub, lset(2), bwdFour))
	fwdWords := loop(cat(lget(2), i32c(8), i32LtU), cat(
		lget(0), lget(1), i64Load0, i64Store0,
		lget(0), i32c(8), i32Add, lset(0),
		lget(1), i32c(8), i32Add, lset(1),
		lget(2), i32c(8), i32Sub, lset(2)))
	fwd := loop(cat(lget(2), i32Eqz), cat(
		lget(0), lget(1), i32Load8U, i32Store8,
		lget(0), i32c(1), i32Add, lset(0),
		lget(1), i32c(1), i32Add, lset(1),
		lget(2), i32c(1), i32Sub, lset(2)))
	bwdWords := loop(cat(lget(2), i32c(8), i32LtU), cat(
		lget(2), i32c(8), i32Sub, lset(2),
		lget(0), lget(2), i32Add, lget(1), lget(2), i32Add, i64Load0, i64Store0))
	bwd := loop(cat(lget(2), i32Eqz), cat(
		lget(2), i32c(1), i32Sub, lset(2),
		lget(0), lget(2), i32Add, lget(1), lget(2), i32Add, i32Load8U, i32Store8))
	return withLocals(0, cat(lget(0), lget(1), i32LeU, []byte{0x04, 0x40}, fwdBlocks, fwdWords, fwd, []byte{0x05}, bwdBlocks, bwdWords, bwd, end, end))
}

// memfillBody stores the low byte of val in n bytes from dst, 32 at a time
// while it can, then eight, then one.
func memfillBody() []byte {
	// local 3: the byte replicated into an i64
	word := cat(lget(1), []byte{0x41, 0xff, 0x01}, []byte{0x71}, []byte{0xad}, // i64.extend_i32_u(val & 255)
		[]byte{0x42, 0x81, 0x82, 0x84, 0x88, 0x90, 0xa0, 0xc0, 0x80, 0x01}, []byte{0x7e}, // * 0x0101010101010101
		[]byte{0x21, 3})
	var four []byte
	for k := byte(0); k < 4; k++ {
		four = cat(four, lget(0), []byte{0x20, 3}, []byte{0x37, 0, 8 * k})
	}
	blocks := loop(cat(lget(2), i32c(32), []byte{0x49}), cat(four,
		lget(0), i32c(32), i32Add, lset(0),
		lget(2), i32c(32), i32Sub, lset(2)))
	words := loop(cat(lget(2), i32c(8), []byte{0x49}), cat(
		lget(0), []byte{0x20, 3}, []byte{0x37, 0, 0},
		lget(0), i32c(8), i32Add, lset(0),
		lget(2), i32c(8), i32Sub, lset(2)))
	bytesLoop := loop(cat(lget(2), i32Eqz), cat(
		lget(0), lget(1), i32Store8,
		lget(0), i32c(1), i32Add, lset(0),
		lget(2), i32c(1), i32Sub, lset(2)))
	return append([]byte{1, 1, tI64}, cat(word, blocks, words, bytesLoop, end)...)
}
