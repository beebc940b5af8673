// Command blsverify is an example kernel that checks BLS12-381 min-sig
// signatures inside the PVM with the same internal/crypto code the
// consensus nodes use. An external message is public key (96 bytes) ‖
// signature (48 bytes) ‖ message; the verdict ("ok" or the error) goes to
// /verdict/<level>-<id>.
package main

import (
	"fmt"

	crypto "github.com/tezos-dsn/dsn/internal/crypto/bls"
	"github.com/tezos-dsn/dsn/kernel/sdk"
)

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
		p = p[1:]
		verdict := "ok"
		if len(p) < crypto.BLSPublicKeySize+crypto.BLSSignatureSize {
			verdict = "malformed"
		} else {
			var pk crypto.BLSPublicKey
			var sig crypto.BLSSignature
			copy(pk[:], p)
			copy(sig[:], p[crypto.BLSPublicKeySize:])
			if err := crypto.Verify(pk, p[crypto.BLSPublicKeySize+crypto.BLSSignatureSize:], sig); err != nil {
				verdict = err.Error()
			}
		}
		if err := sdk.Write(fmt.Sprintf("/verdict/%d-%d", m.Level, m.ID), []byte(verdict)); err != nil {
			panic(err)
		}
	}
}

func main() {}
