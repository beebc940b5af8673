//go:build wasip1

package crypto

// batchVerification is off in the kernel: a batch's random coefficients
// must be unpredictable, and randomness in the PVM is deterministic.
const batchVerification = false
