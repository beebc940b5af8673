package da

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
)

// Store is the key-value space a Reassembler keeps its state in: the
// kernel's durable storage under a prefix, or a map in tests. Values may be
// of any size.
type Store interface {
	Get(key string) ([]byte, bool)
	Put(key string, value []byte)
	Delete(key string)
}

// Config bounds a Reassembler.
type Config struct {
	// ExpiryLevels: a submission not complete this many levels after its
	// first chunk is dropped; a completed one is remembered as long, so a
	// replay in that window is ignored cheaply.
	ExpiryLevels uint32
	// MaxPendingBytes bounds the chunk bytes held for incomplete submissions.
	MaxPendingBytes uint64
	// MaxSubmissions bounds the submissions pending or remembered at once.
	MaxSubmissions int
	// MaxSubmissionBytes bounds one submission's payload.
	MaxSubmissionBytes uint32
}

// DefaultConfig keeps an incomplete submission for 450 levels (an hour of
// 8-second Tezos blocks), at most 64 MiB of pending chunks, 4096
// submissions and 16 MiB per submission.
func DefaultConfig() Config {
	return Config{ExpiryLevels: 450, MaxPendingBytes: 64 << 20, MaxSubmissions: 4096, MaxSubmissionBytes: 16 << 20}
}

// Reassembler collects chunks into submissions. Its whole state is in the
// Store, so a kernel builds a new one on every kernel_run.
//
// Keys: "q" holds the queue of (first level, id, done flag) in arrival
// order, for expiry; "b" the pending byte count; "p/<id>" a pending
// submission's meta (length, count, received); "p/<id>/<i>" its chunks;
// "d/<id>" marks a completed submission.
type Reassembler struct {
	st  Store
	cfg Config
}

// NewReassembler reads its state from st.
func NewReassembler(st Store, cfg Config) *Reassembler { return &Reassembler{st: st, cfg: cfg} }

const entrySize = 4 + 32 + 1 // level, id, done

type entry struct {
	level uint32
	id    ID
	done  bool
}

func (r *Reassembler) queue() []entry {
	raw, _ := r.st.Get("q")
	out := make([]entry, 0, len(raw)/entrySize)
	for len(raw) >= entrySize {
		e := entry{level: binary.BigEndian.Uint32(raw), done: raw[36] == 1}
		copy(e.id[:], raw[4:36])
		out = append(out, e)
		raw = raw[entrySize:]
	}
	return out
}

func (r *Reassembler) setQueue(q []entry) {
	raw := make([]byte, 0, len(q)*entrySize)
	for _, e := range q {
		raw = binary.BigEndian.AppendUint32(raw, e.level)
		raw = append(raw, e.id[:]...)
		d := byte(0)
		if e.done {
			d = 1
		}
		raw = append(raw, d)
	}
	r.st.Put("q", raw)
}

func (r *Reassembler) pendingBytes() uint64 {
	raw, ok := r.st.Get("b")
	if !ok || len(raw) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(raw)
}

func (r *Reassembler) setPendingBytes(n uint64) { r.st.Put("b", binary.BigEndian.AppendUint64(nil, n)) }

func key(id ID) string                { return "p/" + hex.EncodeToString(id[:]) }
func chunkKey(id ID, i uint16) string { return key(id) + "/" + strconv.Itoa(int(i)) }
func doneKey(id ID) string            { return "d/" + hex.EncodeToString(id[:]) }

// Add takes one chunk that arrived at level. When it completes its
// submission and the payload's digest checks, Add returns the payload (once
// per submission while it is remembered). A duplicate chunk returns nil,
// nil; a chunk that breaks a rule returns an error and changes nothing,
// except that a digest failure drops the whole submission.
func (r *Reassembler) Add(level uint32, c Chunk) ([]byte, error) {
	if _, done := r.st.Get(doneKey(c.ID)); done {
		return nil, nil // a replay of a completed submission
	}
	if c.Length > r.cfg.MaxSubmissionBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, c.Length, r.cfg.MaxSubmissionBytes)
	}
	if c.Count == 1 { // the common small case never touches pending space
		if Digest(c.Data) != c.ID {
			return nil, ErrDigest
		}
		if err := r.remember(level, c.ID, true); err != nil {
			return nil, err
		}
		r.st.Put(doneKey(c.ID), nil)
		return c.Data, nil
	}
	meta, ok := r.st.Get(key(c.ID))
	var received uint16
	if ok {
		if len(meta) != 8 || binary.BigEndian.Uint32(meta) != c.Length || binary.BigEndian.Uint16(meta[4:]) != c.Count {
			return nil, fmt.Errorf("%w: length or count differ", ErrConflict)
		}
		received = binary.BigEndian.Uint16(meta[6:])
		if old, ok := r.st.Get(chunkKey(c.ID, c.Index)); ok {
			if string(old) != string(c.Data) {
				return nil, fmt.Errorf("%w: chunk %d", ErrConflict, c.Index)
			}
			return nil, nil // duplicate
		}
	}
	if r.pendingBytes()+uint64(len(c.Data)) > r.cfg.MaxPendingBytes {
		return nil, fmt.Errorf("%w: %d pending bytes", ErrFull, r.pendingBytes())
	}
	if !ok {
		if err := r.remember(level, c.ID, false); err != nil {
			return nil, err
		}
	}
	r.st.Put(chunkKey(c.ID, c.Index), c.Data)
	r.setPendingBytes(r.pendingBytes() + uint64(len(c.Data)))
	received++
	if received < c.Count {
		r.st.Put(key(c.ID), metaOf(c.Length, c.Count, received))
		return nil, nil
	}
	payload := make([]byte, 0, c.Length)
	for i := range c.Count {
		part, _ := r.st.Get(chunkKey(c.ID, i))
		payload = append(payload, part...)
	}
	r.drop(c.ID, c.Count)
	if Digest(payload) != c.ID {
		r.forget(c.ID)
		return nil, ErrDigest
	}
	r.st.Put(doneKey(c.ID), nil)
	r.markDone(c.ID)
	return payload, nil
}

func metaOf(length uint32, count, received uint16) []byte {
	m := binary.BigEndian.AppendUint32(nil, length)
	m = binary.BigEndian.AppendUint16(m, count)
	return binary.BigEndian.AppendUint16(m, received)
}

// remember queues a new submission for expiry.
func (r *Reassembler) remember(level uint32, id ID, done bool) error {
	q := r.queue()
	if len(q) >= r.cfg.MaxSubmissions {
		return fmt.Errorf("%w: %d submissions", ErrFull, len(q))
	}
	r.setQueue(append(q, entry{level: level, id: id, done: done}))
	return nil
}

func (r *Reassembler) markDone(id ID) {
	q := r.queue()
	for i := range q {
		if q[i].id == id {
			q[i].done = true
		}
	}
	r.setQueue(q)
}

func (r *Reassembler) forget(id ID) {
	q := r.queue()
	kept := q[:0]
	for _, e := range q {
		if e.id != id {
			kept = append(kept, e)
		}
	}
	r.setQueue(kept)
}

// drop deletes a pending submission's chunks and meta.
func (r *Reassembler) drop(id ID, count uint16) {
	var freed uint64
	for i := range count {
		if part, ok := r.st.Get(chunkKey(id, i)); ok {
			freed += uint64(len(part))
			r.st.Delete(chunkKey(id, i))
		}
	}
	r.st.Delete(key(id))
	if b := r.pendingBytes(); b >= freed {
		r.setPendingBytes(b - freed)
	} else {
		r.setPendingBytes(0)
	}
}

// Expire drops the incomplete submissions first seen ExpiryLevels or more
// before level, and forgets the completed ones as old. Call it once per
// level, before its chunks.
func (r *Reassembler) Expire(level uint32) {
	q := r.queue()
	n := 0
	for n < len(q) && uint64(q[n].level)+uint64(r.cfg.ExpiryLevels) <= uint64(level) {
		e := q[n]
		if e.done {
			r.st.Delete(doneKey(e.id))
		} else if meta, ok := r.st.Get(key(e.id)); ok && len(meta) == 8 {
			r.drop(e.id, binary.BigEndian.Uint16(meta[4:]))
		}
		n++
	}
	if n > 0 {
		r.setQueue(q[n:])
	}
}

// Pending reports the incomplete submissions and their bytes, for metrics
// and tests.
func (r *Reassembler) Pending() (submissions int, bytes uint64) {
	for _, e := range r.queue() {
		if !e.done {
			submissions++
		}
	}
	return submissions, r.pendingBytes()
}
