//go:build wasip1

package crypto

// batchCoefficients: randomness in the PVM is deterministic, so the kernel
// derives a batch's coefficients from its transcript.
var batchCoefficients = transcriptCoefficients
