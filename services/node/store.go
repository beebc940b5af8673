package node

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble"

	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/store"
)

// pebbleStore is the node's durable store: store.Reader for the cores, and
// Apply for their writes (one synced batch per call).
type pebbleStore struct {
	mu     sync.RWMutex // readers outside the event loop (Export) may race Close
	db     *pebble.DB
	closed bool
}

func openStore(dir string) (*pebbleStore, error) {
	// NB: batches dominate the writes (every node stores every batch). A
	// larger memtable and a higher L0 stop threshold keep compactions from
	// stalling the event loop's synced writes under load.
	db, err := pebble.Open(dir, &pebble.Options{
		Logger:                      quietLogger{},
		MemTableSize:                64 << 20,
		MemTableStopWritesThreshold: 4,
		L0CompactionThreshold:       4,
		L0StopWritesThreshold:       64,
	})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	return &pebbleStore{db: db}, nil
}

// Get implements store.Reader. A read error other than "not found" means the
// node cannot trust its own state: it panics, and the node stops.
func (s *pebbleStore) Get(key []byte) ([]byte, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, false
	}
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false
	}
	if err != nil {
		panic(fmt.Sprintf("node: store read %x: %v", key, err))
	}
	out := append([]byte(nil), v...)
	closer.Close()
	return out, true
}

// Size returns the length of key's value without copying it.
func (s *pebbleStore) Size(key []byte) (int, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, false
	}
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, false
	}
	if err != nil {
		panic(fmt.Sprintf("node: store read %x: %v", key, err))
	}
	n := len(v)
	closer.Close()
	return n, true
}

// Scan implements store.Reader.
func (s *pebbleStore) Scan(start, end []byte, fn func(k, v []byte) bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: start, UpperBound: end})
	if err != nil {
		panic(fmt.Sprintf("node: store scan: %v", err))
	}
	for ok := it.First(); ok; ok = it.Next() {
		if !fn(it.Key(), it.Value()) {
			break
		}
	}
	if err := it.Close(); err != nil {
		panic(fmt.Sprintf("node: store scan: %v", err))
	}
}

// Apply writes ws as one atomic batch and syncs it to disk.
func (s *pebbleStore) Apply(ws []store.Write) error {
	if len(ws) == 0 {
		return nil
	}
	b := s.db.NewBatch()
	for _, w := range ws {
		var err error
		if w.Delete {
			err = b.Delete(w.Key, nil)
		} else {
			err = b.Set(w.Key, w.Value, nil)
		}
		if err != nil {
			b.Close()
			return fmt.Errorf("store batch: %w", err)
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("store commit: %w", err)
	}
	return nil
}

func (s *pebbleStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.db.Close()
}

// quietLogger drops pebble's informational chatter; errors still surface
// through return values.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("pebble: "+format, args...))
}

// loadCertificate returns a stored certificate's canonical bytes and value.
func loadCertificate(st *pebbleStore, d narwhal.Digest) ([]byte, *narwhal.Certificate, error) {
	raw, ok := store.CertificateByDigest(st, d)
	if !ok {
		return nil, nil, fmt.Errorf("certificate %s not stored", d.Short())
	}
	c, err := narwhal.DecodeCertificate(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("stored certificate %s: %w", d.Short(), err)
	}
	return raw, c, nil
}
