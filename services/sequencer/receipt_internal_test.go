package sequencer

import (
	"log/slog"
	"strings"
	"testing"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
	"github.com/tezos-dsn/dsn/internal/bullshark"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/receipt"
)

// An anchor ordered through a later directly committed one carries no
// support, and the next supported pre-block's leader need not reach its
// certificates. The receipt then waits for a supported leader that does,
// instead of settling for one without support. The DAG is Bullshark's
// scenario "indirect commit of an earlier anchor" on 4 authorities:
// anchor 1/1 (unsupported, linked from 3/3), then 2/2 (supported, but its
// parents skip 1/1), then 3/3 (supported, reaches 1/1).
func TestReceiptWaitsForASupportedLeaderThatReachesIt(t *testing.T) {
	c := &narwhal.Committee{Authorities: make([]narwhal.Authority, 4)}
	for i := range c.Authorities {
		c.Authorities[i].Stake = 1
	}
	b := &narwhal.Batch{Transactions: [][]byte{[]byte("tracked")}}
	script := [][]string{{"*", "*", "*", "*"}, {"023", "*", "023", "023"}, {"*", "*", "*", "*"}, {"*", "*", "*", ""}}
	bs := bullshark.New(c, 50)
	prev := narwhal.Genesis(c)
	var subs []*bullshark.CommittedSubDAG
	for r, line := range script {
		var cur []*narwhal.Certificate
		for a, ps := range line {
			if ps == "" {
				continue
			}
			var parents []narwhal.Digest
			for _, p := range prev {
				if ps == "*" || strings.ContainsRune(ps, rune('0'+p.Author())) {
					parents = append(parents, p.Digest())
				}
			}
			h := narwhal.Header{Author: narwhal.AuthorityID(a), Round: uint64(r + 1), Parents: narwhal.SortDigests(parents)}
			if a == 1 && r == 0 {
				h.Payload = []narwhal.Digest{b.Digest()}
			}
			x := &narwhal.Certificate{Header: h}
			cur = append(cur, x)
			out, err := bs.ProcessCertificate(x)
			if err != nil {
				t.Fatal(err)
			}
			subs = append(subs, out...)
		}
		prev = cur
	}
	if len(subs) != 3 || len(subs[0].Support) != 0 || len(subs[1].Support) == 0 || len(subs[2].Support) == 0 {
		t.Fatalf("want 3 pre-blocks, the first unsupported: got %d", len(subs))
	}
	s := &Sequencer{log: slog.New(slog.DiscardHandler), receipts: newReceiptBook(10, 1<<20), status: map[narwhal.Digest]*Status{}}
	id := narwhal.Hash(b.Transactions[0])
	for i, sd := range subs {
		pb := &dsnv1.PreBlock{Index: sd.Index}
		ld := sd.Leader.Digest()
		pb.Leader = ld[:]
		for _, x := range sd.Certificates {
			pb.Certificates = append(pb.Certificates, x.Encode())
		}
		for _, x := range sd.Support {
			pb.Support = append(pb.Support, x.Encode())
		}
		var fs []found
		if i == 0 {
			fs = []found{{o: receipt.Ordered{ID: id, Index: sd.Index, Batch: b.Encode(), BatchDigest: b.Digest()}, certIndex: 0}}
		}
		s.receiptsFor(pb, fs)
		r := s.receipts.kept[id]
		switch {
		case i < 2 && r != nil:
			t.Fatalf("pre-block %d: a receipt before a supported leader reaches the certificate (support %d)", sd.Index, len(r.Support))
		case i == 2 && (r == nil || len(r.Support) == 0):
			t.Fatalf("pre-block %d: no supported receipt", sd.Index)
		}
	}
}
