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

	"github.com/tezos-dsn/dsn/internal/wasmbin"
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

var uleb = wasmbin.AppendULEB

func vec(out []byte, n int) []byte { return uleb(out, uint64(n)) }

func str(out []byte, s string) []byte { return append(uleb(out, uint64(len(s))), s...) }

func sectionBytes(id byte, body []byte) []byte {
	return append(uleb([]byte{id}, uint64(len(body))), body...)
}

func parseSections(wasm []byte) ([]section, error) {
	secs, err := wasmbin.Sections(wasm, ErrUnsupported)
	out := make([]section, len(secs))
	for i, s := range secs {
		out[i] = section{id: s.ID, body: s.Body}
	}
	return out, err
}
