package crypto

import (
	"encoding/binary"
	"sync"

	"golang.org/x/crypto/blake2b"
)

// CachedKeySet is a KeySet that remembers the signatures it has verified,
// so that checking the same certificate again costs a hash. A node
// pre-verifies the certificates of a burst of messages in one batch before
// its protocol core checks them one by one; the simulator shares one across
// all simulated nodes. Safe for concurrent use.
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

func cacheKey(it SignedItem) [32]byte {
	h, _ := blake2b.New256(nil)
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(it.Signer))
	h.Write(n[:])
	h.Write(it.Signature[:])
	h.Write(it.Message)
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

// Remember records a signature known to be valid without checking it: the
// caller made it with its own key.
func (c *CachedKeySet) Remember(it SignedItem) { c.add(cacheKey(it)) }

// Verify checks one signature, from the cache when possible.
func (c *CachedKeySet) Verify(signer int, msg []byte, sig Signature) error {
	return c.VerifyMany([]SignedItem{{Signer: signer, Message: msg, Signature: sig}})
}

// VerifyMany checks the items not verified before, in one batch.
func (c *CachedKeySet) VerifyMany(items []SignedItem) error {
	var todo []SignedItem
	var keys [][32]byte
	for _, it := range items {
		if k := cacheKey(it); !c.has(k) {
			todo = append(todo, it)
			keys = append(keys, k)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	if err := c.KeySet.VerifyMany(todo); err != nil {
		return err
	}
	c.add(keys...)
	return nil
}
