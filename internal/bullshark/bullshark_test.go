package bullshark

import (
	"errors"
	"flag"
	"math/rand"
	"os"
	"os/exec"
	"slices"
	"testing"

	"github.com/tezos-dsn/dsn/internal/narwhal"
)

var seedFlag = flag.Int64("seed", 0, "run the randomized tests with this seed only")

func committee(n int) *narwhal.Committee {
	c := &narwhal.Committee{Authorities: make([]narwhal.Authority, n)}
	for i := range c.Authorities {
		c.Authorities[i].Stake = 1000
	}
	return c
}

// dagSpec drives the random DAG generator.
type dagSpec struct {
	rounds      int
	minPresent  int     // authors per round, at least a quorum
	parentSkip  float64 // chance to drop a parent beyond the quorum
	leaderDrop  float64 // chance the round's leader is absent
	weakLeaders float64 // chance next-round authors avoid referencing the leader
}

// randomDAG builds certificates (no signatures: Bullshark does not check
// them) for rounds 1..spec.rounds over committee c.
func randomDAG(rng *rand.Rand, c *narwhal.Committee, spec dagSpec) []*narwhal.Certificate {
	n := c.Size()
	quorum := int((c.QuorumThreshold() + 999) / 1000)
	var all []*narwhal.Certificate
	prev := narwhal.Genesis(c)
	for r := uint64(1); r <= uint64(spec.rounds); r++ {
		present := rng.Perm(n)[:spec.minPresent+rng.Intn(n-spec.minPresent+1)]
		if rng.Float64() < spec.leaderDrop {
			leader := int(c.Leader(r))
			present = slices.DeleteFunc(present, func(a int) bool { return a == leader })
			for len(present) < quorum {
				a := rng.Intn(n)
				if a != leader && !slices.Contains(present, a) {
					present = append(present, a)
				}
			}
		}
		avoid := narwhal.Digest{}
		if r > 1 && rng.Float64() < spec.weakLeaders {
			for _, p := range prev {
				if p.Round() == r-1 && p.Author() == c.Leader(r-1) {
					avoid = p.Digest()
				}
			}
		}
		var cur []*narwhal.Certificate
		for _, a := range present {
			perm := rng.Perm(len(prev))
			var parents []narwhal.Digest
			for _, i := range perm {
				d := prev[i].Digest()
				if len(parents) >= quorum && (rng.Float64() < spec.parentSkip || d == avoid) {
					continue
				}
				parents = append(parents, d)
			}
			h := narwhal.Header{Author: narwhal.AuthorityID(a), Round: r, CreatedAt: r*10 + uint64(a), Parents: narwhal.SortDigests(parents)}
			cur = append(cur, &narwhal.Certificate{Header: h})
		}
		all = append(all, cur...)
		prev = cur
	}
	return all
}

// causalOrder returns a random topological order of the certificates.
func causalOrder(rng *rand.Rand, certs []*narwhal.Certificate) []*narwhal.Certificate {
	index := map[narwhal.Digest]int{}
	for i, c := range certs {
		index[c.Digest()] = i
	}
	waiting := make([]int, len(certs))
	children := make([][]int, len(certs))
	var ready []int
	for i, c := range certs {
		for _, p := range c.Header.Parents {
			if j, ok := index[p]; ok {
				waiting[i]++
				children[j] = append(children[j], i)
			}
		}
		if waiting[i] == 0 {
			ready = append(ready, i)
		}
	}
	var out []*narwhal.Certificate
	for len(ready) > 0 {
		k := rng.Intn(len(ready))
		i := ready[k]
		ready = append(ready[:k], ready[k+1:]...)
		out = append(out, certs[i])
		for _, ch := range children[i] {
			if waiting[ch]--; waiting[ch] == 0 {
				ready = append(ready, ch)
			}
		}
	}
	return out
}

func run(t *testing.T, c *narwhal.Committee, gcDepth uint64, certs []*narwhal.Certificate) []*CommittedSubDAG {
	t.Helper()
	b := New(c, gcDepth)
	var out []*CommittedSubDAG
	for _, x := range certs {
		s, err := b.ProcessCertificate(x)
		if err != nil {
			t.Fatalf("process %d/%d: %v", x.Author(), x.Round(), err)
		}
		out = append(out, s...)
	}
	return out
}

// naive is the deliberately simple reference: from the complete DAG, one
// Bullshark instance after another, each starting above the anchor the
// last one ordered: the instance's highest anchor with f+1 support, the
// chain of anchors linked below it by plain recursive reachability, and
// its oldest as the instance's anchor; each sub-DAG as the set reachable
// from its anchor through certificates not excluded by the watermark.
func naive(c *narwhal.Committee, gcDepth uint64, certs []*narwhal.Certificate) []naiveSub {
	byDigest := map[narwhal.Digest]*narwhal.Certificate{}
	byRound := map[uint64]map[narwhal.AuthorityID]*narwhal.Certificate{}
	var maxRound uint64
	for _, x := range certs {
		byDigest[x.Digest()] = x
		if byRound[x.Round()] == nil {
			byRound[x.Round()] = map[narwhal.AuthorityID]*narwhal.Certificate{}
		}
		byRound[x.Round()][x.Author()] = x
		maxRound = max(maxRound, x.Round())
	}
	var reaches func(a *narwhal.Certificate, target narwhal.Digest) bool
	reaches = func(a *narwhal.Certificate, target narwhal.Digest) bool {
		if a.Digest() == target {
			return true
		}
		for _, p := range a.Header.Parents {
			if pc := byDigest[p]; pc != nil && pc.Round() >= byDigest[target].Round() && reaches(pc, target) {
				return true
			}
		}
		return false
	}
	var chain []*narwhal.Certificate
	for start := uint64(1); ; {
		var top *narwhal.Certificate
		for r := start; r+1 <= maxRound; r += 2 {
			l := byRound[r][c.Leader(r)]
			if l == nil {
				continue
			}
			var stake uint64
			for _, x := range byRound[r+1] {
				if slices.Contains(x.Header.Parents, l.Digest()) {
					stake += c.Stake(x.Author())
				}
			}
			if stake >= c.ValidityThreshold() {
				top = l
			}
		}
		if top == nil {
			break
		}
		first := top
		for r := top.Round() - 2; r >= start && r < top.Round(); r -= 2 {
			if p := byRound[r][c.Leader(r)]; p != nil && reaches(first, p.Digest()) {
				first = p
			}
		}
		chain = append(chain, first)
		start = first.Round() + 1
	}
	watermark := make([]uint64, c.Size())
	var out []naiveSub
	for _, l := range chain {
		var gc uint64
		if l.Round() > gcDepth {
			gc = l.Round() - gcDepth
		}
		set := map[narwhal.Digest]bool{}
		var visit func(x *narwhal.Certificate)
		visit = func(x *narwhal.Certificate) {
			if set[x.Digest()] {
				return
			}
			set[x.Digest()] = true
			if x.Round() == gc+1 {
				return
			}
			for _, p := range x.Header.Parents {
				if pc := byDigest[p]; pc != nil && pc.Round() > watermark[pc.Author()] {
					visit(pc)
				}
			}
		}
		visit(l)
		for d := range set {
			x := byDigest[d]
			watermark[x.Author()] = max(watermark[x.Author()], x.Round())
		}
		out = append(out, naiveSub{leader: l.Digest(), set: set})
	}
	return out
}

type naiveSub struct {
	leader narwhal.Digest
	set    map[narwhal.Digest]bool
}

// checkInvariants checks S1–S5 of reference §8 on one output.
func checkInvariants(t *testing.T, c *narwhal.Committee, gcDepth uint64, out []*CommittedSubDAG) {
	t.Helper()
	committed := map[narwhal.Digest]uint64{}
	var prevLeaderRound, prevTs uint64
	for i, s := range out {
		if s.Index != uint64(i+1) {
			t.Fatalf("index %d at position %d", s.Index, i)
		}
		l := s.Leader
		if l.Round() <= prevLeaderRound || l.Author() != c.Leader(l.Round()) {
			t.Fatalf("sub-DAG %d: bad leader %d/%d after round %d", s.Index, l.Author(), l.Round(), prevLeaderRound)
		}
		prevLeaderRound = l.Round()
		if s.CommitTimestamp < prevTs || s.CommitTimestamp < l.Header.CreatedAt {
			t.Fatalf("sub-DAG %d: timestamp %d went back", s.Index, s.CommitTimestamp)
		}
		prevTs = s.CommitTimestamp
		if last := s.Certificates[len(s.Certificates)-1]; last.Digest() != l.Digest() {
			t.Fatalf("sub-DAG %d: leader not last", s.Index)
		}
		for j, x := range s.Certificates {
			if j > 0 && x.Round() < s.Certificates[j-1].Round() {
				t.Fatalf("sub-DAG %d: rounds decrease", s.Index)
			}
			if j < len(s.Certificates)-1 && x.Round() >= l.Round() {
				t.Fatalf("sub-DAG %d: a certificate at or above the leader's round", s.Index)
			}
			if prev, dup := committed[x.Digest()]; dup {
				t.Fatalf("certificate %s committed in sub-DAGs %d and %d", x.Digest().Short(), prev, s.Index)
			}
			committed[x.Digest()] = s.Index
		}
		var stake uint64
		for _, x := range s.Support {
			if x.Round() != l.Round()+1 || !slices.Contains(x.Header.Parents, l.Digest()) {
				t.Fatalf("sub-DAG %d: support certificate does not support the leader", s.Index)
			}
			stake += c.Stake(x.Author())
		}
		if len(s.Support) > 0 && stake < c.ValidityThreshold() {
			t.Fatalf("sub-DAG %d: support stake %d below f+1", s.Index, stake)
		}
	}
	if len(out) > 0 && len(out[len(out)-1].Support) == 0 {
		t.Fatal("the last sub-DAG must be directly committed, with its support")
	}
}

func seeds(n int) []int64 {
	if *seedFlag != 0 {
		return []int64{*seedFlag}
	}
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(i + 1)
	}
	return out
}

var specs = []dagSpec{
	{rounds: 200, minPresent: 5, parentSkip: 0.3, leaderDrop: 0.1, weakLeaders: 0.2},
	{rounds: 200, minPresent: 7, parentSkip: 0, leaderDrop: 0, weakLeaders: 0},
	{rounds: 300, minPresent: 5, parentSkip: 0.6, leaderDrop: 0.3, weakLeaders: 0.5},
}

func TestDifferentialAgainstNaive(t *testing.T) {
	c := committee(7)
	for _, seed := range seeds(40) {
		for si, spec := range specs {
			for _, gcDepth := range []uint64{6, 50} {
				rng := rand.New(rand.NewSource(seed))
				certs := randomDAG(rng, c, spec)
				got := run(t, c, gcDepth, causalOrder(rng, certs))
				checkInvariants(t, c, gcDepth, got)
				want := naive(c, gcDepth, certs)
				if len(got) != len(want) {
					t.Fatalf("seed %d spec %d gc %d: %d sub-DAGs, naive %d (replay: -seed %d)", seed, si, gcDepth, len(got), len(want), seed)
				}
				for i := range got {
					if got[i].Leader.Digest() != want[i].leader || len(got[i].Certificates) != len(want[i].set) {
						t.Fatalf("seed %d spec %d gc %d: sub-DAG %d differs from naive (%d vs %d certificates)", seed, si, gcDepth, i+1, len(got[i].Certificates), len(want[i].set))
					}
					for _, x := range got[i].Certificates {
						if !want[i].set[x.Digest()] {
							t.Fatalf("seed %d spec %d: sub-DAG %d holds %s, naive does not", seed, si, i+1, x.Digest().Short())
						}
					}
				}
				// A full DAG orders an anchor every round (Shoal's pipelining).
				if spec.leaderDrop == 0 && spec.parentSkip == 0 && len(got) < spec.rounds-2 {
					t.Fatalf("seed %d: only %d commits on a full DAG of %d rounds", seed, len(got), spec.rounds)
				}
			}
		}
	}
}

func TestSameSequenceForAnyCausalOrder(t *testing.T) {
	c := committee(7)
	for _, seed := range seeds(10) {
		rng := rand.New(rand.NewSource(seed))
		certs := randomDAG(rng, c, specs[0])
		ref := run(t, c, 10, causalOrder(rng, certs))
		for k := 0; k < 10; k++ {
			got := run(t, c, 10, causalOrder(rng, certs))
			if len(got) != len(ref) {
				t.Fatalf("seed %d order %d: %d sub-DAGs, first order %d", seed, k, len(got), len(ref))
			}
			for i := range got {
				if len(got[i].Certificates) != len(ref[i].Certificates) {
					t.Fatalf("seed %d order %d: sub-DAG %d size differs", seed, k, i+1)
				}
				for j := range got[i].Certificates {
					if got[i].Certificates[j].Digest() != ref[i].Certificates[j].Digest() {
						t.Fatalf("seed %d order %d: sub-DAG %d position %d differs", seed, k, i+1, j)
					}
				}
			}
		}
	}
}

// A crash at any point, recovered from the persisted state and the stored
// certificates above the GC horizon in (round, author) order, continues
// with the sequence of a run without the crash — whether recovery inserts
// every certificate whole, or only the identity of those at or below
// their author's watermark (InsertCommitted, as the kernel does).
func TestRestoreContinuesIdentically(t *testing.T) {
	c := committee(7)
	for si, spec := range specs {
		rng := rand.New(rand.NewSource(99 + int64(si)))
		certs := causalOrder(rng, randomDAG(rng, c, spec))
		ref := run(t, c, 8, certs)
		for _, cut := range []int{len(certs) / 4, len(certs) / 2, 3 * len(certs) / 4} {
			for _, identities := range []bool{false, true} {
				got, stubs := restoreAt(t, c, certs, cut, identities)
				if len(got) != len(ref) {
					t.Fatalf("spec %d, crash at %d (identities %v): %d sub-DAGs after restore, %d without", si, cut, identities, len(got), len(ref))
				}
				for i := range got {
					if !sameOrder(got[i], ref[i]) {
						t.Fatalf("spec %d, crash at %d (identities %v): sub-DAG %d differs after restore", si, cut, identities, i+1)
					}
				}
				if identities && stubs == 0 {
					t.Fatalf("spec %d, crash at %d: no certificate was recovered by identity", si, cut)
				}
			}
		}
	}
}

// restoreAt runs certs[:cut], restores a fresh Bullshark from its state
// and stored certificates, runs the rest, and returns every sub-DAG and how
// many certificates were recovered by identity alone.
func restoreAt(t *testing.T, c *narwhal.Committee, certs []*narwhal.Certificate, cut int, identities bool) ([]*CommittedSubDAG, int) {
	t.Helper()
	b := New(c, 8)
	var got []*CommittedSubDAG
	for _, x := range certs[:cut] {
		s, err := b.ProcessCertificate(x)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, s...)
	}
	st, err := DecodeState(b.State().Encode())
	if err != nil {
		t.Fatal(err)
	}
	b2 := New(c, 8)
	if err := b2.Restore(st); err != nil {
		t.Fatal(err)
	}
	stored := slices.Clone(certs[:cut])
	slices.SortFunc(stored, func(x, y *narwhal.Certificate) int {
		if x.Round() != y.Round() {
			return int(x.Round()) - int(y.Round())
		}
		return int(x.Author()) - int(y.Author())
	})
	stubs := 0
	for _, x := range stored {
		if x.Round() <= b2.GCRound() {
			continue
		}
		if identities && x.Round() <= b2.LastCommitted(x.Author()) {
			stubs++
			if err := b2.InsertCommitted(x.Author(), x.Round(), x.Digest()); err != nil {
				t.Fatalf("re-insert by identity: %v", err)
			}
		} else if err := b2.Insert(x); err != nil {
			t.Fatalf("re-insert: %v", err)
		}
	}
	if identities {
		// Above the watermark, identity alone is refused.
		for _, x := range stored {
			if x.Round() > b2.LastCommitted(x.Author()) {
				if err := New(c, 8).InsertCommitted(x.Author(), x.Round(), x.Digest()); err == nil && x.Round() > 0 {
					t.Fatal("InsertCommitted took a certificate above its author's watermark")
				}
				break
			}
		}
	}
	for _, x := range certs[cut:] {
		s, err := b2.ProcessCertificate(x)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, s...)
	}
	return got, stubs
}

func sameOrder(a, b *CommittedSubDAG) bool {
	if a.Index != b.Index || len(a.Certificates) != len(b.Certificates) {
		return false
	}
	for i := range a.Certificates {
		if a.Certificates[i].Digest() != b.Certificates[i].Digest() {
			return false
		}
	}
	return true
}

func TestBuildsForWasm(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go not on PATH")
	}
	cmd := exec.Command("go", "build", "-o", os.DevNull, ".")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("GOOS=wasip1 build: %v\n%s", err, out)
	}
}

func TestBadInputIsAnError(t *testing.T) {
	c := committee(4)
	b := New(c, 50)
	g := narwhal.Genesis(c)
	var parents []narwhal.Digest
	for _, x := range g {
		parents = append(parents, x.Digest())
	}
	parents = narwhal.SortDigests(parents)
	mk := func(a narwhal.AuthorityID, r uint64, ps []narwhal.Digest, t uint64) *narwhal.Certificate {
		return &narwhal.Certificate{Header: narwhal.Header{Author: a, Round: r, CreatedAt: t, Parents: ps}}
	}
	x := mk(0, 1, parents, 1)
	if _, err := b.ProcessCertificate(x); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ProcessCertificate(x); err != nil {
		t.Fatalf("an exact duplicate is not an error: %v", err)
	}
	if _, err := b.ProcessCertificate(mk(0, 1, parents, 2)); !errors.Is(err, ErrEquivocation) {
		t.Fatalf("equivocation: %v", err)
	}
	if _, err := b.ProcessCertificate(mk(1, 3, []narwhal.Digest{narwhal.Hash([]byte("?"))}, 3)); !errors.Is(err, ErrMissingParent) {
		t.Fatalf("missing parent: %v", err)
	}
	if _, err := b.ProcessCertificate(mk(9, 1, parents, 1)); !errors.Is(err, ErrUnknownAuthor) {
		t.Fatalf("unknown author: %v", err)
	}
	wrong := mk(2, 1, parents, 1)
	wrong.Header.Epoch = 5
	if _, err := b.ProcessCertificate(wrong); !errors.Is(err, ErrWrongEpoch) {
		t.Fatalf("wrong epoch: %v", err)
	}
}

func FuzzDecodeState(f *testing.F) {
	f.Add(State{LastIndex: 3, LastTimestamp: 9, CommittedRound: 6, LastCommitted: []uint64{6, 5, 4, 5}}.Encode())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeState(b)
		if err != nil {
			return
		}
		if string(s.Encode()) != string(b) {
			t.Fatal("accepted a non-canonical state")
		}
	})
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(Record{Index: 1, CommitTimestamp: 2, Certificates: []narwhal.Digest{{1}, {2}}, Support: []narwhal.Digest{{3}}}.Encode())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRecord(b)
		if err != nil {
			return
		}
		if string(r.Encode()) != string(b) {
			t.Fatal("accepted a non-canonical record")
		}
	})
}

func BenchmarkProcessCertificate(b *testing.B) {
	c := committee(7)
	rng := rand.New(rand.NewSource(1))
	certs := causalOrder(rng, randomDAG(rng, c, dagSpec{rounds: 400, minPresent: 5, parentSkip: 0.3}))
	b.ResetTimer()
	n := 0
	for b.Loop() {
		bs := New(c, 50)
		for _, x := range certs {
			if _, err := bs.ProcessCertificate(x); err != nil {
				b.Fatal(err)
			}
			n++
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "certs/s")
}
