// Command certverify is an example kernel that checks Narwhal certificates
// inside the PVM with internal/narwhal's Verifier, the code the consensus
// nodes run (ed25519 signatures, one by one on wasip1). In each level the
// first external message is the committee's canonical encoding; every
// later one is a canonical certificate, whose verdict ("ok" or the error)
// goes to /verdict/<level>-<id>. It measures what the DSN kernel will pay
// per certificate it authenticates by signature (the tips of a submission).
package main

import (
	"fmt"

	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/kernel/sdk"
)

//lint:ignore U1000 called by the PVM through the wasm export
//go:wasmexport kernel_run
func kernelRun() {
	var v *narwhal.Verifier
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
		if v == nil {
			c, err := narwhal.DecodeCommittee(p)
			if err == nil {
				err = c.Validate()
			}
			if err == nil {
				v, err = narwhal.NewVerifier(c)
			}
			if err != nil {
				verdict = "committee: " + err.Error()
			}
		} else if c, err := narwhal.DecodeCertificate(p); err != nil {
			verdict = err.Error()
		} else if err := v.CheckCertificate(c); err != nil {
			verdict = err.Error()
		}
		if err := sdk.Write(fmt.Sprintf("/verdict/%d-%d", m.Level, m.ID), []byte(verdict)); err != nil {
			panic(err)
		}
	}
}

func main() {}
