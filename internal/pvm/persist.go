package pvm

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble"

	"github.com/tezos-dsn/dsn/internal/pebblefatal"
)

// On disk, the value at durable path P is stored under key "v" ‖ P; the
// last committed level and state hash under "m/level" and "m/hash"; the
// records of CommitWith under "r" ‖ key. A
// subtree is the key range ["v" ‖ P, "v" ‖ P ‖ "/" … "v" ‖ P ‖ "0"), since
// '/' is the byte before '0' and no path byte lies between them.

func valueKey(path string) []byte { return append([]byte{'v'}, path...) }

// recordKey is where CommitWith puts a caller's record k ("r" ‖ k).
func recordKey(k string) []byte { return append([]byte{'r'}, k...) }

// ReadRecord returns a record written by CommitWith.
func (d *Durable) ReadRecord(k string) ([]byte, bool, error) {
	if d.db == nil {
		return nil, false, nil
	}
	v, closer, err := d.db.Get(recordKey(k))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer closer.Close()
	return append([]byte(nil), v...), true, nil
}

var (
	keyLevel = []byte("m/level")
	keyHash  = []byte("m/hash")
)

// OpenDurable loads durable storage persisted in dir (empty if new) and
// returns it with the last committed level (0 if none).
func OpenDurable(dir string) (*Durable, uint32, error) {
	fatal := pebblefatal.New(dir)
	db, err := pebble.Open(dir, &pebble.Options{Logger: fatal.Logger()})
	if err != nil {
		return nil, 0, fmt.Errorf("open durable storage %s: %w", dir, err)
	}
	d := NewDurable()
	d.fatal = fatal
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{'v'}, UpperBound: []byte{'w'}})
	if err != nil {
		db.Close()
		return nil, 0, err
	}
	for ok := it.First(); ok; ok = it.Next() {
		path := string(it.Key()[1:])
		if segs, code := splitPath(path); code == 0 && len(segs) > 0 {
			n := d.make(segs)
			n.value, n.hasValue = append([]byte(nil), it.Value()...), true
		}
	}
	if err := it.Close(); err != nil {
		db.Close()
		return nil, 0, err
	}
	var level uint32
	if v, closer, err := db.Get(keyLevel); err == nil {
		level = binary.BigEndian.Uint32(v)
		closer.Close()
	} else if !errors.Is(err, pebble.ErrNotFound) {
		db.Close()
		return nil, 0, err
	}
	if v, closer, err := db.Get(keyHash); err == nil {
		var want [32]byte
		copy(want[:], v)
		closer.Close()
		if d.Hash() != want {
			db.Close()
			return nil, 0, fmt.Errorf("durable storage %s: state hash does not match the committed one", dir)
		}
	}
	d.db = db
	return d, level, nil
}

// Commit persists the changes since the last commit, the level and the
// state hash in one atomic, synced batch. Without a database it only
// forgets the journal.
func (d *Durable) Commit(level uint32) error { return d.CommitWith(level, nil) }

// CommitWith is Commit with the caller's own records (key → value, in the
// separate space that ReadRecord reads) written in the same atomic batch:
// a rollup node's level record lands exactly when the level's state does.
func (d *Durable) CommitWith(level uint32, records map[string][]byte) error {
	if d.db == nil {
		d.journal = d.journal[:0]
		return nil
	}
	b := d.db.NewBatch()
	committing := false
	defer func() {
		if !committing { // Commit takes the batch
			b.Close()
		}
	}()
	for k, v := range records {
		if err := b.Set(recordKey(k), v, nil); err != nil {
			return err
		}
	}
	for _, c := range d.journal {
		segs, _ := splitPath(c.path)
		if c.tree {
			// Clear the subtree, then write its final values.
			lo := valueKey(c.path + "/")
			hi := valueKey(c.path + "0")
			if err := b.DeleteRange(lo, hi, nil); err != nil {
				return err
			}
			if err := b.Delete(valueKey(c.path), nil); err != nil {
				return err
			}
			var werr error
			d.Walk(c.path, func(p string, v []byte) {
				if werr == nil {
					werr = b.Set(valueKey(p), v, nil)
				}
			})
			if werr != nil {
				return werr
			}
			continue
		}
		if n := d.find(segs); n != nil && n.hasValue {
			if err := b.Set(valueKey(c.path), n.value, nil); err != nil {
				return err
			}
		} else if err := b.Delete(valueKey(c.path), nil); err != nil {
			return err
		}
	}
	var lv [4]byte
	binary.BigEndian.PutUint32(lv[:], level)
	h := d.Hash()
	if err := b.Set(keyLevel, lv[:], nil); err != nil {
		return err
	}
	if err := b.Set(keyHash, h[:], nil); err != nil {
		return err
	}
	// A failed write or sync is fatal inside pebble: the error comes back
	// here (pebblefatal), and the caller stops, never a panic.
	committing = true
	if err := d.fatal.Commit(b, pebble.Sync); err != nil {
		return fmt.Errorf("commit durable storage: %w", err)
	}
	d.journal = d.journal[:0]
	return nil
}

// Close closes the database, if any.
func (d *Durable) Close() error {
	if d.db == nil {
		return nil
	}
	err := d.fatal.Close(d.db.Close)
	d.db = nil
	return err
}
