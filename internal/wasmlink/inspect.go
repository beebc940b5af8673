package wasmlink

import (
	"fmt"
	"sort"
	"strings"

	"github.com/tezos-dsn/dsn/internal/wasmbin"
)

// Report describes a module for `dsn kernel inspect`.
type Report struct {
	Size      int
	Sections  []string // "name: bytes"
	Imports   []string // "module.name"
	Exports   []string
	Functions int
	Features  map[string]int // post-MVP feature -> instruction count
	Floats    int            // float instructions
}

// Inspect summarizes a module without changing it.
func Inspect(wasm []byte) (*Report, error) {
	secs, err := parseSections(wasm)
	if err != nil {
		return nil, err
	}
	names := map[byte]string{0: "custom", 1: "type", 2: "import", 3: "function", 4: "table", 5: "memory", 6: "global",
		7: "export", 8: "start", 9: "element", 10: "code", 11: "data", 12: "data count"}
	rep := &Report{Size: len(wasm), Features: map[string]int{}}
	for _, s := range secs {
		rep.Sections = append(rep.Sections, fmt.Sprintf("%s: %d bytes", names[s.id], len(s.body)))
		r := wasmbin.NewReader(s.body, ErrUnsupported)
		switch s.id {
		case 2:
			for n := r.ULEB(32); n > 0 && r.Err == nil; n-- {
				mod, name := r.Name(), r.Name()
				if r.Byte() == 0 {
					r.ULEB(32)
				}
				rep.Imports = append(rep.Imports, mod+"."+name)
			}
		case 7:
			for n := r.ULEB(32); n > 0 && r.Err == nil; n-- {
				name := r.Name()
				r.Byte()
				r.ULEB(32)
				rep.Exports = append(rep.Exports, name)
			}
		case 10:
			for n := r.ULEB(32); n > 0 && r.Err == nil; n-- {
				rep.Functions++
				countFeatures(r.Bytes(r.ULEB(32)), rep)
			}
		}
		if r.Err != nil {
			return nil, r.Err
		}
	}
	return rep, nil
}

// countFeatures scans a body for post-MVP and float instructions.
func countFeatures(body []byte, rep *Report) {
	r := wasmbin.NewReader(body, ErrUnsupported)
	for n := r.U32(); n > 0 && r.Err == nil; n-- {
		r.U32()
		r.Byte()
	}
	for r.More() {
		in := r.Instr()
		switch op := in.Op; {
		case r.Err != nil:
			if op == 0xfd {
				rep.Features["SIMD"]++
			}
			return
		case (op == 0x02 || op == 0x03 || op == 0x04) && in.BlockType >= 0:
			rep.Features["multi-value block types"]++
		case op == 0x25 || op == 0x26 || op >= 0xd0 && op <= 0xd2:
			rep.Features["reference types"]++
		case op == 0x1c:
			rep.Features["typed select"]++
		case op == 0x2a || op == 0x2b || op == 0x38 || op == 0x39 || op == 0x43 || op == 0x44,
			op >= 0x5b && op <= 0x66, op >= 0x8b && op <= 0xa6, op >= 0xa8 && op <= 0xab, op >= 0xae && op <= 0xbf:
			rep.Floats++
		case op >= 0xc0 && op <= 0xc4:
			rep.Features["sign extension"]++
		case op == 0xfc && in.Sub <= 7:
			rep.Features["saturating float-to-int"]++
		case op == 0xfc && (in.Sub == 10 || in.Sub == 11):
			rep.Features["bulk memory"]++
		case op == 0xfc:
			rep.Features[fmt.Sprintf("0xFC %d", in.Sub)]++
		}
	}
}

// String formats the report.
func (rep *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "size: %d bytes, %d functions\n", rep.Size, rep.Functions)
	fmt.Fprintf(&b, "sections:\n  %s\n", strings.Join(rep.Sections, "\n  "))
	fmt.Fprintf(&b, "imports (%d):\n  %s\n", len(rep.Imports), strings.Join(rep.Imports, "\n  "))
	fmt.Fprintf(&b, "exports: %s\n", strings.Join(rep.Exports, ", "))
	feats := make([]string, 0, len(rep.Features))
	for f, n := range rep.Features {
		feats = append(feats, fmt.Sprintf("%s (%d)", f, n))
	}
	sort.Strings(feats)
	if len(feats) == 0 {
		feats = []string{"none beyond MVP"}
	}
	fmt.Fprintf(&b, "features: %s\nfloat instructions: %d\n", strings.Join(feats, ", "), rep.Floats)
	return b.String()
}
