package bench

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/jedib0t/go-pretty/v6/table"
	"golang.org/x/crypto/blake2b"
	"gonum.org/v1/plot/plotter"

	"github.com/tezos-dsn/dsn/internal/config"
	"github.com/tezos-dsn/dsn/internal/load"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/services/node/nodetest"
	"github.com/tezos-dsn/dsn/services/sequencer"
	"github.com/tezos-dsn/dsn/services/stacktest"
)

var (
	e2eRates     = flag.String("e2e-rates", "100,1000", "offered loads (tx/s) of BenchmarkE2E")
	e2eStep      = flag.Duration("e2e-step", 10*time.Second, "how long each load of BenchmarkE2E runs")
	e2eBlockTime = flag.Duration("e2e-block-time", time.Second, "the L1 sandbox's block time in BenchmarkE2E")
	e2eSlow      = flag.Duration("e2e-slow", 0, "BenchmarkE2E: delay every message node 7 sends to its peers by this much (0: none)")
)

// e2eStep is one load of BenchmarkE2E.
type e2eResult struct {
	OfferedTPS float64 `json:"offered_tps"`
	Submitted  int     `json:"submitted"`
	Verified   int     `json:"verified"`
	Ordered    struct {
		P50, P90, P99 float64
	} `json:"submit_to_ordered_ms"`
	VerifiedMs struct {
		P50, P90, P99 float64
	} `json:"submit_to_verified_ms"`
	Levels      uint32  `json:"l1_levels"`
	PostedKBps  float64 `json:"posted_kb_per_s"`
	LevelMsMean float64 `json:"rollup_level_ms_mean"`
}

// BenchmarkE2E: the whole DSN in one process — 7 nodes, the L1 sandbox at
// 1 s a level, the rollup node running the DSN kernel, a sequencer
// posting — with 512-byte transactions offered through the sequencer's
// HTTP API; submit→ordered and submit→verified latency.
func BenchmarkE2E(b *testing.B) {
	for b.Loop() {
		slow := func(c *config.Node) {
			if c.Name == "node-7" {
				c.Network.Delay.Duration = *e2eSlow
			}
		}
		s := stacktest.Start(b, stacktest.Options{Nodes: 7, BlockTime: *e2eBlockTime, BatchingKeys: 16,
			NodeOptions: []nodetest.Option{slow}})
		seq, url, _ := s.Sequencer(b)
		rng := rand.New(rand.NewPCG(3, 4))
		var out []e2eResult
		var seqNo uint64
		for _, rate := range splitRates(b, *e2eRates) {
			out = append(out, runE2E(b, s, seq, url, rng, rate, &seqNo))
		}
		t := table.NewWriter()
		t.SetTitle("submit → ordered → verified: 7 nodes, sequencer, rollup node (DSN kernel in the PVM), L1 sandbox at %s a level; 512-byte transactions, %s per load", *e2eBlockTime, *e2eStep)
		t.AppendHeader(table.Row{"offered tx/s", "verified", "→ ordered p50 / p90 / p99 ms", "→ verified p50 / p90 / p99 ms", "posted KiB/s", "L1 levels", "kernel ms per level"})
		for _, r := range out {
			t.AppendRow(table.Row{fmt.Sprintf("%.0f", r.OfferedTPS), fmt.Sprintf("%d / %d", r.Verified, r.Submitted),
				fmt.Sprintf("%.0f / %.0f / %.0f", r.Ordered.P50, r.Ordered.P90, r.Ordered.P99),
				fmt.Sprintf("%.0f / %.0f / %.0f", r.VerifiedMs.P50, r.VerifiedMs.P90, r.VerifiedMs.P99),
				fmt.Sprintf("%.0f", r.PostedKBps), r.Levels, fmt.Sprintf("%.0f", r.LevelMsMean)})
			b.ReportMetric(r.VerifiedMs.P50, fmt.Sprintf("verified-p50-ms@%.0f", r.OfferedTPS))
		}
		fmt.Println(t.Render())
		fmt.Println(t.RenderMarkdown())
		save(b, "e2e", out)
		if err := savePlot("e2e", e2eChart(out)); err != nil {
			b.Fatal(err)
		}
	}
}

// runE2E offers rate tx/s through the sequencer's API for *e2eStep, then
// waits for every transaction to be verified (at most a minute).
func runE2E(b *testing.B, s *stacktest.Stack, seq *sequencer.Sequencer, url string, rng *rand.Rand, rate float64, seqNo *uint64) e2eResult {
	b.Helper()
	type sent struct {
		id narwhal.Digest
		at time.Time
	}
	var (
		mu    sync.Mutex
		txs   []sent
		wg    sync.WaitGroup
		sem   = make(chan struct{}, 512)
		fails int
	)
	level0, start := s.Rollup.Head(), time.Now()
	runs0, secs0 := s.Rollup.LevelStats()
	posted0 := seq.PostedBytes()
	interval := time.Duration(float64(time.Second) / rate)
	for next := start; time.Since(start) < *e2eStep; next = next.Add(interval) {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		*seqNo++
		tx := load.Make(rng, 512, time.Now(), *seqNo)
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			at := time.Now()
			resp, err := http.Post(url+"/v1/transactions", "application/octet-stream", bytes.NewReader(tx))
			mu.Lock()
			defer mu.Unlock()
			if err != nil || resp.StatusCode != http.StatusAccepted {
				fails++
				if resp != nil {
					resp.Body.Close()
				}
				return
			}
			resp.Body.Close()
			txs = append(txs, sent{blake2b.Sum256(tx), at})
		}()
	}
	wg.Wait()
	postedKBps := float64(seq.PostedBytes()-posted0) / 1024 / time.Since(start).Seconds()
	if fails > 0 {
		b.Logf("%.0f tx/s: %d submissions refused", rate, fails)
	}
	var ordered, verified []time.Duration
	deadline := time.Now().Add(time.Minute)
	for {
		ordered, verified = ordered[:0], verified[:0]
		for _, t := range txs {
			st, ok := seq.Lookup(t.id)
			if !ok {
				continue
			}
			if at, err := time.Parse(time.RFC3339Nano, st.OrderedAt); err == nil {
				ordered = append(ordered, at.Sub(t.at))
			}
			if at, err := time.Parse(time.RFC3339Nano, st.VerifiedAt); err == nil {
				verified = append(verified, at.Sub(t.at))
			}
		}
		if len(verified) == len(txs) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	levels := s.Rollup.Head() - level0
	r := e2eResult{OfferedTPS: rate, Submitted: len(txs), Verified: len(verified), Levels: levels, PostedKBps: postedKBps}
	o, v := load.Summarize(ordered), load.Summarize(verified)
	r.Ordered.P50, r.Ordered.P90, r.Ordered.P99 = ms(o.P50), ms(o.P90), ms(o.P99)
	r.VerifiedMs.P50, r.VerifiedMs.P90, r.VerifiedMs.P99 = ms(v.P50), ms(v.P90), ms(v.P99)
	if runs, secs := s.Rollup.LevelStats(); runs > runs0 {
		r.LevelMsMean = (secs - secs0) / float64(runs-runs0) * 1000
	}
	return r
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// e2eChart: ordered and verified percentiles against the offered load.
func e2eChart(out []e2eResult) chart {
	c := chart{title: fmt.Sprintf("whole stack, L1 at %s a level", *e2eBlockTime), x: "offered tx/s", y: "ms after submit"}
	for _, l := range []struct {
		name string
		y    func(e2eResult) float64
	}{
		{"ordered p50", func(r e2eResult) float64 { return r.Ordered.P50 }},
		{"ordered p99", func(r e2eResult) float64 { return r.Ordered.P99 }},
		{"verified p50", func(r e2eResult) float64 { return r.VerifiedMs.P50 }},
		{"verified p99", func(r e2eResult) float64 { return r.VerifiedMs.P99 }},
	} {
		var xy plotter.XYs
		for _, r := range out {
			if v := l.y(r); v > 0 {
				xy = append(xy, plotter.XY{X: r.OfferedTPS, Y: v})
			}
		}
		c.lines = append(c.lines, series{l.name, xy})
	}
	return c
}
