package node

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

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
	older := primary.Signed{Proposed: 7, Votes: []uint64{6, 7, 5, 0}}
	newer := primary.Signed{Proposed: 8, Votes: []uint64{8, 7, 8, 3}}
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
		if got.Proposed != want.Proposed || !slices.Equal(got.Votes, want.Votes) {
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
