package sandbox

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"

	"golang.org/x/crypto/blake2b"

	"github.com/tezos-dsn/dsn/internal/tezos"
)

// block is one level of the sandbox chain. Level 0 is genesis: no
// operations, its own predecessor (as in octez).
type block struct {
	level       int64
	hash        [32]byte
	predecessor [32]byte
	timestamp   int64 // unix seconds, non-decreasing along the chain
	ops         []*tezos.Operation
}

// blockHash is BLAKE2b-256 of the canonical header: a domain tag, level,
// predecessor, timestamp and the operations' hashes in block order. It is
// ours (octez hashes a shell header with fitness, context, …): only its
// uniqueness and the chaining matter to followers.
func blockHash(level int64, pred [32]byte, ts int64, ops []*tezos.Operation) [32]byte {
	b := make([]byte, 0, 64+32*len(ops))
	b = append(b, "dsn sandbox block"...)
	b = binary.BigEndian.AppendUint64(b, uint64(level))
	b = append(b, pred[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(ts))
	b = binary.BigEndian.AppendUint32(b, uint32(len(ops)))
	for _, op := range ops {
		h := op.Hash()
		b = append(b, h[:]...)
	}
	return blake2b.Sum256(b)
}

// genesisBlock makes level 0 from the per-data-dir chain seed.
func genesisBlock(seed [32]byte, ts int64) *block {
	b := append([]byte("dsn sandbox genesis"), seed[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(ts))
	h := blake2b.Sum256(b)
	return &block{level: 0, hash: h, predecessor: h, timestamp: ts}
}

// rejection is an operation refused at injection, in octez's error shape.
type rejection struct {
	kind string // permanent | temporary | branch
	id   string
	msg  string
}

func (r *rejection) Error() string { return r.id + ": " + r.msg }

// Error ids of rejected operations (the "id" of the 400 body). They are
// octez's where octez has one (the protocol's prefixed "proto.alpha."),
// ours otherwise.
const (
	IDParseError    = "node.prevalidation.parse_error"                                        // not one signed add_messages
	IDOversized     = "node.prevalidation.oversized_operation"                                // > tezos.MaxOperationSize
	IDDuplicate     = "prevalidation.duplicate_operation"                                     // ours: same hash in the mempool or a live block
	IDZeroMessages  = "proto.alpha.smart_rollup_add_zero_messages"                            // empty message list
	IDMessageTooBig = "proto.alpha.sc_rollup_inbox_message_repr.error_encoding_inbox_message" // a message > 4095 bytes
	IDOutdated      = "prevalidation.outdated_operation"                                      // branch not among the last max_operations_ttl blocks
	IDUnknownSource = "proto.alpha.implicit.empty_implicit_contract"                          // source not in accounts
	IDBadSignature  = "proto.alpha.operation.invalid_signature"                               // not signed by the source
	IDCounterPast   = "proto.alpha.contract.counter_in_the_past"                              // counter ≤ applied
	IDCounterFuture = "proto.alpha.contract.counter_in_the_future"                            // counter > applied + 1
	IDConflict      = "prevalidation.operation_conflict"                                      // source already in the mempool
	IDFailure       = "failure"                                                               // a malformed request (octez's generic error)
	IDNotFound      = "not_found"                                                             // ours: an unknown block, level or contract
)

// maxMessagePayload is the largest raw message: the inbox message adds its
// 0x01 tag and must fit in tezos.MaxMessageSize.
const maxMessagePayload = tezos.MaxMessageSize - 1

// chain is the sandbox's pure core: the head, the live window, the applied
// counters and the mempool. It does no I/O and reads no clock; the runtime
// serialises calls (one mutex) and follows the contract
//
//	b := c.propose(now); persist(b); c.apply(b)
//
// so that what followers can see (apply) is always already durable.
type chain struct {
	accounts      map[[20]byte]ed25519.PublicKey
	ttl           int64
	maxBlockBytes int

	head *block
	// live maps the hashes of the last ttl blocks (head included) to their
	// level: the branches an operation may name.
	live map[[32]byte]int64
	// recent holds the last ttl blocks, oldest first, to prune live and
	// included as the window slides.
	recent []*block
	// included maps the hashes of operations in the live window to their
	// level. Older operations cannot come back: their branch is outdated.
	included map[[32]byte]int64
	// counters are the applied counters; an account absent is at 0.
	counters map[[20]byte]uint64

	// mempool holds accepted operations in arrival order; bySource and
	// byHash index it. NB: at most one operation per source, so every
	// mempool operation has counter = applied + 1 and stays valid until it
	// is included or its branch leaves the window.
	mempool  []*tezos.Operation
	bySource map[[20]byte][32]byte
	byHash   map[[32]byte]bool
}

// newChain rebuilds the core from the stored recent blocks (ascending, the
// last being the head, at most ttl of them) and the applied counters.
func newChain(accounts map[[20]byte]ed25519.PublicKey, ttl, maxBlockBytes int, recent []*block, counters map[[20]byte]uint64) *chain {
	if len(recent) == 0 {
		panic("sandbox: chain without a head")
	}
	c := &chain{
		accounts: accounts, ttl: int64(ttl), maxBlockBytes: maxBlockBytes,
		live: map[[32]byte]int64{}, included: map[[32]byte]int64{}, counters: counters,
		bySource: map[[20]byte][32]byte{}, byHash: map[[32]byte]bool{},
	}
	if c.counters == nil {
		c.counters = map[[20]byte]uint64{}
	}
	for _, b := range recent {
		c.push(b)
	}
	return c
}

// push makes b the head and slides the live window.
func (c *chain) push(b *block) {
	c.head = b
	c.recent = append(c.recent, b)
	c.live[b.hash] = b.level
	for _, op := range b.ops {
		c.included[op.Hash()] = b.level
	}
	for int64(len(c.recent)) > c.ttl {
		old := c.recent[0]
		c.recent = c.recent[1:]
		delete(c.live, old.hash)
		for _, op := range old.ops {
			delete(c.included, op.Hash())
		}
	}
}

// counter is the applied counter of source.
func (c *chain) counter(source [20]byte) uint64 { return c.counters[source] }

// inject validates raw operation bytes against the head and adds them to
// the mempool. It returns the operation (nil if it did not decode) and, if
// refused, why. Checks run cheapest first; the signature is checked before
// anything that depends on who the source claims to be.
func (c *chain) inject(raw []byte) (*tezos.Operation, *rejection) {
	if len(raw) > tezos.MaxOperationSize {
		return nil, &rejection{"permanent", IDOversized,
			fmt.Sprintf("Oversized operation (size: %d, max: %d)", len(raw), tezos.MaxOperationSize)}
	}
	op, err := tezos.ParseOperation(raw)
	if err != nil {
		return nil, &rejection{"permanent", IDParseError, "Operation parsing error in prevalidation: " + err.Error()}
	}
	h := op.Hash()
	oh := tezos.EncodeOperationHash(h)
	if c.byHash[h] {
		return op, &rejection{"temporary", IDDuplicate, fmt.Sprintf("Operation %s is already in the mempool", oh)}
	}
	if l, ok := c.included[h]; ok {
		return op, &rejection{"permanent", IDDuplicate, fmt.Sprintf("Operation %s is already included at level %d", oh, l)}
	}
	msgs := op.Contents.Messages
	if len(msgs) == 0 {
		return op, &rejection{"permanent", IDZeroMessages, "Tried to add zero messages to a smart rollup"}
	}
	for i, m := range msgs {
		if len(m) > maxMessagePayload {
			return op, &rejection{"permanent", IDMessageTooBig, fmt.Sprintf(
				"Failed to encode a rollup management protocol inbox message value (message %d: %d bytes, max %d)", i, len(m), maxMessagePayload)}
		}
	}
	if _, ok := c.live[op.Branch]; !ok {
		return op, &rejection{"branch", IDOutdated, fmt.Sprintf(
			"Operation %s is branched on %s, which is not among the last %d blocks", oh, tezos.EncodeBlockHash(op.Branch), c.ttl)}
	}
	src := op.Contents.Source
	pub, ok := c.accounts[src]
	if !ok {
		return op, &rejection{"permanent", IDUnknownSource, fmt.Sprintf("Empty implicit contract (%s)", tezos.EncodeTz1(src))}
	}
	if !op.Verify(pub) {
		return op, &rejection{"permanent", IDBadSignature, "The operation signature is invalid"}
	}
	applied := c.counters[src]
	switch got := op.Contents.Counter; {
	case got <= applied:
		return op, &rejection{"branch", IDCounterPast, fmt.Sprintf(
			"Counter %d already used for contract %s (expected %d)", got, tezos.EncodeTz1(src), applied+1)}
	case got > applied+1:
		return op, &rejection{"temporary", IDCounterFuture, fmt.Sprintf(
			"Counter %d not yet reached for contract %s (expected %d)", got, tezos.EncodeTz1(src), applied+1)}
	}
	if prev, ok := c.bySource[src]; ok {
		return op, &rejection{"temporary", IDConflict, fmt.Sprintf(
			"The operation %s cannot be added because the mempool already contains a conflicting operation (%s from %s)",
			oh, tezos.EncodeOperationHash(prev), tezos.EncodeTz1(src))}
	}
	c.mempool = append(c.mempool, op)
	c.bySource[src] = h
	c.byHash[h] = true
	return op, nil
}

// propose builds the next block at unix time now from the mempool in
// arrival order, up to maxBlockBytes. It stops at the first operation that
// does not fit, so arrival order also holds across blocks. The timestamp
// never goes below the head's (the clock may step back; several levels may
// share a second when block_time < 1s). propose changes nothing.
func (c *chain) propose(now int64) *block {
	b := &block{level: c.head.level + 1, predecessor: c.head.hash, timestamp: max(now, c.head.timestamp)}
	size := 0
	for _, op := range c.mempool {
		n := len(op.Bytes())
		if size+n > c.maxBlockBytes {
			break
		}
		size += n
		b.ops = append(b.ops, op)
	}
	b.hash = blockHash(b.level, b.predecessor, b.timestamp, b.ops)
	return b
}

// apply makes b, the last proposal, the head: its operations' counters are
// applied and they leave the mempool. Mempool operations whose branch left
// the live window are dropped and returned (octez drops them too).
func (c *chain) apply(b *block) (outdated []*tezos.Operation) {
	if b.level != c.head.level+1 || b.predecessor != c.head.hash {
		panic(fmt.Sprintf("sandbox: apply level %d on head %d", b.level, c.head.level))
	}
	for i, op := range b.ops {
		if i >= len(c.mempool) || c.mempool[i] != op {
			panic(fmt.Sprintf("sandbox: level %d was not proposed from the current mempool", b.level))
		}
		c.counters[op.Contents.Source] = op.Contents.Counter
		h := op.Hash()
		delete(c.byHash, h)
		delete(c.bySource, op.Contents.Source)
	}
	c.push(b)
	kept := c.mempool[:0]
	for _, op := range c.mempool[len(b.ops):] {
		if _, ok := c.live[op.Branch]; !ok {
			outdated = append(outdated, op)
			delete(c.byHash, op.Hash())
			delete(c.bySource, op.Contents.Source)
			continue
		}
		kept = append(kept, op)
	}
	// NB: propose takes a prefix of the mempool, so the included
	// operations are exactly its first len(b.ops) entries.
	clear(c.mempool[len(kept):])
	c.mempool = kept
	return outdated
}
