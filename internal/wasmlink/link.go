package wasmlink

import (
	"fmt"
	"slices"

	"github.com/tezos-dsn/dsn/internal/wasmbin"
)

const (
	tI32 = 0x7f
	tI64 = 0x7e
)

const (
	wasiModule = "wasi_snapshot_preview1"
	hostModule = "smart_rollup_core"
)

// Link rewrites a Go wasip1 c-shared module into a PVM kernel.
func Link(wasm []byte) ([]byte, error) { return LinkWith(wasm, Options{}) }

// Options adjust Link.
type Options struct {
	// KeepNames keeps the function names of the module's "name" section
	// (renumbered), for profiles (`dsn kernel run --profile`); the PVM
	// ignores custom sections, but they cost L1 bytes at origination.
	KeepNames bool
	// GoBodies keeps every function as Go compiled it: no intrinsics
	// (intrinsics.go). For comparisons.
	GoBodies bool
}

// LinkWith is Link with options.
func LinkWith(wasm []byte, opts Options) ([]byte, error) {
	secs, err := parseSections(wasm)
	if err != nil {
		return nil, err
	}
	var (
		types    []funcType
		imports  []imp
		funcs    []uint32 // type index of each defined function
		exports  []export
		bodies   [][]byte
		globals  []byte // raw global section body, without count
		nGlobals uint64
		start    = int64(-1)
		elems    []byte
		others   = map[byte][]byte{}
		names    map[uint32]string // function names of the "name" section, by old index
	)
	for _, s := range secs {
		r := wasmbin.NewReader(s.body, ErrUnsupported)
		switch s.id {
		case 0: // custom: dropped, but for function names (intrinsics, and kept when asked)
			if r.Name() == "name" && r.Err == nil {
				names = functionNames(r.B[r.Off:])
			}
		case 1:
			for n := r.ULEB(32); n > 0 && r.Err == nil; n-- {
				if r.Byte() != 0x60 {
					r.Fail("type form")
				}
				var ft funcType
				ft.params = append(ft.params, r.Bytes(r.ULEB(32))...)
				ft.results = append(ft.results, r.Bytes(r.ULEB(32))...)
				types = append(types, ft)
			}
		case 2:
			for n := r.ULEB(32); n > 0 && r.Err == nil; n-- {
				im := imp{module: r.Name(), name: r.Name(), kind: r.Byte()}
				if im.kind != 0 {
					r.Fail("import %s.%s is not a function", im.module, im.name)
				}
				im.typeIdx = uint32(r.ULEB(32))
				imports = append(imports, im)
			}
		case 3:
			for n := r.ULEB(32); n > 0 && r.Err == nil; n-- {
				funcs = append(funcs, uint32(r.ULEB(32)))
			}
		case 6:
			nGlobals = r.ULEB(32)
			globals = r.B[r.Off:]
		case 7:
			for n := r.ULEB(32); n > 0 && r.Err == nil; n-- {
				exports = append(exports, export{name: r.Name(), kind: r.Byte(), idx: uint32(r.ULEB(32))})
			}
		case 8:
			start = int64(r.ULEB(32))
		case 9:
			elems = s.body
		case 10:
			for n := r.ULEB(32); n > 0 && r.Err == nil; n-- {
				bodies = append(bodies, r.Bytes(r.ULEB(32)))
			}
		case 12: // data count: only needed by bulk memory, which we lower
		case 4, 5, 11:
			others[s.id] = s.body
		default:
			return nil, fmt.Errorf("%w: section %d", ErrUnsupported, s.id)
		}
		if r.Err != nil {
			return nil, fmt.Errorf("section %d: %w", s.id, r.Err)
		}
	}
	if len(bodies) != len(funcs) {
		return nil, fmt.Errorf("%w: %d bodies for %d functions", ErrUnsupported, len(bodies), len(funcs))
	}
	typeOf := func(params, results []byte) uint32 {
		for i, t := range types {
			if string(t.params) == string(params) && string(t.results) == string(results) {
				return uint32(i)
			}
		}
		types = append(types, funcType{params: params, results: results})
		return uint32(len(types) - 1)
	}

	// New function index space: kept host imports, the old defined
	// functions, WASI replacements, helpers, the kernel_run wrapper.
	var kept []imp
	var wasi []imp
	oldToNew := make([]uint32, len(imports)+len(funcs))
	for _, im := range imports {
		switch im.module {
		case hostModule:
			kept = append(kept, im)
		case wasiModule:
			wasi = append(wasi, im)
		default:
			return nil, fmt.Errorf("%w: import from %q", ErrUnsupported, im.module)
		}
	}
	debugIdx := -1
	for i, im := range kept {
		if im.name == "write_debug" {
			debugIdx = i
		}
	}
	if debugIdx < 0 {
		kept = append(kept, imp{module: hostModule, name: "write_debug", typeIdx: typeOf([]byte{tI32, tI32}, nil)})
		debugIdx = len(kept) - 1
	}
	K := uint32(len(kept))
	nd := uint32(len(funcs))
	wasiBase := K + nd
	helperBase := wasiBase + uint32(len(wasi))
	memmoveIdx, memfillIdx := helperBase, helperBase+1
	wrapperIdx := helperBase + 2
	ki, wi := uint32(0), uint32(0)
	for i, im := range imports {
		if im.module == hostModule {
			for j := range kept {
				if kept[j].name == im.name && kept[j].module == im.module {
					oldToNew[i] = uint32(j)
				}
			}
			ki++
		} else {
			oldToNew[i] = wasiBase + wi
			wi++
		}
	}
	for j := range funcs {
		oldToNew[len(imports)+j] = K + uint32(j)
	}
	mapFunc := func(old uint64) (uint32, error) {
		if old >= uint64(len(oldToNew)) {
			return 0, fmt.Errorf("%w: function index %d out of range", ErrUnsupported, old)
		}
		return oldToNew[old], nil
	}

	// A mutable i64 global holds the deterministic clock.
	clockGlobal := uint32(nGlobals)
	globals = append(append([]byte{}, globals...), tI64, 1, 0x42, 0, 0x0b)
	nGlobals++

	// Rewrite the old bodies, putting the intrinsics in.
	var newBodies [][]byte
	var modules map[string]string
	if !opts.GoBodies {
		modules = goModules(wasm)
	}
	for i, b := range bodies {
		if modules != nil {
			in, err := intrinsicFor(names[uint32(len(imports)+i)], b, types[funcs[i]], modules)
			if err != nil {
				return nil, err
			}
			if in != nil {
				b = in
			}
		}
		nb, err := rewriteBody(b, mapFunc, memmoveIdx, memfillIdx)
		if err != nil {
			return nil, fmt.Errorf("function %d: %w", i, err)
		}
		newBodies = append(newBodies, nb)
	}
	var newFuncs []uint32
	newFuncs = append(newFuncs, funcs...)
	for _, im := range wasi {
		ft := types[im.typeIdx]
		newFuncs = append(newFuncs, im.typeIdx)
		newBodies = append(newBodies, wasiBody(im.name, ft, uint32(debugIdx), memfillIdx, clockGlobal))
	}
	tri := typeOf([]byte{tI32, tI32, tI32}, nil)
	newFuncs = append(newFuncs, tri, tri)
	newBodies = append(newBodies, memmoveBody(), memfillBody())

	// kernel_run wrapper: _initialize first (memory is fresh on every run).
	var initIdx, runIdx int64 = -1, -1
	var memExport *export
	for i := range exports {
		e := &exports[i]
		switch {
		case e.kind == 0 && e.name == "_initialize":
			initIdx = int64(e.idx)
		case e.kind == 0 && e.name == "kernel_run":
			runIdx = int64(e.idx)
		case e.kind == 2 && e.idx == 0:
			memExport = e
		}
	}
	if runIdx < 0 {
		return nil, fmt.Errorf("%w: no kernel_run export (add //go:wasmexport kernel_run)", ErrUnsupported)
	}
	if memExport == nil {
		return nil, fmt.Errorf("%w: memory 0 not exported", ErrUnsupported)
	}
	wrapper := []byte{0}
	if initIdx >= 0 {
		ni, _ := mapFunc(uint64(initIdx))
		wrapper = uleb(append(wrapper, 0x10), uint64(ni))
	}
	nr, err := mapFunc(uint64(runIdx))
	if err != nil {
		return nil, err
	}
	wrapper = append(uleb(append(wrapper, 0x10), uint64(nr)), 0x0b)
	newFuncs = append(newFuncs, typeOf(nil, nil))
	newBodies = append(newBodies, wrapper)

	// Element segments: remap function indices.
	if elems != nil {
		if elems, err = rewriteElems(elems, mapFunc); err != nil {
			return nil, err
		}
	}

	// Assemble.
	out := []byte("\x00asm\x01\x00\x00\x00")
	tb := vec(nil, len(types))
	for _, t := range types {
		tb = append(tb, 0x60)
		tb = append(vec(tb, len(t.params)), t.params...)
		tb = append(vec(tb, len(t.results)), t.results...)
	}
	out = append(out, sectionBytes(1, tb)...)
	ib := vec(nil, len(kept))
	for _, im := range kept {
		ib = str(ib, im.module)
		ib = str(ib, im.name)
		ib = uleb(append(ib, 0), uint64(im.typeIdx))
	}
	out = append(out, sectionBytes(2, ib)...)
	fb := vec(nil, len(newFuncs))
	for _, t := range newFuncs {
		fb = uleb(fb, uint64(t))
	}
	out = append(out, sectionBytes(3, fb)...)
	for _, id := range []byte{4, 5} {
		if b, ok := others[id]; ok {
			out = append(out, sectionBytes(id, b)...)
		}
	}
	out = append(out, sectionBytes(6, append(uleb(nil, nGlobals), globals...))...)
	eb := vec(nil, 2)
	eb = uleb(append(str(eb, "kernel_run"), 0), uint64(wrapperIdx))
	eb = append(append(str(eb, "memory"), 2), 0)
	out = append(out, sectionBytes(7, eb)...)
	if start >= 0 {
		ns, err := mapFunc(uint64(start))
		if err != nil {
			return nil, err
		}
		out = append(out, sectionBytes(8, uleb(nil, uint64(ns)))...)
	}
	if elems != nil {
		out = append(out, sectionBytes(9, elems)...)
	}
	cb := vec(nil, len(newBodies))
	for _, b := range newBodies {
		cb = append(uleb(cb, uint64(len(b))), b...)
	}
	out = append(out, sectionBytes(10, cb)...)
	if b, ok := others[11]; ok {
		out = append(out, sectionBytes(11, mergeData(b))...)
	}
	if opts.KeepNames {
		renamed := map[uint32]string{memmoveIdx: "dsn.memmove", memfillIdx: "dsn.memfill", wrapperIdx: "dsn.kernel_run"}
		for old, name := range names {
			if int(old) < len(oldToNew) {
				renamed[oldToNew[old]] = name
			}
		}
		for i, im := range wasi {
			renamed[wasiBase+uint32(i)] = "dsn.wasi." + im.name
		}
		out = append(out, nameSection(renamed)...)
	}
	return out, nil
}

// functionNames reads the function-name subsection (1) of a "name" custom
// section's payload; what does not decode is left out.
func functionNames(b []byte) map[uint32]string {
	names := map[uint32]string{}
	r := wasmbin.NewReader(b, ErrUnsupported)
	for r.More() && r.Err == nil {
		id := r.Byte()
		sub := r.Bytes(r.ULEB(32))
		if r.Err != nil || id != 1 {
			continue
		}
		sr := wasmbin.NewReader(sub, ErrUnsupported)
		for n := sr.ULEB(32); n > 0 && sr.Err == nil; n-- {
			idx := uint32(sr.ULEB(32))
			name := sr.Name()
			if sr.Err == nil {
				names[idx] = name
			}
		}
	}
	return names
}

// nameSection encodes a "name" custom section with function names, in
// ascending index order as the format asks.
func nameSection(names map[uint32]string) []byte {
	idx := make([]uint32, 0, len(names))
	for i := range names {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	sub := vec(nil, len(idx))
	for _, i := range idx {
		sub = str(uleb(sub, uint64(i)), names[i])
	}
	body := str(nil, "name")
	body = append(uleb(append(body, 1), uint64(len(sub))), sub...)
	return sectionBytes(0, body)
}

// rewriteElems remaps the function indices of MVP element segments.
func rewriteElems(body []byte, mapFunc func(uint64) (uint32, error)) ([]byte, error) {
	r := wasmbin.NewReader(body, ErrUnsupported)
	n := r.ULEB(32)
	out := uleb(nil, n)
	for ; n > 0 && r.Err == nil; n-- {
		if flags := r.ULEB(32); flags != 0 {
			return nil, fmt.Errorf("%w: element segment flags %d", ErrUnsupported, flags)
		}
		out = append(out, 0)
		exprStart := r.Off
		for r.Err == nil {
			if op := r.Byte(); op == 0x0b {
				break
			} else if op == 0x41 {
				r.SLEB(32)
			} else {
				r.Fail("element offset opcode 0x%02x", op)
			}
		}
		out = append(out, r.B[exprStart:r.Off]...)
		k := r.ULEB(32)
		out = uleb(out, k)
		for ; k > 0 && r.Err == nil; k-- {
			ni, err := mapFunc(r.ULEB(32))
			if err != nil {
				return nil, err
			}
			out = uleb(out, uint64(ni))
		}
	}
	return out, r.Err
}

// maxDataGap is the widest run of zeros mergeData writes to join two data
// segments.
const maxDataGap = 32

// mergeData coalesces a data section's segments. Go writes one segment per
// symbol (37,835 in the BLS example kernel), and instantiating a module —
// every kernel_run — evaluates and copies each of them (wazero's applyData:
// a few milliseconds a level). A segment joins the one before it when it
// starts within or right after it, or after a gap of at most maxDataGap
// bytes that no earlier segment writes to (memory starts at zero, so
// writing zeros there changes nothing); overlapping bytes take the later
// segment's value, as applying the segments in order does. The extent
// written, and with it any bounds error at instantiation, stays the same.
// A section with anything but active segments of memory 0 at an i32.const
// offset, or that does not decode (out-of-range LEB128s included), is
// returned as it is.
func mergeData(body []byte) []byte {
	type seg struct {
		off  uint64
		data []byte
	}
	r := wasmbin.NewReader(body, ErrUnsupported)
	var segs []seg
	for n := r.U32(); n > 0 && r.Err == nil; n-- {
		if r.U32() != 0 || r.Byte() != 0x41 {
			return body
		}
		off := uint64(uint32(r.SLEB(32)))
		if r.Byte() != 0x0b {
			return body
		}
		segs = append(segs, seg{off: off, data: r.Bytes(r.ULEB(32))})
	}
	if r.Err != nil || r.More() {
		return body
	}
	var out []seg
	// untouched reports whether no segment merged so far but the last
	// writes to [lo, hi) (each merged segment writes one contiguous range).
	untouched := func(lo, hi uint64) bool {
		if len(out) > 1024 {
			return false // not Go's layout: do not search further
		}
		for _, o := range out[:len(out)-1] {
			if o.off < hi && lo < o.off+uint64(len(o.data)) {
				return false
			}
		}
		return true
	}
	for _, s := range segs {
		end := s.off + uint64(len(s.data))
		if len(out) > 0 {
			c := &out[len(out)-1]
			cend := c.off + uint64(len(c.data))
			if s.off >= c.off && (s.off <= cend || s.off-cend <= maxDataGap && untouched(cend, s.off)) {
				if end > cend {
					c.data = append(c.data, make([]byte, end-cend)...)
				}
				copy(c.data[s.off-c.off:], s.data)
				continue
			}
		}
		out = append(out, seg{off: s.off, data: append([]byte(nil), s.data...)})
	}
	b := vec(nil, len(out))
	for _, s := range out {
		b = append(b, 0, 0x41)
		b = wasmbin.AppendSLEB(b, int64(int32(uint32(s.off))))
		b = append(b, 0x0b)
		b = append(uleb(b, uint64(len(s.data))), s.data...)
	}
	return b
}
