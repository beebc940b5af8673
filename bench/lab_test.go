package bench

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jedib0t/go-pretty/v6/table"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
	"github.com/tezos-dsn/dsn/internal/config"
	"github.com/tezos-dsn/dsn/lab"
	"github.com/tezos-dsn/dsn/lab/labtest"
)

var (
	labRates      = flag.String("lab-rates", "100,1000,5000", "offered loads (tx/s) of BenchmarkLab")
	labGOMAXPROCS = flag.Int("lab-gomaxprocs", 0, "BenchmarkLab: each container's GOMAXPROCS (the manifest's gomaxprocs; 0: its default, 1)")
	labSlow       = flag.Duration("lab-slow", 0, "BenchmarkLab: delay every message node 7 sends by this much (a [[shape]] in the manifest; 0: none)")
)

// labCommittee is the lab's node containers, reached through their
// published ports; its CPU is the nodes' processes' (process_cpu_seconds
// on their metrics), not the sequencer's, rollup node's or sandbox's.
type labCommittee struct {
	b       *testing.B
	l       *labtest.Lab
	nodes   int
	tx      []dsnv1.TransactionsClient
	ex      []dsnv1.ExportClient
	metrics []string // host:port of each node's metrics
}

func newLabCommittee(b *testing.B, l *labtest.Lab, nodes int) *labCommittee {
	c := &labCommittee{b: b, l: l, nodes: nodes}
	for n := 1; n <= nodes; n++ {
		dial := func(port int) *grpc.ClientConn {
			conn, err := grpc.NewClient(l.DirectAddr(lab.Service(n), port), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { conn.Close() })
			return conn
		}
		c.tx = append(c.tx, dsnv1.NewTransactionsClient(dial(lab.TransactionsPort)))
		c.ex = append(c.ex, dsnv1.NewExportClient(dial(lab.ExportPort)))
		c.metrics = append(c.metrics, l.DirectAddr(lab.Service(n), lab.MetricsPort))
	}
	return c
}

func (c *labCommittee) Running() int                                { return c.nodes }
func (c *labCommittee) Transactions(i int) dsnv1.TransactionsClient { return c.tx[i] }
func (c *labCommittee) Export(i int) dsnv1.ExportClient             { return c.ex[i] }

func (c *labCommittee) metric(n int, name string) float64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := lab.Scrape(ctx, c.metrics[n-1])
	if err != nil {
		c.b.Fatal(err)
	}
	v, ok := m[name]
	if !ok {
		c.b.Fatalf("node%d: no %s in its metrics", n, name)
	}
	return v
}

func (c *labCommittee) Head() uint64  { return uint64(c.metric(1, "dsn_committed_subdags")) }
func (c *labCommittee) Round() uint64 { return uint64(c.metric(1, "dsn_dag_round")) }
func (c *labCommittee) CPU() time.Duration {
	var s float64
	for n := 1; n <= c.nodes; n++ {
		s += c.metric(n, "process_cpu_seconds_total")
	}
	return time.Duration(s * float64(time.Second))
}

// BenchmarkLab: submit→ordered latency on the lab as `make lab-up` runs
// it — each node a process in its own container on a Docker network, with
// the lab's parameters (500 ms idle header delay), and the sequencer,
// rollup node and L1 sandbox running beside them on the same cores. The
// load goes to every node's transactions port, at the container's address
// where the host reaches it (as a client next to a node would, without
// Docker's port proxy); latency is read on node 1's Export stream. Skips
// without a Docker engine.
func BenchmarkLab(b *testing.B) {
	for b.Loop() {
		const nodes = 7
		m := &lab.Manifest{Name: fmt.Sprintf("dsn-bench-%d", os.Getpid()), Nodes: nodes, Seed: 1, GOMAXPROCS: *labGOMAXPROCS}
		if *labSlow > 0 {
			m.Shapes = []lab.Shape{{Node: nodes, Delay: config.Duration{Duration: *labSlow}}}
		}
		l := labtest.Start(b, m)
		c := newLabCommittee(b, l, nodes)

		deadline := time.Now().Add(2 * time.Minute)
		for c.Head() < 1 {
			if time.Now().After(deadline) {
				b.Fatal("the lab did not commit within 2 minutes")
			}
			time.Sleep(500 * time.Millisecond)
		}
		var steps []step
		for _, rate := range splitRates(b, *labRates) {
			steps = append(steps, run(b, c, nil, rate, 512, *stepTime))
		}
		t := table.NewWriter()
		t.SetTitle("submit → ordered in the lab: %d node containers (and the sequencer, rollup node and L1 sandbox), GOMAXPROCS %d each, node %d's messages %s late, 512-byte transactions, %s per load",
			nodes, max(*labGOMAXPROCS, 1), nodes, *labSlow, *stepTime)
		t.AppendHeader(table.Row{"offered tx/s", "ordered tx/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "MB/s", "pre-blocks", "node CPU cores", "rounds/s"})
		for _, s := range steps {
			t.AppendRow(table.Row{fmt.Sprintf("%.0f", s.OfferedTPS), fmt.Sprintf("%.0f", s.OrderedTPS),
				fmt.Sprintf("%.1f", s.P50ms), fmt.Sprintf("%.1f", s.P90ms), fmt.Sprintf("%.1f", s.P99ms), fmt.Sprintf("%.1f", s.MaxMs),
				fmt.Sprintf("%.2f", s.MBps), s.PreBlocks, fmt.Sprintf("%.2f", s.CPUCores), fmt.Sprintf("%.1f", s.RoundsPS)})
			b.ReportMetric(s.P50ms, fmt.Sprintf("p50-ms@%.0f", s.OfferedTPS))
		}
		fmt.Println(t.Render())
		fmt.Println(t.RenderMarkdown())
		save(b, "lab", steps)
		if err := savePlot("lab", latencyCharts(fmt.Sprintf("the lab: %d node containers", nodes), steps)...); err != nil {
			b.Fatal(err)
		}
	}
}
