//go:build !wasip1

package crypto

// batchVerification: the node draws batch coefficients from crypto/rand.
const batchVerification = true
