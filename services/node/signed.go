package node

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/primary"
)

// The signing record (primary.Signed: this node's last vote for each
// author, round and header digest, and the round of its last proposed
// header) lives in its own file, SIGNED, outside the store: a store that
// loses writes — a truncated WAL, a restored copy — must not make the node
// sign twice for one round, and votes live here alone. It is written before
// the messages that carry a new signature leave (the committer syncs it
// after the store's writes), and read at start (Replica.SetSigned).
//
// Format: two slots of slotSize bytes, written in turn; a slot is
// seq u64 ‖ proposed u64 ‖ store write group u64 ‖ count u16 ‖ (vote
// round u64 ‖ header digest) × count ‖ CRC-32C of what precedes. The
// write group is the store's count of synced write groups when the record
// was written (store.GroupKey): a store below it lost synced writes. Each write goes to the slot the last
// one did not use and is synced, so a write torn by a crash leaves the
// other, older slot: and the messages of a write that did not complete
// never left. A file of the first format (rounds without digests, slots of
// slotSizeV1) is rewritten in this one when opened.
const signedFile = "SIGNED"

const maxSignedAuthors = narwhal.MaxCommitteeSize

const slotSize = 8 + 8 + 8 + 2 + (8+narwhal.DigestSize)*maxSignedAuthors + 4

// The current slot is larger than the first format's (this does not
// compile otherwise), and no current file can be 2*slotSizeV1 bytes long
// (a first slot and a partial second one would need 6,114 bytes of votes,
// not a multiple of 40): a file's size tells the formats apart.
const _ uint = slotSize - slotSizeV1 - 1

// slotSizeV1 is the first format's slot: rounds only, for 1,024 authors.
const slotSizeV1 = 8 + 8 + 2 + 8*1024 + 4

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// signedRecord is what SIGNED holds.
type signedRecord struct {
	primary.Signed
	group uint64 // the store's write groups when it was written (0: unknown)
	v1    bool   // read from the first format: rounds without digests
	empty bool   // nothing recorded yet (a new file)
}

// signedLog writes the signing record.
type signedLog struct {
	f   *os.File
	seq uint64
}

// ErrSignedDamaged: the signing record cannot be read.
var ErrSignedDamaged = errors.New("node: signing record damaged")

// openSigned opens (creating it if absent) the signing record in dir and
// returns what it holds (empty if new).
func openSigned(dir string) (*signedLog, signedRecord, error) {
	path := filepath.Join(dir, signedFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, signedRecord{}, fmt.Errorf("signing record %s: %w", path, err)
	}
	buf, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, signedRecord{}, fmt.Errorf("signing record %s: %w", path, err)
	}
	v1 := len(buf) == 2*slotSizeV1
	size := slotSize
	if v1 {
		size = slotSizeV1
	}
	l := &signedLog{f: f}
	best := signedRecord{empty: true}
	found := false
	for slot := 0; slot < 2; slot++ {
		if len(buf) <= slot*size {
			continue
		}
		seq, rec, ok := decodeSlot(buf[slot*size:min(len(buf), (slot+1)*size)], v1)
		if ok && (!found || seq > l.seq) {
			l.seq, best, found = seq, rec, true
		}
	}
	if len(buf) > 0 && !found {
		f.Close()
		return nil, signedRecord{}, fmt.Errorf("%w: %s: no valid slot in %d bytes; votes live only here: restore the file from a backup, or move it aside and the node starts abstaining up to one round past its store's highest certificate", ErrSignedDamaged, path, len(buf))
	}
	if v1 { // rewrite it in the current format, atomically
		f.Close()
		if l.f, err = migrateSigned(path, l.seq, best); err != nil {
			return nil, signedRecord{}, err
		}
		l.seq++
	}
	return l, best, nil
}

// migrateSigned writes rec as the only slot of a new-format file beside
// path, syncs it and renames it over path.
func migrateSigned(path string, seq uint64, rec signedRecord) (*os.File, error) {
	tmp := path + ".new"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("signing record %s: %w", tmp, err)
	}
	l := &signedLog{f: f, seq: seq}
	err = l.write(rec.Signed, rec.group)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("signing record %s: %w", path, err)
	}
	return f, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// decodeSlot reads one slot, of the current format or the first (v1:
// no write group, rounds without digests).
func decodeSlot(b []byte, v1 bool) (uint64, signedRecord, bool) {
	head, entry := 8+8+8+2, 8+narwhal.DigestSize
	if v1 {
		head, entry = 8+8+2, 8
	}
	if len(b) < head {
		return 0, signedRecord{}, false
	}
	count := int(binary.BigEndian.Uint16(b[head-2:]))
	end := head + entry*count
	if end+4 > len(b) || binary.BigEndian.Uint32(b[end:]) != crc32.Checksum(b[:end], castagnoli) {
		return 0, signedRecord{}, false
	}
	rec := signedRecord{Signed: primary.Signed{Proposed: binary.BigEndian.Uint64(b[8:]), Votes: make([]uint64, count)}, v1: v1}
	if !v1 {
		rec.group = binary.BigEndian.Uint64(b[16:])
		rec.VoteDigests = make([]narwhal.Digest, count)
	}
	for a := range rec.Votes {
		rec.Votes[a] = binary.BigEndian.Uint64(b[head+entry*a:])
		if !v1 {
			copy(rec.VoteDigests[a][:], b[head+entry*a+8:])
		}
	}
	return binary.BigEndian.Uint64(b), rec, true
}

// write makes rec durable, with the store's write group it follows, in the
// slot the last write did not use.
func (l *signedLog) write(rec primary.Signed, group uint64) error {
	if len(rec.Votes) > maxSignedAuthors {
		return fmt.Errorf("signing record: %d authors", len(rec.Votes))
	}
	l.seq++
	const head, entry = 8 + 8 + 8 + 2, 8 + narwhal.DigestSize
	b := make([]byte, head+entry*len(rec.Votes)+4)
	binary.BigEndian.PutUint64(b, l.seq)
	binary.BigEndian.PutUint64(b[8:], rec.Proposed)
	binary.BigEndian.PutUint64(b[16:], group)
	binary.BigEndian.PutUint16(b[24:], uint16(len(rec.Votes)))
	for a, r := range rec.Votes {
		binary.BigEndian.PutUint64(b[head+entry*a:], r)
		if a < len(rec.VoteDigests) {
			copy(b[head+entry*a+8:], rec.VoteDigests[a][:])
		}
	}
	end := head + entry*len(rec.Votes)
	binary.BigEndian.PutUint32(b[end:], crc32.Checksum(b[:end], castagnoli))
	// Only the slot's used part is written (the checksum covers just it).
	if _, err := l.f.WriteAt(b[:end+4], int64(l.seq%2)*slotSize); err != nil {
		return fmt.Errorf("signing record: %w", err)
	}
	// Data sync: it also syncs the file's size when a write extends it.
	if err := syscall.Fdatasync(int(l.f.Fd())); err != nil {
		return fmt.Errorf("signing record: %w", err)
	}
	return nil
}

func (l *signedLog) close() error { return l.f.Close() }

// signedBehind says how the store's own record (what the replica recovered
// from it) falls behind the signing record, or "" if it does not.
func signedBehind(store, rec primary.Signed) string {
	if rec.Proposed > store.Proposed {
		return fmt.Sprintf("the store's last proposed header is of round %d, the node signed one of round %d: the store lost writes it had synced (a truncated WAL, an older copy)", store.Proposed, rec.Proposed)
	}
	for a, r := range rec.Votes {
		if a < len(store.Votes) && r > store.Votes[a] {
			return fmt.Sprintf("the store's last vote for authority %d is of round %d, the node signed one of round %d: the store lost writes it had synced (a truncated WAL, an older copy)", a, store.Votes[a], r)
		}
	}
	return ""
}

// MoveStoreAside moves everything in the data directory but the signing
// record into a sibling directory <dir>.damaged-<unix seconds> and returns
// its path: the store is kept for inspection, and the node, started on
// what is left, rebuilds its history from its peers (certificates from the
// first round, batches of committed ones) while the signing record keeps
// it from signing twice (`dsn node --resync`; docs/storage.md).
func MoveStoreAside(dir string, now time.Time) (string, error) {
	names, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("data_dir %s: %w", dir, err)
	}
	aside := fmt.Sprintf("%s.damaged-%d", filepath.Clean(dir), now.Unix())
	if err := os.Mkdir(aside, 0o755); err != nil {
		return "", fmt.Errorf("move the store aside: %w", err)
	}
	for _, e := range names {
		if e.Name() == signedFile {
			continue
		}
		if err := os.Rename(filepath.Join(dir, e.Name()), filepath.Join(aside, e.Name())); err != nil {
			return "", fmt.Errorf("move the store aside: %w", err)
		}
	}
	return aside, nil
}

// completeSigned fills in what a record lacks for an existing store:
//   - no record at all (the file lost or moved aside): the node derives
//     floors from its store — it can have voted or proposed only for
//     headers whose parents it had stored, so at most one round past its
//     highest certificate — and abstains up to there (it cannot send the
//     same vote again to a header that asks twice: it votes for none);
//   - a record of the first format (rounds only): the digests come from
//     the store's last votes ('v' keys, which that version wrote), so that
//     a header asked again after the upgrade gets the same vote.
//
// dagRound is the highest certificate round the replica recovered.
func completeSigned(rec *signedRecord, st *pebbleStore, dagRound uint64, authorities int, log *slog.Logger) {
	if !st.existed {
		return
	}
	switch {
	case rec.empty:
		r := dagRound + 1
		rec.Signed = primary.Signed{Proposed: r, Votes: make([]uint64, authorities)}
		for a := range rec.Votes {
			rec.Votes[a] = r
		}
		log.Warn("no signing record for an existing store: abstaining up to one round past the store's highest certificate",
			"data_dir", st.dir, "round", r)
	case rec.v1:
		rec.VoteDigests = make([]narwhal.Digest, len(rec.Votes))
		for a, r := range rec.Votes {
			raw, ok := st.Get([]byte{'v', byte(a >> 8), byte(a)})
			if ok && len(raw) == 8+narwhal.DigestSize && binary.BigEndian.Uint64(raw) == r {
				copy(rec.VoteDigests[a][:], raw[8:])
			}
		}
	}
}
