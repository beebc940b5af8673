package wasmlink

import (
	"fmt"
	"sort"
	"strings"
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
		r := &rd{b: s.body}
		switch s.id {
		case 2:
			for n := r.uleb(); n > 0 && r.err == nil; n-- {
				mod, name := r.name(), r.name()
				if r.u8() == 0 {
					r.uleb()
				}
				rep.Imports = append(rep.Imports, mod+"."+name)
			}
		case 7:
			for n := r.uleb(); n > 0 && r.err == nil; n-- {
				name := r.name()
				r.u8()
				r.uleb()
				rep.Exports = append(rep.Exports, name)
			}
		case 10:
			for n := r.uleb(); n > 0 && r.err == nil; n-- {
				rep.Functions++
				countFeatures(r.take(r.uleb()), rep)
			}
		}
		if r.err != nil {
			return nil, r.err
		}
	}
	return rep, nil
}

// countFeatures scans a body for post-MVP and float instructions.
func countFeatures(body []byte, rep *Report) {
	r := &rd{b: body}
	for n := r.uleb(); n > 0 && r.err == nil; n-- {
		r.uleb()
		r.u8()
	}
	for r.err == nil && r.off < len(r.b) {
		op := r.u8()
		switch {
		case op == 0x02 || op == 0x03 || op == 0x04:
			if b := r.b[r.off]; b == 0x40 || b >= 0x6f && b <= 0x7f {
				r.u8()
			} else {
				rep.Features["multi-value block types"]++
				r.skipSleb()
			}
		case op == 0x0c || op == 0x0d || op == 0x10 || op >= 0x20 && op <= 0x24 || op == 0x3f || op == 0x40:
			r.uleb()
		case op == 0x25 || op == 0x26 || op == 0xd2:
			rep.Features["reference types"]++
			r.uleb()
		case op == 0x0e:
			for k := r.uleb(); k > 0 && r.err == nil; k-- {
				r.uleb()
			}
			r.uleb()
		case op == 0x11:
			r.uleb()
			r.uleb()
		case op == 0x1c:
			rep.Features["typed select"]++
			for k := r.uleb(); k > 0 && r.err == nil; k-- {
				r.u8()
			}
		case op >= 0x28 && op <= 0x3e:
			if op == 0x2a || op == 0x2b || op == 0x38 || op == 0x39 {
				rep.Floats++
			}
			r.uleb()
			r.uleb()
		case op == 0x41 || op == 0x42:
			r.skipSleb()
		case op == 0x43:
			rep.Floats++
			r.take(4)
		case op == 0x44:
			rep.Floats++
			r.take(8)
		case op >= 0x5b && op <= 0x66 || op >= 0x8b && op <= 0xa6 || op >= 0xa8 && op <= 0xab || op >= 0xae && op <= 0xbf:
			rep.Floats++
		case op >= 0xc0 && op <= 0xc4:
			rep.Features["sign extension"]++
		case op == 0xd0:
			rep.Features["reference types"]++
			r.u8()
		case op == 0xfc:
			sub := r.uleb()
			switch {
			case sub <= 7:
				rep.Features["saturating float-to-int"]++
			case sub == 10 || sub == 11:
				rep.Features["bulk memory"]++
				r.uleb()
				if sub == 10 {
					r.uleb()
				}
			default:
				rep.Features[fmt.Sprintf("0xFC %d", sub)]++
				return
			}
		case op == 0xfd:
			rep.Features["SIMD"]++
			return
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
