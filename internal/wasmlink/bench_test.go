package wasmlink

import (
	"context"
	mrand "math/rand"
	"testing"

	crypto "github.com/tezos-dsn/dsn/internal/crypto/bls"
	"github.com/tezos-dsn/dsn/internal/pvm"
)

// BenchmarkKernelRun reports the cost of one level (one kernel_run, i.e.
// a fresh instance with Go runtime start-up) for the echo kernel, and for
// the BLS kernel with 0, 1 and 2 signatures and with 7 signatures of 7 keys
// checked by one multi-pairing (the second verification in a level costs
// less than the first: (2) − (1) against (1) − (0)), and the certificate kernel
// (ed25519, internal/narwhal's Verifier) with 0, 1 and 4 certificates of 5
// signatures, side by side; the echo and BLS cases also without tick
// metering ("-unmetered"), for what metering costs, and the BLS cases also
// linked with Go's own field arithmetic ("-go-bodies", no intrinsics).
func BenchmarkKernelRun(b *testing.B) {
	ctx := context.Background()
	bls, err := Build(ctx, "../..", "./kernel/examples/blsverify")
	if err != nil {
		b.Fatal(err)
	}
	blsGo, err := BuildWith(ctx, "../..", "./kernel/examples/blsverify", Options{GoBodies: true})
	if err != nil {
		b.Fatal(err)
	}
	signed := pvm.External(blsSigned())
	// Seven signers, each on its own 32-byte message, checked together.
	batch := []byte{0x00, 7}
	for i := range 7 {
		sk, _ := crypto.GenerateBLSKey(mrand.New(mrand.NewSource(int64(10 + i))))
		m := make([]byte, 32)
		m[0] = byte(i)
		pk, sig := sk.PublicKey(), sk.Sign(m)
		batch = append(append(append(batch, pk[:]...), sig[:]...), m...)
	}
	certKernel, err := Build(ctx, "../..", "./kernel/examples/certverify")
	if err != nil {
		b.Fatal(err)
	}
	committee, cert := signedCertificate(b)
	for _, tc := range []struct {
		name      string
		kernel    []byte
		msgs      [][]byte
		unmetered bool
	}{
		{"echo", echoKernel(b), [][]byte{pvm.External([]byte("x"))}, false},
		{"echo-unmetered", echoKernel(b), [][]byte{pvm.External([]byte("x"))}, true},
		{"bls-0-verifications", bls, nil, false},
		{"bls-1-verification", bls, [][]byte{signed}, false},
		{"bls-1-verification-unmetered", bls, [][]byte{signed}, true},
		{"bls-0-verifications-go-bodies", blsGo, nil, false},
		{"bls-1-verification-go-bodies", blsGo, [][]byte{signed}, false},
		{"bls-2-verifications", bls, [][]byte{signed, signed}, false},
		{"bls-7-signatures-one-multi-pairing", bls, [][]byte{pvm.External(batch)}, false},
		{"bls-7-signatures-one-multi-pairing-go-bodies", blsGo, [][]byte{pvm.External(batch)}, false},
		{"ed25519-committee-only", certKernel, [][]byte{pvm.External(committee)}, false},
		{"ed25519-1-certificate-5-signatures", certKernel, [][]byte{pvm.External(committee), pvm.External(cert.Encode())}, false},
		{"ed25519-4-certificates-5-signatures", certKernel, [][]byte{pvm.External(committee), pvm.External(cert.Encode()),
			pvm.External(cert.Encode()), pvm.External(cert.Encode()), pvm.External(cert.Encode())}, false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := pvm.DefaultConfig()
			cfg.Unmetered = tc.unmetered
			p, _ := pvm.New(ctx, cfg, nil)
			defer p.Close(ctx)
			p.InstallKernel(tc.kernel)
			p.RunLevel(ctx, 0, 0, [32]byte{}, nil) // compile once
			lvl := uint32(1)
			var ticks uint64
			for b.Loop() {
				res, err := p.RunLevel(ctx, lvl, 0, [32]byte{}, tc.msgs)
				if err != nil || res.Stuck != "" {
					b.Fatal(err, res.Stuck)
				}
				ticks = res.Ticks
				lvl++
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/level")
			b.ReportMetric(float64(ticks), "ticks/level")
		})
	}
}

// blsSigned is the blsverify kernel's single form: key ‖ signature ‖ message.
func blsSigned() []byte {
	sk, _ := crypto.GenerateBLSKey(mrand.New(mrand.NewSource(1)))
	pk, msg := sk.PublicKey(), []byte("m")
	sig := sk.Sign(msg)
	return append(append(append([]byte{}, pk[:]...), sig[:]...), msg...)
}
