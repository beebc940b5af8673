package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/jedib0t/go-pretty/v6/table"

	"github.com/tezos-dsn/dsn/internal/da"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/pvm"
	"github.com/tezos-dsn/dsn/internal/wasmlink"
	"github.com/tezos-dsn/dsn/kernel/state"
	"github.com/tezos-dsn/dsn/services/node/nodetest"
	"github.com/tezos-dsn/dsn/services/sandbox"
)

// kernelStep is the kernel's cost on one committee run.
type kernelStep struct {
	OfferedTPS      float64 `json:"offered_tps"`
	SubDAGs         uint64  `json:"sub_dags"`
	SubDAGsPerLevel float64 `json:"sub_dags_per_level"`
	TxPerSubDAG     float64 `json:"tx_per_sub_dag"`
	CertsPerSubDAG  float64 `json:"certificates_per_sub_dag"`
	MsPerSubDAG     float64 `json:"kernel_ms_per_sub_dag"`
	UsPerTx         float64 `json:"kernel_us_per_tx"`
	BytesPerTx      float64 `json:"bytes_posted_per_tx"`
	SigShare        float64 `json:"signature_share"`    // of kernel time, estimated from the tips checked
	MticksPerSub    float64 `json:"mticks_per_sub_dag"` // millions of ticks (octez's tick model, internal/wasmmeter)
	KticksPerTx     float64 `json:"kticks_per_tx"`
	BudgetShare     float64 `json:"max_level_budget_share"` // the busiest level's ticks over runBudget
}

var benchRollup = [20]byte{0xbe, 0x4c}

// runBudget is the ticks a kernel author budgets one kernel_run at
// (Etherlink's safety margin under the protocol's 50 Tticks).
const runBudget = 30e9

// kernelDAG runs a 7-node committee at rate tx/s for d and returns its
// committee and node 0's certified DAG.
func kernelDAG(b *testing.B, rate float64, d time.Duration) (*narwhal.Committee, []state.Entry) {
	cl := nodetest.Start(b, 7)
	run(b, inProcess{cl, 0}, nil, rate, 512, d)
	dag, err := cl.CertifiedDAG(0)
	if err != nil {
		b.Fatal(err)
	}
	return cl.Committee, dag
}

// roundsPerSubmission: a submission carries this many rounds of
// certificates; only the last round's (and the few an earlier round's
// successors do not reference) are tips whose signatures the kernel checks.
const roundsPerSubmission = 4

// levelBytes is what one L1 level carries to the kernel: the sandbox's
// block size (512 KiB, Tezos's manager-operation pass), filled with inbox
// messages, as a sequencer posting under load fills it.
var levelBytes = sandbox.DefaultConfig().MaxBlockBytes

// runKernel posts the DAG as submissions of roundsPerSubmission rounds, in
// levels of levelBytes, to the built kernel in the PVM and measures it.
func runKernel(b *testing.B, k []byte, committee *narwhal.Committee, dag []state.Entry) (el time.Duration, blocks, txs uint64, bytes int, tips int, ticks, maxTicks uint64, levels int) {
	ctx := context.Background()
	cfg := pvm.DefaultConfig()
	cfg.Rollup = benchRollup
	p, err := pvm.New(ctx, cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close(ctx)
	state.Setup(p.Durable().Under("/dsn/"), committee, 50)
	if err := p.InstallKernel(k); err != nil {
		b.Fatal(err)
	}
	var msgs [][]byte
	var subs [][]state.Entry
	var last []int // last[i]: index in msgs of submission i's last chunk
	for lo := 0; lo < len(dag); {
		hi := lo
		for hi < len(dag) && dag[hi].Certificate.Round() < dag[lo].Certificate.Round()+roundsPerSubmission {
			hi++
		}
		chunks, err := da.Split(state.EncodeSubmission(dag[lo:hi]))
		if err != nil {
			b.Fatal(err)
		}
		for _, c := range chunks {
			m := pvm.External(da.Target(benchRollup, c.Encode()))
			msgs = append(msgs, m)
			bytes += len(m)
		}
		subs, last = append(subs, dag[lo:hi]), append(last, len(msgs)-1)
		lo = hi
	}
	if err := p.Prepare(ctx); err != nil { // compiled once per kernel, not per level
		b.Fatal(err)
	}
	start := time.Now()
	level := uint32(1)
	next := 0 // the first submission not yet complete
	for lo := 0; lo < len(msgs); {
		hi, size := lo, 0
		for hi < len(msgs) && size+len(msgs[hi]) <= levelBytes {
			size += len(msgs[hi])
			hi++
		}
		res, err := p.RunLevel(ctx, level, int64(level), [32]byte{}, msgs[lo:hi])
		if err != nil || res.Stuck != "" {
			b.Fatalf("level %d: %v %s", level, err, res.Stuck)
		}
		ticks += res.Ticks
		maxTicks = max(maxTicks, res.Ticks)
		// The kernel authenticates the submissions a level completes
		// together: their tips are what it checks by signature.
		var done []state.Entry
		for ; next < len(subs) && last[next] < hi; next++ {
			done = append(done, subs[next]...)
		}
		tips += countTips(done)
		level++
		lo = hi
	}
	el = time.Since(start)
	levels = int(level - 1)
	raw, _ := p.Durable().Get("/dsn/head")
	if len(raw) == 8 {
		blocks = binary.BigEndian.Uint64(raw)
	}
	for n := uint64(1); n <= blocks; n++ {
		blk, _, err := state.ReadBlock(p.Durable().Under("/dsn/"), n)
		if err != nil {
			b.Fatal(err)
		}
		txs += uint64(len(blk.Transactions))
	}
	return el, blocks, txs, bytes, tips, ticks, maxTicks, levels
}

// countTips counts the certificates no other one of the submission
// references: those the kernel checks by signature.
func countTips(es []state.Entry) int {
	ref := map[narwhal.Digest]bool{}
	for _, e := range es {
		for _, p := range e.Certificate.Header.Parents {
			ref[p] = true
		}
	}
	n := 0
	for _, e := range es {
		if !ref[e.Certificate.Digest()] {
			n++
		}
	}
	return n
}

// certCost measures the kernel's time per certificate signature check in
// the PVM with the certverify example kernel, on real certificates.
func certCost(b *testing.B, committee *narwhal.Committee, dag []state.Entry) time.Duration {
	ctx := context.Background()
	k, err := wasmlink.Build(ctx, "..", "./kernel/examples/certverify")
	if err != nil {
		b.Fatal(err)
	}
	p, _ := pvm.New(ctx, pvm.DefaultConfig(), nil)
	defer p.Close(ctx)
	p.InstallKernel(k)
	timeOf := func(n int) time.Duration {
		in := [][]byte{pvm.External(committee.Encode())}
		for _, e := range dag[len(dag)/2 : len(dag)/2+n] {
			in = append(in, pvm.External(e.Certificate.Encode()))
		}
		start := time.Now()
		if _, err := p.RunLevel(ctx, 1, 0, [32]byte{}, in); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	timeOf(0) // compile
	return (timeOf(20) - timeOf(0)) / 20
}

// BenchmarkKernel: the DSN kernel in the PVM on a 7-node committee's
// certified DAG, at loads giving about 10, 100 and 1,000 transactions per
// committed sub-DAG: kernel time per sub-DAG and per transaction, bytes
// posted to L1 per transaction.
func BenchmarkKernel(b *testing.B) {
	k, err := wasmlink.Build(context.Background(), "..", "./kernel/dsn")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		var steps []kernelStep
		var perCert time.Duration
		for _, rate := range []float64{250, 1100, 6000} {
			committee, dag := kernelDAG(b, rate, 3*time.Second)
			if perCert == 0 {
				perCert = certCost(b, committee, dag)
			}
			el, blocks, txs, bytes, tips, ticks, maxTicks, levels := runKernel(b, k, committee, dag)
			if blocks == 0 {
				b.Fatalf("the kernel committed nothing at %.0f tx/s", rate)
			}
			steps = append(steps, kernelStep{
				OfferedTPS: rate, SubDAGs: blocks, SubDAGsPerLevel: float64(blocks) / float64(levels),
				TxPerSubDAG:    float64(txs) / float64(blocks),
				CertsPerSubDAG: float64(len(dag)) / float64(blocks),
				MsPerSubDAG:    float64(el.Microseconds()) / 1000 / float64(blocks),
				UsPerTx:        float64(el.Microseconds()) / float64(max(txs, 1)),
				BytesPerTx:     float64(bytes) / float64(max(txs, 1)),
				SigShare:       min(1, float64(tips)*perCert.Seconds()/el.Seconds()),
				MticksPerSub:   float64(ticks) / 1e6 / float64(blocks),
				KticksPerTx:    float64(ticks) / 1e3 / float64(max(txs, 1)),
				BudgetShare:    float64(maxTicks) / runBudget,
			})
		}
		t := table.NewWriter()
		t.SetTitle("DSN kernel in the PVM, 7-node committee, 512-byte transactions (%d rounds of certificates per submission, levels of %d KiB)", roundsPerSubmission, levelBytes>>10)
		t.AppendHeader(table.Row{"offered tx/s", "tx per sub-DAG", "sub-DAGs per level", "certificates per sub-DAG", "kernel ms per sub-DAG", "kernel µs per tx", "bytes posted per tx", "signature checks", "Mticks per sub-DAG", "kticks per tx", "busiest level, of a 30 Gtick run"})
		for _, s := range steps {
			t.AppendRow(table.Row{fmt.Sprintf("%.0f", s.OfferedTPS), fmt.Sprintf("%.0f", s.TxPerSubDAG), fmt.Sprintf("%.1f", s.SubDAGsPerLevel), fmt.Sprintf("%.1f", s.CertsPerSubDAG),
				fmt.Sprintf("%.1f", s.MsPerSubDAG), fmt.Sprintf("%.0f", s.UsPerTx), fmt.Sprintf("%.0f", s.BytesPerTx), fmt.Sprintf("%.0f %%", 100*s.SigShare), fmt.Sprintf("%.0f", s.MticksPerSub), fmt.Sprintf("%.0f", s.KticksPerTx), fmt.Sprintf("%.1f %%", 100*s.BudgetShare)})
			b.ReportMetric(s.MsPerSubDAG, fmt.Sprintf("ms/subdag@%.0f", s.OfferedTPS))
		}
		fmt.Println(t.Render())
		fmt.Println(t.RenderMarkdown())
		fmt.Printf("one certificate's signatures (5 of 7) in the PVM: %.2f ms\n", float64(perCert.Microseconds())/1000)
		save(b, "kernel", steps)
	}
}
