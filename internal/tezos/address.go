// Package tezos holds the Tezos encodings DSN needs outside the PVM:
// Base58Check addresses (sr1 rollups, KT1 contracts, tz1–tz4 accounts) and
// smart-rollup address derivation. See reference/tezos-smart-rollups.md §3.
package tezos

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"

	"golang.org/x/crypto/blake2b"
)

// Base58Check prefixes (tzgo's magic bytes).
var (
	PrefixRollup   = []byte{0x06, 0x7c, 0x75} // sr1, 20 bytes
	PrefixContract = []byte{0x02, 0x5a, 0x79} // KT1, 20 bytes
	PrefixTz1      = []byte{0x06, 0xa1, 0x9f}
	PrefixTz2      = []byte{0x06, 0xa1, 0xa1}
	PrefixTz3      = []byte{0x06, 0xa1, 0xa4}
	PrefixTz4      = []byte{0x06, 0xa1, 0xa6}
)

// ErrBadAddress reports an address that does not decode.
var ErrBadAddress = errors.New("tezos: bad address")

const alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

// Base58CheckEncode encodes prefix ‖ payload with a 4-byte double-SHA-256 checksum.
func Base58CheckEncode(prefix, payload []byte) string {
	b := append(append([]byte{}, prefix...), payload...)
	sum := sha256.Sum256(b)
	sum = sha256.Sum256(sum[:])
	b = append(b, sum[:4]...)
	n := new(big.Int).SetBytes(b)
	var out []byte
	mod := new(big.Int)
	for n.Sign() > 0 {
		n.DivMod(n, big.NewInt(58), mod)
		out = append(out, alphabet[mod.Int64()])
	}
	for _, c := range b {
		if c != 0 {
			break
		}
		out = append(out, '1')
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return string(out)
}

// Base58CheckDecode decodes s, checks the checksum and the prefix, and
// returns the payload, which must be size bytes.
func Base58CheckDecode(s string, prefix []byte, size int) ([]byte, error) {
	n := new(big.Int)
	for _, c := range []byte(s) {
		i := bytes.IndexByte([]byte(alphabet), c)
		if i < 0 {
			return nil, fmt.Errorf("%w: %q: character %q", ErrBadAddress, s, c)
		}
		n.Mul(n, big.NewInt(58))
		n.Add(n, big.NewInt(int64(i)))
	}
	b := n.Bytes()
	for _, c := range []byte(s) {
		if c != '1' {
			break
		}
		b = append([]byte{0}, b...)
	}
	if len(b) < 4+len(prefix) {
		return nil, fmt.Errorf("%w: %q: too short", ErrBadAddress, s)
	}
	body, check := b[:len(b)-4], b[len(b)-4:]
	sum := sha256.Sum256(body)
	sum = sha256.Sum256(sum[:])
	if !bytes.Equal(sum[:4], check) {
		return nil, fmt.Errorf("%w: %q: bad checksum", ErrBadAddress, s)
	}
	if !bytes.HasPrefix(body, prefix) || len(body)-len(prefix) != size {
		return nil, fmt.Errorf("%w: %q: wrong kind", ErrBadAddress, s)
	}
	return body[len(prefix):], nil
}

// ParseRollup decodes an sr1 address to its 20 raw bytes.
func ParseRollup(s string) ([20]byte, error) {
	var a [20]byte
	b, err := Base58CheckDecode(s, PrefixRollup, 20)
	copy(a[:], b)
	return a, err
}

// ParseContract decodes a KT1 address to its 20 raw bytes.
func ParseContract(s string) ([20]byte, error) {
	var a [20]byte
	b, err := Base58CheckDecode(s, PrefixContract, 20)
	copy(a[:], b)
	return a, err
}

// ParseImplicit decodes a tz1..tz4 address to its 21-byte binary form (tag ‖ hash).
func ParseImplicit(s string) ([21]byte, error) {
	var a [21]byte
	for tag, p := range [][]byte{PrefixTz1, PrefixTz2, PrefixTz3, PrefixTz4} {
		if b, err := Base58CheckDecode(s, p, 20); err == nil {
			a[0] = byte(tag)
			copy(a[1:], b)
			return a, nil
		}
	}
	return a, fmt.Errorf("%w: %q is not tz1..tz4", ErrBadAddress, s)
}

// RollupAddress derives the address of the index-th rollup originated by an
// operation: BLAKE2b-160(operation hash ‖ index as int32 BE).
func RollupAddress(opHash [32]byte, index uint32) [20]byte {
	h, _ := blake2b.New(20, nil)
	h.Write(opHash[:])
	var i [4]byte
	binary.BigEndian.PutUint32(i[:], index)
	h.Write(i[:])
	var a [20]byte
	h.Sum(a[:0])
	return a
}
