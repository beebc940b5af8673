package sandbox

import (
	"crypto/ed25519"
	"testing"

	"github.com/tezos-dsn/dsn/internal/tezos"
)

// testChain is a core on a fresh genesis with every bootstrap account.
func testChain(t *testing.T, ttl, maxBlockBytes int) *chain {
	t.Helper()
	cfg := DefaultConfig()
	accounts, err := cfg.accountKeys()
	if err != nil {
		t.Fatal(err)
	}
	return newChain(accounts, ttl, maxBlockBytes, []*block{genesisBlock([32]byte{7}, 1000)}, nil)
}

func mustInject(t *testing.T, c *chain, op *tezos.Operation) {
	t.Helper()
	if _, rej := c.inject(op.Bytes()); rej != nil {
		t.Fatalf("refused: %v", rej)
	}
}

// A full block leaves the rest of the mempool, in arrival order, to the
// next ones; timestamps never go back.
func TestBlocksFillInArrivalOrder(t *testing.T) {
	c := testChain(t, 120, tezos.MaxOperationSize)
	var sent [][32]byte
	for _, acct := range []int{alice, bob, bootstrap1, 1, 2} {
		op := signedOp(key(t, acct), 1, c.head.hash, make([]byte, 4095), make([]byte, 4095), make([]byte, 4095))
		mustInject(t, c, op)
		sent = append(sent, op.Hash())
	}
	// Each operation is about 12.4 KB: two fit in 32 KiB, not three.
	var got [][32]byte
	now := int64(2000)
	for len(got) < len(sent) {
		b := c.propose(now)
		if len(b.ops) > 2 || len(b.ops) == 0 {
			t.Fatalf("level %d carries %d operations", b.level, len(b.ops))
		}
		if b.timestamp != max(now, c.head.timestamp) {
			t.Fatalf("timestamp %d", b.timestamp)
		}
		c.apply(b)
		for _, op := range b.ops {
			got = append(got, op.Hash())
		}
		now -= 10 // the clock steps back: timestamps stay put
	}
	for i := range sent {
		if got[i] != sent[i] {
			t.Fatalf("operation %d out of order", i)
		}
	}
	if c.head.timestamp != 2000 || len(c.mempool) != 0 || len(c.bySource) != 0 || len(c.byHash) != 0 {
		t.Fatalf("after draining: ts %d, mempool %d %d %d", c.head.timestamp, len(c.mempool), len(c.bySource), len(c.byHash))
	}
}

// An operation whose branch leaves the window while it waits is dropped,
// and its source may inject again.
func TestOutdatedOperationsLeaveTheMempool(t *testing.T) {
	c := testChain(t, 2, tezos.MaxOperationSize)
	a := key(t, alice)
	genesis := c.head.hash
	big := func(branch [32]byte, tag byte) *tezos.Operation {
		msgs := make([][]byte, 7)
		for i := range msgs {
			msgs[i] = make([]byte, 4095)
			msgs[i][0] = tag
		}
		return signedOp(a, 1, branch, msgs...)
	}
	// Fill level 1 with bob's and bootstrap1's operations so alice's waits.
	mustInject(t, c, signedOp(key(t, bob), 1, genesis, make([]byte, 4095), make([]byte, 4095), make([]byte, 4095), make([]byte, 4095)))
	mustInject(t, c, signedOp(key(t, bootstrap1), 1, genesis, make([]byte, 4095), make([]byte, 4095), make([]byte, 4095), make([]byte, 4095)))
	mustInject(t, c, big(genesis, 1))
	b1 := c.propose(1)
	if len(b1.ops) != 1 {
		t.Fatalf("level 1 carries %d operations", len(b1.ops))
	}
	if out := c.apply(b1); len(out) != 0 {
		t.Fatal("dropped too early")
	}
	b2 := c.propose(2)
	if len(b2.ops) != 1 {
		t.Fatalf("level 2 carries %d operations", len(b2.ops))
	}
	// After level 2 the window is {1, 2}: genesis is out.
	out := c.apply(b2)
	if len(out) != 1 || out[0].Contents.Source != tezos.PublicKeyHash(a.Public().(ed25519.PublicKey)) {
		t.Fatalf("dropped %d", len(out))
	}
	if len(c.mempool) != 0 || c.counter(out[0].Contents.Source) != 0 {
		t.Fatal("the outdated operation is still there")
	}
	mustInject(t, c, big(c.head.hash, 2))
	if _, rej := c.inject(big(genesis, 3).Bytes()); rej == nil || rej.id != IDOutdated {
		t.Fatalf("genesis branch: %v", rej)
	}
}

// FuzzInject feeds arbitrary bytes to the mempool: nothing panics, and
// whatever is accepted is a valid next operation of a known account that
// the next block includes.
func FuzzInject(f *testing.F) {
	genesis := genesisBlock([32]byte{7}, 1000)
	f.Add(signedOp(key(f, alice), 1, genesis.hash, []byte("hello")).Bytes())
	f.Add(signedOp(key(f, bob), 2, genesis.hash, []byte("gap")).Bytes())
	f.Add([]byte{0})
	cfg := DefaultConfig()
	accounts, err := cfg.accountKeys()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c := newChain(accounts, 10, tezos.MaxOperationSize, []*block{genesis}, nil)
		op, rej := c.inject(raw)
		if rej != nil {
			return
		}
		pub, ok := accounts[op.Contents.Source]
		if !ok || !op.Verify(pub) || op.Contents.Counter != 1 || len(op.Contents.Messages) == 0 {
			t.Fatalf("accepted an invalid operation: %+v", op)
		}
		b := c.propose(1001)
		c.apply(b)
		if len(b.ops) != 1 || c.counter(op.Contents.Source) != 1 {
			t.Fatal("accepted operation not included")
		}
	})
}
