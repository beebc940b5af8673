package bench

import (
	"fmt"
	"sync"
	"time"

	"github.com/jedib0t/go-pretty/v6/table"

	"github.com/tezos-dsn/dsn/internal/load"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/replica"
)

// anatomy is a node.Tracer shared by every node of the committee: it keeps
// when each stamped transaction reached an event loop and when each batch
// reached each stage at its author, so that each ordered transaction's
// latency splits into stages.
type anatomy struct {
	mu       sync.Mutex
	received map[uint64]time.Time
	stages   map[narwhal.Digest]*[replica.StageCommitted + 1]time.Time
	samples  [numSlices][]time.Duration
}

// The slices of a transaction's latency, in order; they add up to
// submit → exported.
const (
	sliceSubmit  = iota // sent by the client → reached the event loop
	sliceSeal           // → its batch sealed
	sliceHeader         // → named by the author's header
	sliceCertify        // → header certified
	sliceCommit         // → certificate committed by the author
	sliceExport         // → pre-block received from node 0's Export
	numSlices
)

var sliceNames = [numSlices]string{
	"submit → worker", "worker → batch sealed", "sealed → in a header",
	"header → certified", "certified → committed", "committed → exported"}

func newAnatomy() *anatomy {
	return &anatomy{received: map[uint64]time.Time{}, stages: map[narwhal.Digest]*[replica.StageCommitted + 1]time.Time{}}
}

// Received implements node.Tracer.
func (a *anatomy) Received(tx []byte, at time.Time) {
	if seq, ok := load.Seq(tx); ok {
		a.mu.Lock()
		a.received[seq] = at
		a.mu.Unlock()
	}
}

// Stage implements node.Tracer. A batch proposed again (its first
// certificate was skipped) keeps the latest proposal and certification,
// the ones that got committed.
func (a *anatomy) Stage(s replica.Stage, batches []narwhal.Digest, at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, d := range batches {
		st := a.stages[d]
		if st == nil {
			st = new([replica.StageCommitted + 1]time.Time)
			a.stages[d] = st
		}
		if st[s].IsZero() || s == replica.StageProposed || s == replica.StageCertified {
			st[s] = at
		}
	}
}

// ordered records the slices of one ordered transaction of batch d.
func (a *anatomy) ordered(tx []byte, d narwhal.Digest, exported time.Time) {
	sent, ok1 := load.SentAt(tx)
	seq, ok2 := load.Seq(tx)
	if !ok1 || !ok2 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	recv, ok := a.received[seq]
	st := a.stages[d]
	if !ok || st == nil {
		return
	}
	points := []time.Time{sent, recv, st[replica.StageSealed], st[replica.StageProposed],
		st[replica.StageCertified], st[replica.StageCommitted], exported}
	for _, p := range points {
		if p.IsZero() {
			return // a stage seen by another path (e.g. a restarted author): skip the sample
		}
	}
	for k := range numSlices {
		a.samples[k] = append(a.samples[k], max(points[k+1].Sub(points[k]), 0))
	}
	delete(a.received, seq)
}

// reset drops the samples (between offered loads).
func (a *anatomy) reset() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.samples = [numSlices][]time.Duration{}
}

// sliceStats are one slice's percentiles.
type sliceStats struct {
	Slice string  `json:"slice"`
	P50ms float64 `json:"p50_ms"`
	P90ms float64 `json:"p90_ms"`
	P99ms float64 `json:"p99_ms"`
}

func (a *anatomy) stats() []sliceStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []sliceStats
	ms := func(x time.Duration) float64 { return float64(x.Microseconds()) / 1000 }
	for k := range numSlices {
		p := load.Summarize(a.samples[k])
		out = append(out, sliceStats{Slice: sliceNames[k], P50ms: ms(p.P50), P90ms: ms(p.P90), P99ms: ms(p.P99)})
	}
	return out
}

// anatomyTable renders the slices of each offered load side by side.
func anatomyTable(steps []step) table.Writer {
	t := table.NewWriter()
	t.SetTitle("latency anatomy: where a transaction's time goes (ms, p50 / p90 / p99 per slice)")
	hdr := table.Row{"slice"}
	for _, s := range steps {
		hdr = append(hdr, fmt.Sprintf("%.0f tx/s", s.OfferedTPS))
	}
	t.AppendHeader(hdr)
	for k := range numSlices {
		row := table.Row{sliceNames[k]}
		for _, s := range steps {
			if k < len(s.Anatomy) {
				a := s.Anatomy[k]
				row = append(row, fmt.Sprintf("%.1f / %.1f / %.1f", a.P50ms, a.P90ms, a.P99ms))
			}
		}
		t.AppendRow(row)
	}
	row := table.Row{"CPU ms per round per node"}
	for _, s := range steps {
		row = append(row, fmt.Sprintf("%.1f", s.CPUmsPerRound))
	}
	t.AppendRow(row)
	row = table.Row{"rounds/s"}
	for _, s := range steps {
		row = append(row, fmt.Sprintf("%.1f", s.RoundsPS))
	}
	t.AppendRow(row)
	return t
}
