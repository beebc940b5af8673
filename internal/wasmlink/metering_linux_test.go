package wasmlink

import (
	"context"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/tezos-dsn/dsn/internal/pvm"
)

// threadCPU is the CPU time of the calling OS thread (user and system):
// unlike wall time, it leaves out other processes and the collector's
// threads, which on a shared 2-core machine move wall-time ratios by ±30 %
// (the metered echo level measured 1.2–1.8× the unmetered one in wall
// time, and 1.19× in thread CPU, in the same sitting).
func threadCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkMeteringCost reports what tick metering costs, as the ratio of
// the median thread-CPU time of a metered level to that of an unmetered
// one, the two alternating in each iteration (ten levels each), for the Go
// echo kernel and for one BLS verification (minus an empty level of the
// same kernel, each way).
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
			level := func(p *pvm.PVM, msgs [][]byte) time.Duration {
				runtime.GC() // not in the measure: no assists, the same heap each time
				start := threadCPU()
				for range 10 {
					if res, err := p.RunLevel(ctx, lvl, 0, [32]byte{}, msgs); err != nil || res.Stuck != "" {
						b.Fatal(err, res.Stuck)
					}
					lvl++
				}
				return (threadCPU() - start) / 10
			}
			var metered, unmetered []time.Duration
			for b.Loop() {
				for _, u := range []bool{false, true} {
					d := level(pvms[u], tc.msgs)
					if tc.base != nil {
						d -= level(pvms[u], tc.base)
					}
					if u {
						unmetered = append(unmetered, d)
					} else {
						metered = append(metered, d)
					}
				}
			}
			slices.Sort(metered)
			slices.Sort(unmetered)
			m, u := metered[len(metered)/2], unmetered[len(unmetered)/2]
			b.ReportMetric(float64(m.Microseconds())/1000, "metered-ms")
			b.ReportMetric(float64(u.Microseconds())/1000, "unmetered-ms")
			b.ReportMetric(float64(m)/float64(u), "ratio")
		})
	}
}
