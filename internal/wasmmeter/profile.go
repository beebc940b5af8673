package wasmmeter

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/tezos-dsn/dsn/internal/wasmbin"
)

// profilePrefix starts the export names of the per-function counters.
const profilePrefix = "__dsn_fticks_"

// InstrumentProfile is Instrument plus, for every defined function, a
// mutable i64 global counting the ticks of that function's own blocks (self
// ticks, not its callees'), exported as ProfileExport(funcIndex) where
// funcIndex is the function's index in the module's function index space
// (imports first). Profiled modules are for tools only (they are larger and
// slower); the ticks counted in __dsn_ticks are the same as Instrument's.
//
// A call's own cost (the call instruction) is the caller's; the set-up of
// the callee's frame (Octez charges it by the callee's parameters and
// locals) is the callee's; host functions cost nothing here. Each block adds
// its cost to the function's counter right after the tick counter and before
// the limit check, so at any point, even after a trap at the limit, the
// function counters add up to the tick counter (modulo 2^64). The globals of
// the function counters follow the tick counter's, in function order: the
// counter of the i-th defined function (imports excluded) is global G+1+i,
// where G, the tick counter's index, is the number of globals (imported and
// defined) of the original module.
func InstrumentProfile(wasm []byte, costs Costs, limit uint64) ([]byte, error) {
	return InstrumentWith(wasm, costs, limit, Options{Profile: true})
}

// ProfileExport is the export name of function funcIndex's self-tick counter.
func ProfileExport(funcIndex uint32) string {
	return profilePrefix + strconv.FormatUint(uint64(funcIndex), 10)
}

var errNames = errors.New("wasmmeter: malformed module")

// FunctionNames returns the names in the module's "name" custom section
// (subsection 1, function names), by function index; empty if there is none.
// It never panics: on a malformed module it returns the names it could read
// before the fault (never nil), with an error. Only the first "name" section
// counts; a later entry for the same index overrides an earlier one. Names
// are returned as they are stored, not checked to be UTF-8.
func FunctionNames(wasm []byte) (map[uint32]string, error) {
	names := map[uint32]string{}
	// Sections returns the sections before a fault along with its error.
	secs, err := wasmbin.Sections(wasm, errNames)
	for _, s := range secs {
		if s.ID != 0 || s.Body == nil {
			continue
		}
		r := wasmbin.NewReader(s.Body, errNames)
		if r.Name() != "name" || r.Err != nil {
			continue // another custom section, or a broken one: not ours
		}
		for r.More() {
			id := r.Byte()
			sub := r.Sub(r.Bytes(r.ULEB(32)))
			if r.Err != nil || id != 1 {
				continue
			}
			for n := sub.U32(); n > 0 && sub.Err == nil; n-- {
				idx, name := sub.U32(), sub.Name()
				if sub.Err == nil {
					names[idx] = name
				}
			}
			if sub.Err == nil && sub.More() {
				sub.Fail("trailing bytes")
			}
			if sub.Err != nil {
				r.Err = sub.Err
			}
			break // function names, at most one subsection 1
		}
		if r.Err != nil {
			return names, fmt.Errorf("name section: %w", r.Err)
		}
		break
	}
	return names, err
}
