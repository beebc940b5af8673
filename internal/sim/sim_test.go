package sim

import (
	"crypto/sha256"
	"flag"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

var (
	seedFlag  = flag.Int64("seed", 0, "replay this seed and print its trace (TestReplay)")
	seedCount = flag.Int("seeds", 210, "how many seeds TestSeeds runs")
	seedStart = flag.Int64("seed-start", 1, "first seed of TestSeeds")
)

// regressions are seeds that once found a bug; they run in every CI.
var regressions = []int64{
	30, // partition healed but lost certificate broadcasts were never re-sent: every node waited for the others (fixed: re-broadcast own latest certificate when stalled)
}

func TestSeeds(t *testing.T) {
	start := time.Now()
	var commits, simMs atomic.Uint64
	seeds := append([]int64{}, regressions...)
	for s := *seedStart; s < *seedStart+int64(*seedCount); s++ {
		seeds = append(seeds, s)
	}
	t.Run("group", func(t *testing.T) {
		for _, seed := range seeds {
			t.Run(fmt.Sprint(seed), func(t *testing.T) {
				t.Parallel()
				st, _, err := Run(OptionsFor(seed), false)
				if err != nil {
					t.Fatal(err)
				}
				commits.Add(st.Committed)
				simMs.Add(st.SimulatedMs)
			})
		}
	})
	el := time.Since(start)
	t.Logf("%d seeds in %s (%.0f seeds/min); %.1f simulated commits per simulated second",
		len(seeds), el.Round(time.Millisecond), float64(len(seeds))/el.Minutes(), float64(commits.Load())/(float64(simMs.Load())/1000))
}

func TestReplay(t *testing.T) {
	if *seedFlag == 0 {
		t.Skip("use -seed N to replay one seed")
	}
	st, trace, err := Run(OptionsFor(*seedFlag), true)
	fmt.Print(trace)
	fmt.Printf("stats: %+v\n", st)
	if err != nil {
		t.Fatal(err)
	}
}

func TestSameSeedSameTrace(t *testing.T) {
	for _, seed := range []int64{3, 6} {
		_, a, errA := Run(OptionsFor(seed), true)
		_, b, errB := Run(OptionsFor(seed), true)
		if errA != nil || errB != nil {
			t.Fatal(errA, errB)
		}
		if sha256.Sum256([]byte(a)) != sha256.Sum256([]byte(b)) || len(a) < 1000 {
			t.Fatalf("seed %d: traces differ (%d and %d bytes)", seed, len(a), len(b))
		}
	}
}
