package node

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/vfs"

	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/primary"
	"github.com/tezos-dsn/dsn/internal/store"
)

// The signing record reads back the last record written; a torn write
// (the newer slot's bytes corrupted) falls back to the older slot, whose
// messages are the only ones that left; both slots unreadable is refused.
func TestSigningRecord(t *testing.T) {
	dir := t.TempDir()
	l, rec, err := openSigned(dir)
	if err != nil || rec.Proposed != 0 || len(rec.Votes) != 0 {
		t.Fatalf("a new record: %+v %v", rec, err)
	}
	d := func(s string) narwhal.Digest { return narwhal.Hash([]byte(s)) }
	older := primary.Signed{Proposed: 7, Votes: []uint64{6, 7, 5, 0}, VoteDigests: []narwhal.Digest{d("a6"), d("b7"), d("c5"), {}}}
	newer := primary.Signed{Proposed: 8, Votes: []uint64{8, 7, 8, 3}, VoteDigests: []narwhal.Digest{d("a8"), d("b7"), d("c8"), d("d3")}}
	for _, r := range []primary.Signed{older, newer} {
		if err := l.write(r, 0); err != nil {
			t.Fatal(err)
		}
	}
	l.close()
	check := func(want primary.Signed) {
		t.Helper()
		l, got, err := openSigned(dir)
		if err != nil {
			t.Fatal(err)
		}
		l.close()
		if got.Proposed != want.Proposed || !slices.Equal(got.Votes, want.Votes) || !slices.Equal(got.VoteDigests, want.VoteDigests) {
			t.Fatalf("read %+v, want %+v", got, want)
		}
	}
	check(newer)
	// Tear the newer write (seq 2: slot 0).
	path := filepath.Join(dir, signedFile)
	raw, _ := os.ReadFile(path)
	raw[20] ^= 0xff
	os.WriteFile(path, raw, 0o644)
	check(older)
	// Both slots gone bad: refused, with the remedy.
	raw[slotSize+20] ^= 0xff
	os.WriteFile(path, raw, 0o644)
	if _, _, err := openSigned(dir); !errors.Is(err, ErrSignedDamaged) {
		t.Fatalf("both slots bad: %v", err)
	}
}

// A record of the first format (rounds only, slots of slotSizeV1) is read
// and rewritten in the current one; the node goes on from it.
func TestSigningRecordV1IsMigrated(t *testing.T) {
	dir := t.TempDir()
	v1 := make([]byte, 2*slotSizeV1)
	slot := v1[slotSizeV1:] // seq 1 went to slot 1
	binary.BigEndian.PutUint64(slot, 1)
	binary.BigEndian.PutUint64(slot[8:], 9)
	binary.BigEndian.PutUint16(slot[16:], 3)
	for a, r := range []uint64{9, 8, 9} {
		binary.BigEndian.PutUint64(slot[18+8*a:], r)
	}
	binary.BigEndian.PutUint32(slot[18+24:], crc32.Checksum(slot[:18+24], castagnoli))
	os.WriteFile(filepath.Join(dir, signedFile), v1, 0o644)
	l, rec, err := openSigned(dir)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Proposed != 9 || !slices.Equal(rec.Votes, []uint64{9, 8, 9}) || len(rec.VoteDigests) != 0 {
		t.Fatalf("v1 read as %+v", rec)
	}
	next := primary.Signed{Proposed: 10, Votes: []uint64{10, 8, 9}, VoteDigests: make([]narwhal.Digest, 3)}
	next.VoteDigests[0] = narwhal.Hash([]byte("x"))
	if err := l.write(next, 0); err != nil {
		t.Fatal(err)
	}
	l.close()
	if fi, _ := os.Stat(filepath.Join(dir, signedFile)); fi.Size() == 2*slotSizeV1 {
		t.Fatal("still in the first format")
	}
	l, got, err := openSigned(dir)
	if err != nil {
		t.Fatal(err)
	}
	l.close()
	if got.Proposed != 10 || !slices.Equal(got.Votes, next.Votes) || !slices.Equal(got.VoteDigests, next.VoteDigests) {
		t.Fatalf("after migration: %+v", got)
	}
}

// An existing store without its signing record: the node abstains up to
// one round past the store's highest certificate (it can have signed
// nothing beyond). A first-format record gets its digests from the
// store's last votes, where their rounds agree.
func TestCompleteSigned(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	committedStore(t, dir, 5, 4, 64)
	st, err := openStore(dir, storeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	log := slog.New(slog.DiscardHandler)
	rec := signedRecord{empty: true}
	completeSigned(&rec, st, 20, 4, log)
	if rec.Proposed != 21 || !slices.Equal(rec.Votes, []uint64{21, 21, 21, 21}) {
		t.Fatalf("derived %+v", rec.Signed)
	}
	d := narwhal.Hash([]byte("voted"))
	legacy := binary.BigEndian.AppendUint64(nil, 7)
	if err := st.Apply([]store.Write{store.Put([]byte{'v', 0, 1}, append(legacy, d[:]...))}); err != nil {
		t.Fatal(err)
	}
	old := signedRecord{Signed: primary.Signed{Proposed: 8, Votes: []uint64{0, 7, 6, 0}}, v1: true}
	completeSigned(&old, st, 20, 4, log)
	if old.VoteDigests[1] != d || old.VoteDigests[2] != (narwhal.Digest{}) || old.Votes[1] != 7 {
		t.Fatalf("migrated %+v", old.Signed)
	}
	fresh := signedRecord{empty: true}
	newDir := filepath.Join(t.TempDir(), "new")
	ns, err := openStore(newDir, storeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	completeSigned(&fresh, ns, 0, 4, log)
	if fresh.Proposed != 0 || len(fresh.Votes) != 0 {
		t.Fatalf("a new store got floors %+v", fresh.Signed)
	}
}

// A store that lost synced write groups is refused against the signing
// record, even when it lost no proposal.
func TestStoreBehindTheRecordsWriteGroupIsRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	committedStore(t, dir, 5, 4, 64)
	st, err := openStore(dir, storeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g := st.group.Load()
	st.Close()
	if _, err := openStore(dir, storeOptions{signed: signedRecord{group: g + 3}}); err == nil || !strings.Contains(err.Error(), "write groups") {
		t.Fatalf("a store 3 groups behind its record: %v", err)
	}
	st, err = openStore(dir, storeOptions{signed: signedRecord{group: g}})
	if err != nil {
		t.Fatalf("a store level with its record: %v", err)
	}
	st.Close()
}

// A new store beside a kept signing record records its write group at
// once: a crash before the node's first write does not leave it behind
// the record (pebble's strict in-memory file system keeps synced data
// only).
func TestNewStoreBesideARecordIsNotBehindItAfterACrash(t *testing.T) {
	fs := vfs.NewStrictMem()
	dir := "/data"
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if root, err := fs.OpenDir("/"); err != nil || root.Sync() != nil {
		t.Fatal("sync /", err)
	}
	rec := signedRecord{group: 40}
	st, err := openStore(dir, storeOptions{fs: fs, signed: rec})
	if err != nil {
		t.Fatal(err)
	}
	fs.SetIgnoreSyncs(true)
	st.Close()
	fs.ResetToSyncedState()
	fs.SetIgnoreSyncs(false)
	st, err = openStore(dir, storeOptions{fs: fs, signed: rec})
	if err != nil {
		t.Fatalf("a new store beside a record, crashed before any write: %v", err)
	}
	st.Close()
}
