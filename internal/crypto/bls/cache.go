package bls

import (
	"encoding/binary"
	"sync"

	"golang.org/x/crypto/blake2b"
)

// CachedKeySet is a KeySet that remembers the aggregate signatures it has
// verified, so that checking the same certificate again costs a hash. A
// node pre-verifies the certificates of a burst of messages in one batch
// (one multi-pairing) before its protocol core checks them one by one; the
// simulator shares one across all simulated nodes. Safe for concurrent use.
type CachedKeySet struct {
	*KeySet
	mu       sync.Mutex
	cur, old map[[32]byte]struct{}
	limit    int
}

// NewCachedKeySet wraps ks; it remembers up to about 2×limit signatures.
func NewCachedKeySet(ks *KeySet, limit int) *CachedKeySet {
	return &CachedKeySet{KeySet: ks, cur: map[[32]byte]struct{}{}, old: map[[32]byte]struct{}{}, limit: limit}
}

func cacheKey(signers []int, msg []byte, sig BLSSignature) [32]byte {
	h, _ := blake2b.New256(nil)
	var n [8]byte
	for _, s := range signers {
		binary.LittleEndian.PutUint64(n[:], uint64(s))
		h.Write(n[:])
	}
	binary.LittleEndian.PutUint64(n[:], ^uint64(0)) // separator
	h.Write(n[:])
	h.Write(sig[:])
	h.Write(msg)
	var k [32]byte
	h.Sum(k[:0])
	return k
}

func (c *CachedKeySet) has(k [32]byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, a := c.cur[k]
	_, b := c.old[k]
	return a || b
}

func (c *CachedKeySet) add(keys ...[32]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		if len(c.cur) >= c.limit {
			c.old, c.cur = c.cur, make(map[[32]byte]struct{}, c.limit)
		}
		c.cur[k] = struct{}{}
	}
}

// Verify checks one signer's signature, from the cache if it was seen.
func (c *CachedKeySet) Verify(signer int, msg []byte, sig BLSSignature) error {
	return c.VerifyAggregate([]int{signer}, msg, sig)
}

// VerifyAggregate is KeySet.VerifyAggregate with the cache in front.
func (c *CachedKeySet) VerifyAggregate(signers []int, msg []byte, sig BLSSignature) error {
	k := cacheKey(signers, msg, sig)
	if c.has(k) {
		return nil
	}
	if err := c.KeySet.VerifyAggregate(signers, msg, sig); err != nil {
		return err
	}
	c.add(k)
	return nil
}

// BatchVerify verifies the items not in the cache in one batch and caches
// them all if it succeeds.
func (c *CachedKeySet) BatchVerify(items []AggregateItem) error {
	var rest []AggregateItem
	var keys [][32]byte
	for _, it := range items {
		k := cacheKey(it.Signers, it.Message, it.Signature)
		if !c.has(k) {
			rest = append(rest, it)
			keys = append(keys, k)
		}
	}
	if err := c.KeySet.BatchVerify(rest); err != nil {
		return err
	}
	c.add(keys...)
	return nil
}
