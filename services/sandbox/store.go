package sandbox

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble"

	"github.com/tezos-dsn/dsn/internal/pebblefatal"

	"github.com/tezos-dsn/dsn/internal/tezos"
)

// Store layout (pebble). Every level is written by one synced batch with
// its block, its hash index, the counters it changed and the new head, so
// a crash leaves either the whole level or none of it.
//
//	"b" ‖ level u64        → block: hash ‖ predecessor ‖ timestamp i64 ‖ u32 n ‖ (u32 len ‖ operation)*
//	"h" ‖ hash 32          → level u64
//	"c" ‖ tz1 hash 20      → applied counter u64
//	"head"                 → level u64
var (
	keyHead       = []byte("head")
	prefixBlock   = []byte("b")
	prefixHash    = []byte("h")
	prefixCounter = []byte("c")
)

// errCorrupt reports stored bytes this code did not write.
var errCorrupt = errors.New("sandbox: corrupt store")

// store is the sandbox's durable chain. Reads may run concurrently with
// the baker's writes (pebble is safe for that).
//
// A failed write or sync is fatal inside pebble: commit then returns the
// error (pebblefatal), and the sandbox stops with it, never a panic.
type store struct {
	db    *pebble.DB
	fatal *pebblefatal.Signal
}

func openStore(dir string) (*store, error) {
	fatal := pebblefatal.New(dir)
	db, err := pebble.Open(dir, &pebble.Options{Logger: fatal.Logger()})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	return &store{db: db, fatal: fatal}, nil
}

func (s *store) close() error { return s.fatal.Close(s.db.Close) }

func blockKey(level int64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte{}, prefixBlock...), uint64(level))
}

func hashKey(h [32]byte) []byte { return append(append([]byte{}, prefixHash...), h[:]...) }

func counterKey(src [20]byte) []byte { return append(append([]byte{}, prefixCounter...), src[:]...) }

// commit durably writes b (with the counters its operations set) as the
// new head.
func (s *store) commit(b *block) error {
	batch := s.db.NewBatch()
	var u64 [8]byte
	binary.BigEndian.PutUint64(u64[:], uint64(b.level))
	sets := [][2][]byte{{blockKey(b.level), encodeBlock(b)}, {hashKey(b.hash), u64[:]}}
	for _, op := range b.ops {
		var c [8]byte
		binary.BigEndian.PutUint64(c[:], op.Contents.Counter)
		sets = append(sets, [2][]byte{counterKey(op.Contents.Source), c[:]})
	}
	sets = append(sets, [2][]byte{keyHead, u64[:]})
	for _, kv := range sets {
		if err := batch.Set(kv[0], kv[1], nil); err != nil {
			batch.Close()
			return err
		}
	}
	if err := s.fatal.Commit(batch, pebble.Sync); err != nil {
		return fmt.Errorf("commit level %d: %w", b.level, err)
	}
	return nil
}

func (s *store) get(key []byte) ([]byte, bool, error) {
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	out := append([]byte(nil), v...)
	closer.Close()
	return out, true, nil
}

// head returns the stored head level; ok is false on an empty store.
func (s *store) head() (level int64, ok bool, err error) {
	v, ok, err := s.get(keyHead)
	if err != nil || !ok {
		return 0, ok, err
	}
	if len(v) != 8 {
		return 0, false, fmt.Errorf("%w: head is %d bytes", errCorrupt, len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), true, nil
}

// block returns the block at level; ok is false if there is none.
func (s *store) block(level int64) (*block, bool, error) {
	v, ok, err := s.get(blockKey(level))
	if err != nil || !ok {
		return nil, false, err
	}
	b, err := decodeBlock(level, v)
	if err != nil {
		return nil, false, fmt.Errorf("level %d: %w", level, err)
	}
	return b, true, nil
}

// levelOf returns the level of the block with hash h.
func (s *store) levelOf(h [32]byte) (int64, bool, error) {
	v, ok, err := s.get(hashKey(h))
	if err != nil || !ok {
		return 0, false, err
	}
	if len(v) != 8 {
		return 0, false, fmt.Errorf("%w: hash index is %d bytes", errCorrupt, len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), true, nil
}

// counters returns every stored applied counter.
func (s *store) counters() (map[[20]byte]uint64, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefixCounter, UpperBound: []byte{prefixCounter[0] + 1}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := map[[20]byte]uint64{}
	for it.First(); it.Valid(); it.Next() {
		k, v := it.Key(), it.Value()
		if len(k) != 21 || len(v) != 8 {
			return nil, fmt.Errorf("%w: counter entry %x", errCorrupt, k)
		}
		var src [20]byte
		copy(src[:], k[1:])
		out[src] = binary.BigEndian.Uint64(v)
	}
	return out, it.Error()
}

func encodeBlock(b *block) []byte {
	out := make([]byte, 0, 32+32+8+4)
	out = append(out, b.hash[:]...)
	out = append(out, b.predecessor[:]...)
	out = binary.BigEndian.AppendUint64(out, uint64(b.timestamp))
	out = binary.BigEndian.AppendUint32(out, uint32(len(b.ops)))
	for _, op := range b.ops {
		raw := op.Bytes()
		out = binary.BigEndian.AppendUint32(out, uint32(len(raw)))
		out = append(out, raw...)
	}
	return out
}

func decodeBlock(level int64, v []byte) (*block, error) {
	if len(v) < 76 {
		return nil, fmt.Errorf("%w: block is %d bytes", errCorrupt, len(v))
	}
	b := &block{level: level}
	copy(b.hash[:], v[0:32])
	copy(b.predecessor[:], v[32:64])
	b.timestamp = int64(binary.BigEndian.Uint64(v[64:72]))
	n := binary.BigEndian.Uint32(v[72:76])
	rest := v[76:]
	for i := uint32(0); i < n; i++ {
		if len(rest) < 4 {
			return nil, fmt.Errorf("%w: operation %d truncated", errCorrupt, i)
		}
		l := binary.BigEndian.Uint32(rest)
		if uint64(len(rest)-4) < uint64(l) {
			return nil, fmt.Errorf("%w: operation %d truncated", errCorrupt, i)
		}
		op, err := tezos.ParseOperation(rest[4 : 4+l])
		if err != nil {
			return nil, fmt.Errorf("%w: operation %d: %w", errCorrupt, i, err)
		}
		b.ops = append(b.ops, op)
		rest = rest[4+l:]
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errCorrupt, len(rest))
	}
	return b, nil
}
