package wasmlink

import (
	"context"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/tezos-dsn/dsn/internal/pvm"
)

// threadCPU is the CPU time of the calling OS thread (clock_gettime of
// CLOCK_THREAD_CPUTIME_ID, exact to the nanosecond; getrusage's figure
// for the running thread only moves at scheduler ticks): unlike wall time,
// it leaves out other processes and the collector's threads, which on a
// shared 2-core machine move wall-time ratios by ±30 %, and the
// collector's pauses, which a metered run takes at its checkpoints (a call
// into Go) and an unmetered one puts off until it returns.
func threadCPU() time.Duration {
	var ts syscall.Timespec
	syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, 3 /* CLOCK_THREAD_CPUTIME_ID */, uintptr(unsafe.Pointer(&ts)), 0)
	return time.Duration(ts.Nano())
}

// BenchmarkMeteringCost reports what tick metering costs: the ratio of the
// median time of a metered level to that of an unmetered one, the two
// alternating in each iteration (ten levels each, a collection before each
// ten, on one locked OS thread), in thread CPU and in wall time, for the
// Go echo kernel and for one BLS verification (minus an empty level of the
// same kernel, each way). (The separate KernelRun cases give the echo
// kernel 1.4–1.6× in wall time, which this benchmark's wall time does not
// reproduce: 1.2×; the gap goes away when the benchmark's goroutine is
// locked to its thread.)
func BenchmarkMeteringCost(b *testing.B) {
	ctx := context.Background()
	bls, err := Build(ctx, "../..", "./kernel/examples/blsverify")
	if err != nil {
		b.Fatal(err)
	}
	signed := pvm.External(blsSigned())
	for _, tc := range []struct {
		name       string
		kernel     []byte
		msgs, base [][]byte // base: the level subtracted, if any
	}{
		{"echo", echoKernel(b), [][]byte{pvm.External([]byte("x"))}, nil},
		{"bls-1-verification", bls, [][]byte{signed}, [][]byte{}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			pvms := map[bool]*pvm.PVM{}
			for _, unmetered := range []bool{false, true} {
				cfg := pvm.DefaultConfig()
				cfg.Unmetered = unmetered
				p, _ := pvm.New(ctx, cfg, nil)
				defer p.Close(ctx)
				p.InstallKernel(tc.kernel)
				p.RunLevel(ctx, 0, 0, [32]byte{}, nil) // compile once
				pvms[unmetered] = p
			}
			lvl := uint32(1)
			level := func(p *pvm.PVM, msgs [][]byte) (cpu, wall time.Duration) {
				runtime.GC() // not in the measure: no assists, the same heap each time
				start, wallStart := threadCPU(), time.Now()
				for range 10 {
					if res, err := p.RunLevel(ctx, lvl, 0, [32]byte{}, msgs); err != nil || res.Stuck != "" {
						b.Fatal(err, res.Stuck)
					}
					lvl++
				}
				return (threadCPU() - start) / 10, time.Since(wallStart) / 10
			}
			var cpu, wall [2][]time.Duration // [metered, unmetered]
			for b.Loop() {
				for i, u := range []bool{false, true} {
					c, w := level(pvms[u], tc.msgs)
					if tc.base != nil {
						bc, bw := level(pvms[u], tc.base)
						c, w = c-bc, w-bw
					}
					cpu[i], wall[i] = append(cpu[i], c), append(wall[i], w)
				}
			}
			median := func(d []time.Duration) float64 {
				slices.Sort(d)
				return float64(d[len(d)/2])
			}
			b.ReportMetric(median(cpu[0])/1e6, "metered-cpu-ms")
			b.ReportMetric(median(cpu[1])/1e6, "unmetered-cpu-ms")
			b.ReportMetric(median(cpu[0])/median(cpu[1]), "ratio-cpu")
			b.ReportMetric(median(wall[0])/median(wall[1]), "ratio-wall")
		})
	}
}
