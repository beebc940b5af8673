package node

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/primary"
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
		if err := l.write(r); err != nil {
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
	if err := l.write(next); err != nil {
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
