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
	"sync"
	"time"

	"github.com/cockroachdb/pebble"
)

// Signal holds a store's first fatal error.
type Signal struct {
	dir  string
	once sync.Once
	err  error
	ch   chan struct{} // closed once err is set
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
// nothing more is committed.
func (s *Signal) Commit(b *pebble.Batch, opts *pebble.WriteOptions) error {
	if _, err := s.Fatal(); err != nil {
		b.Close()
		return err
	}
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
		err := b.Commit(opts)
		b.Close()
		done <- err
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
