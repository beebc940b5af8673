// Package pebblefatal turns pebble's fatal errors into an error a service
// stops on cleanly. Pebble reports a failed WAL write or sync, or a failed
// MANIFEST update, through Logger.Fatalf, which must not return (pebble
// would go on as if the write had succeeded), and panics on a few others
// (a new WAL it cannot create); the usual loggers panic or exit. Here
// Fatalf records the error and parks its goroutine for good, a commit's
// panic is recovered into the same error, and Commit returns that error
// to the caller that was waiting on the write,
// with the directory named, so a service can stop with its cause instead
// of a panic. The consensus node, the rollup node's durable storage and the
// L1 sandbox all open pebble through it.
package pebblefatal

import (
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
)

// Signal holds a store's first fatal error.
type Signal struct {
	dir  string
	once sync.Once
	err  error
	ch   chan struct{} // closed once err is set
	// commit lets one commit at a time into pebble, after checking for a
	// fatal error: pebble finds a failed background WAL write only at a
	// later commit, and panics there holding its locks (the store could
	// then never be closed); one commit at a time, checked first, never
	// gets there (see FS).
	commit sync.Mutex
}

// New returns the signal of the store in dir.
func New(dir string) *Signal { return &Signal{dir: dir, ch: make(chan struct{})} }

// Fail records err as the store's fatal error (the first one wins).
func (s *Signal) Fail(err error) {
	s.once.Do(func() {
		s.err = err
		close(s.ch)
	})
}

// FailAndPark records err as fatal and never returns: for a goroutine that
// cannot go on (pebble's Fatalf, a read a core cannot do without).
func (s *Signal) FailAndPark(err error) {
	s.Fail(err)
	select {}
}

// Fatal returns a channel closed after a fatal error, and that error once
// it is closed (nil before).
func (s *Signal) Fatal() (<-chan struct{}, error) {
	select {
	case <-s.ch:
		return s.ch, s.err
	default:
		return s.ch, nil
	}
}

// Logger is pebble's logger for the store: informational messages are
// dropped (errors surface through return values) and Fatalf parks.
func (s *Signal) Logger() pebble.Logger { return logger{s} }

type logger struct{ s *Signal }

func (logger) Infof(string, ...any)  {}
func (logger) Errorf(string, ...any) {}
func (l logger) Fatalf(format string, args ...any) {
	l.s.FailAndPark(fmt.Errorf("store in %s: %s", l.s.dir, fmt.Sprintf(format, args...)))
}

// Commit commits b with opts and returns its error, or the store's fatal
// error if pebble parked the commit (the commit runs on a goroutine of its
// own, so that the caller, and any lock it holds, is released). It takes
// b: the batch is closed once its commit returns. After a fatal error
// nothing more is committed. Commits are let into pebble one at a time.
func (s *Signal) Commit(b *pebble.Batch, opts *pebble.WriteOptions) error {
	s.commit.Lock()
	defer s.commit.Unlock()
	if _, err := s.Fatal(); err != nil {
		b.Close()
		return err
	}
	return s.run(func() error {
		err := b.Commit(opts)
		b.Close()
		return err
	})
}

// CommitSync commits b synced, like Commit with pebble.Sync, but holds the
// other commits back only until b is in the WAL, not while the WAL syncs
// (pebble's ApplyNoSyncWait, then Batch.SyncWait). A failed sync is fatal.
func (s *Signal) CommitSync(db *pebble.DB, b *pebble.Batch) error {
	s.commit.Lock()
	if _, err := s.Fatal(); err != nil {
		s.commit.Unlock()
		b.Close()
		return err
	}
	err := s.run(func() error { return db.ApplyNoSyncWait(b, pebble.Sync) })
	s.commit.Unlock()
	if err != nil {
		return err // b is not closed: pebble may still hold it
	}
	return s.run(func() error {
		err := b.SyncWait()
		b.Close()
		if err != nil {
			err = fmt.Errorf("sync: %w", err)
			s.Fail(fmt.Errorf("store in %s: %w", s.dir, err))
		}
		return err
	})
}

// run runs a commit step on a goroutine of its own and waits for it or for
// a fatal error. A panic inside pebble is that fatal error.
func (s *Signal) run(step func() error) error {
	done := make(chan error, 1)
	go func() {
		defer func() {
			// Some failures panic inside pebble instead of calling Fatalf
			// (a WAL that cannot be created when the memtable rotates): the
			// store is as dead, and the caller gets the same kind of error.
			if r := recover(); r != nil {
				s.Fail(fmt.Errorf("store in %s: panic in commit: %v\n%s", s.dir, r, debug.Stack()))
			}
		}()
		done <- step()
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("store in %s: commit: %w", s.dir, err)
		}
		return nil
	case <-s.ch:
		return s.err
	}
}

// closeAfterFatal bounds Close after a fatal error: a goroutine parked
// inside the store may hold its lock or pebble's, and the process is about
// to exit.
const closeAfterFatal = 5 * time.Second

// Close runs closeFn (which closes the store); after a fatal error it gives
// up after closeAfterFatal and leaves the store open (pebble's lock stays
// held until the process exits).
func (s *Signal) Close(closeFn func() error) error {
	if _, fatal := s.Fatal(); fatal == nil {
		return closeFn()
	}
	done := make(chan error, 1)
	go func() { done <- closeFn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(closeAfterFatal):
		return fmt.Errorf("store in %s: close after a fatal error did not finish in %s", s.dir, closeAfterFatal)
	}
}

// FS wraps fs so that a failed write or sync of a WAL file (name *.log) is
// the store's fatal error at once, on the goroutine that hit it. Pebble
// writes unsynced WAL data in the background and finds such an error only
// at a later commit, which then panics holding the store's locks (it can
// no longer be closed, and its lock stays held until the process exits);
// with the signal set first, Commit refuses the commits after it.
func (s *Signal) FS(fs vfs.FS) vfs.FS { return walFS{FS: fs, s: s} }

type walFS struct {
	vfs.FS
	s *Signal
}

func (w walFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return walFile{File: f, s: w.s, name: name}, nil
}

func (w walFS) Create(name string) (vfs.File, error) {
	f, err := w.FS.Create(name)
	return w.wrap(name, f, err)
}

func (w walFS) ReuseForWrite(oldname, newname string) (vfs.File, error) {
	f, err := w.FS.ReuseForWrite(oldname, newname)
	return w.wrap(newname, f, err)
}

type walFile struct {
	vfs.File
	s    *Signal
	name string
}

func (f walFile) fail(err error) error {
	if err != nil {
		f.s.Fail(fmt.Errorf("store in %s: WAL %s: %w", f.s.dir, f.name, err))
	}
	return err
}

func (f walFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	return n, f.fail(err)
}

func (f walFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(p, off)
	return n, f.fail(err)
}

func (f walFile) Sync() error     { return f.fail(f.File.Sync()) }
func (f walFile) SyncData() error { return f.fail(f.File.SyncData()) }

func (f walFile) SyncTo(length int64) (bool, error) {
	full, err := f.File.SyncTo(length)
	return full, f.fail(err)
}
