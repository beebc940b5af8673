package wasmmeter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
)

func instrumentProfile(t testing.TB, wasm []byte, c Costs, limit uint64) []byte {
	t.Helper()
	return instrumentWith(t, wasm, c, limit, Options{Profile: true})
}

func total(profile map[uint32]uint64) uint64 {
	var s uint64
	for _, v := range profile {
		s += v
	}
	return s
}

// callLoop is a module whose f(n) calls g n times in a loop (and host.h,
// which costs nothing, as the host charges it). Functions: 0 host.h, 1 g, 2 f;
// globals: 0 genv.g, 1 the defined one, so the counter is global 2.
var callLoop = tmod{hostFunc: true, importGlobal: true, global: true, funcs: []tfunc{
	{params: []byte{i32}, results: []byte{i32}, code: []byte{0x20, 0, 0x41, 1, 0x6a, 0x0b}}, // g(x) = x + 1
	{params: []byte{i32}, results: []byte{i32}, locals: []byte{i32}, export: "f", code: []byte{
		0x02, 0x40, 0x03, 0x40, // block loop
		0x20, 0, 0x45, 0x0d, 1, // local.get 0; i32.eqz; br_if 1
		0x20, 1, 0x10, 1, // local.get 1; call g
		0x21, 1, 0x20, 0, 0x10, 0, // local.set 1; local.get 0; call host.h
		0x1a, 0x20, 0, 0x41, 1, 0x6b, 0x21, 0, 0x0c, 0, // drop; n--; br 0
		0x0b, 0x0b, // end end
		0x20, 1, 0x0b, // local.get 1; end
	}},
}}

// callLoopTicks are the self ticks of g and f in a run of f(n).
func callLoopTicks(c Costs, n uint64) (g, f uint64) {
	g = n * (sum(c, 0x20, 0x41, 0x6a, 0x0b) + entryTicks(c, 1, 0))
	entry := sum(c, 0x02, 0x03) + entryTicks(c, 1, 1)
	header := sum(c, 0x20, 0x45, 0x0d)
	body := sum(c, 0x20, 0x10) + sum(c, 0x21, 0x20, 0x10) + sum(c, 0x1a, 0x20, 0x41, 0x6b, 0x21, 0x0c)
	exit := sum(c, 0x20, 0x0b)
	f = entry + (n+1)*header + n*body + exit
	return
}

func TestProfileSelfTicks(t *testing.T) {
	m := callLoop.bytes()
	for _, tc := range tables {
		t.Run(tc.name, func(t *testing.T) {
			profiled := instrumentProfile(t, m, tc.c, 1<<40)
			for _, n := range []uint64{0, 1, 5, 100} {
				got := run(t, profiled, "f", n)
				g, f := callLoopTicks(tc.c, n)
				want := map[uint32]uint64{1: g, 2: f} // no counter for host.h
				if got.trap || got.results[0] != n || !reflect.DeepEqual(got.profile, want) {
					t.Fatalf("n=%d: got %+v, want result %d profile %v", n, got, n, want)
				}
				if got.ticks != g+f || total(got.profile) != got.ticks {
					t.Fatalf("n=%d: ticks %d, functions %v", n, got.ticks, got.profile)
				}
			}
		})
	}
}

func TestProfileAtLimit(t *testing.T) {
	// A run stopped by the limit: the counters still add up to the total,
	// which is Instrument's.
	m := callLoop.bytes()
	g, f := callLoopTicks(Octez, 100)
	for _, limit := range []uint64{0, 10, (g + f) / 3, g + f - 50, g + f} {
		plain := run(t, instrument(t, m, Octez, limit), "f", 100)
		got := run(t, instrumentProfile(t, m, Octez, limit), "f", 100)
		if got.trap != plain.trap || got.trap != (limit < g+f-sum(Octez, 0x20, 0x0b)) || got.ticks != plain.ticks || total(got.profile) != got.ticks {
			t.Fatalf("limit %d: profiled %+v, plain %+v", limit, got, plain)
		}
	}
}

func TestProfileSameTicks(t *testing.T) {
	// The modules and arguments of the other tests: the same results,
	// memory and ticks as Instrument, and the counters add up.
	g := tfunc{params: []byte{i32}, results: []byte{i32}, code: []byte{0x20, 0, 0x41, 2, 0x6c, 0x41, 1, 0x6a, 0x0b}}
	h := tfunc{params: []byte{i32}, results: []byte{i32}, code: []byte{0x20, 0, 0x41, 3, 0x6b, 0x0b}}
	caller := tfunc{params: []byte{i32, i32}, results: []byte{i32}, export: "call", code: []byte{
		0x20, 0, 0x10, 1, 0x20, 0, 0x20, 1, 0x11, 0, 0, 0x6a, 0x20, 0, 0x10, 0, 0x6a, 0x23, 0, 0x6a, 0x23, 1, 0x6a, 0x0b,
	}}
	calls := tmod{hostFunc: true, importGlobal: true, global: true, table: true, memory: true, funcs: []tfunc{g, h, caller}}
	ifElse := tmod{memory: true, funcs: []tfunc{{params: []byte{i32}, results: []byte{i32}, export: "f",
		code: []byte{0x41, 0, 0x20, 0, 0x04, i32, 0x41, 10, 0x05, 0x41, 20, 0x0b, 0x36, 2, 0, 0x41, 0, 0x28, 2, 0, 0x0b}}}}
	for _, tc := range []struct {
		name  string
		m     tmod
		fn    string
		argss [][]uint64
	}{
		{"calls", calls, "call", [][]uint64{{5, 1}, {5, 2}, {5, 0}, {5, 9}}},
		{"loop", tmod{funcs: []tfunc{loopFunc}}, "f", [][]uint64{{0}, {7}, {1000}}},
		{"if", ifElse, "f", [][]uint64{{0}, {1}}},
		{"callLoop", callLoop, "f", [][]uint64{{3}}},
	} {
		for _, c := range tables {
			t.Run(tc.name+"/"+c.name, func(t *testing.T) {
				m := tc.m.bytes()
				plain, profiled := instrument(t, m, c.c, 1<<40), instrumentProfile(t, m, c.c, 1<<40)
				for _, args := range tc.argss {
					want, got := run(t, plain, tc.fn, args...), run(t, profiled, tc.fn, args...)
					if fmt.Sprint(got.results, got.trap, got.ticks) != fmt.Sprint(want.results, want.trap, want.ticks) ||
						!bytes.Equal(got.memory, want.memory) || got.ticks == 0 || total(got.profile) != got.ticks ||
						len(got.profile) != len(tc.m.funcs) || len(want.profile) != 0 {
						t.Fatalf("%s%v: profiled %+v, plain %+v", tc.fn, args, got, want)
					}
				}
			})
		}
	}
}

func TestProfileKernels(t *testing.T) {
	// Run each kernel's kernel_run, with hosts that return zeros, under
	// a limit of a million ticks (spin.wasm reaches it): the profiled module
	// counts the ticks Instrument's does, and its counters add up to them.
	files := kernels(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter().WithCloseOnContextDone(true))
	defer r.Close(ctx)
	runs := 0
	for _, f := range files {
		wasm, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.CompileModule(ctx, wasm); err != nil {
			continue // a kernel the PVM rejects, e.g. for floats
		}
		var ticks [2]uint64
		var traps [2]bool
		for i, instrument := range []func([]byte, Costs, uint64) ([]byte, error){Instrument, InstrumentProfile} {
			metered, err := instrument(wasm, Octez, 1_000_000)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			cm, err := r.CompileModule(ctx, metered)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			mod, err := r.InstantiateModule(ctx, cm, stubHosts(t, ctx, r, cm).WithName(""))
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if fn := mod.ExportedFunction("kernel_run"); fn != nil {
				_, err = fn.Call(ctx)
				traps[i] = err != nil
				if err != nil && (!isTrap(err) || ctx.Err() != nil) {
					t.Fatalf("%s: %v", f, err)
				}
				runs++
			}
			ticks[i] = mod.ExportedGlobal(CounterExport).Get()
			if i == 1 {
				var self uint64
				for j := uint32(0); j < uint32(len(cm.ImportedFunctions()))+definedFuncs(t, wasm); j++ {
					if g := mod.ExportedGlobal(ProfileExport(j)); g != nil {
						self += g.Get()
					}
				}
				if self != ticks[1] {
					t.Errorf("%s: functions %d ticks, counter %d", filepath.Base(f), self, ticks[1])
				}
			}
			mod.Close(ctx)
			// The stub host modules are named after the imports: drop them
			// for the next instantiation.
			for _, d := range cm.ImportedFunctions() {
				name, _, _ := d.Import()
				if m := r.Module(name); m != nil {
					m.Close(ctx)
				}
			}
		}
		if ticks[0] != ticks[1] || traps[0] != traps[1] {
			t.Errorf("%s: plain %d ticks (trap %v), profiled %d (trap %v)", filepath.Base(f), ticks[0], traps[0], ticks[1], traps[1])
		}
		t.Logf("%s: %d ticks, trap %v", filepath.Base(f), ticks[1], traps[1])
	}
	if runs == 0 {
		t.Fatal("no kernel ran")
	}
}

func TestProfileRejects(t *testing.T) {
	// The profile exports must be new, like the counter's.
	m := tmod{hostFunc: true, funcs: []tfunc{{code: []byte{0x0b}, export: ProfileExport(1)}}}.bytes()
	if _, err := InstrumentProfile(m, Octez, 10); !errors.Is(err, errModule) {
		t.Fatalf("exports %s: %v", ProfileExport(1), err)
	}
	if _, err := Instrument(m, Octez, 10); err != nil { // no clash without profile
		t.Fatal(err)
	}
	// An export of an imported function's name (it has no counter) is not
	// a clash; profiling twice is.
	m = tmod{hostFunc: true, funcs: []tfunc{{code: []byte{0x0b}, export: ProfileExport(0)}}}.bytes()
	if _, err := InstrumentProfile(instrumentProfile(t, m, Octez, 10), Octez, 10); !errors.Is(err, errModule) {
		t.Fatalf("profiling twice: %v", err)
	}
	if ProfileExport(123) != "__dsn_fticks_123" {
		t.Fatal(ProfileExport(123))
	}
}

// ---- function names ----

// nameSection encodes a "name" custom section with a module name, these
// function names (in index order) and a local name for function 0.
func nameSection(funcs []uint32, names []string) []byte {
	sub := func(id byte, b []byte) []byte { return append(uleb([]byte{id}, uint64(len(b))), b...) }
	fn := uleb(nil, uint64(len(funcs)))
	for i, idx := range funcs {
		fn = str(uleb(fn, uint64(idx)), names[i])
	}
	locals := str([]byte{1, 0, 1, 0}, "x") // function 0: local 0 is "x"
	body := cat(str(nil, "name"), sub(0, str(nil, "mod")), sub(1, fn), sub(2, locals))
	return section(0, body)
}

func TestFunctionNames(t *testing.T) {
	m := tmod{hostFunc: true, funcs: []tfunc{loopFunc, {code: []byte{0x0b}}, {code: []byte{0x0b}}}}.bytes()
	want := map[uint32]string{0: "host.h", 1: "sum_to", 3: "ünïcode_3", 200: "not a function"}
	withNames := cat(m, section(0, append(str(nil, "other"), 1, 2, 3)),
		nameSection([]uint32{0, 1, 3, 200}, []string{"host.h", "sum_to", "ünïcode_3", "not a function"}))
	got, err := FunctionNames(withNames)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, %v; want %v", got, err, want)
	}
	// Instrumenting keeps custom sections.
	got, err = FunctionNames(instrumentProfile(t, withNames, Octez, 1000))
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("instrumented: got %v, %v", got, err)
	}
	// Without a name section, or with one without function names.
	for name, wasm := range map[string][]byte{
		"none":       m,
		"empty":      cat(m, section(0, str(nil, "name"))),
		"no funcs":   cat(m, section(0, cat(str(nil, "name"), []byte{0, 4}, str(nil, "mod")))),
		"other only": cat(m, section(0, append(str(nil, "other"), 1, 2, 3))),
	} {
		if got, err := FunctionNames(wasm); err != nil || got == nil || len(got) != 0 {
			t.Errorf("%s: %v, %v", name, got, err)
		}
	}
	// A truncated module: the names read before the cut, with an error
	// once the cut is inside the function names.
	start := len(withNames) - len(nameSection([]uint32{0, 1, 3, 200}, []string{"host.h", "sum_to", "ünïcode_3", "not a function"}))
	for n := 0; n < len(withNames); n++ {
		got, err := FunctionNames(withNames[:n])
		if got == nil || (n > start && err == nil) || len(got) > 0 && err == nil {
			t.Fatalf("cut at %d: %v, %v", n, got, err)
		}
		for k, v := range got {
			if want[k] != v {
				t.Fatalf("cut at %d: %v", n, got)
			}
		}
	}
	// Malformed function names: a count past the entries.
	bad := cat(m, section(0, cat(str(nil, "name"), []byte{1, 5, 3, 1, 1, 'a', 2})))
	if got, err := FunctionNames(bad); err == nil || !reflect.DeepEqual(got, map[uint32]string{1: "a"}) {
		t.Fatalf("bad count: %v, %v", got, err)
	}
	if got, err := FunctionNames([]byte("not wasm")); err == nil || got == nil {
		t.Fatalf("not wasm: %v, %v", got, err)
	}
}

func TestFunctionNamesWat2wasm(t *testing.T) {
	// wabt's encoder agrees with our decoder.
	wat2wasm, err := exec.LookPath("wat2wasm")
	if err != nil {
		t.Skip("wat2wasm is not installed")
	}
	dir := t.TempDir()
	src := `(module
  (import "m" "h" (func $host))
  (func $alpha (param $x i32))
  (func)
  (func $gamma.d_2 (call $alpha (i32.const 1))))`
	if err := os.WriteFile(filepath.Join(dir, "m.wat"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(wat2wasm, "--debug-names", filepath.Join(dir, "m.wat"), "-o", filepath.Join(dir, "m.wasm")).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	wasm, err := os.ReadFile(filepath.Join(dir, "m.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint32]string{0: "host", 1: "alpha", 3: "gamma.d_2"}
	if got, err := FunctionNames(wasm); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, %v; want %v", got, err, want)
	}
}

func TestFunctionNamesKernels(t *testing.T) {
	// Our kernels have no name section (wasmlink drops custom sections).
	for _, f := range kernels(t) {
		wasm, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := FunctionNames(wasm); err != nil || got == nil {
			t.Errorf("%s: %d names, %v", f, len(got), err)
		}
	}
}

func FuzzFunctionNames(f *testing.F) {
	m := tmod{hostFunc: true, funcs: []tfunc{loopFunc}}.bytes()
	f.Add(m)
	f.Add(cat(m, nameSection([]uint32{0, 1}, []string{"h", "loop"})))
	f.Add(cat(m[:8], nameSection([]uint32{7}, []string{"x"})))
	f.Add(cat(m[:8], section(0, cat(str(nil, "name"), []byte{1, 0x80, 0x80, 0x80, 0x80, 0x10}))))
	f.Fuzz(func(t *testing.T, b []byte) {
		names, err := FunctionNames(b)
		if names == nil {
			t.Fatalf("nil map (err %v)", err)
		}
	})
}
