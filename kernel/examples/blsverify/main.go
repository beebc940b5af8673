// Command blsverify is an example kernel that checks BLS12-381 min-sig
// signatures inside the PVM with the same internal/crypto code the
// consensus nodes use. An external message is either
//
//   - public key (96 bytes) ‖ signature (48 bytes) ‖ message: one
//     verification; or
//   - 0x00 ‖ n (1 byte) ‖ n × (public key ‖ signature ‖ 32-byte message):
//     n signatures by n keys checked together, as a committee's kernel
//     would, with one multi-pairing (crypto.KeySet.BatchVerify). A
//     compressed key never starts with 0x00 (its compression flag is the
//     top bit), so the forms cannot be confused.
//
// The verdict ("ok" or the error) goes to /verdict/<level>-<id>.
package main

import (
	"errors"
	"fmt"

	crypto "github.com/tezos-dsn/dsn/internal/crypto/bls"
	"github.com/tezos-dsn/dsn/kernel/sdk"
)

const batchItem = crypto.BLSPublicKeySize + crypto.BLSSignatureSize + 32

//lint:ignore U1000 called by the PVM through the wasm export
//go:wasmexport kernel_run
func kernelRun() {
	for {
		m, ok, err := sdk.ReadInput()
		if err != nil || !ok {
			return
		}
		p := m.Payload
		if len(p) < 1 || p[0] != 0x01 {
			continue // not an external message
		}
		verdict := "ok"
		if err := check(p[1:]); err != nil {
			verdict = err.Error()
		}
		if err := sdk.Write(fmt.Sprintf("/verdict/%d-%d", m.Level, m.ID), []byte(verdict)); err != nil {
			panic(err)
		}
	}
}

func check(p []byte) error {
	if len(p) >= 2 && p[0] == 0x00 {
		return checkBatch(int(p[1]), p[2:])
	}
	if len(p) < crypto.BLSPublicKeySize+crypto.BLSSignatureSize {
		return errors.New("malformed")
	}
	var pk crypto.BLSPublicKey
	var sig crypto.BLSSignature
	copy(pk[:], p)
	copy(sig[:], p[crypto.BLSPublicKeySize:])
	return crypto.Verify(pk, p[crypto.BLSPublicKeySize+crypto.BLSSignatureSize:], sig)
}

func checkBatch(n int, p []byte) error {
	if n == 0 || len(p) != n*batchItem {
		return errors.New("malformed batch")
	}
	pks := make([]crypto.BLSPublicKey, n)
	items := make([]crypto.AggregateItem, n)
	for i := range n {
		it := p[i*batchItem : (i+1)*batchItem]
		copy(pks[i][:], it)
		copy(items[i].Signature[:], it[crypto.BLSPublicKeySize:])
		items[i].Signers = []int{i}
		items[i].Message = it[crypto.BLSPublicKeySize+crypto.BLSSignatureSize:]
	}
	ks, err := crypto.NewKeySet(pks)
	if err != nil {
		return err
	}
	return ks.BatchVerify(items)
}

func main() {}
