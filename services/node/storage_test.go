package node_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/record"
	"github.com/cockroachdb/pebble/vfs"
	"github.com/cockroachdb/pebble/vfs/errorfs"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
	"github.com/tezos-dsn/dsn/internal/dsnclient"
	"github.com/tezos-dsn/dsn/services/node"
	"github.com/tezos-dsn/dsn/services/node/nodetest"
)

// copyDir copies the files of src into dst (created), flat like a pebble
// directory.
func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	if err := os.RemoveAll(dst); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// newest returns the last file of dir matching pattern.
func newest(t testing.TB, dir, pattern string) string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil || len(m) == 0 {
		t.Fatalf("no %s in %s: %v", pattern, dir, err)
	}
	return m[len(m)-1] // Glob sorts; pebble's numbers are fixed-width
}

// flushTables moves everything in a stopped node's WAL into tables, with
// pebble directly (a node's clean stop leaves recent writes in the WAL).
func flushTables(t testing.TB, dir string) {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{ErrorIfNotExists: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// tearWAL cuts the newest WAL in half, inside a record (checked with
// pebble's record reader: a cut on a record boundary is moved by a byte).
func tearWAL(t testing.TB, dir string) {
	t.Helper()
	path := newest(t, dir, "*.log")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() < 1024 {
		t.Fatalf("%s holds %d bytes: the load did not reach the WAL", path, fi.Size())
	}
	for cut := fi.Size() / 2; ; cut++ {
		if err := os.Truncate(path, cut); err != nil {
			t.Fatal(err)
		}
		if walTorn(t, path) {
			return
		}
	}
}

func walTorn(t testing.TB, path string) bool {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	num, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(path), ".log"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	r := record.NewReader(f, pebble.FileNum(num))
	for {
		rr, err := r.Next()
		if err == nil {
			_, err = io.Copy(io.Discard, rr)
		}
		if errors.Is(err, io.EOF) {
			return false
		}
		if err != nil {
			return true
		}
	}
}

// Each damage done to a stopped node's store (the faults of issue 15) ends
// in a refusal to start that names the data directory, the file and the
// remedy — never in a node that starts, and never in a rewrite of the
// damaged store. The undamaged copy then starts and catches up.
func TestStartRefusesDamagedStore(t *testing.T) {
	cl := nodetest.Start(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	txs := makeTxs("load", 2000, 200)
	if _, err := cl.SubmitAll(ctx, []int{0, 1, 2, 3}, 8, txs); err != nil {
		t.Fatal(err)
	}
	const victim = 3
	if _, err := cl.ReadExport(ctx, victim, 0, until(t, txs)); err != nil {
		t.Fatal(err)
	}
	cl.StopNode(victim)
	dir := cl.DataDir(victim)
	pristine := filepath.Join(t.TempDir(), "pristine")
	copyDir(t, dir, pristine)
	flushed := filepath.Join(t.TempDir(), "flushed")
	copyDir(t, dir, flushed)
	flushTables(t, flushed)

	for _, tc := range []struct {
		name   string
		from   string
		damage func(t *testing.T) string // returns what the message must name
	}{
		{"missing CURRENT", pristine, func(t *testing.T) string {
			if err := os.Remove(filepath.Join(dir, "CURRENT")); err != nil {
				t.Fatal(err)
			}
			return "file CURRENT"
		}},
		{"missing MANIFEST", pristine, func(t *testing.T) string {
			m := newest(t, dir, "MANIFEST-*")
			if err := os.Remove(m); err != nil {
				t.Fatal(err)
			}
			return filepath.Base(m)
		}},
		{"truncated WAL", pristine, func(t *testing.T) string {
			tearWAL(t, dir) // synced writes lost: the signing record is ahead of the store
			return "signing record"
		}},
		{"corrupted table", flushed, func(t *testing.T) string {
			sst := newest(t, dir, "*.sst")
			raw, err := os.ReadFile(sst)
			if err != nil {
				t.Fatal(err)
			}
			raw[len(raw)/3] ^= 0x40 // inside a data block
			if err := os.WriteFile(sst, raw, 0o644); err != nil {
				t.Fatal(err)
			}
			return "table " + filepath.Base(sst)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			copyDir(t, tc.from, dir)
			what := tc.damage(t)
			before := listing(t, dir)
			err := cl.TryStartNode(victim)
			if err == nil {
				cl.StopNode(victim)
				t.Fatal("the node started on a damaged store")
			}
			msg := err.Error()
			t.Logf("refusal: %s", msg)
			for _, want := range []string{dir, what, "refuses to start", "resync from peers", "docs/storage.md"} {
				if !strings.Contains(msg, want) {
					t.Errorf("the refusal does not name %q", want)
				}
			}
			if !errors.Is(err, node.ErrStoreDamaged) {
				t.Errorf("the refusal does not wrap ErrStoreDamaged")
			}
			if after := listing(t, dir); after != before {
				t.Errorf("the refused store was rewritten:\nbefore %s\nafter  %s", before, after)
			}
		})
	}

	// The undamaged store starts, and the node takes part again.
	copyDir(t, pristine, dir)
	cl.StartNode(victim)
	more := makeTxs("after", 200, 200)
	if _, err := cl.SubmitAll(ctx, []int{victim}, 2, more); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.ReadExport(ctx, victim, 0, until(t, append(txs, more...))); err != nil {
		t.Fatal(err)
	}
}

// listing names each file of dir with its size and modification time
// (pebble's LOCK aside).
func listing(t testing.TB, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range entries {
		if e.Name() == "LOCK" { // pebble takes its lock before anything else
			continue
		}
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%d:%s ", e.Name(), fi.Size(), fi.ModTime().Format(time.RFC3339Nano))
	}
	return b.String()
}

// diskFull fails every write to files under dir with ENOSPC once armed.
type diskFull struct {
	armed atomic.Bool
	hits  atomic.Int64
}

func (d *diskFull) MaybeError(op errorfs.Op, path string) error {
	if !d.armed.Load() {
		return nil
	}
	switch op {
	case errorfs.OpCreate, errorfs.OpFileWrite, errorfs.OpFileWriteAt, errorfs.OpFilePreallocate:
		d.hits.Add(1)
		return &os.PathError{Op: "write", Path: path, Err: syscall.ENOSPC}
	}
	return nil
}

// A node whose disk fills under load stops cleanly, with its data
// directory and the cause (no panic); nothing it acknowledged is lost
// when it reopens its store on a healthy disk, and it takes part again.
func TestDiskFullStopsTheNodeCleanlyAndLosesNothing(t *testing.T) {
	cl := nodetest.Start(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const victim = 0
	cl.StopNode(victim)
	full := &diskFull{}
	if err := cl.TryStartNode(victim, node.WithFS(errorfs.Wrap(vfs.Default, full))); err != nil {
		t.Fatal(err)
	}
	before := makeTxs("before", 500, 200)
	if acked, err := cl.SubmitAll(ctx, []int{victim}, 4, before); err != nil || acked != uint64(len(before)) {
		t.Fatalf("acknowledged %d of %d: %v", acked, len(before), err)
	}
	full.armed.Store(true)
	loadCtx, stopLoad := context.WithCancel(ctx)
	go cl.SubmitAll(loadCtx, []int{1, 2, 3}, 3, makeTxs("during", 5000, 200))
	err := cl.WaitStopped(victim, time.Minute)
	stopLoad()
	if err == nil {
		t.Fatal("the node stopped without an error on a full disk")
	}
	t.Logf("stop: %v (%d writes refused)", err, full.hits.Load())
	for _, want := range []string{cl.DataDir(victim), "no space left on device"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the stop error does not name %q", want)
		}
	}

	full.armed.Store(false)
	cl.RestartFromCopy(victim) // as a new process would find the disk
	cl.StartNode(victim)       // the OS's filesystem, no injector
	if _, err := cl.ReadExport(ctx, victim, 0, until(t, before)); err != nil {
		t.Fatalf("acknowledged before the disk filled, then lost: %v", err)
	}
	after := makeTxs("after", 200, 200)
	if acked, err := cl.SubmitAll(ctx, []int{victim}, 2, after); err != nil || acked != uint64(len(after)) {
		t.Fatalf("after reopening: acknowledged %d of %d: %v", acked, len(after), err)
	}
	if _, err := cl.ReadExport(ctx, 1, 0, until(t, append(before, after...))); err != nil {
		t.Fatal(err)
	}
}

// --resync: a node whose store is refused moves it aside (the signing
// record stays), starts empty and rebuilds its history from its peers —
// certificates from the first round, batches of the committed ones — so
// that its Export equals the others', past the GC horizon included.
func TestResyncRebuildsTheStoreFromPeers(t *testing.T) {
	cl := nodetest.Start(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for k := range 10 {
		if _, err := cl.SubmitAll(ctx, []int{0, 1}, 2, makeTxs(fmt.Sprintf("before-%d", k), 100, 200)); err != nil {
			t.Fatal(err)
		}
	}
	dir := cl.DataDir(3)
	cl.StopNode(3)
	if err := os.Remove(filepath.Join(dir, "CURRENT")); err != nil {
		t.Fatal(err)
	}
	if err := cl.TryStartNode(3); !errors.Is(err, node.ErrStoreDamaged) {
		t.Fatalf("a store without CURRENT: %v", err)
	}
	aside, err := node.MoveStoreAside(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(aside, "CURRENT")); err == nil {
		t.Fatal("the damaged store was not kept aside")
	}
	if _, err := os.Stat(filepath.Join(dir, "SIGNED")); err != nil {
		t.Fatalf("the signing record did not stay: %v", err)
	}
	cl.StartNode(3)
	if _, err := cl.SubmitAll(ctx, []int{3}, 2, makeTxs("after", 50, 100)); err != nil {
		t.Fatal(err)
	}
	head := cl.Node(0).Status().Committed
	ref, err := cl.ReadExport(ctx, 0, 0, func(pb *dsnv1.PreBlock) bool { return pb.Index >= head })
	if err != nil {
		t.Fatal(err)
	}
	got, err := cl.ReadExport(ctx, 3, 0, func(pb *dsnv1.PreBlock) bool { return pb.Index >= head })
	if err != nil {
		t.Fatalf("the resynced node's Export: %v", err)
	}
	if err := dsnclient.SamePrefix(ref, got); err != nil {
		t.Fatalf("the resynced node's Export differs: %v", err)
	}
	t.Logf("resynced: %d pre-blocks identical to node 1's (committed round %d)", len(got), cl.Node(0).Status().Round)
}
