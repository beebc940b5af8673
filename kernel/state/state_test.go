package state_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand"
	"testing"
	"time"

	"golang.org/x/crypto/blake2b"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
	"github.com/tezos-dsn/dsn/internal/da"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/pvm"
	"github.com/tezos-dsn/dsn/internal/wasmlink"
	"github.com/tezos-dsn/dsn/kernel/state"
	"github.com/tezos-dsn/dsn/services/node/nodetest"
)

type mapStore map[string][]byte

func (m mapStore) Get(k string) ([]byte, bool) { v, ok := m[k]; return v, ok }
func (m mapStore) Put(k string, v []byte)      { m[k] = append([]byte(nil), v...) }
func (m mapStore) Delete(k string)             { delete(m, k) }

// committeeRun is what a real in-process committee produced: its
// committee, the certified DAG of one node in causal order with batches,
// and that node's Export stream.
type committeeRun struct {
	committee *narwhal.Committee
	gcDepth   uint64
	dag       []state.Entry
	export    []*dsnv1.PreBlock
}

var rollup = [20]byte{0xd5, 0x4e}

func runCommittee(t testing.TB, nodes, txs int, preBlocks uint64) committeeRun {
	t.Helper()
	cl := nodetest.Start(t, nodes)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var all [][]byte
	for i := range txs {
		tx := make([]byte, 64)
		copy(tx, fmt.Sprintf("tx-%06d", i))
		all = append(all, tx)
	}
	go func() {
		// Waves of load, so that sub-DAGs hold transactions of many rounds.
		for lo := 0; lo < len(all) && ctx.Err() == nil; lo += 50 {
			if _, err := cl.SubmitAll(ctx, []int{lo % nodes}, 1, all[lo:min(lo+50, len(all))]); err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	want := map[string]bool{}
	for _, tx := range all {
		want[string(tx)] = true
	}
	export, err := cl.ReadExport(ctx, 0, 0, func(pb *dsnv1.PreBlock) bool {
		for _, cb := range pb.Batches {
			for _, raw := range cb.Batches {
				b, _ := narwhal.DecodeBatch(raw)
				for _, tx := range b.Transactions {
					delete(want, string(tx))
				}
			}
		}
		return len(want) == 0 && pb.Index >= preBlocks
	})
	if err != nil {
		t.Fatal(err)
	}
	run := committeeRun{committee: cl.Committee, gcDepth: 50, export: export}
	if run.dag, err = cl.CertifiedDAG(0); err != nil {
		t.Fatal(err)
	}
	return run
}

func setup(t testing.TB, run committeeRun) mapStore {
	st := mapStore{}
	state.Setup(st, run.committee, run.gcDepth)
	return st
}

// messages frames the DAG as submissions of `per` certificates each, cut
// into targeted chunks (as the external messages a sequencer posts).
func messages(t testing.TB, dag []state.Entry, per int) [][]byte {
	var out [][]byte
	for lo := 0; lo < len(dag); lo += per {
		chunks, err := da.Split(state.EncodeSubmission(dag[lo:min(lo+per, len(dag))]))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range chunks {
			out = append(out, da.Target(rollup, c.Encode()))
		}
	}
	return out
}

// feed runs the messages through fresh machines (one per level, as
// kernel_run starts afresh), perLevel messages a level.
func feed(t testing.TB, st mapStore, msgs [][]byte, perLevel int) {
	t.Helper()
	level := uint32(10)
	for lo := 0; lo < len(msgs); lo += perLevel {
		m, err := state.Load(st, rollup, state.Digests{}, func(s string) { t.Log(s) })
		if err != nil {
			t.Fatal(err)
		}
		m.StartLevel(level)
		for _, msg := range msgs[lo:min(lo+perLevel, len(msgs))] {
			m.Input(level, msg)
		}
		m.EndLevel()
		level++
	}
}

// checkAgainstExport: the kernel's blocks equal the node's pre-blocks in
// index, leader and transactions, for every pre-block the kernel reached.
func checkAgainstExport(t *testing.T, st state.Store, export []*dsnv1.PreBlock) uint64 {
	t.Helper()
	raw, _ := st.Get("head")
	if len(raw) != 8 {
		t.Fatal("the kernel committed nothing")
	}
	head := binary.BigEndian.Uint64(raw)
	if head == 0 {
		t.Fatal("the kernel committed nothing")
	}
	for _, pb := range export {
		if pb.Index > head {
			break
		}
		b, ok, err := state.ReadBlock(st, pb.Index)
		if err != nil || !ok {
			t.Fatalf("block %d: %v %v", pb.Index, ok, err)
		}
		if b.Leader != narwhal.Digest(pb.Leader) {
			t.Fatalf("block %d: leader differs from the node's", pb.Index)
		}
		var want []narwhal.Digest
		for _, cb := range pb.Batches {
			for _, raw := range cb.Batches {
				batch, _ := narwhal.DecodeBatch(raw)
				for _, tx := range batch.Transactions {
					want = append(want, blake2b.Sum256(tx))
				}
			}
		}
		if len(want) != len(b.Transactions) {
			t.Fatalf("block %d: %d transactions, the node has %d", pb.Index, len(b.Transactions), len(want))
		}
		for i := range want {
			if want[i] != b.Transactions[i] {
				t.Fatalf("block %d: transaction %d differs", pb.Index, i)
			}
		}
	}
	return head
}

func TestKernelStateEqualsExport(t *testing.T) {
	run := runCommittee(t, 7, 1000, 40)
	for _, tc := range []struct {
		name               string
		per, perLevel      int
		shuffle, duplicate bool
	}{
		{"one submission, one level", len(run.dag), 1 << 20, false, false},
		{"a round per submission, a chunk per level", 4, 1, false, false},
		{"shuffled and duplicated chunks over levels", 8, 5, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs := messages(t, run.dag, tc.per)
			if tc.duplicate {
				msgs = append(msgs, msgs...)
			}
			if tc.shuffle {
				// Shuffle within windows: a chunk may come before the
				// earlier submission's, as two posters would cause.
				rng := rand.New(rand.NewSource(1))
				for lo := 0; lo < len(msgs); lo += 6 {
					w := msgs[lo:min(lo+6, len(msgs))]
					rng.Shuffle(len(w), func(i, j int) { w[i], w[j] = w[j], w[i] })
				}
			}
			st := setup(t, run)
			feed(t, st, msgs, tc.perLevel)
			head := checkAgainstExport(t, st, run.export)
			t.Logf("%d certificates, %d messages: kernel head %d, node exported %d", len(run.dag), len(msgs), head, len(run.export))
			if head+2 < uint64(len(run.export)) {
				t.Fatalf("the kernel reached block %d of %d", head, len(run.export))
			}
		})
	}
}

// The built kernel, run in internal/pvm level by level on a real
// committee's certificates, commits what the node exported, and the same
// inputs give byte-identical durable state.
func TestKernelInThePVM(t *testing.T) {
	run := runCommittee(t, 7, 1000, 40)
	k, err := wasmlink.Build(context.Background(), "../..", "./kernel/dsn")
	if err != nil {
		t.Fatal(err)
	}
	msgs := messages(t, run.dag, 14)
	var hashes [][32]byte
	for attempt := range 2 {
		ctx := context.Background()
		cfg := pvm.DefaultConfig()
		cfg.Rollup = rollup
		p, err := pvm.New(ctx, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close(ctx)
		state.Setup(p.Durable().Under("/dsn/"), run.committee, run.gcDepth)
		if err := p.InstallKernel(k); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		const perLevel = 20
		level := uint32(1)
		for lo := 0; lo < len(msgs); lo += perLevel {
			var in [][]byte
			for _, m := range msgs[lo:min(lo+perLevel, len(msgs))] {
				in = append(in, pvm.External(m))
			}
			res, err := p.RunLevel(ctx, level, int64(level), [32]byte{}, in)
			if err != nil || res.Stuck != "" {
				t.Fatalf("level %d: %v %s\n%s", level, err, res.Stuck, res.Debug)
			}
			level++
		}
		el := time.Since(start)
		head := checkAgainstExport(t, p.Durable().Under("/dsn/"), run.export)
		t.Logf("run %d: %d certificates in %d messages over %d levels: head %d in %s (%.1f ms per block, wasm %d bytes)",
			attempt, len(run.dag), len(msgs), level-1, head, el.Round(time.Millisecond), float64(el.Milliseconds())/float64(head), len(k))
		if head+2 < uint64(len(run.export)) {
			t.Fatalf("the kernel reached block %d of %d", head, len(run.export))
		}
		hashes = append(hashes, p.Durable().Hash())
	}
	if hashes[0] != hashes[1] {
		t.Fatal("the same inputs gave different durable states")
	}
}

// The overlay reads its own writes and flushes each key once, parents
// before children; without Flush nothing reaches the store.
func TestOverlay(t *testing.T) {
	st := mapStore{"a": []byte("1"), "gone": []byte("x")}
	o := state.NewOverlay(st)
	o.Put("b/1", []byte("2"))
	o.Delete("gone")
	o.Put("tmp", []byte("t"))
	o.Delete("tmp")
	if v, ok := o.Get("b/1"); !ok || string(v) != "2" {
		t.Fatal("own write not read back")
	}
	if _, ok := o.Get("gone"); ok {
		t.Fatal("own delete not seen")
	}
	if _, ok := st["b/1"]; ok {
		t.Fatal("written through before Flush")
	}
	o.Flush()
	if string(st["b/1"]) != "2" || st["gone"] != nil || st["tmp"] != nil || string(st["a"]) != "1" {
		t.Fatalf("after Flush: %v", st)
	}
}

// Submissions whose non-tip certificates come without signatures
// (StripSignatures, what the sequencer posts) commit exactly the same
// blocks, for fewer bytes.
func TestStrippedSubmissions(t *testing.T) {
	run := sharedRun(t)
	st := setup(t, run)
	var msgs [][]byte
	full, stripped := 0, 0
	for lo := 0; lo < len(run.dag); lo += 40 {
		es := run.dag[lo:min(lo+40, len(run.dag))]
		raw := state.EncodeSubmission(state.StripSignatures(es))
		full += len(state.EncodeSubmission(es))
		stripped += len(raw)
		chunks, err := da.Split(raw)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range chunks {
			msgs = append(msgs, da.Target(rollup, c.Encode()))
		}
	}
	feed(t, st, msgs, 8)
	head := checkAgainstExport(t, st, run.export)
	t.Logf("%d blocks equal to Export; %d certificates posted in %d bytes instead of %d (%.0f %%)",
		head, len(run.dag), stripped, full, 100*float64(stripped)/float64(full))
}

// A withheld copy of each certificate posted before the full one — in the
// same level or a level earlier — changes nothing: the full copy's batches
// are kept, and every block equals the Export (a withheld copy can come
// from anyone who copies certificates out of the inbox).
func TestWithheldCopiesFirstDoNotStallTheRollup(t *testing.T) {
	run := sharedRun(t)
	withheld := make([]state.Entry, len(run.dag))
	for i, e := range run.dag {
		withheld[i] = state.Entry{Certificate: e.Certificate, Withheld: true}
	}
	for _, sameLevel := range []bool{true, false} {
		st := setup(t, run)
		var level [][]byte
		for lo := 0; lo < len(run.dag); lo += 40 {
			hi := min(lo+40, len(run.dag))
			if sameLevel {
				level = append(level, messages(t, withheld[lo:hi], 40)...)
				level = append(level, messages(t, run.dag[lo:hi], 40)...)
				continue
			}
			feed(t, st, messages(t, withheld[lo:hi], 40), 1<<20)
			feed(t, st, messages(t, run.dag[lo:hi], 40), 1<<20)
		}
		if sameLevel {
			feed(t, st, level, len(level))
		}
		head := checkAgainstExport(t, st, run.export)
		if head+2 < uint64(len(run.export)) {
			t.Fatalf("same level %v: the kernel reached block %d of %d", sameLevel, head, len(run.export))
		}
	}
}
