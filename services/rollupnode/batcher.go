package rollupnode

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"golang.org/x/crypto/blake2b"

	"github.com/tezos-dsn/dsn/internal/tezos"
)

// The batcher, as octez's: messages injected through
// /local/batcher/injection wait in a queue (pending_batch), are packed in
// order into add_messages operations of at most max_batch_size bytes, one
// per batching key per L1 block, signed and injected into the L1
// (injected), and are marked included when the operation shows up in a
// processed level. An operation that has not shown up after reinject_after
// levels is sent again, the same messages from the same key: while the
// first is still in the L1's mempool the L1 refuses a second operation of
// the source, so a message is re-sent only once the first operation is
// gone, and never twice into the inbox. The queue lives in memory, as in
// octez: a poster re-posts what the rollup has not applied.

// MaxMessageSize is the largest message the batcher takes: an inbox
// message is at most 4096 bytes with its 0x01 external tag.
const MaxMessageSize = tezos.MaxMessageSize - 1

// Message statuses (octez's names).
const (
	statusPendingBatch = "pending_batch"
	statusInjected     = "injected"
	statusIncluded     = "included"
)

// maxKept bounds the messages whose status is remembered (oldest
// included ones are forgotten first).
const maxKept = 1 << 20

type message struct {
	id      string
	content []byte
	counter uint64
	status  string
	op      *flight
	opIndex int
	level   uint32 // included at
	block   string
}

// flight is one injected operation waiting for its block.
type flight struct {
	hash       string
	msgs       []*message
	injectedAt uint32 // L1 head level at injection
	key        *batchKey
}

type batchKey struct {
	priv     ed25519.PrivateKey
	pkh      [20]byte
	inflight *flight
}

type batcher struct {
	cfg Config
	l1  *l1
	log *slog.Logger
	m   *metrics

	mu      sync.Mutex
	keys    []*batchKey
	queue   []*message // in injection order
	byID    map[string]*message
	done    []*message // included, in inclusion order, for forgetting
	counter uint64
	wake    chan struct{} // signalled when messages are queued
}

func newBatcher(cfg Config, c *l1, log *slog.Logger, m *metrics) (*batcher, error) {
	b := &batcher{cfg: cfg, l1: c, log: log, m: m, byID: map[string]*message{}, wake: make(chan struct{}, 1)}
	for _, k := range cfg.BatchingKeys {
		priv, err := readKey(k)
		if err != nil {
			return nil, err
		}
		b.keys = append(b.keys, &batchKey{priv: priv, pkh: tezos.PublicKeyHash(priv.Public().(ed25519.PublicKey))})
	}
	return b, nil
}

// Errors of inject.
var (
	ErrNoBatcher      = errors.New("rollupnode: this node has no batching key")
	ErrMessageTooLong = fmt.Errorf("rollupnode: message longer than %d bytes", MaxMessageSize)
)

// inject queues messages and returns their ids (scmsg…). With
// dropDuplicate, a message whose content is already known (queued,
// injected or included) is not queued again and gets the known id.
func (b *batcher) inject(msgs [][]byte, dropDuplicate bool) ([]string, error) {
	if len(b.keys) == 0 {
		return nil, ErrNoBatcher
	}
	for i, m := range msgs {
		if len(m) > MaxMessageSize {
			return nil, fmt.Errorf("%w: message %d has %d", ErrMessageTooLong, i, len(m))
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	ids := make([]string, len(msgs))
	for i, content := range msgs {
		b.counter++
		id := messageID(content, b.counter, dropDuplicate)
		ids[i] = id
		if _, ok := b.byID[id]; ok && dropDuplicate {
			continue
		}
		m := &message{id: id, content: append([]byte(nil), content...), counter: b.counter, status: statusPendingBatch}
		b.byID[id] = m
		b.queue = append(b.queue, m)
	}
	b.m.queued.Set(float64(len(b.queue)))
	select {
	case b.wake <- struct{}{}:
	default:
	}
	return ids, nil
}

// messageID is octez's L2 message id: a hash of the content, with the
// batcher's counter unless duplicates are to be dropped.
func messageID(content []byte, counter uint64, dropDuplicate bool) string {
	h, _ := blake2b.New256(nil)
	if !dropDuplicate {
		h.Write(binary.BigEndian.AppendUint64(nil, counter))
	}
	h.Write(content)
	return tezos.Base58CheckEncode([]byte{0x03, 0xfa, 0xb3, 0xf7, 0xc4}, h.Sum(nil))
}

// included marks the messages of operations found in a processed level.
func (b *batcher) included(in *inboxLevel) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, op := range in.Operations {
		for _, k := range b.keys {
			f := k.inflight
			if f == nil || f.hash != op.Hash {
				continue
			}
			for _, m := range f.msgs {
				m.status, m.level, m.block = statusIncluded, in.Level, in.Hash
				b.done = append(b.done, m)
			}
			k.inflight = nil
			b.m.includedOps.Inc()
		}
	}
	for len(b.done) > maxKept {
		delete(b.byID, b.done[0].id)
		b.done = b.done[1:]
	}
}

// plan is one injection tick decided: a key and the messages it sends,
// a retry of its operation that did not show up, or a new batch.
type plan struct {
	k     *batchKey
	msgs  []*message
	retry *flight
}

// tick injects, after each processed head (the node has caught up with
// the L1, so every operation that was included has been seen): a key
// whose operation has not shown up for reinject_after levels sends the
// same messages again from the same key, and every free key sends the next
// batch from the front of the queue. The decisions are taken under the
// lock, the L1 calls made without it, the outcomes applied under it again;
// tick runs in the node's loop only, so nothing else takes from the queue.
func (b *batcher) tick(ctx context.Context, head header) {
	branch, err := tezos.ParseBlockHash(head.Hash)
	if err != nil {
		b.log.Error("l1 head hash", "hash", head.Hash, "err", err)
		return
	}
	var plans []plan
	b.mu.Lock()
	for _, k := range b.keys {
		switch f := k.inflight; {
		case f != nil && head.Level >= f.injectedAt+b.cfg.ReinjectAfter:
			plans = append(plans, plan{k: k, msgs: f.msgs, retry: f})
		case f == nil && len(b.queue) > 0:
			n, size := 0, 0
			for n < len(b.queue) && size+4+len(b.queue[n].content) <= b.cfg.MaxBatchSize {
				size += 4 + len(b.queue[n].content)
				n++
			}
			batch := b.queue[:n:n]
			b.queue = b.queue[n:]
			plans = append(plans, plan{k: k, msgs: batch})
		}
	}
	b.mu.Unlock()

	type outcome struct {
		hash string
		err  error
	}
	outcomes := make([]outcome, len(plans))
	for i, pl := range plans {
		outcomes[i].hash, outcomes[i].err = b.send(ctx, pl.k, branch, pl.msgs)
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	var back []*message // new batches that were not sent, in order
	for i, pl := range plans {
		o := outcomes[i]
		switch {
		case o.err == nil:
			f := &flight{hash: o.hash, msgs: pl.msgs, injectedAt: head.Level, key: pl.k}
			for j, m := range pl.msgs {
				m.status, m.op, m.opIndex = statusInjected, f, j
			}
			pl.k.inflight = f
			if pl.retry != nil {
				b.log.Warn("operation not included; its messages sent again", "operation", pl.retry.hash, "now", o.hash, "injected_at", pl.retry.injectedAt)
				b.m.reinjected.Inc()
			} else {
				b.m.injectedOps.Inc()
				b.log.Info("operation injected", "operation", o.hash, "source", tezos.EncodeTz1(pl.k.pkh), "messages", len(pl.msgs))
			}
		case pl.retry != nil:
			// Most likely still in the L1's mempool (a second operation
			// of the source is refused): wait another round of levels.
			pl.retry.injectedAt = head.Level
			b.log.Info("operation not included yet; not sent again", "operation", pl.retry.hash, "err", o.err)
		default:
			b.log.Warn("injection failed; will retry", "source", tezos.EncodeTz1(pl.k.pkh), "err", o.err)
			b.m.injectionErrors.Inc()
			back = append(back, pl.msgs...)
		}
	}
	b.queue = append(back, b.queue...)
	b.m.queued.Set(float64(len(b.queue)))
}

// send signs an add_messages operation of msgs from key k on branch, with
// the source's next counter as the L1 has it, and injects it.
func (b *batcher) send(ctx context.Context, k *batchKey, branch [32]byte, msgs []*message) (string, error) {
	counter, err := b.l1.counter(ctx, k.pkh)
	if err != nil {
		return "", err
	}
	op := &tezos.Operation{Branch: branch, Contents: tezos.AddMessages{
		Source: k.pkh, Fee: 1000, Counter: counter + 1, GasLimit: 10_000, StorageLimit: 0}}
	for _, m := range msgs {
		op.Contents.Messages = append(op.Contents.Messages, m.content)
		op.Contents.Fee += uint64(len(m.content))
	}
	op.Sign(k.priv)
	return b.l1.inject(ctx, op.Bytes())
}

// messageStatus is /local/batcher/queue/{id}'s answer.
type messageStatus struct {
	Status    string      `json:"status"`
	Content   string      `json:"content,omitempty"`
	Operation *l1Op       `json:"operation,omitempty"`
	Layer1    *layer1Info `json:"layer1,omitempty"`
	Finalized *bool       `json:"finalized,omitempty"`
	Cemented  *bool       `json:"cemented,omitempty"`
}

type l1Op struct {
	Kind    string   `json:"kind"`
	Message []string `json:"message"`
}

type layer1Info struct {
	OperationHash  string `json:"operation_hash"`
	OperationIndex int    `json:"operation_index"`
	BlockHash      string `json:"block_hash,omitempty"`
	Level          *int32 `json:"level,omitempty"`
}

func (b *batcher) status(id string) messageStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	m, ok := b.byID[id]
	if !ok {
		return messageStatus{Status: "unknown"}
	}
	st := messageStatus{Status: m.status, Content: hexs(m.content)}
	if m.op != nil {
		op := &l1Op{Kind: "add_messages"}
		for _, x := range m.op.msgs {
			op.Message = append(op.Message, hexs(x.content))
		}
		st.Operation = op
		st.Layer1 = &layer1Info{OperationHash: m.op.hash, OperationIndex: 0}
	}
	if m.status == statusIncluded {
		lv := int32(m.level)
		st.Layer1.BlockHash, st.Layer1.Level = m.block, &lv
		// The sandbox has no forks: an included operation is final. There
		// are no commitments, so nothing is cemented.
		t, f := true, false
		st.Finalized, st.Cemented = &t, &f
	}
	return st
}

// queued lists the messages waiting for a batch, as /local/batcher/queue.
func (b *batcher) queued() []queueEntry {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := []queueEntry{}
	for _, m := range b.queue {
		out = append(out, queueEntry{ID: m.id, Message: queueMessage{Content: hexs(m.content), Counter: fmt.Sprint(m.counter)}})
	}
	return out
}

type queueEntry struct {
	ID      string       `json:"id"`
	Message queueMessage `json:"message"`
}

type queueMessage struct {
	Content string `json:"content"`
	Counter string `json:"counter"`
}
