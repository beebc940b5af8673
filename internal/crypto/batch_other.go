//go:build !wasip1

package crypto

// batchCoefficients: the node draws a batch's coefficients from crypto/rand.
var batchCoefficients = randomCoefficients
