package tezos

import (
	"crypto/ed25519"
	"fmt"
	"strings"

	"golang.org/x/crypto/blake2b"
)

// Base58Check prefixes of ed25519 keys and signatures and of block and
// operation hashes (octez src/lib_crypto/base58.ml; reference §3).
var (
	PrefixEdsk      = []byte{0x0d, 0x0f, 0x3a, 0x07}       // edsk…, 32-byte seed (54 characters)
	PrefixEdskFull  = []byte{0x2b, 0xf6, 0x4e, 0x07}       // edsk…, 64-byte secret key seed ‖ public key (98 characters)
	PrefixEdpk      = []byte{0x0d, 0x0f, 0x25, 0xd9}       // edpk…, 32 bytes
	PrefixEdsig     = []byte{0x09, 0xf5, 0xcd, 0x86, 0x12} // edsig…, 64 bytes
	PrefixBlock     = []byte{0x01, 0x34}                   // B…, 32 bytes
	PrefixOperation = []byte{0x05, 0x74}                   // o…, 32 bytes
)

// ParseSecretKey decodes an ed25519 secret key in octez's text form: "edsk…"
// as a 32-byte seed (54 characters) or as a 64-byte seed ‖ public key (98
// characters), optionally written "unencrypted:edsk…" as in octez-client's
// secret_keys file. Surrounding whitespace is ignored. The 64-byte form must
// carry the public key of its own seed.
func ParseSecretKey(s string) (ed25519.PrivateKey, error) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "unencrypted:")
	if seed, err := Base58CheckDecode(s, PrefixEdsk, ed25519.SeedSize); err == nil {
		return ed25519.NewKeyFromSeed(seed), nil
	}
	full, err := Base58CheckDecode(s, PrefixEdskFull, ed25519.PrivateKeySize)
	if err != nil {
		return nil, fmt.Errorf("secret key: %w", err)
	}
	priv := ed25519.NewKeyFromSeed(full[:ed25519.SeedSize])
	if !priv.Equal(ed25519.PrivateKey(full)) {
		return nil, fmt.Errorf("secret key: %w: public half does not match the seed", ErrBadAddress)
	}
	return priv, nil
}

// EncodeSecretKey returns the 54-character "edsk…" seed form of priv.
func EncodeSecretKey(priv ed25519.PrivateKey) string {
	return Base58CheckEncode(PrefixEdsk, priv.Seed())
}

// ParsePublicKey decodes an "edpk…" ed25519 public key.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	b, err := Base58CheckDecode(strings.TrimSpace(s), PrefixEdpk, ed25519.PublicKeySize)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	return ed25519.PublicKey(b), nil
}

// EncodePublicKey returns the "edpk…" form of pub.
func EncodePublicKey(pub ed25519.PublicKey) string {
	return Base58CheckEncode(PrefixEdpk, pub)
}

// PublicKeyHash is the tz1 hash of an ed25519 key: BLAKE2b-160 of its 32 bytes.
func PublicKeyHash(pub ed25519.PublicKey) [20]byte {
	h, _ := blake2b.New(20, nil) // cannot fail: 20 is a valid size and there is no key
	h.Write(pub)
	var out [20]byte
	h.Sum(out[:0])
	return out
}

// EncodeTz1 returns the "tz1…" address of an ed25519 public key hash.
func EncodeTz1(h [20]byte) string { return Base58CheckEncode(PrefixTz1, h[:]) }

// ParseTz1 decodes a "tz1…" address to its 20-byte hash.
func ParseTz1(s string) ([20]byte, error) { return decode20(s, PrefixTz1) }

// EncodeBlockHash returns the "B…" form of a block hash.
func EncodeBlockHash(h [32]byte) string { return Base58CheckEncode(PrefixBlock, h[:]) }

// ParseBlockHash decodes a "B…" block hash.
func ParseBlockHash(s string) ([32]byte, error) { return decode32(s, PrefixBlock) }

// EncodeOperationHash returns the "o…" form of an operation hash.
func EncodeOperationHash(h [32]byte) string { return Base58CheckEncode(PrefixOperation, h[:]) }

// ParseOperationHash decodes an "o…" operation hash.
func ParseOperationHash(s string) ([32]byte, error) { return decode32(s, PrefixOperation) }

func decode20(s string, prefix []byte) ([20]byte, error) {
	var a [20]byte
	b, err := Base58CheckDecode(s, prefix, 20)
	copy(a[:], b)
	return a, err
}

func decode32(s string, prefix []byte) ([32]byte, error) {
	var a [32]byte
	b, err := Base58CheckDecode(s, prefix, 32)
	copy(a[:], b)
	return a, err
}

// Account is a named key pair of a sandbox: SecretKey is the plain
// "edsk…" seed form (no "unencrypted:" prefix).
type Account struct {
	Name      string
	SecretKey string
}

// BootstrapAccounts are octez's well-known sandbox accounts bootstrap1 …
// bootstrap5 (src/bin_client/octez-init-sandboxed-client.sh), then
// flextesa's alice and bob (reference §5). Each derives to its published
// tz1 (checked by TestBootstrapAccounts). They are public: never use them
// outside a sandbox.
var BootstrapAccounts = []Account{
	{"bootstrap1", "edsk3gUfUPyBSfrS9CCgmCiQsTCHGkviBDusMxDJstFtojtc1zcpsh"}, // tz1KqTpEZ7Yob7QbPE4Hy4Wo8fHG8LhKxZSx
	{"bootstrap2", "edsk39qAm1fiMjgmPkw1EgQYkMzkJezLNewd7PLNHTkr6w9XA2zdfo"}, // tz1gjaF81ZRRvdzjobyfVNsAeSC6PScjfQwN
	{"bootstrap3", "edsk4ArLQgBTLWG5FJmnGnT689VKoqhXwmDPBuGx3z4cvwU9MmrPZZ"}, // tz1faswCTDciRzE4oJ9jn2Vm2dvjeyA9fUzU
	{"bootstrap4", "edsk2uqQB9AY4FvioK2YMdfmyMrer5R8mGFyuaLLFfSRo8EoyNdht3"}, // tz1b7tUupMgCNw2cCLpKTkSD1NZzB5TkP2sv
	{"bootstrap5", "edsk4QLrcijEffxV31gGdN2HU7UpyJjA8drFoNcmnB28n89YjPNRFm"}, // tz1ddb9NMYHZi5UzPdzTZMYQQZoMub195zgv
	{"alice", "edsk3QoqBuvdamxouPhin7swCvkQNgq4jP5KZPbwWNnwdZpSpJiEbq"},      // tz1VSUr8wwNhLAzempoch5d6hLRiTh8Cjcjb
	{"bob", "edsk3RFfvaFaxbHx8BMtEW1rKQcPtDML3LXjNqMNLCzC3wLC1bWbAt"},        // tz1aSkwEot3L2kmUvcoxzjMomb9mvBNuzFK6
}

// SandboxAccountCount is how many accounts a sandbox knows by default: the
// bootstrap accounts, then derived ones (SandboxAccounts), enough for a
// rollup node to fill an L1 block with one 32 KiB add_messages operation
// per batching key.
const SandboxAccountCount = 32

// SandboxAccounts returns n sandbox accounts: the BootstrapAccounts, then
// accounts "sandbox8", "sandbox9", … whose seeds are
// BLAKE2b-256("dsn sandbox account " ‖ i). Like the bootstrap accounts they
// are public: never use them outside a sandbox.
func SandboxAccounts(n int) []Account {
	out := append([]Account(nil), BootstrapAccounts[:min(n, len(BootstrapAccounts))]...)
	for i := len(out) + 1; len(out) < n; i++ {
		seed := blake2b.Sum256(fmt.Appendf(nil, "dsn sandbox account %d", i))
		out = append(out, Account{Name: fmt.Sprintf("sandbox%d", i), SecretKey: EncodeSecretKey(ed25519.NewKeyFromSeed(seed[:]))})
	}
	return out
}
