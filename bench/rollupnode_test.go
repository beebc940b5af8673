package bench

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jedib0t/go-pretty/v6/table"

	"github.com/tezos-dsn/dsn/internal/da"
	"github.com/tezos-dsn/dsn/internal/load"
	"github.com/tezos-dsn/dsn/internal/pvm"
	"github.com/tezos-dsn/dsn/internal/tezos"
	"github.com/tezos-dsn/dsn/internal/wasmlink"
	"github.com/tezos-dsn/dsn/kernel/state"
	"github.com/tezos-dsn/dsn/services/rollupnode"
	"github.com/tezos-dsn/dsn/services/sandbox"
	"github.com/tezos-dsn/dsn/services/stacktest"
)

// rollupNodeResult is one row of BenchmarkRollupNode.
type rollupNodeResult struct {
	Kernel          string  `json:"kernel"`
	Levels          int     `json:"levels"`
	MessagesPerLvl  float64 `json:"messages_per_level"`
	KiBPerLevel     float64 `json:"kib_per_level"`
	LevelsPerSecond float64 `json:"levels_per_s"`
	MsPerLevel      float64 `json:"ms_per_level"`
}

// BenchmarkRollupNode: how many full L1 levels per second the rollup node
// processes (kernel run + commit) while catching up on a sandbox, with the
// echo kernel (1,000 messages of 100 bytes a level) and with the DSN kernel
// (a 7-node committee's certified DAG at 2,500 tx/s, framed as the
// sequencer frames it, as much as a 512 KiB block carries); and the time
// from injection into the rollup node's batcher to the message's level
// being processed, at 1 s a level.
func BenchmarkRollupNode(b *testing.B) {
	echo, err := wasmlink.Build(context.Background(), "..", "./kernel/examples/echo")
	if err != nil {
		b.Fatal(err)
	}
	dsnKernel, err := wasmlink.Build(context.Background(), "..", "./kernel/dsn")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		var rows []rollupNodeResult
		var echoLevels [][][]byte
		for l := range 20 {
			var msgs [][]byte
			for i := range 1000 {
				msgs = append(msgs, fmt.Appendf(nil, "%-100s", fmt.Sprintf("level %d message %d", l, i)))
			}
			echoLevels = append(echoLevels, msgs)
		}
		rows = append(rows, catchUp(b, "echo", echo, nil, echoLevels))

		committee, dag := kernelDAG(b, 2500, 3*time.Second)
		d := pvm.NewDurable()
		state.Setup(d.Under("/dsn/"), committee, 50)
		setup, _ := json.Marshal(pvm.SetupFrom(d, "/dsn"))
		rows = append(rows, catchUp(b, "DSN", dsnKernel, setup, dsnLevels(b, dag)))

		lat := injectionLatency(b, echo, 20)

		t := table.NewWriter()
		t.SetTitle("rollup node catching up on full levels (kernel in the PVM, durable state in pebble)")
		t.AppendHeader(table.Row{"kernel", "levels", "messages per level", "KiB per level", "levels/s", "ms per level"})
		for _, r := range rows {
			t.AppendRow(table.Row{r.Kernel, r.Levels, fmt.Sprintf("%.0f", r.MessagesPerLvl), fmt.Sprintf("%.0f", r.KiBPerLevel),
				fmt.Sprintf("%.2f", r.LevelsPerSecond), fmt.Sprintf("%.0f", r.MsPerLevel)})
			b.ReportMetric(r.LevelsPerSecond, "levels/s@"+r.Kernel)
		}
		fmt.Println(t.Render())
		fmt.Println(t.RenderMarkdown())
		fmt.Printf("injection → level processed, 1 s a level, echo kernel: p50 %.0f ms, p90 %.0f ms, max %.0f ms (%d messages)\n",
			ms(lat.P50), ms(lat.P90), ms(lat.Max), lat.Count)
		save(b, "rollupnode", map[string]any{"catch_up": rows, "injection_to_processed_ms": map[string]float64{
			"p50": ms(lat.P50), "p90": ms(lat.P90), "max": ms(lat.Max)}})
	}
}

// dsnLevels frames the DAG as the sequencer does (submissions of about 40
// certificates, non-tips stripped, DA chunks) and packs the chunks into
// levels of at most what 16 batching keys carry in one block.
func dsnLevels(b *testing.B, dag []state.Entry) [][][]byte {
	var msgs [][]byte
	for lo := 0; lo < len(dag); lo += 40 {
		chunks, err := da.Split(state.EncodeSubmission(state.StripSignatures(dag[lo:min(lo+40, len(dag))])))
		if err != nil {
			b.Fatal(err)
		}
		for _, c := range chunks {
			msgs = append(msgs, da.Target(benchRollup, c.Encode()))
		}
	}
	// As catchUp packs them: 16 operations of at most 31 KiB of messages.
	var levels [][][]byte
	for len(msgs) > 0 {
		n := 0
		for range 16 {
			size := 0
			for n < len(msgs) && size+len(msgs[n])+4 <= tezos.MaxOperationSize-1024 {
				size += len(msgs[n]) + 4
				n++
			}
		}
		levels = append(levels, msgs[:n])
		msgs = msgs[n:]
	}
	return levels
}

func l1Head(b *testing.B, base string) (level int64, hash [32]byte) {
	resp, err := http.Get(base + "/chains/main/blocks/head/header")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var h sandbox.BlockHeader
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		b.Fatal(err)
	}
	hash, err = tezos.ParseBlockHash(h.Hash)
	if err != nil {
		b.Fatal(err)
	}
	return h.Level, hash
}

// catchUp bakes the levels (one add_messages operation per key and 32 KiB,
// up to 16 keys a level), then starts a rollup node with the kernel on a
// fresh data dir and times how fast it processes them.
func catchUp(b *testing.B, name string, kernel, setup []byte, levels [][][]byte) rollupNodeResult {
	sb := stacktest.StartSandbox(b, 100*time.Millisecond)
	base := "http://" + sb.Addr()
	keys := tezos.SandboxAccounts(16)
	counters := make([]uint64, len(keys))
	var first, last int64
	msgs, bytes := 0, 0
	for _, lv := range levels {
		level, branch := l1Head(b, base)
		k := 0
		for len(lv) > 0 {
			if k == len(keys) {
				b.Fatalf("a level of %d messages does not fit 16 operations", len(lv))
			}
			priv, _ := tezos.ParseSecretKey(keys[k].SecretKey)
			op := &tezos.Operation{Branch: branch, Contents: tezos.AddMessages{
				Source: tezos.PublicKeyHash(priv.Public().(ed25519.PublicKey)), Fee: 1000, Counter: counters[k] + 1, GasLimit: 10_000}}
			size := 0
			for len(lv) > 0 && size+4+len(lv[0]) <= tezos.MaxOperationSize-1024 {
				op.Contents.Messages = append(op.Contents.Messages, lv[0])
				size += 4 + len(lv[0])
				msgs++
				bytes += len(lv[0])
				lv = lv[1:]
			}
			op.Sign(priv)
			if _, err := sb.Inject(op.Bytes()); err != nil {
				b.Fatalf("inject: %v", err)
			}
			counters[k]++
			k++
		}
		for {
			if l, _ := l1Head(b, base); l > level {
				if first == 0 {
					first = l
				}
				last = l
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	dir := b.TempDir()
	cfg := rollupnode.DefaultConfig()
	cfg.DataDir, cfg.L1, cfg.Rollup = filepath.Join(dir, "node"), base, tezos.Base58CheckEncode(tezos.PrefixRollup, benchRollup[:])
	cfg.BootSectorFile = filepath.Join(dir, "kernel.wasm")
	os.WriteFile(cfg.BootSectorFile, kernel, 0o644)
	if setup != nil {
		cfg.SetupFile = filepath.Join(dir, "setup.json")
		os.WriteFile(cfg.SetupFile, setup, 0o644)
	}
	n, err := rollupnode.Open(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	// Time only the full levels: wait until the node reaches the first.
	for n.Head() < uint32(first)-1 {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	for n.Head() < uint32(last) {
		time.Sleep(time.Millisecond)
	}
	el := time.Since(start)
	count := int(last - first + 1)
	return rollupNodeResult{Kernel: name, Levels: count, MessagesPerLvl: float64(msgs) / float64(count),
		KiBPerLevel: float64(bytes) / 1024 / float64(count), LevelsPerSecond: float64(count) / el.Seconds(),
		MsPerLevel: float64(el.Milliseconds()) / float64(count)}
}

// injectionLatency injects n messages, one at a time at spread-out moments,
// through a rollup node's batcher at 1 s a level, and measures until each
// message's level is processed (its status turns included, which the node
// sets when it processes the level).
func injectionLatency(b *testing.B, kernel []byte, n int) load.Percentiles {
	sb := stacktest.StartSandbox(b, time.Second)
	dir := b.TempDir()
	cfg := rollupnode.DefaultConfig()
	cfg.DataDir, cfg.L1, cfg.Rollup = filepath.Join(dir, "node"), "http://"+sb.Addr(), tezos.Base58CheckEncode(tezos.PrefixRollup, benchRollup[:])
	cfg.BootSectorFile = filepath.Join(dir, "kernel.wasm")
	cfg.BatchingKeys = []string{tezos.BootstrapAccounts[0].SecretKey}
	os.WriteFile(cfg.BootSectorFile, kernel, 0o644)
	node, err := rollupnode.Open(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer node.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { node.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	srv := httptest.NewServer(node.Handler())
	defer srv.Close()
	var lat []time.Duration
	for i := range n {
		time.Sleep(time.Duration(137*i%1000) * time.Millisecond) // spread over the block interval
		at := time.Now()
		resp, err := http.Post(srv.URL+"/local/batcher/injection?drop_duplicate=false", "application/json",
			strings.NewReader(fmt.Sprintf(`["%s"]`, hex.EncodeToString(fmt.Appendf(nil, "latency %d", i)))))
		if err != nil {
			b.Fatal(err)
		}
		var ids []string
		json.NewDecoder(resp.Body).Decode(&ids)
		resp.Body.Close()
		for {
			r, err := http.Get(srv.URL + "/local/batcher/queue/" + ids[0])
			if err != nil {
				b.Fatal(err)
			}
			var st struct{ Status string }
			json.NewDecoder(r.Body).Decode(&st)
			r.Body.Close()
			if st.Status == "included" {
				lat = append(lat, time.Since(at))
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	return load.Summarize(lat)
}
