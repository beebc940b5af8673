package pebblefatal

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
	"github.com/cockroachdb/pebble/vfs/errorfs"
)

// full fails every write with ENOSPC once armed.
type full struct{ armed atomic.Bool }

func (f *full) MaybeError(op errorfs.Op, path string) error {
	if !f.armed.Load() {
		return nil
	}
	switch op {
	case errorfs.OpCreate, errorfs.OpFileWrite, errorfs.OpFileWriteAt, errorfs.OpFilePreallocate, errorfs.OpFileSync:
		return &os.PathError{Op: "write", Path: path, Err: syscall.ENOSPC}
	}
	return nil
}

// A commit that pebble cannot write (the disk is full) returns the fatal
// error, naming the directory and the cause, instead of panicking; nothing
// is committed after it, and Close returns.
func TestFullDiskIsAnErrorNotAPanic(t *testing.T) {
	// A small write fails in the WAL (pebble calls Fatalf); a large one
	// makes pebble rotate the WAL, and the new one cannot be created
	// (pebble panics).
	for _, size := range []int{100, 1 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) { fullDisk(t, size) })
	}
}

func fullDisk(t *testing.T, size int) {
	dir := t.TempDir()
	inj := &full{}
	sig := New(dir)
	db, err := pebble.Open(dir, &pebble.Options{FS: errorfs.Wrap(vfs.Default, inj), Logger: sig.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	b := db.NewBatch()
	b.Set([]byte("k"), []byte("v"), nil)
	if err := sig.Commit(b, pebble.Sync); err != nil {
		t.Fatalf("a healthy commit: %v", err)
	}
	inj.armed.Store(true)
	b = db.NewBatch()
	b.Set([]byte("k2"), make([]byte, size), nil)
	err = sig.Commit(b, pebble.Sync)
	if err == nil {
		t.Fatal("a commit on a full disk succeeded")
	}
	for _, want := range []string{dir, "no space left on device"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error %q does not name %q", err, want)
		}
	}
	if _, ferr := sig.Fatal(); ferr == nil || !errors.Is(ferr, syscall.ENOSPC) && !strings.Contains(ferr.Error(), "no space") {
		t.Fatalf("fatal error recorded: %v", ferr)
	}
	b = db.NewBatch()
	b.Set([]byte("k3"), []byte("v"), nil)
	if err := sig.Commit(b, pebble.Sync); err == nil {
		t.Fatal("a commit after the fatal error succeeded")
	}
	sig.Close(db.Close) // returns, within its bound, whatever pebble holds
}
