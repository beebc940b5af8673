package sequencer_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"slices"
	"testing"
	"time"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
	"github.com/tezos-dsn/dsn/internal/config"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/receipt"
	"github.com/tezos-dsn/dsn/internal/receipt/receipttest"
	"github.com/tezos-dsn/dsn/services/node/nodetest"
)

// fetchReceipt polls GET /v1/transactions/{id}/receipt until it answers
// 200 and returns the raw JSON.
func fetchReceipt(t *testing.T, base, id string) []byte {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get(base + "/v1/transactions/" + id + "/receipt")
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return raw
		}
		if resp.StatusCode != http.StatusNotFound || time.Now().After(deadline) {
			t.Fatalf("receipt of %s: %d %s", id, resp.StatusCode, raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Receipts of a real committee: every ordered transaction gets one
// through the API, it verifies against the committee file alone, carries
// the status's index and position and the leader's support; and every
// breakage of it is caught.
func TestReceiptsVerifyAgainstTheCommittee(t *testing.T) {
	cl := nodetest.Start(t, 4)
	srv, _ := start(t, cl)
	if r := do(t, "GET", srv.URL+"/v1/transactions/"+fmt.Sprintf("%064x", 7)+"/receipt", "", nil); r.code != http.StatusNotFound {
		t.Fatalf("receipt of an unknown transaction: %d %s", r.code, r.err)
	}
	var txs [][]byte
	var ids []string
	for i := range 24 {
		tx := []byte(fmt.Sprintf("receipt-tx-%03d-%s", i, make([]byte, i*20)))
		r := do(t, "POST", srv.URL+"/v1/transactions", "", tx)
		if r.code != http.StatusAccepted {
			t.Fatalf("tx %d: %d %s", i, r.code, r.err)
		}
		txs, ids = append(txs, tx), append(ids, r.st.ID)
	}
	var sizes, paths, supports []int
	var longest *receipt.Receipt
	for i, id := range ids {
		raw := fetchReceipt(t, srv.URL, id)
		r, err := receipt.Decode(raw)
		if err != nil {
			t.Fatalf("tx %d: %v\n%s", i, err, raw)
		}
		res, err := receipt.Verify(r, cl.Committee)
		if err != nil {
			t.Fatalf("tx %d: %v", i, err)
		}
		st := do(t, "GET", srv.URL+"/v1/transactions/"+id, "", nil).st
		switch {
		case string(res.Transaction) != string(txs[i]):
			t.Fatalf("tx %d: the receipt is for %q", i, res.Transaction)
		case st.Index == nil || *st.Index != r.Index || *st.Position != r.Position:
			t.Fatalf("tx %d: status %+v, receipt at %d/%d", i, st, r.Index, r.Position)
		case st.Receipt != "/v1/transactions/"+id+"/receipt":
			t.Fatalf("tx %d: status names receipt %q", i, st.Receipt)
		case !res.Committed():
			t.Fatalf("tx %d: receipt without support", i)
		}
		sizes, paths, supports = append(sizes, len(raw)), append(paths, len(r.Path)), append(supports, len(r.Support))
		if longest == nil || len(r.Path) > len(longest.Path) {
			longest = r
		}
	}
	slices.Sort(sizes)
	slices.Sort(paths)
	slices.Sort(supports)
	t.Logf("%d receipts on 4 nodes: %d / %d / %d bytes (min / median / max), path lengths %v, support certificates %v",
		len(sizes), sizes[0], sizes[len(sizes)/2], sizes[len(sizes)-1], paths, supports)

	// A certificate by someone else than its round's anchor candidate.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var notLeader *narwhal.Certificate
	if _, err := cl.ReadExport(ctx, 0, 0, func(pb *dsnv1.PreBlock) bool {
		for _, raw := range pb.Certificates {
			c, err := narwhal.DecodeCertificate(raw)
			if err == nil && c.Round() >= 1 && c.Author() != cl.Committee.Leader(c.Round()) {
				notLeader = c
			}
		}
		return notLeader != nil
	}); err != nil {
		t.Fatal(err)
	}
	receipttest.Check(t, longest, cl.Committee, receipttest.Mutations(cl.Committee, notLeader))

	// Another committee (same size, other keys), and the same committee in
	// another epoch: not certified by them.
	other, _, err := config.GenerateCommittee(rand.New(rand.NewSource(99)), 4, "127.0.0.1", config.DefaultBasePort)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := receipt.Verify(longest, other); !errors.Is(err, receipt.ErrSignature) {
		t.Fatalf("another committee: %v", err)
	}
	next := *cl.Committee
	next.Epoch++
	if _, err := receipt.Verify(longest, &next); !errors.Is(err, narwhal.ErrWrongEpoch) {
		t.Fatalf("another epoch: %v", err)
	}
}
