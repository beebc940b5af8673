// Package wasmlink turns the WebAssembly that Go builds for wasip1 into a
// kernel the Tezos PVM accepts (DESIGN.md §5): it replaces the WASI imports
// with internal functions (fd_write → write_debug so panics stay readable,
// a deterministic clock and random source, EBADF for preopen probes, a trap
// for proc_exit, success for the rest), renumbers every function index,
// lowers memory.copy and memory.fill to helper functions, makes kernel_run
// call the Go runtime's _initialize first, keeps only the kernel_run and
// memory exports, and drops custom sections.
package wasmlink

import (
	"errors"
	"fmt"
)

// ErrUnsupported reports input the linker cannot turn into a PVM kernel.
var ErrUnsupported = errors.New("wasmlink: unsupported module")

type section struct {
	id   byte
	body []byte
}

type funcType struct{ params, results []byte }

type imp struct {
	module, name string
	kind         byte
	typeIdx      uint32 // functions only
}

type export struct {
	name string
	kind byte
	idx  uint32
}

// rd is a byte reader that remembers the first error.
type rd struct {
	b   []byte
	off int
	err error
}

func (r *rd) fail(f string, a ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: at %d: %s", ErrUnsupported, r.off, fmt.Sprintf(f, a...))
	}
}

func (r *rd) u8() byte {
	if r.err != nil || r.off >= len(r.b) {
		r.fail("unexpected end")
		return 0
	}
	r.off++
	return r.b[r.off-1]
}

func (r *rd) take(n uint64) []byte {
	if r.err != nil || n > uint64(len(r.b)-r.off) {
		r.fail("unexpected end")
		return nil
	}
	r.off += int(n)
	return r.b[r.off-int(n) : r.off]
}

func (r *rd) uleb() uint64 {
	var v uint64
	for shift := uint(0); ; shift += 7 {
		b := r.u8()
		if r.err != nil {
			return 0
		}
		v |= uint64(b&0x7f) << shift
		if b&0x80 == 0 {
			return v
		}
		if shift > 63 {
			r.fail("LEB128 too long")
			return 0
		}
	}
}

// skipSleb skips a signed LEB128.
func (r *rd) skipSleb() {
	for {
		b := r.u8()
		if r.err != nil || b&0x80 == 0 {
			return
		}
	}
}

func (r *rd) name() string { return string(r.take(r.uleb())) }

func uleb(out []byte, v uint64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			out = append(out, c|0x80)
		} else {
			return append(out, c)
		}
	}
}

func vec(out []byte, n int) []byte { return uleb(out, uint64(n)) }

func str(out []byte, s string) []byte { return append(uleb(out, uint64(len(s))), s...) }

func sectionBytes(id byte, body []byte) []byte {
	return append(uleb([]byte{id}, uint64(len(body))), body...)
}

func parseSections(wasm []byte) ([]section, error) {
	r := &rd{b: wasm}
	if string(r.take(8)) != "\x00asm\x01\x00\x00\x00" {
		return nil, fmt.Errorf("%w: not a wasm 1.0 module", ErrUnsupported)
	}
	var out []section
	for r.err == nil && r.off < len(r.b) {
		id := r.u8()
		out = append(out, section{id: id, body: r.take(r.uleb())})
	}
	return out, r.err
}
