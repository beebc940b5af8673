package wasmmeter

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/tezos-dsn/dsn/internal/wasmbin"
)

// ---- a small module assembler for the tests ----

const (
	i32 = 0x7f
	i64 = 0x7e
)

type tfunc struct {
	params, results []byte
	locals          []byte // one value type per local
	code            []byte // the expression, with its final end
	export          string
}

type tmod struct {
	funcs        []tfunc
	hostFunc     bool // imports host.h (i32) -> i32 as function 0
	importGlobal bool // imports genv.g (i32, immutable) as global 0
	global       bool // defines a mutable i32 global = 7 (after the imported one)
	memory       bool // defines and exports memory "memory" of one page
	table        bool // a funcref table holding every function, in index order
	start        int  // index+1 of the start function, 0 for none
	data         []byte
	noExports    bool
}

func (m tmod) bytes() []byte {
	out := []byte("\x00asm\x01\x00\x00\x00")
	nf := len(m.funcs)
	var types []byte
	types = uleb(types, uint64(nf+1))
	for _, f := range m.funcs {
		types = append(types, 0x60)
		types = append(uleb(types, uint64(len(f.params))), f.params...)
		types = append(uleb(types, uint64(len(f.results))), f.results...)
	}
	types = append(types, 0x60, 1, i32, 1, i32) // type nf: the host function's
	out = append(out, section(1, types)...)
	var imps [][]byte
	if m.hostFunc {
		imps = append(imps, uleb(append(str(str(nil, "host"), "h"), 0), uint64(nf)))
	}
	if m.importGlobal {
		imps = append(imps, append(str(str(nil, "genv"), "g"), 3, i32, 0))
	}
	if len(imps) > 0 {
		b := uleb(nil, uint64(len(imps)))
		for _, im := range imps {
			b = append(b, im...)
		}
		out = append(out, section(2, b)...)
	}
	fs := uleb(nil, uint64(nf))
	for i := range m.funcs {
		fs = uleb(fs, uint64(i))
	}
	out = append(out, section(3, fs)...)
	nImp := 0
	if m.hostFunc {
		nImp = 1
	}
	if m.table {
		out = append(out, section(4, []byte{1, 0x70, 0, byte(nImp + nf)})...)
	}
	if m.memory {
		out = append(out, section(5, []byte{1, 0, 1})...)
	}
	if m.global {
		out = append(out, section(6, []byte{1, i32, 1, 0x41, 7, 0x0b})...)
	}
	if !m.noExports {
		var ex [][]byte
		for i, f := range m.funcs {
			if f.export != "" {
				ex = append(ex, uleb(append(str(nil, f.export), 0), uint64(nImp+i)))
			}
		}
		if m.memory {
			ex = append(ex, append(str(nil, "memory"), 2, 0))
		}
		b := uleb(nil, uint64(len(ex)))
		for _, e := range ex {
			b = append(b, e...)
		}
		out = append(out, section(7, b)...)
	}
	if m.start > 0 {
		out = append(out, section(8, uleb(nil, uint64(nImp+m.start-1)))...)
	}
	if m.table {
		b := []byte{1, 0, 0x41, 0, 0x0b}
		b = uleb(b, uint64(nImp+nf))
		for i := 0; i < nImp+nf; i++ {
			b = uleb(b, uint64(i))
		}
		out = append(out, section(9, b)...)
	}
	code := uleb(nil, uint64(nf))
	for _, f := range m.funcs {
		body := uleb(nil, uint64(len(f.locals)))
		for _, t := range f.locals {
			body = append(body, 1, t)
		}
		body = append(body, f.code...)
		code = append(uleb(code, uint64(len(body))), body...)
	}
	out = append(out, section(10, code)...)
	if m.data != nil {
		b := append([]byte{1, 0, 0x41, 0, 0x0b}, uleb(nil, uint64(len(m.data)))...)
		out = append(out, section(11, append(b, m.data...))...)
	}
	return out
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// testCosts gives every opcode a different cost, so a misplaced charge shows.
type testCosts struct{}

func (testCosts) Ticks(op byte, sub uint32) uint64 {
	if op == 0xfc {
		return 1000 + uint64(sub)
	}
	return uint64(op) + 1
}

var tables = []struct {
	name string
	c    Costs
}{{"test", testCosts{}}, {"octez", Octez}}

// sum is the cost of the instructions with these opcodes (no 0xFC ones).
func sum(c Costs, ops ...byte) uint64 {
	var s uint64
	for _, op := range ops {
		s += c.Ticks(op, 0)
	}
	return s
}

// ---- running modules ----

type outcome struct {
	results []uint64
	trap    bool
	ticks   uint64 // the counter, if the module is metered
	memory  []byte // the first 64 bytes of the exported memory, if any
	// profile holds the self-tick counters of functions 0 to 63 that the
	// module exports (it is empty unless it was instrumented with profile).
	profile map[uint32]uint64
	// checkpoints: the calls of the checkpoint host function.
	checkpoints uint64
}

// checkpointQuantum is how far the tests' checkpoint host moves the
// checkpoint past the counter: small, so that runs call it often.
const checkpointQuantum = 100

// checkpointHost is what the tests' checkpoint function returns.
var checkpointHost = func(ticks uint64) uint64 { return ticks + checkpointQuantum }

// run instantiates wasm in a fresh runtime and calls fn with args.
func run(t testing.TB, wasm []byte, fn string, args ...uint64) outcome {
	t.Helper()
	// A run that does not stop at its limit would spin: give up after 20 s.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(true).
		WithCoreFeatures(api.CoreFeaturesV1|api.CoreFeatureSignExtensionOps))
	defer r.Close(ctx)
	if _, err := r.NewHostModuleBuilder("host").NewFunctionBuilder().
		WithFunc(func(x uint32) uint32 { return x*x + 1 }).Export("h").
		Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
	var checkpoints uint64
	if _, err := r.NewHostModuleBuilder(CheckpointModule).NewFunctionBuilder().
		WithFunc(func(ticks uint64) uint64 {
			checkpoints++
			return checkpointHost(ticks)
		}).Export(CheckpointName).Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
	genv := cat([]byte("\x00asm\x01\x00\x00\x00"), section(6, []byte{1, i32, 0, 0x41, 42, 0x0b}),
		section(7, append(str(uleb(nil, 1), "g"), 3, 0)))
	if _, err := r.InstantiateWithConfig(ctx, genv, wazero.NewModuleConfig().WithName("genv")); err != nil {
		t.Fatal(err)
	}
	mod, err := r.InstantiateWithConfig(ctx, wasm, wazero.NewModuleConfig().WithName("m"))
	var o outcome
	if err == nil && fn != "" {
		o.results, err = mod.ExportedFunction(fn).Call(ctx, args...)
	}
	o.checkpoints = checkpoints
	if err != nil {
		if mod == nil && fn != "" || !isTrap(err) || ctx.Err() != nil {
			t.Fatalf("%s: %v", fn, err)
		}
		o.trap = true
	}
	if mod == nil { // the start function trapped
		return o
	}
	if g := mod.ExportedGlobal(CounterExport); g != nil {
		o.ticks = g.Get()
	}
	o.profile = map[uint32]uint64{}
	for i := uint32(0); i < 64; i++ {
		if g := mod.ExportedGlobal(ProfileExport(i)); g != nil {
			o.profile[i] = g.Get()
		}
	}
	if mem := mod.ExportedMemory("memory"); mem != nil {
		o.memory, _ = mem.Read(0, 64)
		o.memory = append([]byte(nil), o.memory...)
	}
	return o
}

func isTrap(err error) bool { return err != nil && strings.Contains(err.Error(), "wasm error") }

func instrument(t testing.TB, wasm []byte, c Costs, limit uint64) []byte {
	t.Helper()
	return instrumentWith(t, wasm, c, limit, Options{})
}

func instrumentWith(t testing.TB, wasm []byte, c Costs, limit uint64, o Options) []byte {
	t.Helper()
	out, err := InstrumentWith(wasm, c, limit, o)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// ---- tests ----

func TestStraightLine(t *testing.T) {
	// f(a, b) = (a + b) * 3 - (a >> 1), with an unused i64 local.
	code := []byte{0x20, 0, 0x20, 1, 0x6a, 0x41, 3, 0x6c, 0x20, 0, 0x41, 1, 0x76, 0x6b, 0x0b}
	ops := []byte{0x20, 0x20, 0x6a, 0x41, 0x6c, 0x20, 0x41, 0x76, 0x6b, 0x0b}
	m := tmod{funcs: []tfunc{{params: []byte{i32, i32}, results: []byte{i32}, locals: []byte{i64}, code: code, export: "f"}}}.bytes()
	for _, tc := range tables {
		t.Run(tc.name, func(t *testing.T) {
			want := sum(tc.c, ops...) + entryTicks(tc.c, 2, 1)
			if tc.name == "octez" && want != 10*6-6+7+3+2*3 {
				t.Fatalf("octez cost %d", want)
			}
			got := run(t, instrument(t, m, tc.c, 1<<40), "f", 10, 4)
			if got.trap || got.results[0] != (10+4)*3-5 || got.ticks != want {
				t.Fatalf("got %+v, want result %d ticks %d", got, (10+4)*3-5, want)
			}
		})
	}
}

// loopFunc sums n..1 with a block/loop/br_if/br loop.
var loopFunc = tfunc{params: []byte{i32}, results: []byte{i32}, locals: []byte{i32}, export: "f", code: []byte{
	0x02, 0x40, 0x03, 0x40, // block loop
	0x20, 0, 0x45, 0x0d, 1, // local.get 0; i32.eqz; br_if 1
	0x20, 1, 0x20, 0, 0x6a, 0x21, 1, // local.get 1; local.get 0; i32.add; local.set 1
	0x20, 0, 0x41, 1, 0x6b, 0x21, 0, // local.get 0; i32.const 1; i32.sub; local.set 0
	0x0c, 0, 0x0b, 0x0b, // br 0; end; end
	0x20, 1, 0x0b, // local.get 1; end
}}

func loopTicks(c Costs, n uint64) (entry, header, body, exit uint64) {
	entry = sum(c, 0x02, 0x03) + entryTicks(c, 1, 1)
	header = sum(c, 0x20, 0x45, 0x0d)
	body = sum(c, 0x20, 0x20, 0x6a, 0x21, 0x20, 0x41, 0x6b, 0x21, 0x0c)
	exit = sum(c, 0x20, 0x0b)
	return
}

func TestLoopIsLinear(t *testing.T) {
	m := tmod{funcs: []tfunc{loopFunc}}.bytes()
	for _, tc := range tables {
		t.Run(tc.name, func(t *testing.T) {
			metered := instrument(t, m, tc.c, 1<<40)
			for _, n := range []uint64{0, 1, 2, 7, 100, 1000} {
				entry, header, body, exit := loopTicks(tc.c, n)
				want := entry + (n+1)*header + n*body + exit
				got := run(t, metered, "f", n)
				if got.trap || got.results[0] != n*(n+1)/2 || got.ticks != want {
					t.Fatalf("n=%d: got %+v, want ticks %d", n, got, want)
				}
			}
		})
	}
}

func TestLimitAtLoopHeader(t *testing.T) {
	m := tmod{funcs: []tfunc{loopFunc}}.bytes()
	const n = 50
	entry, header, body, exit := loopTicks(Octez, n)
	total := entry + (n+1)*header + n*body + exit
	lastCheck := total - exit // the counter at the last loop-header check
	// Exactly at the limit: no trap.
	if got := run(t, instrument(t, m, Octez, total), "f", n); got.trap || got.ticks != total {
		t.Fatalf("limit %d: %+v", total, got)
	}
	// Past the last check: the run ends normally, over the limit by less
	// than one body path; the host sees counter > limit.
	if got := run(t, instrument(t, m, Octez, lastCheck), "f", n); got.trap || got.ticks <= lastCheck {
		t.Fatalf("limit %d: %+v", lastCheck, got)
	}
	// One tick below the last check: trap there.
	if got := run(t, instrument(t, m, Octez, lastCheck-1), "f", n); !got.trap || got.ticks != lastCheck {
		t.Fatalf("limit %d: %+v", lastCheck-1, got)
	}
	// The entry check.
	if got := run(t, instrument(t, m, Octez, entry-1), "f", n); !got.trap || got.ticks != entry {
		t.Fatalf("limit %d: %+v", entry-1, got)
	}
}

func TestSpinTraps(t *testing.T) {
	spin := tmod{funcs: []tfunc{{export: "f", code: []byte{0x03, 0x40, 0x0c, 0, 0x0b, 0x0b}}}}.bytes()
	for _, tc := range tables {
		t.Run(tc.name, func(t *testing.T) {
			for _, limit := range []uint64{0, 1, 1000, 123457} {
				metered := instrument(t, spin, tc.c, limit)
				// Entry block: loop; header block: br 0 (then the dead ends).
				want := sum(tc.c, 0x03) + entryTicks(tc.c, 0, 0)
				for want <= limit {
					want += sum(tc.c, 0x0c)
				}
				for i := 0; i < 3; i++ {
					got := run(t, metered, "f")
					if !got.trap || got.ticks != want || got.ticks <= limit {
						t.Fatalf("limit %d run %d: %+v, want trap at %d", limit, i, got, want)
					}
				}
			}
		})
	}
}

// compare runs fn on the original and the metered module with each
// argument list: same results, traps and memory, and the same count on a
// second run.
func compare(t *testing.T, m []byte, c Costs, fn string, argss ...[]uint64) []uint64 {
	t.Helper()
	metered := instrument(t, m, c, 1<<40)
	var ticks []uint64
	for _, args := range argss {
		want := run(t, m, fn, args...)
		got := run(t, metered, fn, args...)
		again := run(t, metered, fn, args...)
		if fmt.Sprint(got.results, got.trap) != fmt.Sprint(want.results, want.trap) ||
			!bytes.Equal(got.memory, want.memory) {
			t.Fatalf("%s%v: metered %+v, original %+v", fn, args, got, want)
		}
		if got.ticks == 0 || got.ticks != again.ticks {
			t.Fatalf("%s%v: ticks %d then %d", fn, args, got.ticks, again.ticks)
		}
		ticks = append(ticks, got.ticks)
	}
	return ticks
}

func TestIfElse(t *testing.T) {
	// f(x) = x ? 10 : 20, stored at address 0 too.
	code := []byte{0x41, 0, 0x20, 0, 0x04, i32, 0x41, 10, 0x05, 0x41, 20, 0x0b, 0x36, 2, 0, 0x41, 0, 0x28, 2, 0, 0x0b}
	m := tmod{memory: true, funcs: []tfunc{{params: []byte{i32}, results: []byte{i32}, code: code, export: "f"}}}.bytes()
	for _, tc := range tables {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			b0 := sum(c, 0x41, 0x20, 0x04) + entryTicks(c, 1, 0)
			then, els := sum(c, 0x41, 0x05), sum(c, 0x41, 0x0b)
			after := sum(c, 0x36, 0x41, 0x28, 0x0b)
			got := compare(t, m, c, "f", []uint64{1}, []uint64{0}, []uint64{7})
			if want := []uint64{b0 + then + after, b0 + els + after, b0 + then + after}; fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("ticks %v, want %v", got, want)
			}
		})
	}
}

func TestBrTable(t *testing.T) {
	code := []byte{
		0x02, 0x40, 0x02, 0x40, 0x02, 0x40, // block block block
		0x20, 0, 0x0e, 2, 0, 1, 2, // local.get 0; br_table 0 1 2
		0x0b, 0x41, 100, 0x0f, // end; i32.const 100; return
		0x0b, 0x41, 0xc8, 0x01, 0x0f, // end; i32.const 200; return
		0x0b, 0x41, 0xac, 0x02, 0x0b, // end; i32.const 300; end
	}
	m := tmod{funcs: []tfunc{{params: []byte{i32}, results: []byte{i32}, code: code, export: "f"}}}.bytes()
	for _, tc := range tables {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			b0 := sum(c, 0x02, 0x02, 0x02, 0x20, 0x0e) + entryTicks(c, 1, 0)
			ret, last := sum(c, 0x41, 0x0f), sum(c, 0x41, 0x0b)
			got := compare(t, m, c, "f", []uint64{0}, []uint64{1}, []uint64{2}, []uint64{9})
			if want := []uint64{b0 + ret, b0 + ret, b0 + last, b0 + last}; fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("ticks %v, want %v", got, want)
			}
		})
	}
}

func TestCalls(t *testing.T) {
	// With a host import (function 0), an imported global (0) and a defined
	// one (1), so the counter is global 2.
	g := tfunc{params: []byte{i32}, results: []byte{i32}, code: []byte{0x20, 0, 0x41, 2, 0x6c, 0x41, 1, 0x6a, 0x0b}}
	h := tfunc{params: []byte{i32}, results: []byte{i32}, code: []byte{0x20, 0, 0x41, 3, 0x6b, 0x0b}}
	// call(x, i) = g(x) + table[i](x) + host.h(x) + genv.g + global 1
	caller := tfunc{params: []byte{i32, i32}, results: []byte{i32}, export: "call", code: []byte{
		0x20, 0, 0x10, 1, // call g
		0x20, 0, 0x20, 1, 0x11, 0, 0, // call_indirect (type 0) table[i]
		0x6a,
		0x20, 0, 0x10, 0, 0x6a, // call host.h
		0x23, 0, 0x6a, 0x23, 1, 0x6a, 0x0b,
	}}
	m := tmod{hostFunc: true, importGlobal: true, global: true, table: true, memory: true,
		funcs: []tfunc{g, h, caller}}.bytes()
	for _, tc := range tables {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			// table: 0 host.h, 1 g, 2 h, 3 caller; type 0 is g's (i32) -> i32.
			got := compare(t, m, c, "call", []uint64{5, 1}, []uint64{5, 2}, []uint64{5, 0}, []uint64{5, 9})
			gTicks := sum(c, 0x20, 0x41, 0x6c, 0x41, 0x6a, 0x0b) + entryTicks(c, 1, 0)
			hTicks := sum(c, 0x20, 0x41, 0x6b, 0x0b) + entryTicks(c, 1, 0)
			pre := sum(c, 0x20, 0x10) + entryTicks(c, 2, 0) + gTicks + sum(c, 0x20, 0x20, 0x11)
			post := sum(c, 0x6a, 0x20, 0x10) + sum(c, 0x6a, 0x23, 0x6a, 0x23, 0x6a, 0x0b)
			want := []uint64{pre + gTicks + post, pre + hTicks + post, pre + post}
			if fmt.Sprint(got[:3]) != fmt.Sprint(want) {
				t.Fatalf("ticks %v, want %v", got[:3], want)
			}
			if got[3] != pre { // table[9] traps out of bounds
				t.Fatalf("trapping call_indirect: %d ticks, want %d", got[3], pre)
			}
		})
	}
}

func TestNoGlobalOrExportSection(t *testing.T) {
	// A start function that runs the loop (n = 10) and stores the sum: the
	// module has neither a global nor an export section, but a data one.
	start := loopFunc
	start.export = ""
	start.results = nil
	run10 := tfunc{code: []byte{0x41, 0, 0x41, 10, 0x10, 0, 0x36, 2, 0, 0x0b}}
	m := tmod{noExports: true, memory: true, start: 2, data: []byte("abc"), funcs: []tfunc{
		{params: []byte{i32}, results: []byte{i32}, locals: []byte{i32}, code: start.code}, run10}}.bytes()
	metered := instrument(t, m, Octez, 1<<40)
	got := run(t, metered, "")
	entry, header, body, exit := loopTicks(Octez, 10)
	want := entry + 11*header + 10*body + exit + sum(Octez, 0x41, 0x41, 0x10, 0x36, 0x0b) + entryTicks(Octez, 0, 0)
	if got.ticks != want {
		t.Fatalf("ticks %d, want %d", got.ticks, want)
	}
	if got := run(t, instrument(t, m, Octez, 100), ""); !got.trap {
		t.Fatal("the start function should run out of ticks")
	}
}

// Checkpoints change no result, no tick count and no trap at the limit,
// with or without profile; the module calls the checkpoint function as its
// counter passes the checkpoint, at most once per quantum. The modules
// cover what the import renumbers: calls, call_indirect through an element
// segment, an exported function, a start function.
func TestCheckpoints(t *testing.T) {
	defer func(h func(uint64) uint64) { checkpointHost = h }(checkpointHost)
	calls := tmod{hostFunc: true, importGlobal: true, global: true, table: true, memory: true, funcs: []tfunc{
		{params: []byte{i32}, results: []byte{i32}, code: []byte{0x20, 0, 0x41, 2, 0x6c, 0x41, 1, 0x6a, 0x0b}},
		{params: []byte{i32}, results: []byte{i32}, code: []byte{0x20, 0, 0x41, 3, 0x6b, 0x0b}},
		{params: []byte{i32, i32}, results: []byte{i32}, export: "call", code: []byte{
			0x20, 0, 0x10, 1, 0x20, 0, 0x20, 1, 0x11, 0, 0, 0x6a, 0x20, 0, 0x10, 0, 0x6a, 0x23, 0, 0x6a, 0x23, 1, 0x6a, 0x0b}},
		loopFunc,
	}}.bytes()
	started := tmod{memory: true, start: 2, funcs: []tfunc{
		{params: []byte{i32}, results: []byte{i32}, locals: []byte{i32}, code: loopFunc.code},
		{code: []byte{0x41, 0, 0x41, 60, 0x10, 0, 0x36, 2, 0, 0x0b}}}}.bytes() // stores the sum of 60..1
	spin := tmod{funcs: []tfunc{{export: "f", code: []byte{0x03, 0x40, 0x0c, 0, 0x0b, 0x0b}}}}.bytes()
	for _, tc := range []struct {
		name  string
		wasm  []byte
		fn    string
		argss [][]uint64
	}{
		{"calls", calls, "call", [][]uint64{{5, 1}, {5, 2}, {5, 0}, {5, 9}}},
		{"loop", tmod{funcs: []tfunc{loopFunc}}.bytes(), "f", [][]uint64{{0}, {7}, {1000}}},
		{"start", started, "", [][]uint64{nil}},
		{"spin", spin, "f", [][]uint64{nil}},
	} {
		for _, limit := range []uint64{1 << 40, 5000} {
			if tc.name == "spin" && limit > 5000 {
				continue // it would spin for hours
			}
			plain := instrument(t, tc.wasm, Octez, limit)
			prof := instrumentProfile(t, tc.wasm, Octez, limit)
			chk := instrumentWith(t, tc.wasm, Octez, limit, Options{Checkpoints: true})
			both := instrumentWith(t, tc.wasm, Octez, limit, Options{Checkpoints: true, Profile: true})
			for _, args := range tc.argss {
				want, wantProf := run(t, plain, tc.fn, args...), run(t, prof, tc.fn, args...)
				got, gotProf := run(t, chk, tc.fn, args...), run(t, both, tc.fn, args...)
				same := func(a, b outcome) bool {
					return fmt.Sprint(a.results, a.trap, a.ticks) == fmt.Sprint(b.results, b.trap, b.ticks) && bytes.Equal(a.memory, b.memory)
				}
				if !same(got, want) || !same(gotProf, want) || fmt.Sprint(gotProf.profile) != fmt.Sprint(wantProf.profile) {
					t.Fatalf("%s%v limit %d: with checkpoints %+v, profiled %+v; without %+v, profiled %+v", tc.name, args, limit, got, gotProf, want, wantProf)
				}
				if want.checkpoints != 0 || got.checkpoints == 0 || got.checkpoints > got.ticks/checkpointQuantum+1 ||
					got.ticks > 20*checkpointQuantum && got.checkpoints < got.ticks/(4*checkpointQuantum) {
					t.Fatalf("%s%v limit %d: %d checkpoints in %d ticks (quantum %d)", tc.name, args, limit, got.checkpoints, got.ticks, checkpointQuantum)
				}
				// Whatever the host returns, the run is the same.
				for _, h := range []func(uint64) uint64{
					func(uint64) uint64 { return 0 },
					func(uint64) uint64 { return ^uint64(0) },
					func(t uint64) uint64 { return t + 1<<63 },
				} {
					checkpointHost = h
					if odd := run(t, chk, tc.fn, args...); !same(odd, want) {
						t.Fatalf("%s%v limit %d: with an odd host %+v, without checkpoints %+v", tc.name, args, limit, odd, want)
					}
				}
				checkpointHost = func(ticks uint64) uint64 { return ticks + checkpointQuantum }
			}
		}
	}
}

// With checkpoints, the name section follows the functions' new indices:
// the import stays, defined functions move up by one, in the function names
// and the local names; the module name stays, other subsections go.
func TestCheckpointsRenumberNames(t *testing.T) {
	m := tmod{hostFunc: true, funcs: []tfunc{loopFunc, {code: []byte{0x0b}}}}.bytes()
	names := func(sum, nop uint32, labels bool) []byte {
		sub := func(id byte, b []byte) []byte { return append(uleb([]byte{id}, uint64(len(b))), b...) }
		fn := cat([]byte{3, 0}, str(nil, "host.h"), uleb(nil, uint64(sum)), str(nil, "sum_to"), uleb(nil, uint64(nop)), str(nil, "nop"))
		locals := cat([]byte{1}, uleb(nil, uint64(sum)), []byte{2, 0}, str(nil, "n"), []byte{1}, str(nil, "acc"))
		body := cat(str(nil, "name"), sub(0, str(nil, "mod")), sub(1, fn), sub(2, locals))
		if labels {
			body = cat(body, sub(3, []byte{0}))
		}
		return section(0, body)
	}
	out := instrumentWith(t, cat(m, names(1, 2, true)), Octez, 1000, Options{Checkpoints: true})
	if !bytes.HasSuffix(out, names(2, 3, false)) {
		t.Fatalf("name section not renumbered: % x", out[len(out)-60:])
	}
	got, err := FunctionNames(out)
	if want := map[uint32]string{0: "host.h", 2: "sum_to", 3: "nop"}; err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, %v; want %v", got, err, want)
	}
	// A name section that does not parse is dropped, not refused.
	bad := cat(m, section(0, cat(str(nil, "name"), []byte{1, 5, 3, 1, 1, 'a', 2})))
	if out, err := InstrumentWith(bad, Octez, 1000, Options{Checkpoints: true}); err != nil || bytes.Contains(out, []byte("\x04name")) {
		t.Fatalf("bad name section: %v", err)
	}
}

// ref.func (WebAssembly 2.0, which the PVM refuses but InstrumentWith
// takes) names functions too, in code and in global initializers: with
// checkpoints both are renumbered. The module, from wat2wasm:
//
//	(module
//	  (type $t (func (result i32)))
//	  (table 1 funcref)
//	  (global $g funcref (ref.func $b))
//	  (func $a (result i32) (i32.const 5))
//	  (func $b (export "b") (result i32) (i32.const 7))
//	  (func (export "f") (result i32)
//	    (table.set 0 (i32.const 0) (global.get $g))
//	    (call_indirect (type $t) (i32.const 0))
//	    (table.set 0 (i32.const 0) (ref.func $b))
//	    (call_indirect (type $t) (i32.const 0))
//	    i32.add))
func TestCheckpointsRenumberRefFunc(t *testing.T) {
	m, err := hex.DecodeString("0061736d010000000105016000017f0304030000000404017000010606017000d2010b07090201620001016600020a2503040041050b040041070b190041002300260041001100004100d201260041001100006a0b")
	if err != nil {
		t.Fatal(err)
	}
	chk := instrumentWith(t, m, Octez, 1<<40, Options{Checkpoints: true})
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	if _, err := r.NewHostModuleBuilder(CheckpointModule).NewFunctionBuilder().
		WithFunc(func(ticks uint64) uint64 { return ticks + checkpointQuantum }).Export(CheckpointName).Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
	for name, wasm := range map[string][]byte{"original": m, "with checkpoints": chk} {
		mod, err := r.InstantiateWithConfig(ctx, wasm, wazero.NewModuleConfig().WithName(name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if res, err := mod.ExportedFunction("f").Call(ctx); err != nil || res[0] != 14 {
			t.Fatalf("%s: f() = %v, %v; want 14 (b twice)", name, res, err)
		}
	}
}

func TestLargeConstants(t *testing.T) {
	// Limits and costs above 2^63 are unsigned: no trap at a limit of 2^64-1,
	// and a cost of 2^63+1 per instruction saturates the block.
	m := tmod{funcs: []tfunc{loopFunc}}.bytes()
	if got := run(t, instrument(t, m, Octez, ^uint64(0)), "f", 100); got.trap {
		t.Fatalf("%+v", got)
	}
	if got := run(t, instrument(t, m, Octez, 1<<63+5), "f", 3); got.trap {
		t.Fatalf("%+v", got)
	}
	if got := run(t, instrument(t, m, uniform(1<<63+1), 1<<63), "f", 3); !got.trap || got.ticks != ^uint64(0) {
		t.Fatalf("%+v", got)
	}
	if _, err := Instrument(instrument(t, m, Octez, 1), Octez, 1); err == nil {
		t.Fatal("instrumenting twice must fail (the counter export exists)")
	}
}

type uniform uint64

func (u uniform) Ticks(byte, uint32) uint64 { return uint64(u) }

func TestRejects(t *testing.T) {
	for name, wasm := range map[string][]byte{
		"empty":    nil,
		"header":   []byte("\x00asm\x02\x00\x00\x00"),
		"no end":   tmod{funcs: []tfunc{{code: []byte{0x01}}}}.bytes(),
		"trailing": tmod{funcs: []tfunc{{code: []byte{0x0b, 0x01}}}}.bytes(),
		"tail":     tmod{funcs: []tfunc{{code: []byte{0x12, 0, 0x0b}}}}.bytes(),
		"simd":     tmod{funcs: []tfunc{{code: []byte{0xfd, 0, 0x0b}}}}.bytes(),
	} {
		if _, err := Instrument(wasm, Octez, 10); !errors.Is(err, errModule) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// kernels lists the PVM's test kernels and, if it was built, the DSN kernel.
func kernels(t testing.TB) []string {
	files, err := filepath.Glob("../pvm/testdata/*.wasm")
	if err != nil || len(files) == 0 {
		t.Fatalf("no kernels: %v", err)
	}
	if _, err := os.Stat("../../bin/dsn.wasm"); err == nil {
		files = append(files, "../../bin/dsn.wasm")
	}
	return files
}

// TestKernels instruments the test kernels, plain and with profile: the
// output compiles, instantiates with its counters at 0 and validates.
func TestKernels(t *testing.T) {
	ctx := context.Background()
	validate, _ := exec.LookPath("wasm-validate")
	for _, f := range kernels(t) {
		for _, mode := range []struct {
			name string
			opts Options
		}{{"plain", Options{}}, {"profile", Options{Profile: true}}, {"checkpoints", Options{Checkpoints: true}},
			{"profile+checkpoints", Options{Profile: true, Checkpoints: true}}} {
			t.Run(filepath.Base(f)+"/"+mode.name, func(t *testing.T) {
				wasm, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				metered, err := InstrumentWith(wasm, Octez, 11_000_000_000, mode.opts)
				if err != nil {
					t.Fatal(err)
				}
				cfg := wazero.NewRuntimeConfigInterpreter().WithCoreFeatures(api.CoreFeaturesV2 | api.CoreFeatureSignExtensionOps)
				r := wazero.NewRuntimeWithConfig(ctx, cfg)
				defer r.Close(ctx)
				if _, err := r.CompileModule(ctx, wasm); err != nil {
					t.Skipf("the original does not compile: %v", err)
				}
				cm, err := r.CompileModule(ctx, metered)
				if err != nil {
					t.Fatalf("instrumented: %v", err)
				}
				mod, err := r.InstantiateModule(ctx, cm, stubHosts(t, ctx, r, cm))
				if err != nil {
					t.Fatalf("instantiate: %v", err)
				}
				if g, ok := mod.ExportedGlobal(CounterExport).(api.MutableGlobal); !ok || g.Type() != api.ValueTypeI64 || g.Get() != 0 {
					t.Fatalf("counter export: %v", mod.ExportedGlobal(CounterExport))
				}
				// With profile, a counter for each defined function, none
				// for the imported ones.
				imported := uint32(len(cm.ImportedFunctions()))
				if mode.opts.Checkpoints {
					imported-- // the checkpoint function, after the kernel's imports
				}
				defined := definedFuncs(t, wasm)
				if !mode.opts.Profile {
					defined = 0
				}
				for i := uint32(0); i < imported+defined+1; i++ {
					g, ok := mod.ExportedGlobal(ProfileExport(i)).(api.MutableGlobal)
					if want := i >= imported && i < imported+defined; ok != want || ok && (g.Type() != api.ValueTypeI64 || g.Get() != 0) {
						t.Fatalf("function %d (%d imported, %d defined): counter %v", i, imported, defined, mod.ExportedGlobal(ProfileExport(i)))
					}
				}
				t.Run("wasm-validate", func(t *testing.T) {
					if validate == "" {
						t.Skip("wasm-validate is not installed")
					}
					tmp := filepath.Join(t.TempDir(), "m.wasm")
					if err := os.WriteFile(tmp, metered, 0o644); err != nil {
						t.Fatal(err)
					}
					if out, err := exec.Command(validate, tmp).CombinedOutput(); err != nil {
						if exec.Command(validate, f).Run() != nil {
							t.Skip("wasm-validate refuses the original too")
						}
						t.Fatalf("wasm-validate: %v\n%s", err, out)
					}
				})
			})
		}
	}
}

// stubHosts instantiates, for the imports of cm, host functions that return
// zeros, and returns the configuration to instantiate cm with.
func stubHosts(t testing.TB, ctx context.Context, r wazero.Runtime, cm wazero.CompiledModule) wazero.ModuleConfig {
	t.Helper()
	stubs := map[string]wazero.HostModuleBuilder{}
	for _, d := range cm.ImportedFunctions() {
		modName, name, _ := d.Import()
		if stubs[modName] == nil {
			stubs[modName] = r.NewHostModuleBuilder(modName)
		}
		nres := len(d.ResultTypes())
		stubs[modName].NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, _ api.Module, stack []uint64) {
			clear(stack[:nres])
		}), d.ParamTypes(), d.ResultTypes()).Export(name)
	}
	for _, b := range stubs {
		if _, err := b.Instantiate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return wazero.NewModuleConfig()
}

// definedFuncs is the number of functions the module defines.
func definedFuncs(t testing.TB, wasm []byte) uint32 {
	t.Helper()
	secs, err := wasmbin.Sections(wasm, errModule)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secs {
		if s.ID == 3 {
			return wasmbin.NewReader(s.Body, errModule).U32()
		}
	}
	return 0
}

func TestSpinKernel(t *testing.T) {
	wasm, err := os.ReadFile("../pvm/testdata/spin.wasm")
	if err != nil {
		t.Fatal(err)
	}
	metered := instrument(t, wasm, Octez, 1_000_000)
	var first uint64
	for i := 0; i < 3; i++ {
		got := run(t, metered, "kernel_run")
		if !got.trap || got.ticks <= 1_000_000 || i > 0 && got.ticks != first {
			t.Fatalf("run %d: %+v (first %d)", i, got, first)
		}
		first = got.ticks
	}
}

func FuzzInstrument(f *testing.F) {
	for _, m := range []tmod{
		{funcs: []tfunc{loopFunc}},
		{memory: true, start: 1, funcs: []tfunc{{code: []byte{0x03, 0x40, 0x0c, 0, 0x0b, 0x0b}}}},
		{hostFunc: true, importGlobal: true, global: true, table: true, funcs: []tfunc{{params: []byte{i32}, results: []byte{i32},
			code: []byte{0x20, 0, 0x04, i32, 0x41, 1, 0x05, 0x20, 0, 0x41, 0, 0x11, 0, 0, 0x0b, 0x0b}}}},
	} {
		f.Add(m.bytes())
	}
	for _, k := range kernels(f) {
		if b, err := os.ReadFile(k); err == nil && len(b) < 4096 {
			f.Add(b)
		}
	}
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	f.Cleanup(func() { r.Close(ctx) })
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := Instrument(b, Octez, 1000)
		prof, perr := InstrumentProfile(b, Octez, 1000)
		if err != nil {
			return
		}
		orig, err := r.CompileModule(ctx, b)
		if err != nil {
			return
		}
		orig.Close(ctx)
		cm, err := r.CompileModule(ctx, out)
		if err != nil {
			t.Fatalf("the original compiles, the instrumented module does not: %v", err)
		}
		cm.Close(ctx)
		chk, err := InstrumentWith(b, Octez, 1000, Options{Checkpoints: true})
		if err != nil {
			if !strings.Contains(err.Error(), "element segment") {
				t.Fatalf("Instrument succeeds, with checkpoints it fails: %v", err)
			}
		} else if cm, err = r.CompileModule(ctx, chk); err != nil {
			t.Fatalf("the original compiles, the module with checkpoints does not: %v", err)
		} else {
			cm.Close(ctx)
		}
		if perr != nil { // only for a clash with an existing export
			if !strings.Contains(perr.Error(), "already exports "+profilePrefix) {
				t.Fatalf("Instrument succeeds, InstrumentProfile fails: %v", perr)
			}
			return
		}
		if cm, err = r.CompileModule(ctx, prof); err != nil {
			t.Fatalf("the original compiles, the profiled module does not: %v", err)
		}
		cm.Close(ctx)
	})
}

// BenchmarkMeteredLoop runs compute loops (1e5 iterations) metered and
// unmetered and reports the ratio of their times: an xorshift, whose
// dependency chain leaves room for the counter's update, and a bare
// count-down, the worst case (the counter doubles the loop's work).
func BenchmarkMeteredLoop(b *testing.B) {
	xorshift := []byte{
		0x20, 1, 0x20, 1, 0x42, 13, 0x86, 0x85, 0x21, 1, // x ^= x << 13
		0x20, 1, 0x20, 1, 0x42, 7, 0x88, 0x85, 0x21, 1, // x ^= x >> 7
		0x20, 1, 0x20, 1, 0x42, 17, 0x86, 0x85, 0x21, 1, // x ^= x << 17
	}
	countdown := []byte{0x20, 1, 0x42, 1, 0x7c, 0x21, 1} // x++
	for _, bc := range []struct {
		name string
		body []byte
	}{{"xorshift", xorshift}, {"countdown", countdown}} {
		b.Run(bc.name, func(b *testing.B) { benchLoop(b, bc.body) })
	}
}

func benchLoop(b *testing.B, body []byte) {
	code := cat([]byte{
		0x42, 1, 0x21, 1, // local 1 (i64) = 1
		0x02, 0x40, 0x03, 0x40, // block loop
		0x20, 0, 0x45, 0x0d, 1, // br_if 1 (n == 0)
	}, body, []byte{
		0x20, 0, 0x41, 1, 0x6b, 0x21, 0, 0x0c, 0, // n--; br 0
		0x0b, 0x0b, 0x20, 1, 0x0b,
	})
	m := tmod{funcs: []tfunc{{params: []byte{i32}, results: []byte{i64}, locals: []byte{i64}, code: code, export: "f"}}}.bytes()
	ctx := context.Background()
	call := func(wasm []byte) (func() time.Duration, api.Global) {
		r := wazero.NewRuntime(ctx)
		b.Cleanup(func() { r.Close(ctx) })
		mod, err := r.Instantiate(ctx, wasm)
		if err != nil {
			b.Fatal(err)
		}
		f := mod.ExportedFunction("f")
		return func() time.Duration {
			start := time.Now()
			if _, err := f.Call(ctx, 100_000); err != nil {
				b.Fatal(err)
			}
			return time.Since(start)
		}, mod.ExportedGlobal(CounterExport)
	}
	plain, _ := call(m)
	metered, counter := call(instrument(b, m, Octez, ^uint64(0)>>1))
	var tp, tm time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tp += plain()
		tm += metered()
	}
	b.StopTimer()
	if counter.Get() == 0 {
		b.Fatal("the metered loop did not count")
	}
	b.ReportMetric(float64(tp.Nanoseconds())/float64(b.N), "plain-ns/call")
	b.ReportMetric(float64(tm.Nanoseconds())/float64(b.N), "metered-ns/call")
	b.ReportMetric(float64(tm)/float64(tp), "metered/plain")
}

// TestTicksAtATrap: a block's whole cost is added when it starts, so a run
// that traps inside a block is charged the whole block, by unreachable and
// by an out-of-bounds load alike.
func TestTicksAtATrap(t *testing.T) {
	callG := []byte{0x01, 0x10, 1, 0x0b} // f: nop; call g; end
	fTicks := sum(Octez, 0x01, 0x10) + entryTicks(Octez, 0, 0)
	for _, tc := range []struct {
		name string
		g    []byte
		want uint64
	}{
		{"unreachable", []byte{0x01, 0x00, 0x0b}, fTicks + sum(Octez, 0x01, 0x00) + entryTicks(Octez, 0, 0)},
		{"out of bounds", []byte{0x41, 0x80, 0x80, 0x08, 0x28, 2, 0, 0x1a, 0x0b}, // i32.const 131072; i32.load; drop
			fTicks + sum(Octez, 0x41, 0x28, 0x1a, 0x0b) + entryTicks(Octez, 0, 0)},
	} {
		m := tmod{memory: true, funcs: []tfunc{{code: callG, export: "f"}, {code: tc.g}}}.bytes()
		for _, o := range []Options{{}, {Checkpoints: true}} {
			if got := run(t, instrumentWith(t, m, Octez, 1<<40, o), "f"); !got.trap || got.ticks != tc.want {
				t.Fatalf("%s (%+v): %+v, want a trap at %d ticks", tc.name, o, got, tc.want)
			}
		}
	}
}
