package bench

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jedib0t/go-pretty/v6/table"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
	"github.com/tezos-dsn/dsn/internal/config"
	"github.com/tezos-dsn/dsn/internal/load"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/preblock"
	"github.com/tezos-dsn/dsn/services/node/nodetest"
)

var (
	results  = flag.String("results", "results", "directory for JSON results and PNG plots (empty: none)")
	stepTime = flag.Duration("step", 5*time.Second, "how long each offered load runs")
	rates    = flag.String("rates", "100,1000,5000,20000,40000", "offered loads (tx/s) of BenchmarkLatency")
	down     = flag.Int("down", 0, "BenchmarkLatency: how many nodes are stopped before the loads (the last ones; at most f)")
	idle     = flag.Int("max-header-delay", 0, "BenchmarkLatency: the nodes' max_header_delay_ticks (0: the in-process tests' 20; the lab's is 100)")
)

func offered(b *testing.B) []float64 { return splitRates(b, *rates) }

// splitRates parses a comma-separated list of loads (tx/s).
func splitRates(b *testing.B, list string) []float64 {
	var out []float64
	for _, f := range strings.Split(list, ",") {
		r, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || r <= 0 {
			b.Fatalf("-rates: bad load %q", f)
		}
		out = append(out, r)
	}
	return out
}

// cpuTime returns the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// step is the measurement of one offered load.
type step struct {
	OfferedTPS   float64 `json:"offered_tps"`
	SizeBytes    int     `json:"size_bytes"`
	Sent         int     `json:"sent"`
	Ordered      int     `json:"ordered"`
	OrderedTPS   float64 `json:"ordered_tps"`
	P50ms        float64 `json:"p50_ms"`
	P90ms        float64 `json:"p90_ms"`
	P99ms        float64 `json:"p99_ms"`
	MaxMs        float64 `json:"max_ms"`
	CPUCores     float64 `json:"cpu_cores"` // process CPU seconds per second (all 7 nodes + load)
	PreBlocks    int     `json:"pre_blocks"`
	Certificates int     `json:"certificates"`
	MBps         float64 `json:"mb_per_s"` // ordered transaction bytes
	// RoundsPS and CPUmsPerRound: DAG rounds per second on node 0, and the
	// process CPU per round divided by the running nodes.
	RoundsPS      float64      `json:"rounds_per_s"`
	CPUmsPerRound float64      `json:"cpu_ms_per_round_per_node"`
	Anatomy       []sliceStats `json:"anatomy,omitempty"`
}

// committee is what a load runs against: the in-process cluster
// (inProcess) or the lab's containers (BenchmarkLab).
type committee interface {
	// Running is how many nodes take load: 0..Running()-1.
	Running() int
	Transactions(i int) dsnv1.TransactionsClient
	Export(i int) dsnv1.ExportClient
	// Head is node 0's last committed index, Round its DAG round.
	Head() uint64
	Round() uint64
	// CPU is the CPU time the committee used so far.
	CPU() time.Duration
}

// inProcess is the committee of nodetest.Cluster, with the last down nodes
// stopped; its CPU is the process's (the load generator's included).
type inProcess struct {
	cl   *nodetest.Cluster
	down int
}

func (c inProcess) Running() int                                { return c.cl.Size() - c.down }
func (c inProcess) Transactions(i int) dsnv1.TransactionsClient { return c.cl.Transactions(i) }
func (c inProcess) Export(i int) dsnv1.ExportClient             { return c.cl.Export(i) }
func (c inProcess) Head() uint64                                { h, _ := c.cl.Node(0).Head(); return h }
func (c inProcess) Round() uint64                               { return c.cl.Node(0).Status().DAGRound }
func (c inProcess) CPU() time.Duration                          { return cpuTime() }

// run offers rate tx/s of size bytes for d to the committee (spread over
// its running nodes) and measures submit→ordered latency on node 0's
// Export stream.
func run(b *testing.B, cl committee, an *anatomy, rate float64, size int, d time.Duration) step {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ex, err := cl.Export(0).Export(ctx, &dsnv1.ExportRequest{From: cl.Head()})
	if err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	var lats []time.Duration
	var preBlocks, certs, bytes int
	seen := map[uint64]bool{}
	doneReading := make(chan struct{})
	go func() {
		defer close(doneReading)
		rd := preblock.NewReader(ex)
		for {
			pb, _, err := rd.PreBlock()
			if err != nil {
				return
			}
			if pb == nil {
				continue
			}
			now := time.Now()
			mu.Lock()
			preBlocks++
			certs += len(pb.Certificates)
			for _, cb := range pb.Batches {
				for _, raw := range cb.Batches {
					batch, err := narwhal.DecodeBatch(raw)
					if err != nil {
						panic(err)
					}
					d := batch.Digest()
					for _, tx := range batch.Transactions {
						if an != nil {
							an.ordered(tx, d, now)
						}
						if sent, ok := load.SentAt(tx); ok {
							seq, _ := load.Seq(tx)
							if !seen[seq] {
								seen[seq] = true
								lats = append(lats, now.Sub(sent))
								bytes += len(tx)
							}
						}
					}
				}
			}
			mu.Unlock()
		}
	}()

	// Open-loop load: one stream per running node, each paced at rate/n.
	n := cl.Running()
	var sent int
	var sentMu sync.Mutex
	var wg sync.WaitGroup
	seqBase := uint64(time.Now().UnixNano())
	if an != nil {
		an.reset()
	}
	r0 := cl.Round()
	cpu0, t0 := cl.CPU(), time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			st, err := cl.Transactions(i).SubmitTransactionStream(ctx)
			if err != nil {
				b.Error(err)
				return
			}
			rng := rand.New(rand.NewPCG(uint64(i), seqBase))
			per := rate / float64(n)
			start := time.Now()
			k := 0
			for time.Since(start) < d {
				due := start.Add(time.Duration(float64(k) / per * float64(time.Second)))
				if wait := time.Until(due); wait > 0 {
					time.Sleep(wait)
				}
				// Catch up in bursts if the sender fell behind its schedule.
				for time.Now().After(due) && time.Since(start) < d {
					seq := seqBase + uint64(i)<<40 + uint64(k)
					if err := st.Send(&dsnv1.Transaction{Transaction: load.Make(rng, size, time.Now(), seq)}); err != nil {
						b.Error(err)
						return
					}
					k++
					due = start.Add(time.Duration(float64(k) / per * float64(time.Second)))
				}
			}
			if _, err := st.CloseAndRecv(); err != nil {
				b.Error(err)
			}
			sentMu.Lock()
			sent += k
			sentMu.Unlock()
		}(i)
	}
	wg.Wait()
	// Let the tail drain: until everything sent is ordered, or 10 s.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		got := len(lats)
		mu.Unlock()
		if got >= sent {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := time.Since(t0)
	cpu := cl.CPU() - cpu0
	rounds := float64(cl.Round() - r0)
	cancel()
	<-doneReading
	mu.Lock()
	defer mu.Unlock()
	p := load.Summarize(lats)
	ms := func(x time.Duration) float64 { return float64(x.Microseconds()) / 1000 }
	return step{
		OfferedTPS: rate, SizeBytes: size, Sent: sent, Ordered: len(lats),
		OrderedTPS: float64(len(lats)) / d.Seconds(),
		P50ms:      ms(p.P50), P90ms: ms(p.P90), P99ms: ms(p.P99), MaxMs: ms(p.Max),
		CPUCores:  cpu.Seconds() / elapsed.Seconds(),
		PreBlocks: preBlocks, Certificates: certs,
		MBps:          float64(bytes) / d.Seconds() / 1e6,
		RoundsPS:      rounds / elapsed.Seconds(),
		CPUmsPerRound: cpu.Seconds() * 1000 / max(rounds, 1) / float64(n),
		Anatomy:       anatomyStats(an),
	}
}

func anatomyStats(an *anatomy) []sliceStats {
	if an == nil {
		return nil
	}
	return an.stats()
}

func save(b *testing.B, name string, v any) {
	if *results == "" {
		return
	}
	if err := os.MkdirAll(*results, 0o755); err != nil {
		b.Fatal(err)
	}
	raw, _ := json.MarshalIndent(map[string]any{
		"benchmark": name,
		"date":      time.Now().UTC().Format(time.RFC3339),
		"machine":   fmt.Sprintf("%d cores", runtime.NumCPU()),
		"results":   v,
	}, "", "  ")
	if err := os.WriteFile(filepath.Join(*results, name+".json"), append(raw, '\n'), 0o644); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkLatency: submit→ordered latency and ordered tx/s at several
// offered loads of 512-byte transactions on a 7-node committee.
func BenchmarkLatency(b *testing.B) {
	for b.Loop() {
		an := newAnatomy()
		cl := nodetest.StartTraced(b, 7, an, func(c *config.Node) {
			if *idle > 0 {
				c.Consensus.MaxHeaderDelay = *idle
			}
		})
		if *down < 0 || *down > (cl.Size()-1)/3 {
			b.Fatalf("-down %d: at most f = %d of %d nodes", *down, (cl.Size()-1)/3, cl.Size())
		}
		for i := range *down {
			cl.StopNode(cl.Size() - 1 - i)
		}
		var steps []step
		for _, rate := range offered(b) {
			steps = append(steps, run(b, inProcess{cl, *down}, an, rate, 512, *stepTime))
		}
		t := table.NewWriter()
		t.SetTitle("submit → ordered, 7 nodes in one process (%d stopped), 512-byte transactions, %s per load", *down, *stepTime)
		t.AppendHeader(table.Row{"offered tx/s", "ordered tx/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "MB/s", "pre-blocks", "CPU cores"})
		for _, s := range steps {
			t.AppendRow(table.Row{fmt.Sprintf("%.0f", s.OfferedTPS), fmt.Sprintf("%.0f", s.OrderedTPS),
				fmt.Sprintf("%.1f", s.P50ms), fmt.Sprintf("%.1f", s.P90ms), fmt.Sprintf("%.1f", s.P99ms), fmt.Sprintf("%.1f", s.MaxMs),
				fmt.Sprintf("%.2f", s.MBps), s.PreBlocks, fmt.Sprintf("%.2f", s.CPUCores)})
			b.ReportMetric(s.P50ms, fmt.Sprintf("p50-ms@%.0f", s.OfferedTPS))
			b.ReportMetric(s.OrderedTPS, fmt.Sprintf("tx/s@%.0f", s.OfferedTPS))
		}
		fmt.Println(t.Render())
		fmt.Println(t.RenderMarkdown())
		at := anatomyTable(steps)
		fmt.Println(at.Render())
		fmt.Println(at.RenderMarkdown())
		save(b, "latency", steps)
		title := fmt.Sprintf("7 nodes in one process, %d stopped", *down)
		if err := savePlot("latency", latencyCharts(title, steps)...); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDAG: certificates and batches per second of the 7-node
// committee, idle and under load.
func BenchmarkDAG(b *testing.B) {
	for b.Loop() {
		cl := nodetest.Start(b, 7)
		type dagStep struct {
			OfferedTPS float64 `json:"offered_tps"`
			CertsPerS  float64 `json:"certificates_per_s"`
			BatchesPS  float64 `json:"batches_per_s"`
			RoundsPS   float64 `json:"rounds_per_s"`
			OrderedTPS float64 `json:"ordered_tps"`
		}
		var steps []dagStep
		for _, rate := range []float64{0, 1_000, 10_000} {
			c0, b0, r0 := dagCounts(b, cl)
			t0 := time.Now()
			var s step
			if rate > 0 {
				s = run(b, inProcess{cl, 0}, nil, rate, 512, *stepTime)
			} else {
				time.Sleep(*stepTime)
			}
			el := time.Since(t0).Seconds()
			c1, b1, r1 := dagCounts(b, cl)
			steps = append(steps, dagStep{OfferedTPS: rate, CertsPerS: float64(c1-c0) / el,
				BatchesPS: float64(b1-b0) / el, RoundsPS: float64(r1-r0) / el, OrderedTPS: s.OrderedTPS})
		}
		t := table.NewWriter()
		t.SetTitle("certified DAG, 7 nodes in one process")
		t.AppendHeader(table.Row{"offered tx/s", "certificates/s", "batches/s", "rounds/s", "ordered tx/s"})
		for _, s := range steps {
			t.AppendRow(table.Row{fmt.Sprintf("%.0f", s.OfferedTPS), fmt.Sprintf("%.1f", s.CertsPerS),
				fmt.Sprintf("%.1f", s.BatchesPS), fmt.Sprintf("%.1f", s.RoundsPS), fmt.Sprintf("%.0f", s.OrderedTPS)})
			b.ReportMetric(s.CertsPerS, fmt.Sprintf("certs/s@%.0f", s.OfferedTPS))
			b.ReportMetric(s.BatchesPS, fmt.Sprintf("batches/s@%.0f", s.OfferedTPS))
		}
		fmt.Println(t.Render())
		fmt.Println(t.RenderMarkdown())
		save(b, "dag", steps)
	}
}

// dagCounts returns node 0's stored certificates, the batches sealed by all
// nodes, and node 0's highest accepted round.
func dagCounts(b *testing.B, cl *nodetest.Cluster) (certs, batches, round uint64) {
	if err := cl.Node(0).ScanCertificates(func(*narwhal.Certificate, [][]byte) { certs++ }); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < cl.Size(); i++ {
		batches += cl.Node(i).Status().BatchesSealed
	}
	return certs, batches, cl.Node(0).Status().DAGRound
}
