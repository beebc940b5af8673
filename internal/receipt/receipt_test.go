package receipt_test

import (
	"bytes"
	"errors"
	"math/rand"
	"testing"

	"github.com/tezos-dsn/dsn/internal/config"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/receipt"
	"github.com/tezos-dsn/dsn/internal/receipt/receipttest"
)

// A receipt over a synthetic DAG verifies, survives its JSON, and every
// breakage is caught by the check meant for it.
func TestSyntheticReceipt(t *testing.T) {
	f := receipttest.New(t, 1)
	r := receipttest.Clone(t, f.Receipt)
	if !bytes.Equal(r.Encode(), f.Receipt.Encode()) {
		t.Fatal("JSON round trip changed the receipt")
	}
	res, err := receipt.Verify(r, f.Committee)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(res.Transaction, f.TX) || res.Rounds != 3 || len(r.Path) != 2 || !res.Committed() || res.SupportStake != 2000 {
		t.Fatalf("result %+v, path %d", res, len(r.Path))
	}
	// A round-2 certificate not by round 2's anchor candidate.
	h := narwhal.Header{Author: (f.Committee.Leader(2) + 1) % 4, Round: 2, Epoch: f.Committee.Epoch, Parents: []narwhal.Digest{{1}}}
	receipttest.Check(t, f.Receipt, f.Committee, receipttest.Mutations(f.Committee, f.Sign(h, 3)))
	// The same receipt under another committee, or another epoch.
	other, _, err := config.GenerateCommittee(rand.New(rand.NewSource(99)), 4, "127.0.0.1", config.DefaultBasePort)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := receipt.Verify(r, other); !errors.Is(err, receipt.ErrSignature) {
		t.Fatalf("another committee: %v", err)
	}
	next := *f.Committee
	next.Epoch++
	if _, err := receipt.Verify(r, &next); !errors.Is(err, narwhal.ErrWrongEpoch) {
		t.Fatalf("another epoch: %v", err)
	}
	// Without support it still verifies, and says the commit is not proven.
	r.Support = nil
	if res, err := receipt.Verify(r, f.Committee); err != nil || res.Committed() {
		t.Fatalf("without support: %v %+v", err, res)
	}
}

func TestDecodeRejects(t *testing.T) {
	good := receipttest.New(t, 2).Receipt.Encode()
	for name, in := range map[string][]byte{
		"empty":          nil,
		"not an object":  []byte(`[1]`),
		"unknown field":  bytes.Replace(good, []byte(`"version"`), []byte(`"extra":1,"version"`), 1),
		"trailing data":  append(append([]byte(nil), good...), []byte(`{}`)...),
		"bad hex":        bytes.Replace(good, []byte(`"batch":"`), []byte(`"batch":"zz`), 1),
		"short id":       []byte(`{"version": 1, "id": "00", "batch_digest": "00"}`),
		"future version": bytes.Replace(good, []byte(`"version":1`), []byte(`"version":7`), 1),
	} {
		if bytes.Equal(in, good) {
			t.Fatalf("%s: the edit did not apply", name)
		}
		if _, err := receipt.Decode(in); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	if _, err := receipt.Decode(good); err != nil {
		t.Fatal(err)
	}
}

// FuzzDecode: whatever a user feeds `dsn receipt verify`, decoding and
// verifying return an error or a result, never panic; what decodes
// re-encodes to a receipt that decodes the same.
func FuzzDecode(f *testing.F) {
	fx := receipttest.New(f, 3)
	f.Add(fx.Receipt.Encode())
	f.Add([]byte(`{"version":1,"id":"` + string(bytes.Repeat([]byte("ab"), 32)) + `","batch_digest":"` + string(bytes.Repeat([]byte("cd"), 32)) + `","batch":"00000000","certificate":{"raw":""},"leader":{"raw":""},"path":[]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := receipt.Decode(data)
		if err != nil {
			return
		}
		again, err := receipt.Decode(r.Encode())
		if err != nil {
			t.Fatalf("re-encoded receipt does not decode: %v", err)
		}
		if !bytes.Equal(again.Encode(), r.Encode()) {
			t.Fatal("re-encoding is not stable")
		}
		receipt.Verify(r, fx.Committee)
	})
}
