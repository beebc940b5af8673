package tezos

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func testOperation(t testing.TB) (*Operation, ed25519.PrivateKey) {
	t.Helper()
	priv, err := ParseSecretKey(BootstrapAccounts[0].SecretKey)
	if err != nil {
		t.Fatal(err)
	}
	op := &Operation{Contents: AddMessages{
		Source: PublicKeyHash(priv.Public().(ed25519.PublicKey)),
		Fee:    1000, Counter: 5, GasLimit: 1000, StorageLimit: 0,
		Messages: [][]byte{{0x00, 0x01, 0x02}, {0xff}},
	}}
	for i := range op.Branch {
		op.Branch[i] = byte(0xb0 + i%16)
	}
	op.Sign(priv)
	return op, priv
}

// TestAddMessagesVector is the reference's tzgo-checked contents (§2).
func TestAddMessagesVector(t *testing.T) {
	op, priv := testOperation(t)
	pkh := op.Contents.Source
	want := "c9" + "00" + hex.EncodeToString(pkh[:]) + "e807" + "05" + "e807" + "00" +
		"0000000c" + "00000003" + "000102" + "00000001" + "ff"
	u := op.Unsigned()
	if !bytes.Equal(u[:32], op.Branch[:]) {
		t.Fatal("unsigned bytes do not start with the branch")
	}
	if got := hex.EncodeToString(u[32:]); got != want {
		t.Fatalf("contents\n got %s\nwant %s", got, want)
	}
	b := op.Bytes()
	if len(b) != len(u)+64 || !bytes.Equal(b[len(u):], op.Signature[:]) {
		t.Fatal("Bytes is not Unsigned ‖ signature")
	}
	if !op.Verify(priv.Public().(ed25519.PublicKey)) {
		t.Fatal("own signature does not verify")
	}
	other, _ := ParseSecretKey(BootstrapAccounts[1].SecretKey)
	if op.Verify(other.Public().(ed25519.PublicKey)) {
		t.Fatal("verifies under another key")
	}
	op2 := *op
	op2.Contents.Counter = 6
	if op2.Verify(priv.Public().(ed25519.PublicKey)) {
		t.Fatal("signature survives a changed counter")
	}
	if op.Hash() == op2.Hash() {
		t.Fatal("hash ignores the contents")
	}
	if h := EncodeOperationHash(op.Hash()); !strings.HasPrefix(h, "o") {
		t.Fatalf("hash %s", h)
	}
}

func TestZarith(t *testing.T) {
	for _, c := range []struct {
		n   uint64
		hex string
	}{{0, "00"}, {1, "01"}, {127, "7f"}, {128, "8001"}, {1000, "e807"}, {1 << 63, "80808080808080808001"},
		{^uint64(0), "ffffffffffffffffff01"}} {
		got := hex.EncodeToString(appendZarith(nil, c.n))
		if got != c.hex {
			t.Errorf("%d: got %s want %s", c.n, got, c.hex)
		}
		b, _ := hex.DecodeString(c.hex)
		r := reader{b: b}
		if v := r.zarith(); r.err != nil || v != c.n || r.off != len(b) {
			t.Errorf("%s: decoded %d, %v", c.hex, v, r.err)
		}
	}
	for _, bad := range []string{"8000", "ff00", "80", "ffffffffffffffffff02", "8080808080808080808001", ""} {
		b, _ := hex.DecodeString(bad)
		r := reader{b: b}
		if r.zarith(); !errors.Is(r.err, ErrBadOperation) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseOperation(t *testing.T) {
	op, _ := testOperation(t)
	b := op.Bytes()
	got, err := ParseOperation(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), b) || got.Hash() != op.Hash() {
		t.Fatal("does not round-trip")
	}
	// offsets in b: branch 0..32, tag 32, source kind 33, pkh 34..54,
	// fee 54..56, counter 56, gas 57..59, storage 59, total 60..64.
	mutate := func(f func([]byte) []byte) []byte { return f(append([]byte{}, b...)) }
	cases := map[string][]byte{
		"empty":           nil,
		"short":           b[:100],
		"trailing byte":   append(append([]byte{}, b...), 0),
		"missing byte":    b[:len(b)-1],
		"wrong tag":       mutate(func(x []byte) []byte { x[32] = 0x6c; return x }),
		"tz2 source":      mutate(func(x []byte) []byte { x[33] = 1; return x }),
		"zarith padding":  mutate(func(x []byte) []byte { return append(append(x[:56:56], 0x85, 0x00), x[57:]...) }),
		"total too big":   mutate(func(x []byte) []byte { x[63]++; return x }),
		"total too small": mutate(func(x []byte) []byte { x[63]--; return x }),
		"message overrun": mutate(func(x []byte) []byte { x[67] = 4; return x }),
		"two contents": mutate(func(x []byte) []byte {
			u := op.Unsigned()
			return append(append(append([]byte{}, u...), u[32:]...), op.Signature[:]...)
		}),
		"oversized": func() []byte {
			big := *op
			big.Contents.Messages = [][]byte{make([]byte, MaxOperationSize)}
			return big.Bytes()
		}(),
	}
	for name, c := range cases {
		if _, err := ParseOperation(c); !errors.Is(err, ErrBadOperation) {
			t.Errorf("%s: accepted (%v)", name, err)
		}
	}
	// The largest operation is accepted.
	max := *op
	max.Contents.Messages = [][]byte{make([]byte, MaxOperationSize-len(op.Bytes())+len(op.Contents.Messages[0])+len(op.Contents.Messages[1])+4)}
	if n := len(max.Bytes()); n != MaxOperationSize {
		t.Fatalf("built %d bytes", n)
	}
	if _, err := ParseOperation(max.Bytes()); err != nil {
		t.Fatalf("largest operation refused: %v", err)
	}
}

func FuzzParseOperation(f *testing.F) {
	op, _ := testOperation(f)
	f.Add(op.Bytes())
	empty := *op
	empty.Contents.Messages = nil
	f.Add(empty.Bytes())
	big := *op
	big.Contents.Fee, big.Contents.Counter = ^uint64(0), 1<<40
	f.Add(big.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := ParseOperation(b)
		if err != nil {
			if !errors.Is(err, ErrBadOperation) {
				t.Fatalf("error does not wrap ErrBadOperation: %v", err)
			}
			return
		}
		if !bytes.Equal(got.Bytes(), b) {
			t.Fatalf("re-encodes differently:\n in %x\nout %x", b, got.Bytes())
		}
	})
}
