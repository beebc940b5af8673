package tezos

import (
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
)

// published tz1 of each bootstrap account (octez sandbox scripts, flextesa).
var bootstrapTz1 = map[string]string{
	"bootstrap1": "tz1KqTpEZ7Yob7QbPE4Hy4Wo8fHG8LhKxZSx",
	"bootstrap2": "tz1gjaF81ZRRvdzjobyfVNsAeSC6PScjfQwN",
	"bootstrap3": "tz1faswCTDciRzE4oJ9jn2Vm2dvjeyA9fUzU",
	"bootstrap4": "tz1b7tUupMgCNw2cCLpKTkSD1NZzB5TkP2sv",
	"bootstrap5": "tz1ddb9NMYHZi5UzPdzTZMYQQZoMub195zgv",
	"alice":      "tz1VSUr8wwNhLAzempoch5d6hLRiTh8Cjcjb",
	"bob":        "tz1aSkwEot3L2kmUvcoxzjMomb9mvBNuzFK6",
}

func TestBootstrapAccounts(t *testing.T) {
	if len(BootstrapAccounts) != len(bootstrapTz1) {
		t.Fatalf("%d accounts, want %d", len(BootstrapAccounts), len(bootstrapTz1))
	}
	for _, a := range BootstrapAccounts {
		priv, err := ParseSecretKey(a.SecretKey)
		if err != nil {
			t.Fatalf("%s: %v", a.Name, err)
		}
		pub := priv.Public().(ed25519.PublicKey)
		got := EncodeTz1(PublicKeyHash(pub))
		if got != bootstrapTz1[a.Name] {
			t.Errorf("%s derives %s, want %s", a.Name, got, bootstrapTz1[a.Name])
		}
		if EncodeSecretKey(priv) != a.SecretKey {
			t.Errorf("%s: secret key does not round-trip", a.Name)
		}
		h, err := ParseTz1(got)
		if err != nil || h != PublicKeyHash(pub) {
			t.Errorf("%s: ParseTz1: %v", a.Name, err)
		}
	}
}

func TestPublicKeys(t *testing.T) {
	// reference §5: alice's and bob's published public keys.
	for name, pk := range map[string]string{
		"alice": "edpkvGfYw3LyB1UcCahKQk4rF2tvbMUk8GFiTuMjL75uGXrpvKXhjn",
		"bob":   "edpkurPsQ8eUApnLUJ9ZPDvu98E8VNj4KtJa1aZr16Cr5ow5VHKnz4",
	} {
		pub, err := ParsePublicKey(pk)
		if err != nil {
			t.Fatal(err)
		}
		if EncodePublicKey(pub) != pk || EncodeTz1(PublicKeyHash(pub)) != bootstrapTz1[name] {
			t.Errorf("%s: %s does not derive %s", name, pk, bootstrapTz1[name])
		}
	}
	if _, err := ParsePublicKey(BootstrapAccounts[0].SecretKey); !errors.Is(err, ErrBadAddress) {
		t.Fatalf("a secret key parsed as a public key: %v", err)
	}
}

func TestSecretKeyForms(t *testing.T) {
	seed := BootstrapAccounts[5].SecretKey // alice
	want, err := ParseSecretKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	full := Base58CheckEncode(PrefixEdskFull, want)
	if len(seed) != 54 || len(full) != 98 || !strings.HasPrefix(full, "edsk") {
		t.Fatalf("lengths %d %d, %s", len(seed), len(full), full)
	}
	for _, s := range []string{full, "unencrypted:" + seed, "  unencrypted:" + full + "\n"} {
		got, err := ParseSecretKey(s)
		if err != nil || !got.Equal(want) {
			t.Errorf("%q: %v", s, err)
		}
	}
	// A 64-byte key whose public half is not its seed's.
	bad := append(append([]byte{}, want[:32]...), make([]byte, 32)...)
	if _, err := ParseSecretKey(Base58CheckEncode(PrefixEdskFull, bad)); !errors.Is(err, ErrBadAddress) {
		t.Fatalf("mismatched public half accepted: %v", err)
	}
	if _, err := ParseSecretKey("edsk3QoqBuvdamxouPhin7swCvkQNgq4jP5KZPbwWNnwdZpSpJiEbr"); !errors.Is(err, ErrBadAddress) {
		t.Fatalf("bad checksum accepted: %v", err)
	}
}

func TestHashes(t *testing.T) {
	var h [32]byte
	for i := range h {
		h[i] = byte(i)
	}
	b := EncodeBlockHash(h)
	o := EncodeOperationHash(h)
	if b[0] != 'B' || len(b) != 51 || o[0] != 'o' || len(o) != 51 {
		t.Fatalf("%s %s", b, o)
	}
	if g, err := ParseBlockHash(b); err != nil || g != h {
		t.Fatalf("block hash: %v", err)
	}
	if g, err := ParseOperationHash(o); err != nil || g != h {
		t.Fatalf("operation hash: %v", err)
	}
	if _, err := ParseBlockHash(o); !errors.Is(err, ErrBadAddress) {
		t.Fatalf("an operation hash parsed as a block hash: %v", err)
	}
}

func TestSandboxAccounts(t *testing.T) {
	as := SandboxAccounts(SandboxAccountCount)
	if len(as) != SandboxAccountCount || as[0] != BootstrapAccounts[0] || as[len(BootstrapAccounts)-1] != BootstrapAccounts[len(BootstrapAccounts)-1] {
		t.Fatalf("want the %d bootstrap accounts first, %d in all", len(BootstrapAccounts), SandboxAccountCount)
	}
	seen := map[string]bool{}
	for _, a := range as {
		if _, err := ParseSecretKey(a.SecretKey); err != nil || seen[a.SecretKey] {
			t.Fatalf("%s: %v (or a repeated key)", a.Name, err)
		}
		seen[a.SecretKey] = true
	}
	if again := SandboxAccounts(SandboxAccountCount); again[20] != as[20] {
		t.Fatal("derived accounts are not deterministic")
	}
}
