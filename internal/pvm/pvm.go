// Package pvm is a WebAssembly PVM host for Tezos smart-rollup kernels,
// faithful to the octez WASM PVM's ABI: the smart_rollup_core host
// functions with their exact signatures, limits and error codes; durable
// storage with /readonly protected; per level an inbox of StartOfLevel,
// InfoPerLevel, the level's messages and EndOfLevel; the kernel
// re-instantiated from /kernel/boot.wasm on every kernel_run; reboots via
// /kernel/env/reboot (at most 1000 per level); unread inputs dropped when
// the kernel yields; a static validator that rejects every module the real
// PVM rejects. The rollup node (and `dsn kernel run`) drive it level by
// level. It runs on wazero restricted to WebAssembly MVP + sign extension.
//
// A trap, an invalid module or a kernel_run over its time budget is recorded
// in /readonly/kernel/env/stuck; the host itself never fails because of a
// kernel.
package pvm

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/tezos-dsn/dsn/internal/wasmmeter"
)

// Well-known durable paths.
const (
	PathBoot          = "/kernel/boot.wasm"
	PathBootFallback  = "/readonly/kernel/boot.wasm"
	PathReboot        = "/kernel/env/reboot"
	PathRebootCounter = "/readonly/kernel/env/reboot_counter"
	PathTooManyReboot = "/readonly/kernel/env/too_many_reboot"
	PathStuck         = "/readonly/kernel/env/stuck"
	PathUpgradeError  = "/readonly/kernel/env/upgrade_error"
	PathWasmVersion   = "/readonly/wasm_version"
)

// WasmVersion is what /readonly/wasm_version holds.
const WasmVersion = "2.0.0-r5"

// Config configures a PVM.
type Config struct {
	Rollup           [20]byte // the rollup's address (raw sr1 payload), for reveal_metadata
	OriginationLevel uint32   // for reveal_metadata
	PreimagesDir     string   // reveal_preimage files, named by the hex of the 33-byte hash
	// TickLimit bounds one kernel_run, in ticks as internal/wasmmeter
	// counts them (octez's tick model, see its doc for the differences):
	// a run that reaches it is stuck on every machine alike. Wall time is
	// never a verdict (LevelResult.Elapsed is for alerts).
	TickLimit uint64
	// Unmetered runs kernels without counting ticks and without a limit:
	// for benchmarks that measure what metering costs, never for a rollup
	// (a runaway kernel then never stops, not even when ctx is done, and
	// holds up the garbage collector's stops of the world meanwhile).
	Unmetered bool
	// Profile also counts each function's own ticks (LevelResult.Profile),
	// for tools (`dsn kernel run --profile`): the kernel runs slower.
	Profile        bool
	MaxMemoryPages uint32 // linear memory limit, in 64 KiB pages
	MaxDebugBytes  int    // write_debug output kept per level
}

// DefaultTickLimit is the protocol's ticks_per_snapshot, the ticks one
// kernel_run may take, since the Paris protocol (11,000,000,000 before).
const DefaultTickLimit = 50_000_000_000_000

// DefaultConfig returns a configuration for tests and tools.
func DefaultConfig() Config {
	return Config{TickLimit: DefaultTickLimit, MaxMemoryPages: 4096, MaxDebugBytes: 1 << 20}
}

// PVM runs one rollup's kernel over its durable storage.
type PVM struct {
	cfg     Config
	rt      wazero.Runtime
	durable *Durable
	run     *runState
	cache   map[[32]byte]wazero.CompiledModule
	memory  memoryPool // every kernel_run's linear memory
}

// New creates a PVM over durable (a fresh one when nil).
func New(ctx context.Context, cfg Config, durable *Durable) (*PVM, error) {
	if durable == nil {
		durable = NewDurable()
	}
	// A metered run yields and sees ctx through the meter's checkpoints
	// (host.go) instead of wazero's own context checks, a call into Go at
	// every loop iteration, which cost 2.5–2.8× on a BLS verification.
	rc := wazero.NewRuntimeConfig().
		WithCoreFeatures(api.CoreFeaturesV1 | api.CoreFeatureSignExtensionOps).
		WithMemoryLimitPages(cfg.MaxMemoryPages)
	p := &PVM{cfg: cfg, rt: wazero.NewRuntimeWithConfig(ctx, rc), durable: durable,
		cache: map[[32]byte]wazero.CompiledModule{}, run: &runState{durable: durable}}
	if err := p.instantiateHost(ctx); err != nil {
		p.rt.Close(ctx)
		return nil, fmt.Errorf("pvm host: %w", err)
	}
	if err := durable.Set(PathWasmVersion, []byte(WasmVersion)); err != nil {
		return nil, err
	}
	return p, nil
}

// Close frees the runtime.
func (p *PVM) Close(ctx context.Context) error { return p.rt.Close(ctx) }

// Durable returns the storage.
func (p *PVM) Durable() *Durable { return p.durable }

// InstallKernel writes a kernel to /kernel/boot.wasm (as origination or a
// setup step would); it is checked when it first runs.
func (p *PVM) InstallKernel(wasm []byte) error { return p.durable.Set(PathBoot, wasm) }

// Prepare validates, meters and compiles the installed kernel ahead of its
// first run (about 1.3 s for the DSN kernel here), so that the first level
// does not pay for it; compiled kernels are kept by their hash. A kernel
// that does not compile is reported here and handled as the run would
// (the fallback kernel runs).
func (p *PVM) Prepare(ctx context.Context) error {
	_, err := p.loadKernel(ctx, PathBoot)
	return err
}

// LevelResult is what one level produced.
type LevelResult struct {
	Level    uint32
	Outbox   [][]byte
	Debug    string
	Runs     int      // kernel_run calls (1 + reboots)
	RunTicks []uint64 // ticks of each kernel_run
	Ticks    uint64   // ticks of the level: the sum of RunTicks
	Read     int      // inputs the kernel read
	Dropped  int      // inputs left unread when it yielded
	Stuck    string   // why a run failed (empty if none)
	// Interrupted: ctx was done before the level ended, which is no
	// verdict: Stuck says so, and durable storage holds a partial level
	// that must not be committed.
	Interrupted bool
	StateHash   [32]byte
	Elapsed     time.Duration // wall time of the level's runs (alerts only: never a verdict)
	// Profile, with Config.Profile: each function's own ticks in the
	// level, by function index (names: wasmmeter.FunctionNames).
	Profile map[uint32]uint64
}

// RunLevel feeds one L1 level to the kernel (see Execute) and commits the
// durable storage. It returns an error only if the host itself fails or
// ctx is done before the level ends; the level is then not committed, and
// the PVM holds its partial state: discard it.
func (p *PVM) RunLevel(ctx context.Context, level uint32, timestamp int64, predecessor [32]byte, msgs [][]byte) (*LevelResult, error) {
	res := p.Execute(ctx, level, timestamp, predecessor, msgs)
	if res.Interrupted {
		return nil, fmt.Errorf("level %d: kernel_run interrupted: %w", level, context.Cause(ctx))
	}
	if err := p.durable.Commit(level); err != nil {
		return nil, err // the host's own failure: the disk
	}
	return res, nil
}

// Inbox returns a level's full inbox: StartOfLevel, InfoPerLevel, the
// messages (already encoded, see External and Transfer), EndOfLevel.
func Inbox(timestamp int64, predecessor [32]byte, msgs [][]byte) [][]byte {
	all := append([][]byte{StartOfLevel(), InfoPerLevel(timestamp, predecessor)}, msgs...)
	return append(all, EndOfLevel())
}

// Execute feeds one L1 level's inbox (see Inbox) to the kernel, rebooting
// it as it asks, and leaves the changes in durable storage uncommitted:
// the caller commits them (Durable.Commit or CommitWith) with whatever
// must be atomic with them.
func (p *PVM) Execute(ctx context.Context, level uint32, timestamp int64, predecessor [32]byte, msgs [][]byte) *LevelResult {
	all := Inbox(timestamp, predecessor, msgs)
	st := &runState{durable: p.durable}
	for i, m := range all {
		st.inputs = append(st.inputs, input{level: level, id: uint32(i), bytes: m})
	}
	p.run = st
	res := &LevelResult{Level: level}
	if p.cfg.Profile {
		res.Profile = map[uint32]uint64{}
	}
	start := time.Now()
	p.durable.Delete(PathTooManyReboot)
	for reboots := 0; ; reboots++ {
		p.durable.Set(PathRebootCounter, le32(uint32(MaxReboots-reboots)))
		res.Runs++
		ticks, err := p.kernelRun(ctx, res.Profile)
		res.RunTicks = append(res.RunTicks, ticks)
		res.Ticks += ticks
		if errors.Is(err, errInterrupted) {
			res.Stuck, res.Interrupted = err.Error(), true
			break
		}
		if err != nil {
			res.Stuck = err.Error()
			p.durable.Set(PathStuck, []byte(res.Stuck))
			break
		}
		p.durable.Delete(PathStuck)
		if _, again := p.durable.Get(PathReboot); !again {
			break
		}
		p.durable.Delete(PathReboot)
		if reboots+1 >= MaxReboots {
			p.durable.Set(PathTooManyReboot, []byte{1})
			break
		}
	}
	res.Read = st.next
	res.Dropped = len(st.inputs) - st.next
	res.Outbox = st.outbox
	res.Debug = string(st.debug)
	res.StateHash = p.durable.Hash()
	res.Elapsed = time.Since(start)
	return res
}

func le32(v uint32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }

var (
	errNoKernel    = errors.New("pvm: no kernel at " + PathBoot)
	errInterrupted = errors.New("kernel_run interrupted")
)

// kernelRun instantiates the boot kernel afresh, calls kernel_run and
// returns the ticks it took (adding each function's own to prof, if not
// nil). A kernel that does not validate or link falls back to the last
// good one.
func (p *PVM) kernelRun(ctx context.Context, prof map[uint32]uint64) (uint64, error) {
	mod, err := p.loadKernel(ctx, PathBoot)
	if err != nil {
		p.durable.Set(PathUpgradeError, []byte(err.Error()))
		fallback, ferr := p.loadKernel(ctx, PathBootFallback)
		if ferr != nil {
			return 0, fmt.Errorf("kernel: %w (no usable fallback: %v)", err, ferr)
		}
		boot, _ := p.durable.Get(PathBootFallback)
		p.durable.Set(PathBoot, boot)
		mod = fallback
	} else {
		boot, _ := p.durable.NodeHash(PathBoot)
		if old, ok := p.durable.NodeHash(PathBootFallback); !ok || old != boot {
			wasm, _ := p.durable.Get(PathBoot)
			p.durable.Set(PathBootFallback, wasm)
		}
	}
	inst, err := p.rt.InstantiateModule(experimental.WithMemoryAllocator(ctx, &p.memory), mod, moduleConfig())
	if err != nil {
		return 0, fmt.Errorf("instantiate: %w", err)
	}
	defer inst.Close(ctx)
	_, err = inst.ExportedFunction(EntryPoint).Call(ctx)
	if err != nil && ctx.Err() != nil {
		return 0, fmt.Errorf("%w: %w", errInterrupted, context.Cause(ctx))
	}
	var ticks uint64
	if !p.cfg.Unmetered {
		ticks = inst.ExportedGlobal(wasmmeter.CounterExport).Get()
	}
	if prof != nil {
		// The profile counters are named by the kernel's own function
		// indices, without the meter's checkpoint import.
		for i := uint32(len(mod.ImportedFunctions()) - 1); ; i++ {
			g := inst.ExportedGlobal(wasmmeter.ProfileExport(i))
			if g == nil {
				break
			}
			if t := g.Get(); t > 0 {
				prof[i] += t
			}
		}
	}
	// The meter checks at function entries and loop headers; a run that
	// returns past the limit after its last check is out of ticks too.
	if ticks > p.tickLimit() {
		return p.tickLimit(), fmt.Errorf("kernel_run exceeded its limit of %d ticks", p.tickLimit())
	}
	if err != nil {
		return ticks, fmt.Errorf("kernel_run trapped: %w", err)
	}
	return ticks, nil
}

func (p *PVM) tickLimit() uint64 {
	if p.cfg.TickLimit == 0 {
		return DefaultTickLimit
	}
	return p.cfg.TickLimit
}

// loadKernel validates and compiles the kernel at path, caching by the
// durable node's memoized hash: a kernel of megabytes is not hashed again
// at every run.
func (p *PVM) loadKernel(ctx context.Context, path string) (wazero.CompiledModule, error) {
	wasm, ok := p.durable.Get(path)
	if !ok {
		return nil, errNoKernel
	}
	h, _ := p.durable.NodeHash(path)
	if m, ok := p.cache[h]; ok {
		return m, nil
	}
	if err := Validate(wasm); err != nil {
		return nil, err
	}
	metered := wasm
	if !p.cfg.Unmetered {
		var err error
		opts := wasmmeter.Options{Profile: p.cfg.Profile, Checkpoints: true}
		if metered, err = wasmmeter.InstrumentWith(wasm, wasmmeter.Octez, p.tickLimit(), opts); err != nil {
			return nil, fmt.Errorf("meter: %w", err)
		}
	}
	m, err := p.rt.CompileModule(ctx, metered)
	if err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	p.cache[h] = m
	return m, nil
}

// moduleConfig instantiates kernels anonymously, without calling a _start.
func moduleConfig() wazero.ModuleConfig {
	return wazero.NewModuleConfig().WithName("").WithStartFunctions()
}
