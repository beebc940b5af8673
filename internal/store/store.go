// Package store defines the storage seam of a consensus node: the key-value
// Reader the protocol cores read from, the Writes they emit, the key schema
// every component shares, and an in-memory implementation that can crash
// (for the deterministic simulator and tests).
//
// Contract (persist before send): a core never writes directly. Each step
// returns Writes with its messages; the runtime applies the writes as one
// atomic, synced batch BEFORE it sends the step's messages or acknowledges
// anything. A core may read back what an earlier step wrote. services/node
// implements Reader and Apply on pebble.
package store

import (
	"bytes"
	"encoding/binary"
	"sort"
)

// Reader is the read side of the node's store. Reads never fail from the
// core's point of view: an implementation whose disk fails must stop the
// process, because a node that cannot read its own state must not go on.
type Reader interface {
	// Get returns the value of key and whether it exists.
	Get(key []byte) ([]byte, bool)
	// Scan calls fn for each key in [start, end) in ascending order until fn
	// returns false. fn must not retain k or v.
	Scan(start, end []byte, fn func(k, v []byte) bool)
}

// Write is one put (Delete false) or delete of a key.
type Write struct {
	Key    []byte
	Value  []byte
	Delete bool
}

// Put returns a put write.
func Put(key, value []byte) Write { return Write{Key: key, Value: value} }

// Del returns a delete write.
func Del(key []byte) Write { return Write{Key: key, Delete: true} }

// Key prefixes. One byte each; the rest of the key is fixed-width big-endian
// so that byte order is numeric order.
const (
	PrefixBatch        = 'b' // b | digest            -> canonical batch
	PrefixPending      = 'p' // p | seq u64           -> own batch digest sealed but not yet committed
	PrefixLastProposed = 'h' // h                     -> canonical header this node last proposed
	// 'v' held the last vote per author; votes now live in the signing
	// record (primary.Signed), and older stores' 'v' keys are ignored.
	PrefixCertificate = 'c' // c | round u64 | author u16 -> canonical certificate
	PrefixCertDigest  = 'd' // d | digest            -> round u64 | author u16
	PrefixSubDAG      = 's' // s | index u64         -> committed sub-DAG record
	PrefixConsensus   = 'w' // w                     -> Bullshark state (watermarks, last index)
	PrefixMissing     = 'm' // m | digest            -> author u16 | round u64: a batch of a committed certificate not stored yet
	PrefixAudited     = 'a' // a                     -> index u64: committed sub-DAGs up to it have every batch stored or marked missing
	PrefixGroup       = 'g' // g                     -> u64: the runtime's count of synced write groups (checked against its signing record)
)

// GroupKey names the runtime's write-group count.
func GroupKey() []byte { return []byte{PrefixGroup} }

// BatchKey names a stored batch.
func BatchKey(digest [32]byte) []byte { return append([]byte{PrefixBatch}, digest[:]...) }

// BatchOf returns the digest a BatchKey names, if key is one.
func BatchOf(key []byte) (digest [32]byte, ok bool) {
	if len(key) != 1+len(digest) || key[0] != PrefixBatch {
		return digest, false
	}
	return [32]byte(key[1:]), true
}

// PendingKey names the seq-th pending digest.
func PendingKey(seq uint64) []byte { return binary.BigEndian.AppendUint64([]byte{PrefixPending}, seq) }

// LastProposedKey names the last proposed header.
func LastProposedKey() []byte { return []byte{PrefixLastProposed} }

// CertificateKey names the certificate of (round, author).
func CertificateKey(round uint64, author uint16) []byte {
	k := binary.BigEndian.AppendUint64([]byte{PrefixCertificate}, round)
	return binary.BigEndian.AppendUint16(k, author)
}

// CertDigestKey names the (round, author) index entry of a certificate digest.
func CertDigestKey(digest [32]byte) []byte { return append([]byte{PrefixCertDigest}, digest[:]...) }

// SubDAGKey names the committed sub-DAG with this index.
func SubDAGKey(index uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{PrefixSubDAG}, index)
}

// MissingKey marks a batch that a committed certificate names and this node
// does not store yet: the worker fetches it until it is stored, whatever the
// GC horizon, and deletes the mark in the same write as the batch.
func MissingKey(digest [32]byte) []byte { return append([]byte{PrefixMissing}, digest[:]...) }

// AuditedKey names the index up to which committed sub-DAGs were checked
// for missing batches (written with every commit; a store without it is
// audited in full at start).
func AuditedKey() []byte { return []byte{PrefixAudited} }

// ConsensusKey names the Bullshark state record.
func ConsensusKey() []byte { return []byte{PrefixConsensus} }

// CertificateByDigest returns the canonical bytes of the stored certificate
// with this digest, through its digest index.
func CertificateByDigest(st Reader, digest [32]byte) ([]byte, bool) {
	idx, ok := st.Get(CertDigestKey(digest))
	if !ok || len(idx) != 10 {
		return nil, false
	}
	return st.Get(CertificateKey(binary.BigEndian.Uint64(idx), binary.BigEndian.Uint16(idx[8:])))
}

// PrefixEnd returns the smallest key greater than every key with prefix p.
func PrefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil // no upper bound
}

// Memory is an in-memory store. Apply is atomic and "synced"; Crash drops
// nothing because everything applied was synced — the simulator models a
// crash by discarding the node's core and rebuilding it from Memory, so only
// applied writes survive. Not safe for concurrent use.
type Memory struct {
	m map[string][]byte
}

// NewMemory returns an empty store.
func NewMemory() *Memory { return &Memory{m: make(map[string][]byte)} }

// Get implements Reader.
func (s *Memory) Get(key []byte) ([]byte, bool) {
	v, ok := s.m[string(key)]
	return v, ok
}

// Scan implements Reader.
func (s *Memory) Scan(start, end []byte, fn func(k, v []byte) bool) {
	keys := make([]string, 0)
	for k := range s.m {
		if bytes.Compare([]byte(k), start) >= 0 && (end == nil || bytes.Compare([]byte(k), end) < 0) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !fn([]byte(k), s.m[k]) {
			return
		}
	}
}

// Apply applies writes atomically.
func (s *Memory) Apply(ws []Write) {
	for _, w := range ws {
		if w.Delete {
			delete(s.m, string(w.Key))
		} else {
			s.m[string(w.Key)] = append([]byte(nil), w.Value...)
		}
	}
}

// Len returns the number of keys.
func (s *Memory) Len() int { return len(s.m) }
