package replica

import (
	"crypto/ed25519"
	"fmt"
	"math/rand"
	"testing"

	"github.com/tezos-dsn/dsn/internal/crypto"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/primary"
	"github.com/tezos-dsn/dsn/internal/store"
)

// testCommittee returns a committee of n authorities with keys from seed.
func testCommittee(t testing.TB, n int, seed int64) (*narwhal.Committee, []*crypto.SecretKey) {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	c := &narwhal.Committee{Epoch: 0}
	keys := make([]*crypto.SecretKey, n)
	for i := 0; i < n; i++ {
		sk, err := crypto.GenerateKey(rng)
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = sk
		pub, _, err := ed25519.GenerateKey(rng)
		if err != nil {
			t.Fatal(err)
		}
		a := narwhal.Authority{
			Name: fmt.Sprintf("node-%d", i+1), Stake: 1000,
			ConsensusKey: sk.PublicKey(),
			Address:      fmt.Sprintf("127.0.0.1:%d", 6400+10*(i+1)),
		}
		copy(a.NetworkKey[:], pub)
		c.Authorities = append(c.Authorities, a)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c, keys
}

// cluster runs replicas over an in-memory network with deterministic,
// seeded delivery order — a small cousin of internal/sim.
type cluster struct {
	t        testing.TB
	rng      *rand.Rand
	c        *narwhal.Committee
	v        *narwhal.Verifier
	keys     []*crypto.SecretKey
	cfg      Config
	stores   []*store.Memory
	signed   []primary.Signed // each replica's signing record, kept beside its store
	reps     []*Replica       // nil = crashed
	inflight []flight
	acked    map[uint64]bool
	subdags  [][]*CommittedSubDAG
	now      uint64
	errs     int
}

type flight struct {
	from narwhal.AuthorityID
	env  Envelope
	raw  []byte
}

func newCluster(t testing.TB, n int, seed int64) *cluster {
	t.Helper()
	c, keys := testCommittee(t, n, seed)
	v, err := narwhal.NewVerifier(c)
	if err != nil {
		t.Fatal(err)
	}
	cl := &cluster{t: t, rng: rand.New(rand.NewSource(seed)), c: c, v: v, keys: keys, cfg: TestConfig(),
		acked: map[uint64]bool{}, now: 1_700_000_000_000}
	cl.stores = make([]*store.Memory, n)
	cl.reps = make([]*Replica, n)
	cl.subdags = make([][]*CommittedSubDAG, n)
	for i := range cl.reps {
		cl.stores[i] = store.NewMemory()
		cl.start(i)
	}
	return cl
}

func (cl *cluster) start(i int) {
	r, err := New(cl.cfg, cl.c, cl.v, narwhal.AuthorityID(i), cl.keys[i], cl.stores[i])
	if err != nil {
		cl.t.Fatalf("start %d: %v", i, err)
	}
	if i < len(cl.signed) {
		r.SetSigned(cl.signed[i])
	}
	cl.reps[i] = r
	cl.apply(i, r.Start())
}

func (cl *cluster) crash(i int) { cl.reps[i] = nil }

// apply carries out an Output in contract order: writes, then messages.
func (cl *cluster) apply(i int, out Output) {
	cl.stores[i].Apply(out.Writes)
	if out.SignedChanged {
		for len(cl.signed) <= i {
			cl.signed = append(cl.signed, primary.Signed{})
		}
		cl.signed[i] = cl.reps[i].Signed()
	}
	for _, e := range out.Messages {
		if int(e.To) == i {
			cl.t.Fatalf("replica %d sent a message to itself", i)
		}
		// Round-trip the encoding, as a real transport does.
		cl.inflight = append(cl.inflight, flight{from: narwhal.AuthorityID(i), env: e, raw: narwhal.EncodeMessage(e.Msg)})
	}
	for _, t := range out.Acked {
		cl.acked[t] = true
	}
	cl.subdags[i] = append(cl.subdags[i], out.Committed...)
}

// step delivers up to k random in-flight messages, then ticks everyone.
func (cl *cluster) step(k int) {
	for j := 0; j < k && len(cl.inflight) > 0; j++ {
		idx := cl.rng.Intn(len(cl.inflight))
		f := cl.inflight[idx]
		cl.inflight = append(cl.inflight[:idx], cl.inflight[idx+1:]...)
		r := cl.reps[f.env.To]
		if r == nil {
			continue
		}
		m, err := narwhal.DecodeMessage(f.raw)
		if err != nil {
			cl.t.Fatalf("decode: %v", err)
		}
		out, err := r.Receive(f.from, m)
		if err != nil {
			cl.errs++
			cl.t.Logf("replica %d rejected %T from %d: %v", f.env.To, m, f.from, err)
		}
		cl.apply(int(f.env.To), out)
	}
	cl.now += 5
	for i, r := range cl.reps {
		if r != nil {
			cl.apply(i, r.Tick(cl.now))
		}
	}
}

// runUntil steps until cond holds (checked every 10 steps) or max steps.
func (cl *cluster) runUntil(max int, cond func() bool) bool {
	for i := 0; i < max; i++ {
		cl.step(200)
		if i%10 == 9 && cond() {
			return true
		}
	}
	return cond()
}

// allInDAG reports whether every live replica's DAG holds txs tx-0000.. once or more.
func (cl *cluster) allInDAG(txs int) bool {
	for i := range cl.reps {
		if cl.reps[i] == nil {
			continue
		}
		seen := cl.dagTxs(i)
		for k := 0; k < txs; k++ {
			if seen[fmt.Sprintf("tx-%04d", k)] == 0 {
				return false
			}
		}
	}
	return true
}

// allOrdered reports whether every live replica ordered txs tx-0000.. once or more.
func (cl *cluster) allOrdered(txs int) bool {
	for i := range cl.reps {
		if cl.reps[i] == nil {
			continue
		}
		seen := cl.committedTxs(i)
		for k := 0; k < txs; k++ {
			if seen[fmt.Sprintf("tx-%04d", k)] == 0 {
				return false
			}
		}
	}
	return true
}

func (cl *cluster) submit(node int, ticket uint64, tx []byte) {
	cl.apply(node, cl.reps[node].Submit(ticket, tx))
}

// committedTxs returns, for replica i, how often each transaction was ordered.
func (cl *cluster) committedTxs(i int) map[string]int {
	seen := map[string]int{}
	for _, s := range cl.subdags[i] {
		for _, c := range s.Certificates {
			for _, d := range c.Header.Payload {
				raw, ok := cl.stores[i].Get(store.BatchKey(d))
				if !ok {
					cl.t.Fatalf("replica %d: committed batch %s not stored", i, d.Short())
				}
				b, err := narwhal.DecodeBatch(raw)
				if err != nil {
					cl.t.Fatal(err)
				}
				for _, tx := range b.Transactions {
					seen[string(tx)]++
				}
			}
		}
	}
	return seen
}

func (cl *cluster) checkAgreement() {
	cl.t.Helper()
	for i := range cl.subdags {
		for j := range cl.subdags {
			a, b := cl.subdags[i], cl.subdags[j]
			n := min(len(a), len(b))
			for k := 0; k < n; k++ {
				if a[k].Index != b[k].Index || a[k].Leader.Digest() != b[k].Leader.Digest() || len(a[k].Certificates) != len(b[k].Certificates) {
					cl.t.Fatalf("replicas %d and %d disagree at sub-DAG %d", i, j, k+1)
				}
				for x := range a[k].Certificates {
					if a[k].Certificates[x].Digest() != b[k].Certificates[x].Digest() {
						cl.t.Fatalf("replicas %d and %d disagree inside sub-DAG %d", i, j, k+1)
					}
				}
			}
		}
	}
}

func TestClusterOrdersEveryAcknowledgedTransactionOnce(t *testing.T) {
	cl := newCluster(t, 7, 1)
	const txs = 300
	for k := 0; k < txs; k++ {
		cl.submit(k%7, uint64(k), []byte(fmt.Sprintf("tx-%04d", k)))
		if k%10 == 0 {
			cl.step(50)
		}
	}
	cl.runUntil(20000, func() bool { return len(cl.acked) == txs && cl.allOrdered(txs) }) // acks come at commit; an own certificate never committed is proposed again past the GC horizon
	if len(cl.acked) != txs {
		t.Fatalf("acked %d of %d transactions", len(cl.acked), txs)
	}
	cl.checkAgreement()
	for i := range cl.reps {
		seen := cl.committedTxs(i)
		for k := 0; k < txs; k++ {
			if n := seen[fmt.Sprintf("tx-%04d", k)]; n != 1 {
				t.Fatalf("replica %d ordered tx-%04d %d times", i, k, n)
			}
		}
		if st := cl.reps[i].Status(); st.Committed == 0 {
			t.Fatalf("replica %d committed nothing", i)
		}
	}
	if cl.errs != 0 {
		t.Fatalf("%d messages rejected in an honest run", cl.errs)
	}
}

func TestClusterSurvivesTwoCrashesAndRestart(t *testing.T) {
	cl := newCluster(t, 7, 2)
	cl.crash(5)
	cl.crash(6)
	for k := 0; k < 100; k++ {
		cl.submit(k%5, uint64(k), []byte(fmt.Sprintf("tx-%04d", k)))
		cl.step(100)
	}
	cl.runUntil(300, func() bool { return len(cl.acked) == 100 && cl.allOrdered(100) })
	if len(cl.acked) != 100 {
		t.Fatalf("acked %d of 100 with 2 nodes down", len(cl.acked))
	}
	before := cl.reps[0].Status().Round
	cl.start(5)
	cl.crash(0) // crash-restart a live node too
	cl.start(0)
	cl.runUntil(600, func() bool { return cl.reps[0].Status().Round > before+4 && cl.allInDAG(100) && cl.allOrdered(100) })
	if r := cl.reps[0].Status().Round; r <= before {
		t.Fatalf("restarted node 0 stuck at round %d (was %d)", r, before)
	}
	cl.checkAgreement()
	for i := range cl.reps {
		if cl.reps[i] == nil {
			continue // still down
		}
		inDAG := cl.dagTxs(i)
		for k := 0; k < 100; k++ {
			if n := inDAG[fmt.Sprintf("tx-%04d", k)]; n == 0 {
				t.Fatalf("replica %d: tx-%04d missing from the certified DAG", i, k)
			}
		}
	}
	ordered := cl.committedTxs(1)
	for k := 0; k < 100; k++ {
		if n := ordered[fmt.Sprintf("tx-%04d", k)]; n != 1 {
			t.Fatalf("tx-%04d ordered %d times", k, n)
		}
	}
	// No author ever has two different certificates for one round, anywhere.
	seenCert := map[[2]uint64]narwhal.Digest{}
	for i := range cl.stores {
		cl.stores[i].Scan([]byte{store.PrefixCertificate}, store.PrefixEnd([]byte{store.PrefixCertificate}), func(_, v []byte) bool {
			c, err := narwhal.DecodeCertificate(v)
			if err != nil {
				t.Fatal(err)
			}
			key := [2]uint64{c.Round(), uint64(c.Author())}
			if d, ok := seenCert[key]; ok && d != c.Digest() {
				t.Fatalf("author %d has two certificates in round %d", c.Author(), c.Round())
			}
			seenCert[key] = c.Digest()
			return true
		})
	}
}

// dagTxs counts each transaction in replica i's stored certified DAG.
func (cl *cluster) dagTxs(i int) map[string]int {
	seen := map[string]int{}
	cl.stores[i].Scan([]byte{store.PrefixCertificate}, store.PrefixEnd([]byte{store.PrefixCertificate}), func(_, v []byte) bool {
		c, err := narwhal.DecodeCertificate(v)
		if err != nil {
			cl.t.Fatal(err)
		}
		for _, d := range c.Header.Payload {
			raw, ok := cl.stores[i].Get(store.BatchKey(d))
			if !ok {
				cl.t.Fatalf("replica %d: certified batch %s not stored", i, d.Short())
			}
			b, err := narwhal.DecodeBatch(raw)
			if err != nil {
				cl.t.Fatal(err)
			}
			for _, tx := range b.Transactions {
				seen[string(tx)]++
			}
		}
		return true
	})
	return seen
}

func TestClusterBuildsCertifiedDAG(t *testing.T) {
	cl := newCluster(t, 7, 3)
	const txs = 200
	for k := 0; k < txs; k++ {
		cl.submit(k%7, uint64(k), []byte(fmt.Sprintf("tx-%04d", k)))
		cl.step(30)
	}
	cl.runUntil(20000, func() bool { return len(cl.acked) == txs && cl.allInDAG(txs) }) // acks come at commit
	if len(cl.acked) != txs {
		t.Fatalf("acked %d of %d", len(cl.acked), txs)
	}
	// A batch may be certified twice (an own certificate the commit rule
	// skipped is proposed again: primary.Committed), but it is ordered once.
	for i := range cl.reps {
		ordered := cl.committedTxs(i)
		for k := 0; k < txs; k++ {
			if n := ordered[fmt.Sprintf("tx-%04d", k)]; n != 1 {
				t.Fatalf("replica %d: tx-%04d ordered %d times", i, k, n)
			}
		}
		if r := cl.reps[i].Status().DAGRound; r < 10 {
			t.Fatalf("replica %d reached only round %d", i, r)
		}
	}
	if cl.errs != 0 {
		t.Fatalf("%d messages rejected in an honest run", cl.errs)
	}
}

// A node whose store lost batches of committed sub-DAGs, with no record of
// which (a store from before missing-batch marks), audits its committed
// sub-DAGs at start, marks the missing batches durably and fetches them
// from its peers, whatever the GC horizon.
func TestRestartAuditsCommittedBatches(t *testing.T) {
	cl := newCluster(t, 4, 3)
	const txs = 60
	for k := 0; k < txs; k++ {
		cl.submit(k%4, uint64(k), []byte(fmt.Sprintf("tx-%04d", k)))
		cl.step(20)
	}
	if !cl.runUntil(600, func() bool { return cl.allOrdered(txs) }) {
		t.Fatal("not ordered")
	}
	cl.crash(3)
	var lost []narwhal.Digest
	for _, s := range cl.subdags[3] {
		for _, c := range s.Certificates {
			if c.Author() != 3 {
				lost = append(lost, c.Header.Payload...)
			}
		}
	}
	if len(lost) == 0 {
		t.Fatal("no batch of another author was committed")
	}
	var ws []store.Write
	for _, d := range lost {
		ws = append(ws, store.Del(store.BatchKey(d)))
	}
	cl.stores[3].Apply(append(ws, store.Del(store.AuditedKey())))
	cl.start(3)
	for _, d := range lost {
		if _, ok := cl.stores[3].Get(store.MissingKey(d)); !ok {
			t.Fatalf("batch %s lost from a committed sub-DAG is not marked missing", d.Short())
		}
	}
	if st := cl.reps[3].Status(); st.BatchesMissing != len(lost) {
		t.Fatalf("missing %d, want %d", st.BatchesMissing, len(lost))
	}
	cl.runUntil(200, func() bool { return cl.reps[3].Status().BatchesMissing == 0 })
	for _, d := range lost {
		if _, ok := cl.stores[3].Get(store.BatchKey(d)); !ok {
			t.Fatalf("batch %s was not fetched again", d.Short())
		}
		if _, ok := cl.stores[3].Get(store.MissingKey(d)); ok {
			t.Fatalf("mark of batch %s survived it", d.Short())
		}
	}
}
