package state_test

import (
	"bytes"
	"context"
	"maps"
	"math/rand"
	"strings"
	"sync"
	"testing"

	"github.com/tezos-dsn/dsn/internal/crypto"
	"github.com/tezos-dsn/dsn/internal/da"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/pvm"
	"github.com/tezos-dsn/dsn/internal/wasmlink"
	"github.com/tezos-dsn/dsn/kernel/state"
)

var (
	sharedOnce sync.Once
	shared     committeeRun
)

// sharedRun is one committee run reused by the tests that only need its
// data.
func sharedRun(t testing.TB) committeeRun {
	sharedOnce.Do(func() { shared = runCommittee(t, 7, 600, 30) })
	if shared.committee == nil {
		t.Fatal("the shared committee run failed")
	}
	return shared
}

// cloneEntry deep-copies an entry so a mutation cannot leak.
func cloneEntry(e state.Entry) state.Entry {
	c, _ := narwhal.DecodeCertificate(e.Certificate.Encode())
	out := state.Entry{Certificate: c}
	for _, b := range e.Batches {
		nb, _ := narwhal.DecodeBatch(b.Encode())
		out.Batches = append(out.Batches, nb)
	}
	return out
}

func snapshot(st mapStore) map[string]string {
	out := map[string]string{}
	for k, v := range st {
		out[k] = string(v)
	}
	return out
}

// Every forged or mutated submission is rejected whole, leaves the durable
// state exactly as it was, and the honest data that follows still commits.
func TestForgedSubmissionsChangeNothing(t *testing.T) {
	run := sharedRun(t)
	// Cut before the first round, past the first third, that carries a
	// batch: everything before it goes in honestly; that round's
	// certificates are the submission to mutate.
	half, withBatch := -1, -1
	var next []state.Entry
	for i := len(run.dag) / 3; i < len(run.dag) && half < 0; i++ {
		if i > 0 && run.dag[i].Certificate.Round() == run.dag[i-1].Certificate.Round() {
			continue
		}
		j := i
		for j < len(run.dag) && run.dag[j].Certificate.Round() == run.dag[i].Certificate.Round() {
			j++
		}
		for k := i; k < j; k++ {
			if e := run.dag[k]; len(e.Batches) > 0 && len(e.Batches[0].Transactions) > 0 && len(e.Batches[0].Transactions[0]) > 1 {
				half, withBatch, next = i, k-i, run.dag[i:j]
				break
			}
		}
	}
	if half < 0 {
		t.Fatal("no round with a batch past the first third")
	}
	st := setup(t, run)
	feed(t, st, messages(t, run.dag[:half], 7), 1<<20)
	load := func() *state.Machine {
		m, err := state.Load(st, rollup, state.Digests{}, func(string) {})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	mutate := func(f func(es []state.Entry)) []state.Entry {
		es := make([]state.Entry, len(next))
		for i, e := range next {
			es[i] = cloneEntry(e)
		}
		f(es)
		return es
	}
	honest := func(d narwhal.Digest) bool {
		for _, e := range run.dag {
			if e.Certificate.Digest() == d {
				return true
			}
		}
		return false
	}
	tip := len(next) - 1 // the last certificate of a round is referenced by nothing in the submission
	cases := map[string][]state.Entry{
		"fewer signers than a quorum": mutate(func(es []state.Entry) {
			c := es[tip].Certificate
			c.Signers, c.Signatures = c.Signers[:3], c.Signatures[:3]
		}),
		"a repeated signer": mutate(func(es []state.Entry) {
			c := es[tip].Certificate
			c.Signers[1], c.Signatures[1] = c.Signers[0], c.Signatures[0]
		}),
		"an unknown signer": mutate(func(es []state.Entry) { es[tip].Certificate.Signers[len(es[tip].Certificate.Signers)-1] = 9 }),
		"a wrong epoch":     mutate(func(es []state.Entry) { es[tip].Certificate.Header.Epoch++ }),
		"a tampered header": mutate(func(es []state.Entry) { es[tip].Certificate.Header.CreatedAt++ }),
		"an unsigned tip": mutate(func(es []state.Entry) {
			c := es[tip].Certificate
			c.Signers, c.Signatures = nil, nil
		}),
		"a forged signature": mutate(func(es []state.Entry) {
			es[tip].Certificate.Signatures[0][5] ^= 1
		}),
		"a tampered batch": mutate(func(es []state.Entry) { es[withBatch].Batches[0].Transactions[0][0] ^= 1 }),
		"an extra batch": mutate(func(es []state.Entry) {
			es[withBatch].Batches = append(es[withBatch].Batches, es[withBatch].Batches[0])
		}),
		"a missing batch": mutate(func(es []state.Entry) { es[withBatch].Batches = es[withBatch].Batches[1:] }),
		"re-split transactions": mutate(func(es []state.Entry) {
			b := es[withBatch].Batches[0]
			tx := b.Transactions[0]
			b.Transactions = append([][]byte{tx[:1], tx[1:]}, b.Transactions[1:]...)
		}),
		"a certificate no verified tip links to": mutate(func(es []state.Entry) {
			fake := cloneEntry(es[0])
			fake.Certificate.Header.Round += 3 // a new, unreferenced certificate with borrowed signatures
			es[0] = fake
		}),
		"a fake leader": mutate(func(es []state.Entry) {
			c := es[tip].Certificate
			r := c.Round()
			if c.Author() == run.committee.Leader(r) {
				r-- // the tip is that round's anchor candidate already: claim an earlier one
			}
			c.Header.Author = run.committee.Leader(r)
			c.Header.Round = r
			// An empty header with all parents, made in the same
			// millisecond, can equal the real candidate's: it would then be
			// that certificate again, a duplicate the kernel skips, and not
			// a forgery (2 runs in 15 before this).
			for honest(c.Digest()) {
				c.Header.CreatedAt++
			}
		}),
	}
	if len(next[withBatch].Batches) > 1 {
		cases["reordered batches"] = mutate(func(es []state.Entry) {
			bs := es[withBatch].Batches
			bs[0], bs[1] = bs[1], bs[0]
		})
	}
	before := snapshot(st)
	head := load().Head()
	for name, es := range cases {
		err := load().Submit(es)
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
		t.Logf("%s: %v", name, err)
		if !maps.Equal(before, snapshot(st)) {
			t.Fatalf("%s: the durable state changed", name)
		}
	}
	// A replay of an old submission changes nothing and is no error.
	if err := load().Submit(run.dag[:7]); err != nil {
		t.Fatalf("replay: %v", err)
	}
	if load().Head() != head {
		t.Fatal("a replay moved the head")
	}
	// Garbage, truncated chunks and other rollups' messages: skipped.
	rng := rand.New(rand.NewSource(5))
	chunks, _ := da.Split(state.EncodeSubmission(next))
	good := chunks[0].Encode()
	var other [20]byte
	for _, msg := range [][]byte{
		nil, {0x00}, da.Target(rollup, nil), da.Target(rollup, good[:len(good)/2]),
		da.Target(other, good), da.Target(rollup, func() []byte { b := make([]byte, 300); rng.Read(b); return b }()),
	} {
		load().Input(99, msg)
	}
	for k := range st {
		if !bytes.HasPrefix([]byte(k), []byte("da/")) && before[k] != string(st[k]) {
			t.Fatalf("garbage input changed %s", k)
		}
	}
	// The honest rest still commits everything.
	feed(t, st, messages(t, run.dag[half:], 7), 1<<20)
	checkAgainstExport(t, st, run.export)
}

// FuzzKernelInput drives the built kernel in the PVM with arbitrary
// targeted messages: it never gets stuck (a trap), whatever the bytes.
func FuzzKernelInput(f *testing.F) {
	chunks, _ := da.Split(state.EncodeSubmission(nil))
	f.Add(chunks[0].Encode())
	f.Add([]byte{0xd1, 0, 1, 2})
	f.Add(bytes.Repeat([]byte{0xff}, 100))
	var (
		once sync.Once
		k    []byte
		c    *narwhal.Committee
	)
	f.Fuzz(func(t *testing.T, contents []byte) {
		once.Do(func() {
			var err error
			if k, err = wasmlink.Build(context.Background(), "../..", "./kernel/dsn"); err != nil {
				t.Fatal(err)
			}
			c = fuzzCommittee(t)
		})
		ctx := context.Background()
		cfg := pvm.DefaultConfig()
		cfg.Rollup = rollup
		p, err := pvm.New(ctx, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close(ctx)
		state.Setup(p.Durable().Under("/dsn/"), c, 50)
		p.InstallKernel(k)
		res, err := p.RunLevel(ctx, 1, 1, [32]byte{}, [][]byte{pvm.External(da.Target(rollup, contents))})
		if err != nil || res.Stuck != "" {
			t.Fatalf("stuck on %x: %v %s\n%s", contents, err, res.Stuck, res.Debug)
		}
	})
}

func fuzzCommittee(t *testing.T) *narwhal.Committee {
	rng := rand.New(rand.NewSource(9))
	c := &narwhal.Committee{}
	for i := range 4 {
		sk, _ := crypto.GenerateKey(rng)
		nk, _ := crypto.GenerateKey(rng)
		c.Authorities = append(c.Authorities, narwhal.Authority{Name: string(rune('a' + i)), Stake: 1,
			ConsensusKey: sk.PublicKey(), NetworkKey: nk.PublicKey(), Address: "h:1"})
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

// A poster that sends a committed certificate without its batches (as a
// node's DAG stream may for certificates it believes will never be
// committed, or as an attacker may) delays the rollup at that block, and
// changes nothing: once any submission carries the batches, every block is
// written exactly as the nodes exported it.
func TestWithheldBatchesDelayButNeverChange(t *testing.T) {
	run := sharedRun(t)
	// A certificate with batches, committed in a pre-block past the first few.
	var target narwhal.Digest
	var block uint64
	for _, pb := range run.export[3:] {
		for i, raw := range pb.Certificates {
			if len(pb.Batches[i].Batches) > 0 {
				c, _ := narwhal.DecodeCertificate(raw)
				target, block = c.Digest(), pb.Index
				break
			}
		}
		if block != 0 {
			break
		}
	}
	if block == 0 {
		t.Fatal("no committed certificate with batches")
	}
	dag := make([]state.Entry, len(run.dag))
	var honest state.Entry
	for i, e := range run.dag {
		dag[i] = e
		if e.Certificate.Digest() == target {
			honest = e
			dag[i] = state.Entry{Certificate: e.Certificate, Withheld: true}
		}
	}
	st := setup(t, run)
	feed(t, st, messages(t, dag, 28), 1<<20)
	m, err := state.Load(st, rollup, state.Digests{}, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	if m.Head() != block-1 {
		t.Fatalf("head %d; want it held at %d, before the block with the withheld certificate", m.Head(), block-1)
	}
	// The batches arrive with any later copy of the certificate.
	feed(t, st, messages(t, []state.Entry{honest}, 1), 1)
	head := checkAgainstExport(t, st, run.export)
	if head < block+5 {
		t.Fatalf("head %d after the batches came; want well past %d", head, block)
	}
	t.Logf("withheld certificate held the rollup at block %d; once its batches came, %d blocks equal the nodes' Export", block-1, head)
}

// A forged submission in the same level as honest ones is rejected alone:
// the level's submissions, authenticated together first, fall back to one
// by one, and every honest block still commits.
func TestForgedSubmissionAmongHonestOnes(t *testing.T) {
	run := sharedRun(t)
	st := setup(t, run)
	honest := messages(t, run.dag, 14)
	// A certificate moved three rounds up keeps its signatures, which no
	// longer match its digest, and nothing names it: an unauthenticated tip.
	fake := cloneEntry(run.dag[len(run.dag)/2])
	fake.Certificate.Header.Round += 3
	chunks, err := da.Split(state.EncodeSubmission([]state.Entry{fake}))
	if err != nil {
		t.Fatal(err)
	}
	var forged [][]byte
	for _, ch := range chunks {
		forged = append(forged, da.Target(rollup, ch.Encode()))
	}
	// The forged submission goes in the middle of the level that also
	// carries the honest ones around it.
	mid := len(honest) / 2
	msgs := append(append(append([][]byte{}, honest[:mid]...), forged...), honest[mid:]...)
	var debug []string
	m, err := state.Load(st, rollup, state.Digests{}, func(s string) { debug = append(debug, s) })
	if err != nil {
		t.Fatal(err)
	}
	m.StartLevel(1)
	for _, msg := range msgs {
		m.Input(1, msg)
	}
	m.EndLevel()
	rejected := 0
	for _, d := range debug {
		if strings.Contains(d, "rejected submission") {
			rejected++
		}
	}
	if rejected != 1 {
		t.Fatalf("%d submissions rejected, want the forged one only: %q", rejected, debug)
	}
	checkAgainstExport(t, st, run.export)
}
