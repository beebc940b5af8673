package bench

import (
	"flag"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jedib0t/go-pretty/v6/table"

	"github.com/tezos-dsn/dsn/services/node/nodetest"
)

var (
	tputStart  = flag.Float64("throughput-start", 5000, "BenchmarkThroughput: the first offered load (tx/s); loads double until one fails, then bisect")
	tputP99    = flag.Duration("throughput-p99", time.Second, "BenchmarkThroughput: a load passes if at least 99 % of it is ordered, with p99 submit→ordered within this")
	tputProbes = flag.Int("throughput-probes", 8, "BenchmarkThroughput: at most this many loads")
)

// throughputResult is BenchmarkThroughput's answer and the loads it tried.
type throughputResult struct {
	SustainedTPS float64 `json:"sustained_tps"` // the highest load that passed
	P99BoundMs   float64 `json:"p99_bound_ms"`
	Loads        []step  `json:"loads"`
	Passed       []bool  `json:"passed"`
}

// BenchmarkThroughput: the highest offered load of 512-byte transactions
// the 7-node committee sustains — orders at least 99 % of it, with p99
// submit→ordered within -throughput-p99 — found by doubling the load until
// one fails, then bisecting to within a tenth. Each load runs on a fresh
// committee, so a failed one leaves no backlog to the next.
func BenchmarkThroughput(b *testing.B) {
	for b.Loop() {
		var res throughputResult
		res.P99BoundMs = float64(*tputP99) / float64(time.Millisecond)
		var failed float64 // the lowest load that failed (0: none yet)
		rate := *tputStart
		for range *tputProbes {
			cl := nodetest.Start(b, 7)
			s := run(b, inProcess{cl, 0}, nil, rate, 512, *stepTime)
			for i := range cl.Size() {
				cl.StopNode(i)
			}
			ok := s.OrderedTPS >= 0.99*rate && s.P99ms <= res.P99BoundMs
			res.Loads, res.Passed = append(res.Loads, s), append(res.Passed, ok)
			if ok {
				res.SustainedTPS = max(res.SustainedTPS, rate)
			} else if failed == 0 || rate < failed {
				failed = rate
			}
			if failed == 0 {
				rate *= 2
				continue
			}
			if failed-res.SustainedTPS <= failed/10 {
				break
			}
			rate = float64(int((res.SustainedTPS+failed)/2/100) * 100) // to 100 tx/s
		}
		order := make([]int, len(res.Loads))
		for i := range order {
			order[i] = i
		}
		slices.SortFunc(order, func(i, j int) int { return int(res.Loads[i].OfferedTPS - res.Loads[j].OfferedTPS) })
		t := table.NewWriter()
		t.SetTitle("sustained throughput: %.0f tx/s (≥ 99 %% ordered, p99 ≤ %s), 7 nodes in one process, 512-byte transactions, %s per load",
			res.SustainedTPS, *tputP99, *stepTime)
		t.AppendHeader(table.Row{"offered tx/s", "ordered tx/s", "p50 ms", "p99 ms", "CPU cores", "passed"})
		var sorted []step
		for _, i := range order {
			s := res.Loads[i]
			sorted = append(sorted, s)
			t.AppendRow(table.Row{fmt.Sprintf("%.0f", s.OfferedTPS), fmt.Sprintf("%.0f", s.OrderedTPS),
				fmt.Sprintf("%.1f", s.P50ms), fmt.Sprintf("%.1f", s.P99ms), fmt.Sprintf("%.2f", s.CPUCores), res.Passed[i]})
		}
		fmt.Println(t.Render())
		fmt.Println(t.RenderMarkdown())
		b.ReportMetric(res.SustainedTPS, "sustained-tx/s")
		save(b, "throughput", res)
		if err := savePlot("throughput", latencyCharts("7 nodes in one process: the loads tried", sorted)...); err != nil {
			b.Fatal(err)
		}
	}
}
