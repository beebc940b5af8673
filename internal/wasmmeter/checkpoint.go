package wasmmeter

import (
	"github.com/tezos-dsn/dsn/internal/wasmbin"
)

// Checkpoints (Options.Checkpoints). A metered run that never calls the host
// runs native code that neither the Go scheduler nor the garbage collector
// can interrupt: a stop-the-world waits for the run to end, and so does
// everything else in the process. wazero's own remedy (a call into Go at
// every loop iteration, WithCloseOnContextDone) costs 2.5–2.8× on
// arithmetic-heavy kernels. With checkpoints, the check at function entries
// and loop headers becomes
//
//	if counter > checkpoint {
//		if counter > limit { unreachable }
//		checkpoint = min(CheckpointModule.CheckpointName(counter), limit) // (i64) -> i64
//	}
//
// where checkpoint is a new, unexported global, 0 at instantiation: the
// module calls into the host only when its counter has passed the ticks the
// host last returned. The host can yield there, or stop the run (by
// trapping) when it shuts down. The limit is still checked in the module,
// at the first check past it (the checkpoint never exceeds it), so a run is
// stuck at the same tick count with or without checkpoints, whatever the
// host returns.
//
// The host function is imported after the module's own imports, so every
// defined function's index moves up by one: calls, ref.func (in code and in
// global initializers), exports, the start function, element segments and
// the name section's function and local names are renumbered (a name
// section that does not parse is dropped; other name subsections are
// dropped too). Profile counters keep the export names of the original
// indices.
const (
	CheckpointModule = "__dsn_meter"
	CheckpointName   = "checkpoint"
)

// checkpointSections returns the bodies of the sections that change with
// checkpoints, by their index in secs: the type section with an (i64) ->
// i64 type appended (key -1 if the module has none), the import section with
// the checkpoint function appended (key -2 if none), and the start, element
// and name sections renumbered by shift (nil for a name section dropped).
func checkpointSections(secs []wasmbin.Section, typeSec, importSec, startSec, elemSec int, ntypes uint64, shift func(uint64) uint64) (map[int][]byte, error) {
	out := map[int][]byte{}
	key := func(i, none int) int {
		if i < 0 {
			return none
		}
		return i
	}
	// The type: appended, so no other type index moves.
	types := uleb(nil, ntypes+1)
	if typeSec >= 0 {
		r := wasmbin.NewReader(secs[typeSec].Body, errModule)
		r.U32()
		types = append(types, secs[typeSec].Body[r.Off:]...)
	}
	out[key(typeSec, -1)] = append(types, 0x60, 1, 0x7e, 1, 0x7e)
	imports := uleb(nil, 1)
	if importSec >= 0 {
		r := wasmbin.NewReader(secs[importSec].Body, errModule)
		imports = uleb(nil, uint64(r.U32())+1)
		imports = append(imports, secs[importSec].Body[r.Off:]...)
	}
	out[key(importSec, -2)] = uleb(append(str(str(imports, CheckpointModule), CheckpointName), 0x00), ntypes)
	if startSec >= 0 {
		r := wasmbin.NewReader(secs[startSec].Body, errModule)
		f := r.U32()
		if r.Err != nil {
			return nil, r.Err
		}
		out[startSec] = uleb(nil, shift(uint64(f)))
	}
	if elemSec >= 0 {
		b, err := shiftElements(secs[elemSec].Body, shift)
		if err != nil {
			return nil, err
		}
		out[elemSec] = b
	}
	for i, s := range secs {
		if s.ID != 0 {
			continue
		}
		r := wasmbin.NewReader(s.Body, errModule)
		if r.Name() != "name" || r.Err != nil {
			continue
		}
		out[i] = shiftNames(s.Body, shift)
	}
	return out, nil
}

// shiftExports re-encodes an export section with extra more entries to
// come, mapping function exports by shift.
func shiftExports(body []byte, extra uint64, shift func(uint64) uint64) ([]byte, error) {
	r := wasmbin.NewReader(body, errModule)
	n := r.U32()
	out := uleb(nil, uint64(n)+extra)
	for ; n > 0 && r.Err == nil; n-- {
		name, kind, idx := r.Name(), r.Byte(), uint64(r.U32())
		if kind == 0 {
			idx = shift(idx)
		}
		out = uleb(append(str(out, name), kind), idx)
	}
	if r.Err == nil && r.More() {
		r.Fail("export section: trailing bytes")
	}
	return out, r.Err
}

// shiftGlobals re-encodes the n global definitions in body (the global
// section after its count) with the function of every ref.func in their
// initializers mapped by shift.
func shiftGlobals(body []byte, n uint32, shift func(uint64) uint64) ([]byte, error) {
	r := wasmbin.NewReader(body, errModule)
	var out []byte
	for ; n > 0 && r.Err == nil; n-- {
		out = append(out, r.Byte(), r.Byte()) // value type, mutability
		for r.More() {
			in := r.Instr()
			if in.Op == 0xd2 {
				out = uleb(append(out, 0xd2), shift(uint64(in.Index)))
			} else {
				out = append(out, in.Raw...)
			}
			if in.Op == 0x0b {
				break
			}
		}
	}
	if r.Err == nil && r.More() {
		r.Fail("global section: trailing bytes")
	}
	return out, r.Err
}

// shiftElements renumbers the function indices of the element segments of
// WebAssembly 1.0 (flags 0: table 0, an offset, function indices); the
// later forms are refused.
func shiftElements(body []byte, shift func(uint64) uint64) ([]byte, error) {
	r := wasmbin.NewReader(body, errModule)
	n := r.U32()
	out := uleb(nil, uint64(n))
	for ; n > 0 && r.Err == nil; n-- {
		if flags := r.U32(); flags != 0 {
			r.Fail("element segment of flags %d", flags)
			break
		}
		out = append(out, 0)
		for r.More() { // the offset expression
			in := r.Instr()
			out = append(out, in.Raw...)
			if in.Op == 0x0b {
				break
			}
		}
		m := r.U32()
		out = uleb(out, uint64(m))
		for ; m > 0 && r.Err == nil; m-- {
			out = uleb(out, shift(uint64(r.U32())))
		}
	}
	if r.Err == nil && r.More() {
		r.Fail("element section: trailing bytes")
	}
	return out, r.Err
}

// shiftNames renumbers a name section's function names (subsection 1) and
// local names (2), keeps the module name (0) and drops the rest; nil if it
// does not parse.
func shiftNames(body []byte, shift func(uint64) uint64) []byte {
	r := wasmbin.NewReader(body, errModule)
	out := str(nil, r.Name())
	for r.More() {
		id := r.Byte()
		raw := r.Bytes(r.ULEB(32))
		if r.Err != nil {
			return nil
		}
		sub := r.Sub(raw)
		var nb []byte
		switch id {
		case 0:
			nb = raw
		case 1, 2:
			n := sub.U32()
			nb = uleb(nil, uint64(n))
			for ; n > 0 && sub.Err == nil; n-- {
				nb = uleb(nb, shift(uint64(sub.U32())))
				if id == 1 {
					nb = str(nb, sub.Name())
					continue
				}
				m := sub.U32()
				nb = uleb(nb, uint64(m))
				for ; m > 0 && sub.Err == nil; m-- {
					nb = str(uleb(nb, uint64(sub.U32())), sub.Name())
				}
			}
			if sub.Err != nil || sub.More() {
				return nil
			}
		default:
			continue
		}
		out = append(uleb(append(out, id), uint64(len(nb))), nb...)
	}
	if r.Err != nil {
		return nil
	}
	return out
}
