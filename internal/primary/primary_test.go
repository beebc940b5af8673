package primary

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/rand"
	"testing"

	"github.com/tezos-dsn/dsn/internal/crypto"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/store"
)

var testCfg = Config{MaxHeaderDelay: 10, LeaderTimeout: 10, RetryTicks: 5, MaxHeaderPayload: 100, MaxResponseCertificates: 100}

type fixture struct {
	t      *testing.T
	c      *narwhal.Committee
	v      *narwhal.Verifier
	keys   []*crypto.SecretKey
	st     *store.Memory
	p      *Primary
	have   map[narwhal.Digest]bool
	certs  map[uint64][]*narwhal.Certificate // rounds built by certify
	signed Signed                            // the signing record, kept beside the store
}

func newFixture(t *testing.T, n int, self narwhal.AuthorityID) *fixture {
	t.Helper()
	rng := rand.New(rand.NewSource(7))
	f := &fixture{t: t, c: &narwhal.Committee{}, st: store.NewMemory(), have: map[narwhal.Digest]bool{},
		certs: map[uint64][]*narwhal.Certificate{}}
	for i := 0; i < n; i++ {
		sk, err := crypto.GenerateKey(rng)
		if err != nil {
			t.Fatal(err)
		}
		pub, _, _ := ed25519.GenerateKey(rng)
		a := narwhal.Authority{Name: fmt.Sprint("n", i), Stake: 1, ConsensusKey: sk.PublicKey(), Address: "x:1"}
		copy(a.NetworkKey[:], pub)
		f.c.Authorities = append(f.c.Authorities, a)
		f.keys = append(f.keys, sk)
	}
	var err error
	if f.v, err = narwhal.NewVerifier(f.c); err != nil {
		t.Fatal(err)
	}
	f.certs[0] = narwhal.Genesis(f.c)
	f.restart(self)
	return f
}

func (f *fixture) restart(self narwhal.AuthorityID) {
	var err error
	f.p, err = New(testCfg, f.v, self, f.keys[self], f.st, func(d narwhal.Digest) bool { return f.have[d] }, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	f.p.SetSigned(f.signed)
}

// apply persists an output, as the runtime would: the writes to the
// store, and what was signed to the signing record beside it.
func (f *fixture) apply(out Output) Output {
	f.st.Apply(out.Writes)
	if out.SignedChanged {
		f.signed = f.p.Signed()
	}
	return out
}

// header builds a header of author for round with the fixture's certificates of round-1 as parents.
func (f *fixture) header(author narwhal.AuthorityID, round uint64, payload ...narwhal.Digest) *narwhal.Header {
	h := &narwhal.Header{Author: author, Round: round, CreatedAt: round * 10, Payload: payload}
	for _, c := range f.certs[round-1] {
		h.Parents = append(h.Parents, c.Digest())
	}
	h.Parents = narwhal.SortDigests(h.Parents)
	return h
}

// certify signs a header by the given signers into a certificate.
func (f *fixture) certify(h *narwhal.Header, signers ...narwhal.AuthorityID) *narwhal.Certificate {
	d := h.Digest()
	c := &narwhal.Certificate{Header: *h, Signers: signers}
	for _, s := range signers {
		c.Signatures = append(c.Signatures, f.keys[s].Sign(narwhal.VoteMessage(d)))
	}
	return c
}

// round builds certificates of every author except skip for round r.
func (f *fixture) round(r uint64, authors ...narwhal.AuthorityID) []*narwhal.Certificate {
	var out []*narwhal.Certificate
	for _, a := range authors {
		out = append(out, f.certify(f.header(a, r), 0, 1, 2))
	}
	f.certs[r] = out
	return out
}

func votesIn(out Output) []narwhal.Vote {
	var vs []narwhal.Vote
	for _, e := range out.Messages {
		if m, ok := e.Msg.(*narwhal.VoteMsg); ok {
			vs = append(vs, m.Vote)
		}
	}
	return vs
}

func (f *fixture) deliver(from narwhal.AuthorityID, cs ...*narwhal.Certificate) Output {
	var msgs []narwhal.Certificate
	for _, c := range cs {
		msgs = append(msgs, *c)
	}
	out, err := f.p.Receive(from, &narwhal.CertificateResponseMsg{Certificates: msgs})
	if err != nil {
		f.t.Fatalf("deliver: %v", err)
	}
	return f.apply(out)
}

func TestVoterVotesOncePerAuthorAndRound(t *testing.T) {
	f := newFixture(t, 4, 0)
	h := f.header(1, 1)
	out, err := f.p.Receive(1, &narwhal.HeaderMsg{Header: *h})
	f.apply(out)
	if err != nil || len(votesIn(out)) != 1 {
		t.Fatalf("first header: err %v, %d votes", err, len(votesIn(out)))
	}
	if !out.SignedChanged || f.p.Signed().VoteDigests[1] != h.Digest() {
		t.Fatal("the vote must go to the signing record before it is sent")
	}
	// The same header again (a retry): the same vote again.
	out, err = f.p.Receive(1, &narwhal.HeaderMsg{Header: *h})
	if err != nil || len(votesIn(out)) != 1 || votesIn(out)[0].Header != h.Digest() {
		t.Fatalf("retry: err %v votes %v", err, votesIn(out))
	}
	// A different header for the same round: equivocation, no vote.
	h2 := f.header(1, 1, narwhal.Hash([]byte("other")))
	f.have[h2.Payload[0]] = true
	out, err = f.p.Receive(1, &narwhal.HeaderMsg{Header: *h2})
	if !errors.Is(err, ErrEquivocation) || len(votesIn(out)) != 0 {
		t.Fatalf("equivocation: err %v votes %d", err, len(votesIn(out)))
	}
	// Even after a restart, from the signing record; and the first
	// header still gets the same vote again.
	f.restart(0)
	out, err = f.p.Receive(1, &narwhal.HeaderMsg{Header: *h2})
	if !errors.Is(err, ErrEquivocation) || len(votesIn(out)) != 0 {
		t.Fatalf("equivocation after restart: err %v votes %d", err, len(votesIn(out)))
	}
	out, err = f.p.Receive(1, &narwhal.HeaderMsg{Header: *h})
	if err != nil || len(votesIn(out)) != 1 || votesIn(out)[0].Header != h.Digest() {
		t.Fatalf("retry after restart: err %v votes %v", err, votesIn(out))
	}
}

func TestVoterRules(t *testing.T) {
	f := newFixture(t, 4, 0)
	// Header sent by someone else than its author.
	if _, err := f.p.Receive(2, &narwhal.HeaderMsg{Header: *f.header(1, 1)}); !errors.Is(err, ErrNotAuthor) {
		t.Fatalf("relayed header: %v", err)
	}
	// Parents below quorum (2 of 4 genesis).
	h := f.header(1, 1)
	h.Parents = h.Parents[:2]
	if _, err := f.p.Receive(1, &narwhal.HeaderMsg{Header: *h}); !errors.Is(err, ErrBadParents) {
		t.Fatalf("parents below quorum: %v", err)
	}
	// Missing batch: no vote until the worker stores it.
	b := narwhal.Hash([]byte("batch"))
	out, err := f.p.Receive(2, &narwhal.HeaderMsg{Header: *f.header(2, 1, b)})
	if err != nil || len(votesIn(out)) != 0 || len(out.NeedBatches) != 1 || out.NeedBatches[0].Author != 2 {
		t.Fatalf("missing batch: err %v votes %d needs %v", err, len(votesIn(out)), out.NeedBatches)
	}
	f.have[b] = true
	out = f.p.BatchesStored([]narwhal.Digest{b})
	if len(votesIn(out)) != 1 {
		t.Fatal("no vote once the batch is stored")
	}
}

func TestVoterWaitsForParentsAndFetchesThem(t *testing.T) {
	f := newFixture(t, 4, 0)
	r1 := f.round(1, 1, 2, 3)
	h := f.header(3, 2)
	out, err := f.p.Receive(3, &narwhal.HeaderMsg{Header: *h})
	if err != nil || len(votesIn(out)) != 0 {
		t.Fatalf("voted without parents: %v", err)
	}
	var asked int
	for _, e := range out.Messages {
		if m, ok := e.Msg.(*narwhal.CertificateRequestMsg); ok && e.To == 3 {
			asked += len(m.Digests)
		}
	}
	if asked != 3 {
		t.Fatalf("asked the author for %d parents, want 3", asked)
	}
	out = f.deliver(3, r1...)
	if len(votesIn(out)) != 1 {
		t.Fatal("no vote once the parents arrived")
	}
}

func TestSynchronizerSuspendsUntilCausallyComplete(t *testing.T) {
	f := newFixture(t, 4, 0)
	r1 := f.round(1, 0, 1, 2)
	r2 := f.round(2, 0, 1, 2)
	out := f.deliver(1, r2[0])
	if len(out.Accepted) != 0 {
		t.Fatal("accepted a certificate whose parents are unknown")
	}
	out = f.deliver(1, r1...)
	if len(out.Accepted) != 4 {
		t.Fatalf("accepted %d, want the 3 parents then the suspended child", len(out.Accepted))
	}
	if out.Accepted[3].Digest() != r2[0].Digest() {
		t.Fatal("the child must come after its parents")
	}
	// A certificate with a forged signature is refused.
	bad := *r2[1]
	bad.Signatures = r2[0].Signatures
	if _, err := f.p.Receive(2, &narwhal.CertificateMsg{Certificate: bad}); err == nil {
		t.Fatal("accepted a badly signed certificate")
	}
	// Below quorum signers.
	weak := f.certify(f.header(2, 2), 0, 1)
	if _, err := f.p.Receive(2, &narwhal.CertificateMsg{Certificate: *weak}); !errors.Is(err, narwhal.ErrNoQuorum) {
		t.Fatalf("weak certificate: %v", err)
	}
}

func TestProposerCertifiesAndNeverEquivocatesAfterRestart(t *testing.T) {
	f := newFixture(t, 4, 0)
	b := narwhal.Hash([]byte("own"))
	out := f.apply(f.p.AddBatches([]PendingDigest{{Digest: b, Seq: 1}}))
	var h *narwhal.Header
	for _, e := range out.Messages {
		if m, ok := e.Msg.(*narwhal.HeaderMsg); ok {
			h = &m.Header
		}
	}
	if h == nil || h.Round != 1 || len(h.Payload) != 1 {
		t.Fatalf("no round-1 header with the batch: %+v", h)
	}
	// Crash before any vote: the restarted node re-sends the same header.
	f.restart(0)
	out = f.apply(f.p.Start())
	var again *narwhal.Header
	for _, e := range out.Messages {
		if m, ok := e.Msg.(*narwhal.HeaderMsg); ok {
			again = &m.Header
		}
	}
	if again == nil || again.Digest() != h.Digest() {
		t.Fatal("restart must re-send the very same header")
	}
	for i := 0; i < 3*testCfg.MaxHeaderDelay; i++ {
		for _, e := range f.apply(f.p.Tick(100)).Messages {
			if m, ok := e.Msg.(*narwhal.HeaderMsg); ok && m.Header.Round == 1 && m.Header.Digest() != h.Digest() {
				t.Fatal("a second round-1 header")
			}
		}
	}
	// Votes: a badly signed one is refused at once; a quorum of good ones
	// certifies.
	d := h.Digest()
	vote := func(voter narwhal.AuthorityID, signer narwhal.AuthorityID) (Output, error) {
		v := narwhal.Vote{Header: d, Round: 1, Origin: 0, Voter: voter, Signature: f.keys[signer].Sign(narwhal.VoteMessage(d))}
		out, err := f.p.Receive(voter, &narwhal.VoteMsg{Vote: v})
		return f.apply(out), err
	}
	certIn := func(out Output) *narwhal.Certificate {
		for _, e := range out.Messages {
			if m, ok := e.Msg.(*narwhal.CertificateMsg); ok {
				return &m.Certificate
			}
		}
		return nil
	}
	if out, err := vote(1, 2); !errors.Is(err, ErrBadVote) || certIn(out) != nil {
		t.Fatalf("a vote signed with another key: err %v", err)
	}
	if out, err := vote(2, 2); err != nil || certIn(out) != nil {
		t.Fatalf("a vote below quorum: %v", err)
	}
	out, err := vote(1, 1) // voter 1 may vote again, correctly
	if err != nil {
		t.Fatal(err)
	}
	cert := certIn(out)
	if cert == nil {
		t.Fatal("no certificate after a quorum of votes")
	}
	if err := f.v.CheckCertificate(cert); err != nil {
		t.Fatalf("own certificate does not verify: %v", err)
	}
}

// A batch whose own certificate the commit rule skipped is proposed again
// (Committed). If the node restarts with both certificates stored, the
// newer one is the one in flight: committing it must settle the batch,
// not leave the older one to be "skipped" once more and the batch
// proposed a third time (the simulator's seed 1275 ordered it twice).
func TestRestartTracksTheNewerOwnCertificateOfABatch(t *testing.T) {
	f := newFixture(t, 4, 0)
	x := narwhal.Hash([]byte("proposed twice"))
	f.have[x] = true
	var all []*narwhal.Certificate
	for r := uint64(1); r <= 3; r++ {
		var cs []*narwhal.Certificate
		for a := narwhal.AuthorityID(0); a < 4; a++ {
			var payload []narwhal.Digest
			if a == 0 && r != 2 {
				payload = []narwhal.Digest{x} // rounds 1 and 3
			}
			cs = append(cs, f.certify(f.header(a, r, payload...), 0, 1, 2))
		}
		f.certs[r] = cs
		all = append(all, cs...)
	}
	f.deliver(1, all...)
	f.st.Apply([]store.Write{
		store.Put(store.PendingKey(7), x[:]),
		store.Put(store.LastProposedKey(), f.certs[3][0].Header.Encode()),
	})
	f.signed.Proposed = 3
	for range 5 { // map order decided which certificate recovery took
		f.restart(0)
		out := f.apply(f.p.Committed([]uint64{3}, 3))
		if _, ok := f.st.Get(store.PendingKey(7)); ok {
			t.Fatalf("committing the round-3 certificate left the batch pending (%d writes)", len(out.Writes))
		}
		if len(f.p.queue) != 0 {
			t.Fatalf("the batch went back to the queue: %d digests", len(f.p.queue))
		}
		f.st.Apply([]store.Write{store.Put(store.PendingKey(7), x[:])})
	}
}

// The proposer waits for the parent round's anchor candidate (Bullshark's
// leader rule) at most LeaderTimeout ticks from the parent quorum, not
// MaxHeaderDelay: a stopped node's turn comes every n rounds.
// ticksToPropose returns how many ticks after out (0: in out itself) the
// primary proposes a header of round r, or -1 if not within 10.
func (f *fixture) ticksToPropose(r uint64, out Output) int {
	proposed := func(out Output) bool {
		for _, e := range out.Messages {
			if m, ok := e.Msg.(*narwhal.HeaderMsg); ok && m.Header.Round == r {
				return true
			}
		}
		return false
	}
	if proposed(out) {
		return 0
	}
	for tick := 1; tick <= 10; tick++ {
		if proposed(f.apply(f.p.Tick(uint64(tick)))) {
			return tick
		}
	}
	return -1
}

func TestProposerWaitsForTheAnchorCandidateAtMostLeaderTimeout(t *testing.T) {
	for _, withAnchor := range []bool{false, true} {
		f := newFixture(t, 4, 0)
		f.p.cfg.MaxHeaderDelay, f.p.cfg.LeaderTimeout = 100, 4
		out := f.apply(f.p.AddBatches([]PendingDigest{{Digest: narwhal.Hash([]byte("a")), Seq: 1}}))
		var own *narwhal.Header
		for _, e := range out.Messages {
			if m, ok := e.Msg.(*narwhal.HeaderMsg); ok {
				own = &m.Header
			}
		}
		if own == nil || own.Round != 1 {
			t.Fatal("no round-1 header")
		}
		// Round 1's candidate is authority 1 (1 mod 4).
		certs := []*narwhal.Certificate{f.certify(own, 0, 1, 2), f.certify(f.header(2, 1), 0, 1, 2), f.certify(f.header(3, 1), 0, 1, 2)}
		if withAnchor {
			certs = append(certs, f.certify(f.header(1, 1), 0, 1, 2))
		}
		got := f.ticksToPropose(2, f.deliver(1, certs...))
		want := 4
		if withAnchor {
			want = 0
		}
		if got != want {
			t.Fatalf("anchor candidate present %v: round 2 proposed after %d ticks, want %d", withAnchor, got, want)
		}
	}
}

// A candidate with no certificate in the two rounds before its own is not
// waited for (it is down, and would cost LeaderTimeout every n rounds); one
// with a certificate in the round before is, up to LeaderTimeout.
func TestProposerDoesNotWaitForASilentCandidate(t *testing.T) {
	for _, recent := range []bool{false, true} {
		f := newFixture(t, 7, 0)
		f.p.cfg.MaxHeaderDelay, f.p.cfg.LeaderTimeout = 100, 4
		f.apply(f.p.AddBatches([]PendingDigest{{Digest: narwhal.Hash([]byte("a")), Seq: 1}}))
		quorum := []narwhal.AuthorityID{0, 1, 2, 4, 5}
		var certs []*narwhal.Certificate
		// Round 3's candidate is authority 3 (3 mod 7): absent from rounds
		// 1 and 3, and from round 2 unless recent.
		for r := uint64(1); r <= 3; r++ {
			authors := []narwhal.AuthorityID{1, 2, 4, 5, 6}
			if r == 2 && recent {
				authors = []narwhal.AuthorityID{1, 2, 3, 4, 5}
			}
			var round []*narwhal.Certificate
			for _, a := range authors {
				round = append(round, f.certify(f.header(a, r), quorum...))
			}
			f.certs[r] = round
			certs = append(certs, round...)
		}
		got := f.ticksToPropose(4, f.deliver(1, certs...))
		want := 0
		if recent {
			want = 4
		}
		if got != want {
			t.Fatalf("candidate certified in round 2: %v; round 4 proposed after %d ticks, want %d", recent, got, want)
		}
	}
}
