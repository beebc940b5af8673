package pvm

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/blake2b"
)

func kernel(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newPVM(t testing.TB, k string) *PVM {
	t.Helper()
	cfg := DefaultConfig()
	cfg.TickLimit = 2_000_000_000 // a few seconds of the slowest kernel here
	p, err := New(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	if k != "" {
		if err := p.InstallKernel(kernel(t, k)); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func level(t *testing.T, p *PVM, n uint32, msgs ...[]byte) *LevelResult {
	t.Helper()
	res, err := p.RunLevel(context.Background(), n, 1_700_000_000, [32]byte{1}, msgs)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestWasmMatchesWat(t *testing.T) {
	if _, err := exec.LookPath("wat2wasm"); err != nil {
		t.Skip("wat2wasm not installed (apt-get install wabt)")
	}
	wats, _ := filepath.Glob("testdata/*.wat")
	for _, w := range wats {
		out := filepath.Join(t.TempDir(), "k.wasm")
		if b, err := exec.Command("wat2wasm", "--enable-all", w, "-o", out).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v %s", w, err, b)
		}
		got, _ := os.ReadFile(out)
		want, _ := os.ReadFile(strings.TrimSuffix(w, ".wat") + ".wasm")
		if !bytes.Equal(got, want) {
			t.Errorf("%s: committed .wasm is stale; run testdata/gen.sh", w)
		}
	}
}

func TestValidator(t *testing.T) {
	for _, k := range []string{"echo", "codes", "reboot", "once", "trap", "spin", "fuzzhost", "reveal"} {
		if err := Validate(kernel(t, k)); err != nil {
			t.Errorf("%s: %v", k, err)
		}
	}
	for k, want := range map[string]string{
		"reject_float":      "floating-point",
		"reject_wasi":       "only smart_rollup_core",
		"reject_bulk":       "0xFC",
		"reject_noentry":    "no kernel_run",
		"reject_nomemory":   "memory 0 is not exported",
		"reject_signature":  "wrong signature",
		"reject_multivalue": "multi-value",
	} {
		err := Validate(kernel(t, k))
		if !errors.Is(err, ErrInvalidModule) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", k, err, want)
		}
	}
}

func TestEchoKernel(t *testing.T) {
	p := newPVM(t, "echo")
	res := level(t, p, 7, External([]byte("hello")), External([]byte("world")))
	if res.Stuck != "" {
		t.Fatal(res.Stuck)
	}
	want := [][]byte{StartOfLevel(), InfoPerLevel(1_700_000_000, [32]byte{1}), External([]byte("hello")), External([]byte("world")), EndOfLevel()}
	if len(res.Outbox) != len(want) {
		t.Fatalf("outbox has %d messages, want %d", len(res.Outbox), len(want))
	}
	for i := range want {
		if !bytes.Equal(res.Outbox[i], want[i]) {
			t.Fatalf("outbox[%d] = %x, want %x", i, res.Outbox[i], want[i])
		}
	}
	if !strings.Contains(res.Debug, "hello") || res.Read != 5 || res.Dropped != 0 {
		t.Fatalf("debug %q read %d dropped %d", res.Debug, res.Read, res.Dropped)
	}
	level(t, p, 8, External([]byte("again")))
	v, _ := p.Durable().Get("/counter")
	if binary.LittleEndian.Uint32(v) != 9 {
		t.Fatalf("counter = %d, want 9 across two levels", binary.LittleEndian.Uint32(v))
	}
}

func TestHostErrorCodes(t *testing.T) {
	p := newPVM(t, "codes")
	if res := level(t, p, 1); res.Stuck != "" {
		t.Fatal(res.Stuck)
	}
	raw, ok := p.Durable().Get("/codes")
	if !ok {
		t.Fatal("no /codes")
	}
	want := []int32{0, 1, 2, 4, -4, -7, -3, -9, -2, -2, -4, -6, -13, 0, 3, 0, -3, 1, 1, -12, -9, 0, 0, 0, 0, -7, 24}
	if len(raw) != 4*len(want) {
		t.Fatalf("%d codes, want %d", len(raw)/4, len(want))
	}
	for i, w := range want {
		if got := int32(binary.LittleEndian.Uint32(raw[4*i:])); got != w {
			t.Errorf("call %d returned %d, want %d", i, got, w)
		}
	}
	if _, ok := p.Durable().Get("/readonly/x"); ok {
		t.Fatal("a kernel wrote under /readonly")
	}
}

func TestRebootsAndDroppedInputs(t *testing.T) {
	p := newPVM(t, "reboot")
	res := level(t, p, 1, External([]byte("a")), External([]byte("b")))
	// 5 inputs: one per run, then a run that finds the inbox empty.
	if res.Runs != 6 || res.Read != 5 || res.Dropped != 0 {
		t.Fatalf("runs %d read %d dropped %d", res.Runs, res.Read, res.Dropped)
	}
	if _, ok := p.Durable().Get(PathReboot); ok {
		t.Fatal("the reboot flag survived the level")
	}
	once := newPVM(t, "once")
	res = level(t, once, 1, External([]byte("a")), External([]byte("b")))
	if res.Runs != 1 || res.Read != 1 || res.Dropped != 4 {
		t.Fatalf("yield: runs %d read %d dropped %d", res.Runs, res.Read, res.Dropped)
	}
}

func TestStuckKernelsNeverStopTheHost(t *testing.T) {
	p := newPVM(t, "trap")
	res := level(t, p, 1)
	if !strings.Contains(res.Stuck, "trapped") {
		t.Fatalf("stuck = %q", res.Stuck)
	}
	if v, ok := p.Durable().Get(PathStuck); !ok || len(v) == 0 {
		t.Fatal("stuck not recorded")
	}
	level(t, p, 2) // the next level still runs
	spin := newPVM(t, "spin")
	spin.cfg.TickLimit = 50_000_000
	if res := level(t, spin, 1); !strings.Contains(res.Stuck, "limit of 50000000 ticks") {
		t.Fatalf("spin: %q", res.Stuck)
	}
}

// A metered run stops when its context is done (through the tick counter,
// not wazero's per-call checks), whether that happens while it runs or
// before it starts, and the level is not committed: an interruption is no
// verdict.
func TestCancelledLevelStopsAndIsNoVerdict(t *testing.T) {
	for _, while := range []bool{true, false} {
		p := newPVM(t, "spin")
		p.cfg.TickLimit = DefaultTickLimit // hours of spinning
		ctx, cancel := context.WithCancel(context.Background())
		if while {
			time.AfterFunc(50*time.Millisecond, cancel)
		} else {
			cancel()
		}
		start := time.Now()
		res, err := p.RunLevel(ctx, 1, 1_700_000_000, [32]byte{1}, nil)
		if !errors.Is(err, context.Canceled) || res != nil {
			t.Fatalf("cancelled while running %v: res %+v, err %v", while, res, err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("cancelled while running %v: took %v to stop", while, took)
		}
		if _, ok := p.Durable().Get(PathStuck); ok {
			t.Fatalf("cancelled while running %v: recorded as stuck", while)
		}
		cancel()
	}
}

// A long kernel_run does not hold up the rest of the process: native wasm
// code cannot be preempted, but the meter's checkpoints yield, so a
// collection (which stops the world) completes while a kernel spins.
func TestSpinningKernelLetsTheCollectorRun(t *testing.T) {
	p := newPVM(t, "spin")
	p.cfg.TickLimit = DefaultTickLimit
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := p.RunLevel(ctx, 1, 1_700_000_000, [32]byte{1}, nil)
		done <- err
	}()
	time.Sleep(100 * time.Millisecond) // the kernel spins
	collected := make(chan struct{})
	go func() {
		runtime.GC()
		close(collected)
	}()
	select {
	case <-collected:
	case <-time.After(5 * time.Second):
		t.Fatal("a collection waited 5 s for a spinning kernel")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
}

// A spin-loop kernel with a small tick limit is stuck at exactly that
// limit, on every run, whatever else the machine does meanwhile.
func TestSpinIsStuckAtTheTickLimit(t *testing.T) {
	for run := range 3 {
		if run == 2 {
			stop := hog()
			defer stop()
		}
		p := newPVM(t, "spin")
		p.cfg.TickLimit = 5_000_000
		res := level(t, p, 1)
		if res.Ticks != 5_000_000 || !strings.Contains(res.Stuck, "limit of 5000000 ticks") {
			t.Fatalf("run %d: %d ticks, stuck %q", run, res.Ticks, res.Stuck)
		}
	}
}

// The same kernel and inputs give the same durable state, outputs and
// tick counts, with the machine idle and with GOMAXPROCS=1 and busy
// goroutines competing for the core.
func TestTicksAndStateDoNotDependOnLoad(t *testing.T) {
	inputs := [][][]byte{{External([]byte("a")), External([]byte("bb"))}, nil, {External(bytes.Repeat([]byte("c"), 3000))}}
	run := func() (hashes [][32]byte, ticks [][]uint64, outbox [][][]byte) {
		p := newPVM(t, "echo")
		for i, msgs := range inputs {
			res := level(t, p, uint32(i+1), msgs...)
			if res.Stuck != "" || res.Ticks == 0 {
				t.Fatalf("level %d: stuck %q, %d ticks", i+1, res.Stuck, res.Ticks)
			}
			hashes, ticks, outbox = append(hashes, res.StateHash), append(ticks, res.RunTicks), append(outbox, res.Outbox)
		}
		return
	}
	h1, t1, o1 := run()
	prev := runtime.GOMAXPROCS(1)
	stop := hog()
	h2, t2, o2 := run()
	stop()
	runtime.GOMAXPROCS(prev)
	if !reflect.DeepEqual(h1, h2) || !reflect.DeepEqual(t1, t2) || !reflect.DeepEqual(o1, o2) {
		t.Fatalf("idle: %x %v; loaded: %x %v", h1, t1, h2, t2)
	}
	t.Logf("echo kernel, ticks per level: %v", t1)
}

// hog keeps 4 goroutines busy until the returned function is called.
func hog() func() {
	done := make(chan struct{})
	for range 4 {
		go func() {
			x := 0
			for {
				select {
				case <-done:
					return
				default:
					for i := range 100_000 {
						x += i
					}
				}
			}
		}()
	}
	return func() { close(done) }
}

func TestUpgradeFallsBackWhenTheNewKernelIsRejected(t *testing.T) {
	p := newPVM(t, "echo")
	level(t, p, 1)
	if err := p.Durable().Set(PathBoot, kernel(t, "reject_float")); err != nil {
		t.Fatal(err)
	}
	res := level(t, p, 2, External([]byte("x")))
	if res.Stuck != "" || len(res.Outbox) != 4 {
		t.Fatalf("fallback kernel did not run: stuck %q outbox %d", res.Stuck, len(res.Outbox))
	}
	if v, _ := p.Durable().Get(PathUpgradeError); !strings.Contains(string(v), "floating-point") {
		t.Fatalf("upgrade error = %q", v)
	}
	if boot, _ := p.Durable().Get(PathBoot); !bytes.Equal(boot, kernel(t, "echo")) {
		t.Fatal("boot.wasm not restored from the fallback")
	}
}

func FuzzValidate(f *testing.F) {
	for _, k := range []string{"echo", "codes", "reject_float", "reject_bulk"} {
		f.Add(kernel(f, k))
	}
	f.Fuzz(func(t *testing.T, wasm []byte) {
		_ = Validate(wasm) // must not panic
	})
}

// FuzzHostCalls calls every host function with arbitrary arguments over
// arbitrary memory and durable state: the host must never panic.
func FuzzHostCalls(f *testing.F) {
	f.Add(uint8(10), uint32(0), uint32(4), uint32(0), uint32(64), uint32(5), []byte("/a/b\x00\x00\x00\x00hello"))
	f.Add(uint8(1), uint32(70000), uint32(4), uint32(1), uint32(1<<31), uint32(9999), []byte{})
	names := make([]string, 0, len(HostFunctions))
	for n := range HostFunctions {
		names = append(names, n)
	}
	// map order is random: sort for replayable inputs
	sortStrings(names)
	p := newPVM(f, "fuzzhost")
	ctx := context.Background()
	mod, err := p.loadKernel(ctx, PathBoot)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, fn uint8, a, b, c, d, e uint32, mem []byte) {
		inst, err := p.rt.InstantiateModule(ctx, mod, moduleConfig())
		if err != nil {
			t.Fatal(err)
		}
		defer inst.Close(ctx)
		inst.Memory().Write(0, mem)
		p.run = &runState{durable: p.durable, inputs: []input{{level: 1, bytes: []byte{1, 2, 3}}}}
		name := names[int(fn)%len(names)]
		args := []uint64{uint64(a), uint64(b), uint64(c), uint64(d), uint64(e)}
		_, _ = inst.ExportedFunction(name).Call(ctx, args[:len(HostFunctions[name].Params)]...)
	})
}

func TestRevealPreimageAndMetadata(t *testing.T) {
	data := []byte("hello preimage")
	h := blake2b.Sum256(data)
	name := hex.EncodeToString(append([]byte{0}, h[:]...))
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, name), data, 0o644)
	cfg := DefaultConfig()
	cfg.PreimagesDir = dir
	p, err := New(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	p.InstallKernel(kernel(t, "reveal"))
	if res := level(t, p, 1); res.Stuck != "" {
		t.Fatal(res.Stuck)
	}
	if v, _ := p.Durable().Get("/p"); string(v) != string(data) {
		t.Fatalf("reveal_preimage: %q", v)
	}
	if v, _ := p.Durable().Get("/q"); string(v) != "hello" {
		t.Fatalf("reveal (raw data, max 5): %q", v)
	}
	want := p.Durable().find([]string{"p"}).hash()
	if v, _ := p.Durable().Get("/h"); !bytes.Equal(v, want[:]) {
		t.Fatal("store hash differs from the host's")
	}
	// A file whose content is not the preimage of its name is refused.
	os.WriteFile(filepath.Join(dir, name), []byte("forged"), 0o644)
	p2, _ := New(context.Background(), cfg, nil)
	defer p2.Close(context.Background())
	p2.InstallKernel(kernel(t, "reveal"))
	level(t, p2, 1)
	if v, ok := p2.Durable().Get("/p"); ok && len(v) > 0 {
		t.Fatalf("forged preimage revealed: %q", v)
	}
}

// Every kernel_run starts from fresh memory, though the PVM reuses one
// buffer for them (memoryPool): a byte the previous run dirtied, in its
// initial page or in one it grew, reads zero.
func TestEveryRunStartsFromFreshMemory(t *testing.T) {
	p := newPVM(t, "freshmem")
	if err := p.Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	for n := uint32(1); n <= 4; n++ {
		res := level(t, p, n)
		if res.Stuck != "" {
			t.Fatalf("level %d: %s", n, res.Stuck)
		}
		if v, _ := p.Durable().Get("/seen"); len(v) != 1 || v[0] != 0 {
			t.Fatalf("level %d: the run saw %v left by an earlier one", n, v)
		}
	}
}
