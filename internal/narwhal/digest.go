package narwhal

import (
	"bytes"
	"encoding/hex"

	"golang.org/x/crypto/blake2b"
)

// DigestSize is the size of every digest: BLAKE2b-256.
const DigestSize = 32

// Digest is a BLAKE2b-256 hash. Certificates are named by their header digest.
type Digest [DigestSize]byte

// String returns the full hex form.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// Short returns the first 8 hex characters, for logs.
func (d Digest) Short() string { return hex.EncodeToString(d[:4]) }

// Compare orders digests by their bytes.
func (d Digest) Compare(o Digest) int { return bytes.Compare(d[:], o[:]) }

// Domain tags separate the hashes of different kinds of objects, so that the
// bytes of one can never be presented as another.
const (
	tagBatchDigest  = "dsn/batch/v1\x00"
	tagHeaderDigest = "dsn/header/v1\x00"
	tagVoteMessage  = "dsn/vote/v1\x00"
)

// hashTagged returns BLAKE2b-256(tag || body).
func hashTagged(tag string, body []byte) Digest {
	h, _ := blake2b.New256(nil) // cannot fail without a key
	h.Write([]byte(tag))
	h.Write(body)
	var d Digest
	h.Sum(d[:0])
	return d
}

// Hash returns the plain BLAKE2b-256 of b (used for transaction digests).
func Hash(b []byte) Digest { return blake2b.Sum256(b) }
