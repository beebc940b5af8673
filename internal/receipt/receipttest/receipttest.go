// Package receipttest builds receipts over a small synthetic DAG, signed
// by a generated committee, without running any node: seeds for the
// receipt decoder's fuzz target and fixtures for `dsn receipt verify`'s
// test. services/sequencer's tests check receipts of a real committee.
package receipttest

import (
	"errors"
	"math/rand"
	"testing"

	"github.com/tezos-dsn/dsn/internal/config"
	"github.com/tezos-dsn/dsn/internal/crypto"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/receipt"
)

// Fixture is a committee, its secret keys, a transaction and its receipt.
type Fixture struct {
	Committee *narwhal.Committee
	Keys      []*crypto.SecretKey
	TX        []byte
	Receipt   *receipt.Receipt
}

// New builds rounds 1 to 5 of a full DAG of a 4-authority committee
// (every certificate names all of the previous round, each signed by the
// first quorum of authorities), puts TX into a batch of authority 0's
// round-1 certificate, and returns the receipt of TX under the leader of
// round 4 (a path of two certificates) with round 5's support.
func New(tb testing.TB, seed int64) *Fixture {
	tb.Helper()
	c, gens, err := config.GenerateCommittee(rand.New(rand.NewSource(seed)), 4, "127.0.0.1", config.DefaultBasePort)
	if err != nil {
		tb.Fatal(err)
	}
	f := &Fixture{Committee: c, TX: []byte("receipttest transaction")}
	for _, g := range gens {
		f.Keys = append(f.Keys, g.Consensus)
	}
	batch := &narwhal.Batch{Transactions: [][]byte{[]byte("before"), f.TX, []byte("after")}}
	known := map[narwhal.Digest]receipt.Known{}
	var prev []narwhal.Digest
	for _, g := range narwhal.Genesis(c) {
		prev = append(prev, g.Digest())
	}
	rounds := make([][]*narwhal.Certificate, 6)
	for r := uint64(1); r <= 5; r++ {
		var next []narwhal.Digest
		for a := range c.Size() {
			h := narwhal.Header{Author: narwhal.AuthorityID(a), Round: r, Epoch: c.Epoch, CreatedAt: 1000 * r,
				Parents: narwhal.SortDigests(append([]narwhal.Digest(nil), prev...))}
			if r == 1 && a == 0 {
				h.Payload = []narwhal.Digest{batch.Digest()}
			}
			cert := f.Sign(h, 3)
			rounds[r] = append(rounds[r], cert)
			known[cert.Digest()] = receipt.Known{Cert: cert, Raw: cert.Encode()}
			next = append(next, cert.Digest())
		}
		prev = next
	}
	leader := rounds[4][c.Leader(4)]
	var support []receipt.Known
	for _, s := range rounds[5][:2] { // f+1 = 2 of 4 equal stakes
		support = append(support, receipt.Known{Cert: s, Raw: s.Encode()})
	}
	o := receipt.Ordered{ID: narwhal.Hash(f.TX), Index: 1, Position: 1, Batch: batch.Encode(), BatchDigest: batch.Digest(), InBatch: 1, Cert: rounds[1][0].Digest()}
	if f.Receipt, err = receipt.Build(o, receipt.ShortestPaths(leader.Digest(), known), support); err != nil {
		tb.Fatal(err)
	}
	return f
}

// Sign certifies a header with the signatures of authorities 0 to n-1.
func (f *Fixture) Sign(h narwhal.Header, n int) *narwhal.Certificate {
	cert := &narwhal.Certificate{Header: h}
	msg := narwhal.VoteMessage(h.Digest())
	for i := range n {
		cert.Signers = append(cert.Signers, narwhal.AuthorityID(i))
		cert.Signatures = append(cert.Signatures, f.Keys[i].Sign(msg))
	}
	return cert
}

// Mutation is a way to break a valid receipt, and the error Verify must
// return for it (errors.Is).
type Mutation struct {
	Name   string
	Mutate func(tb testing.TB, r *receipt.Receipt)
	Want   []error
}

// Mutations are the breakages every receipt check must catch, for a
// receipt of committee c with support; notLeader is a certificate that is
// not its round's anchor candidate.
func Mutations(c *narwhal.Committee, notLeader *narwhal.Certificate) []Mutation {
	return []Mutation{
		{"unsupported version", func(_ testing.TB, r *receipt.Receipt) { r.Version = 2 }, []error{receipt.ErrVersion}},
		{"readable field disagrees with the bytes", func(_ testing.TB, r *receipt.Receipt) { r.Certificate.Round++ }, []error{receipt.ErrInconsistent}},
		{"tampered transaction", func(tb testing.TB, r *receipt.Receipt) {
			b := batchOf(tb, r)
			tx := append([]byte(nil), b.Transactions[r.InBatch]...)
			tx[len(tx)-1] ^= 1
			b.Transactions[r.InBatch] = tx
			setBatch(r, b, r.InBatch)
		}, []error{receipt.ErrTransaction}},
		{"id of another transaction", func(_ testing.TB, r *receipt.Receipt) {
			d := narwhal.Hash([]byte("another transaction"))
			r.ID = d[:]
		}, []error{receipt.ErrTransaction}},
		{"batch not in the certificate's payload", func(tb testing.TB, r *receipt.Receipt) {
			// The genuine transaction, in a batch nobody certified.
			tx := batchOf(tb, r).Transactions[r.InBatch]
			setBatch(r, &narwhal.Batch{Transactions: [][]byte{tx, []byte("not certified")}}, 0)
		}, []error{receipt.ErrNotInPayload}},
		{"batch digest of another batch", func(_ testing.TB, r *receipt.Receipt) {
			d := (&narwhal.Batch{}).Digest()
			r.BatchDigest = d[:]
		}, []error{receipt.ErrNotInPayload}},
		{"signature removed: below quorum", func(tb testing.TB, r *receipt.Receipt) {
			// One signature less, as many times as it takes.
			editCert(tb, &r.Certificate, func(x *narwhal.Certificate) {
				for c.StakeOf(x.Signers) >= c.QuorumThreshold() {
					x.Signers, x.Signatures = x.Signers[:len(x.Signers)-1], x.Signatures[:len(x.Signatures)-1]
				}
			})
		}, []error{receipt.ErrSignature, narwhal.ErrNoQuorum}},
		{"forged signature on the certificate", func(tb testing.TB, r *receipt.Receipt) {
			editCert(tb, &r.Certificate, func(c *narwhal.Certificate) { c.Signatures[0][7] ^= 1 })
		}, []error{receipt.ErrSignature}},
		{"forged signature on the leader", func(tb testing.TB, r *receipt.Receipt) {
			editCert(tb, &r.Leader, func(c *narwhal.Certificate) { c.Signatures[len(c.Signatures)-1][40] ^= 1 })
		}, []error{receipt.ErrSignature}},
		{"path certificate removed", func(_ testing.TB, r *receipt.Receipt) {
			if len(r.Path) > 0 {
				r.Path = r.Path[1:]
			} else {
				r.Path = []receipt.Cert{r.Leader} // the leader does not name itself
			}
		}, []error{receipt.ErrBrokenPath}},
		{"path certificate replaced", func(_ testing.TB, r *receipt.Receipt) {
			if len(r.Path) > 0 {
				r.Path[len(r.Path)-1] = r.Leader
			} else {
				r.Path = []receipt.Cert{r.Certificate} // the certificate does not name itself
			}
		}, []error{receipt.ErrBrokenPath}},
		{"leader not the round's leader", func(_ testing.TB, r *receipt.Receipt) {
			r.Leader = receipt.NewCert(notLeader, nil)
		}, []error{receipt.ErrNotLeader}},
		{"support below f+1", func(tb testing.TB, r *receipt.Receipt) {
			needSupport(tb, r)
			if c.Stake(narwhal.AuthorityID(r.Support[0].Author)) >= c.ValidityThreshold() {
				tb.Fatal("one authority holds f+1 stake: cannot go below it")
			}
			r.Support = r.Support[:1]
		}, []error{receipt.ErrSupport}},
		{"support not naming the leader", func(tb testing.TB, r *receipt.Receipt) {
			needSupport(tb, r)
			r.Support[0] = r.Leader
		}, []error{receipt.ErrSupport}},
	}
}

func needSupport(tb testing.TB, r *receipt.Receipt) {
	tb.Helper()
	if len(r.Support) == 0 {
		tb.Fatal("receipt without support")
	}
}

// Check verifies that r is valid for c and that every mutation of a copy
// fails with its error.
func Check(tb testing.TB, r *receipt.Receipt, c *narwhal.Committee, muts []Mutation) {
	tb.Helper()
	if _, err := receipt.Verify(r, c); err != nil {
		tb.Fatalf("valid receipt: %v", err)
	}
	for _, m := range muts {
		x := Clone(tb, r)
		m.Mutate(tb, x)
		_, err := receipt.Verify(x, c)
		for _, want := range m.Want {
			if !errors.Is(err, want) {
				tb.Errorf("%s: got %v, want %v", m.Name, err, want)
			}
		}
		if err != nil {
			tb.Logf("%s: %v", m.Name, err)
		}
	}
}

// Clone copies a receipt through its JSON.
func Clone(tb testing.TB, r *receipt.Receipt) *receipt.Receipt {
	tb.Helper()
	x, err := receipt.Decode(r.Encode())
	if err != nil {
		tb.Fatal(err)
	}
	return x
}

func batchOf(tb testing.TB, r *receipt.Receipt) *narwhal.Batch {
	b, err := narwhal.DecodeBatch(r.Batch)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func setBatch(r *receipt.Receipt, b *narwhal.Batch, inBatch int) {
	d := b.Digest()
	r.Batch, r.BatchDigest, r.InBatch = b.Encode(), d[:], inBatch
}

// editCert changes a certificate and its readable fields together, so that
// the check that fails is the one meant.
func editCert(tb testing.TB, v *receipt.Cert, edit func(*narwhal.Certificate)) {
	c, err := narwhal.DecodeCertificate(v.Raw)
	if err != nil {
		tb.Fatal(err)
	}
	edit(c)
	*v = receipt.NewCert(c, nil)
}
