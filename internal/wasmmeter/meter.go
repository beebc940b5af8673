// Package wasmmeter instruments a WebAssembly module so that it counts the
// ticks it executes in an exported i64 global and traps once the count
// exceeds a limit. The PVM uses it to bound a kernel_run by ticks, like
// octez, rather than by wall-clock time, so every machine reaches the same
// verdict.
//
// # Scheme
//
// A function body is cut into metered blocks: straight-line runs of
// instructions, each ending after an instruction that may transfer control
// or after which control may arrive from elsewhere:
//
//	loop, if, else, end, br, br_if, br_table, return, call, call_indirect,
//	unreachable
//
// (block is not a cut: its entry is not a branch target, only its end is).
// At the start of each metered block — function entry, and right after each
// of those instructions — the block's whole cost is added to the counter
// before any of its instructions runs:
//
//	global.get $t; i64.const cost; i64.add; global.set $t
//
// This is sound because every instruction of a metered block but the last
// falls through to the next one: control can only enter a metered block at
// its start (branch targets are loop headers, which start a block, and the
// instructions after an end or else, which do too; calls return to the
// instruction after the call, which starts one) and can only leave it after
// its last instruction, or by a trap, which ends the run. So when a block is
// entered, all its instructions will run (or the run traps), and the counter
// is the exact sum of the costs of the blocks entered. The cost of a block
// left by a branch (br, br_if, br_table) includes the branch but none of the
// ends it skips, as in octez, where breaking out of a label does not run its
// end. The code after br, br_table, return and unreachable is dead; its
// counters are never run.
//
// At function entry and at every loop header, after the block's cost is
// added, the counter is checked:
//
//	global.get $t; i64.const limit; i64.gt_u; if unreachable end
//
// Every cycle of an execution goes through a loop header or a function entry
// (calls and recursion), so between two checks a run executes at most one
// acyclic path through one function body: a run that costs more than limit
// ticks traps at the next check, with the counter at a deterministic value
// above limit. A run that ends (returns from its last call) before reaching
// another check may have gone past limit by at most the cost of that path:
// the host must also compare the counter with the limit after a normal
// return to reach an exact verdict (counter > limit means out of ticks).
//
// The added code is stack-neutral, so it is valid wherever it is placed, even
// in dead code or in blocks that take parameters. Nothing else changes:
// function, global, table and memory indices, imports, exports (one is
// added), element and data segments, custom sections. With
// Options.Checkpoints the check also calls into the host now and then, and
// function indices move (see the comment on CheckpointModule).
//
// For tools, InstrumentProfile also adds each block's cost to a counter of
// its function (its self ticks), one more global and export per defined
// function; FunctionNames reads the names a profile is shown with.
package wasmmeter

import (
	"errors"
	"fmt"

	"github.com/tezos-dsn/dsn/internal/wasmbin"
)

// CounterExport is the export name of the tick counter global.
const CounterExport = "__dsn_ticks"

var errModule = errors.New("wasmmeter: unsupported module")

// section order of the binary format: custom sections (0) may go anywhere.
var sectionRank = map[byte]int{1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13}

// Instrument returns a copy of the module in which a new mutable i64 global,
// exported as CounterExport, counts ticks by costs, and any run that costs
// more than limit ticks traps (see the package comment for the scheme and
// its one caveat: the host compares the counter with limit after a normal
// return too). The instrumented module behaves like the original as long as
// the limit is not exceeded.
func Instrument(wasm []byte, costs Costs, limit uint64) ([]byte, error) {
	return InstrumentWith(wasm, costs, limit, Options{})
}

// Options choose what InstrumentWith adds beyond the tick counter.
type Options struct {
	// Profile: each defined function's own ticks (see InstrumentProfile).
	Profile bool
	// Checkpoints: the module calls the host function CheckpointName of
	// module CheckpointModule whenever its counter passes the ticks the host
	// last returned (see the comment on CheckpointModule).
	Checkpoints bool
}

// InstrumentWith is Instrument with options.
func InstrumentWith(wasm []byte, costs Costs, limit uint64, o Options) ([]byte, error) {
	profile := o.Profile
	secs, err := wasmbin.Sections(wasm, errModule)
	if err != nil {
		return nil, err
	}
	var (
		params      []uint64 // of each type
		funcTypes   []uint32 // type of each defined function
		importFuncs uint64
		globals     uint64 // imported and defined
		globalSec   = -1
		exportSec   = -1
		codeSec     = -1
		typeSec     = -1
		importSec   = -1
		startSec    = -1
		elemSec     = -1
		seen        = map[byte]bool{}
		exports     map[string]bool // the existing export names, if profile
	)
	if profile {
		exports = map[string]bool{}
	}
	for i, s := range secs {
		if s.ID == 0 {
			continue
		}
		if _, ok := sectionRank[s.ID]; !ok || seen[s.ID] {
			return nil, fmt.Errorf("%w: section %d unknown or repeated", errModule, s.ID)
		}
		seen[s.ID] = true
		r := wasmbin.NewReader(s.Body, errModule)
		switch s.ID {
		case 1:
			typeSec = i
			for n := r.U32(); n > 0 && r.Err == nil; n-- {
				if r.Byte() != 0x60 {
					r.Fail("type form")
				}
				params = append(params, uint64(len(r.Bytes(r.ULEB(32)))))
				r.Bytes(r.ULEB(32)) // results
			}
		case 2:
			importSec = i
			for n := r.U32(); n > 0 && r.Err == nil; n-- {
				r.Name()
				r.Name()
				switch kind := r.Byte(); kind {
				case 0: // function
					r.U32()
					importFuncs++
				case 1: // table
					r.Byte()
					limits(r)
				case 2: // memory
					limits(r)
				case 3: // global
					r.Byte()
					r.Byte()
					globals++
				default:
					r.Fail("import kind %d", kind)
				}
			}
		case 3:
			for n := r.U32(); n > 0 && r.Err == nil; n-- {
				funcTypes = append(funcTypes, r.U32())
			}
		case 6:
			globals += uint64(r.U32())
			globalSec = i
		case 7:
			for n := r.U32(); n > 0 && r.Err == nil; n-- {
				name := r.Name()
				if name == CounterExport {
					r.Fail("already exports %s", CounterExport)
				}
				if exports != nil {
					exports[name] = true
				}
				r.Byte()
				r.U32()
			}
			exportSec = i
		case 8:
			startSec = i
		case 9:
			elemSec = i
		case 10:
			codeSec = i
		}
		if r.Err != nil {
			return nil, fmt.Errorf("section %d: %w", s.ID, r.Err)
		}
	}
	// The tick counter, then with profile one counter per defined function.
	counter := globals
	counters := []uint64{counter}
	nglobals := 1
	if profile {
		nglobals += len(funcTypes)
		for i := range funcTypes {
			if name := ProfileExport(uint32(importFuncs) + uint32(i)); exports[name] {
				return nil, fmt.Errorf("%w: already exports %s", errModule, name)
			}
		}
		counters = append(counters, 0)
	}
	// With checkpoints: the checkpoint global after the counters (not
	// exported), and the host function imported after the other imports,
	// which moves every defined function's index up by one.
	chk := check{limit: limit}
	shift := func(f uint64) uint64 { return f }
	exported := nglobals
	if o.Checkpoints {
		chk.global = counter + uint64(nglobals)
		chk.function = importFuncs
		chk.on = true
		nglobals++
		shift = func(f uint64) uint64 {
			if f >= importFuncs {
				return f + 1
			}
			return f
		}
	}

	var code []byte
	if codeSec >= 0 {
		r := wasmbin.NewReader(secs[codeSec].Body, errModule)
		n := r.U32()
		if r.Err == nil && uint64(n) != uint64(len(funcTypes)) {
			return nil, fmt.Errorf("%w: %d bodies for %d functions", errModule, n, len(funcTypes))
		}
		code = uleb(nil, uint64(n))
		for i := uint32(0); i < n && r.Err == nil; i++ {
			body := r.Bytes(r.ULEB(32))
			if r.Err != nil {
				break
			}
			var np uint64
			if t := funcTypes[i]; uint64(t) < uint64(len(params)) {
				np = params[t]
			} else {
				return nil, fmt.Errorf("%w: function %d: type %d out of range", errModule, importFuncs+uint64(i), t)
			}
			if profile {
				counters[1] = counter + 1 + uint64(i)
			}
			nb, err := instrumentBody(body, costs, chk, np, counters, shift)
			if err != nil {
				return nil, fmt.Errorf("function %d: %w", importFuncs+uint64(i), err)
			}
			code = append(uleb(code, uint64(len(nb))), nb...)
		}
		if r.Err == nil && r.More() {
			r.Fail("trailing bytes")
		}
		if r.Err != nil {
			return nil, fmt.Errorf("code section: %w", r.Err)
		}
	} else if len(funcTypes) > 0 {
		return nil, fmt.Errorf("%w: %d functions without code", errModule, len(funcTypes))
	}

	// The new globals, appended after the existing ones, and their exports.
	newGlobal := []byte{0x7e, 0x01, 0x42, 0x00, 0x0b} // mut i64 = i64.const 0
	globalBody := uleb(nil, uint64(nglobals))
	if globalSec >= 0 {
		r := wasmbin.NewReader(secs[globalSec].Body, errModule)
		n := r.U32()
		rest := secs[globalSec].Body[r.Off:]
		if chk.on {
			var err error
			if rest, err = shiftGlobals(rest, n, shift); err != nil {
				return nil, err
			}
		}
		globalBody = append(uleb(nil, uint64(n)+uint64(nglobals)), rest...)
	}
	for range nglobals {
		globalBody = append(globalBody, newGlobal...)
	}
	exportBody := uleb(nil, uint64(exported))
	if exportSec >= 0 {
		var err error
		if exportBody, err = shiftExports(secs[exportSec].Body, uint64(exported), shift); err != nil {
			return nil, err
		}
	}
	exportBody = uleb(append(str(exportBody, CounterExport), 0x03), counter)
	for i := 1; i < exported; i++ {
		name := ProfileExport(uint32(importFuncs) + uint32(i-1))
		exportBody = uleb(append(str(exportBody, name), 0x03), counter+uint64(i))
	}
	// Sections whose function indices move, and the import and its type.
	rewritten := map[int][]byte{}
	if chk.on {
		var err error
		if rewritten, err = checkpointSections(secs, typeSec, importSec, startSec, elemSec, uint64(len(params)), shift); err != nil {
			return nil, err
		}
	}

	out := append(make([]byte, 0, len(wasm)+len(wasm)/2+64), wasm[:8]...)
	globalDone, exportDone := false, false
	typeDone, importDone := !chk.on || typeSec >= 0, !chk.on || importSec >= 0
	flush := func(rank int) {
		if !typeDone && rank > sectionRank[1] {
			out = append(out, section(1, rewritten[-1])...)
			typeDone = true
		}
		if !importDone && rank > sectionRank[2] {
			out = append(out, section(2, rewritten[-2])...)
			importDone = true
		}
		if !globalDone && rank > sectionRank[6] {
			out = append(out, section(6, globalBody)...)
			globalDone = true
		}
		if !exportDone && rank > sectionRank[7] {
			out = append(out, section(7, exportBody)...)
			exportDone = true
		}
	}
	for i, s := range secs {
		if s.ID != 0 {
			flush(sectionRank[s.ID])
		}
		if b, ok := rewritten[i]; ok {
			if b != nil { // nil: a name section dropped
				out = append(out, section(s.ID, b)...)
			}
			continue
		}
		switch i {
		case globalSec:
			out = append(out, section(6, globalBody)...)
			globalDone = true
		case exportSec:
			out = append(out, section(7, exportBody)...)
			exportDone = true
		case codeSec:
			out = append(out, section(10, code)...)
		default:
			out = append(out, section(s.ID, s.Body)...)
		}
	}
	flush(len(sectionRank) + 1)
	return out, nil
}

func limits(r *wasmbin.Reader) {
	flags := r.Byte()
	r.ULEB(64)
	if flags&1 != 0 {
		r.ULEB(64)
	}
}

// cuts reports whether op ends a metered block.
func cuts(op byte) bool {
	switch op {
	case 0x00, 0x03, 0x04, 0x05, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11:
		return true
	}
	return false
}

// check is what a function entry and a loop header check: the counter
// against limit, and with checkpoints (on) first against the checkpoint
// global, which the checkpoint function moves when the counter passes it.
type check struct {
	limit            uint64
	on               bool
	global, function uint64
}

// instrumentBody meters one function body (locals and expression): each
// block's cost is added to every global of counters, counters[0] is checked
// as chk says, and the function index of every call is mapped by shift.
func instrumentBody(body []byte, costs Costs, chk check, params uint64, counters []uint64, shift func(uint64) uint64) ([]byte, error) {
	counter := counters[0]
	r := wasmbin.NewReader(body, errModule)
	var locals uint64
	for n := r.U32(); n > 0 && r.Err == nil; n-- {
		locals += uint64(r.U32())
		r.Byte()
		if locals > 1<<32 {
			r.Fail("too many locals")
		}
	}
	out := append(make([]byte, 0, 2*len(body)+32), body[:r.Off]...)
	var ins []wasmbin.Instr
	depth := 0
	for r.More() {
		in := r.Instr()
		if r.Err != nil {
			break
		}
		switch in.Op {
		case 0x02, 0x03, 0x04:
			depth++
		case 0x0b:
			depth--
		case 0x06, 0x07, 0x08, 0x09, 0x0a, 0x12, 0x13:
			r.Fail("unsupported opcode 0x%02x", in.Op)
		}
		ins = append(ins, in)
		if depth < 0 {
			break
		}
	}
	if r.Err == nil && (depth >= 0 || r.More()) {
		r.Fail("body does not end with its end")
	}
	if r.Err != nil {
		return nil, r.Err
	}

	entry, header := true, false
	for i := 0; i < len(ins); {
		j := i
		for !cuts(ins[j].Op) {
			j++ // the last instruction is an end, which cuts
		}
		var cost uint64
		if entry {
			cost = entryTicks(costs, params, locals)
		}
		for _, in := range ins[i : j+1] {
			cost = addSat(cost, costs.Ticks(in.Op, in.Sub))
		}
		if cost > 0 {
			for _, g := range counters {
				out = append(out, 0x23)
				out = uleb(out, g)
				out = sleb(append(out, 0x42), int64(cost))
				out = append(out, 0x7c, 0x24)
				out = uleb(out, g)
			}
		}
		if entry || header {
			if chk.on { // if counter > checkpoint
				out = uleb(append(out, 0x23), counter)
				out = uleb(append(out, 0x23), chk.global)
				out = append(out, 0x56, 0x04, 0x40)
			}
			out = uleb(append(out, 0x23), counter) // if counter > limit: unreachable
			out = sleb(append(out, 0x42), int64(chk.limit))
			out = append(out, 0x56, 0x04, 0x40, 0x00, 0x0b)
			if chk.on { // checkpoint = min(checkpoint(counter), limit); end
				out = uleb(append(out, 0x23), counter)
				out = uleb(append(out, 0x10), chk.function)
				out = uleb(append(out, 0x24), chk.global)
				for range 2 {
					out = uleb(append(out, 0x23), chk.global)
					out = sleb(append(out, 0x42), int64(chk.limit))
				}
				out = append(out, 0x54, 0x1b) // i64.lt_u; select
				out = append(uleb(append(out, 0x24), chk.global), 0x0b)
			}
		}
		for _, in := range ins[i : j+1] {
			if in.Op == 0x10 || in.Op == 0xd2 { // call, ref.func
				out = uleb(append(out, in.Op), shift(uint64(in.Index)))
				continue
			}
			out = append(out, in.Raw...)
		}
		entry, header = false, ins[j].Op == 0x03
		i = j + 1
	}
	return out, nil
}

func addSat(a, b uint64) uint64 {
	if s := a + b; s >= a {
		return s
	}
	return ^uint64(0)
}

var (
	uleb = wasmbin.AppendULEB
	sleb = wasmbin.AppendSLEB
)

func str(out []byte, s string) []byte { return append(uleb(out, uint64(len(s))), s...) }

func section(id byte, body []byte) []byte {
	return append(uleb([]byte{id}, uint64(len(body))), body...)
}
